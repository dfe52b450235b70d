"""`gixs simulate compare --match profile`: measured q_par cuts against whole simulated S(q).

Fast tests hold synthetic cuts, made from the S(q) of known 2-D lattices under a falling
form-factor envelope and a background, against runs of known lattices; the slow test
reduces the demo GISAXS frames and compares them with short Monte Carlo runs (issue 9).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

from detectors.errors import SimulationError
from simulation.compare import (
    MeasuredCuts,
    ProfileSettings,
    compare_rods,
    first_rod_per_L,
    fit_profile,
)
from simulation.io import read_measured_cuts, read_measured_rods, write_run
from simulation.observables import structure_factor
from tests.sim_lattices import (
    centred_rectangular_lattice,
    hexagonal_lattice,
    lattice_run,
    square_lattice,
)

REPO = Path(__file__).resolve().parents[1]
Q_PAR_PER_NM = np.linspace(0.3, 2.4, 260)
# the synthetic cuts and the runs share one sharp S(q): smooth both alike (the defaults
# smooth only the measured cut, whose rods are sharper than a small box's)
SAME = ProfileSettings(smoothing_q1=0.03, sim_smoothing_q1=0.03)


def _sq(positions, angles, box):
    return structure_factor(positions, box, q_max_per_L=22.0, n_q=900)


def _cut(sq, contact_nm, *, rng, counts=2000.0):
    """A measured-like cut: (S - 1) under a falling envelope, on a power-law background."""
    q = Q_PAR_PER_NM
    s = np.interp(q * contact_nm, sq.q_per_L, sq.s)
    envelope = counts * (0.8 / q) ** 3
    expected = 0.3 * counts * (0.3 / q) ** 2 + 2.0 + envelope * np.clip(s, 0.0, None) * 0.5
    gen = np.random.default_rng(rng)
    intensity = gen.poisson(expected).astype(float)
    return intensity, np.sqrt(np.maximum(intensity, 1.0))


@pytest.fixture(scope="module")
def lattices():
    """S(q) of a square, a hexagonal and a brick (centred rectangular, gamma ~ 63 deg) layer."""
    square = square_lattice(18, 1.05, noise_L=0.04, rng=1)
    hexagonal = hexagonal_lattice(18, 20, 1.2, noise_L=0.04, rng=2)
    # a brick lattice of the model's long patches: rows 1 L apart, offset half a spacing
    brick = centred_rectangular_lattice(18, 20, 1.1, row_height_L=1.0, noise_L=0.04, rng=3)
    return {
        "square": (square, _sq(*square)),
        "hexagonal": (hexagonal, _sq(*hexagonal)),
        "brick": (brick, _sq(*brick)),
    }


@pytest.mark.parametrize(("name", "contact_nm"), [("square", 7.6), ("hexagonal", 6.9)])
def test_profile_fit_finds_the_contact_distance(lattices, name, contact_nm):
    _, sq = lattices[name]
    for seed in range(3):
        intensity, errors = _cut(sq, contact_nm, rng=seed)
        q1_sim = float(sq.q_per_L[np.argmax(sq.s * (sq.q_per_L > 3))])
        fit = fit_profile(
            Q_PAR_PER_NM,
            intensity,
            errors,
            sq,
            q1_per_nm=q1_sim / contact_nm * 1.02,  # the measured q1, a little off
            q1_sim_per_L=q1_sim,
            settings=SAME,
        )
        assert fit.message == ""
        assert fit.contact_nm == pytest.approx(contact_nm, rel=0.005)
        assert fit.misfit < 1.0


@pytest.mark.parametrize("measured", ["square", "hexagonal"])
def test_profile_prefers_the_lattice_that_made_the_cut(lattices, measured):
    _, sq = lattices[measured]
    intensity, errors = _cut(sq, 7.0, rng=5)
    q1 = float(sq.q_per_L[np.argmax(sq.s * (sq.q_per_L > 3))]) / 7.0
    misfits = {}
    for name, (_, sim) in lattices.items():
        q1_sim = float(sim.q_per_L[np.argmax(sim.s * (sim.q_per_L > 3))])
        fit = fit_profile(
            Q_PAR_PER_NM, intensity, errors, sim, q1_per_nm=q1, q1_sim_per_L=q1_sim, settings=SAME
        )
        misfits[name] = fit.misfit
    assert min(misfits, key=misfits.__getitem__) == measured, misfits


def test_a_hexagonal_cut_prefers_the_brick_layer_to_the_square_one(lattices):
    # the model's long-patch layer is a brick lattice (q2/q1 ~ 1.9, not sqrt 3): matched
    # by its peak list, its second peak pairs with the measured sqrt 3 rod and loses to a
    # square lattice's sqrt 2; as a profile, the square lattice's sqrt 2 peak where the
    # hexagonal cut has none weighs against it
    _, hexagonal = lattices["hexagonal"]
    intensity, errors = _cut(hexagonal, 7.0, rng=7)
    q1 = float(hexagonal.q_per_L[np.argmax(hexagonal.s * (hexagonal.q_per_L > 3))]) / 7.0
    fits = {}
    for name in ("square", "brick"):
        sim = lattices[name][1]
        q1_sim = float(sim.q_per_L[np.argmax(sim.s * (sim.q_per_L > 3))])
        fits[name] = fit_profile(
            Q_PAR_PER_NM, intensity, errors, sim, q1_per_nm=q1, q1_sim_per_L=q1_sim, settings=SAME
        ).misfit
    assert fits["brick"] < fits["square"], fits


def test_profile_fit_without_a_first_rod_or_room_says_why(lattices):
    _, sq = lattices["square"]
    intensity, errors = _cut(sq, 7.6, rng=0)
    none = fit_profile(
        Q_PAR_PER_NM, intensity, errors, sq, q1_per_nm=float("nan"), q1_sim_per_L=6.0
    )
    assert np.isnan(none.misfit)
    assert "first rod" in none.message
    narrow = fit_profile(
        Q_PAR_PER_NM[:40], intensity[:40], errors[:40], sq, q1_per_nm=0.83, q1_sim_per_L=6.0
    )
    assert np.isnan(narrow.misfit)
    assert "do not hold" in narrow.message


def test_profile_settings_are_checked():
    with pytest.raises(SimulationError, match="window_q1"):
        ProfileSettings(window_q1=(1.2, 2.0))
    with pytest.raises(SimulationError, match="q1_tolerance"):
        ProfileSettings(q1_tolerance=0.5)


def _write_results(path: Path, *, time_s, q1, symmetry, cuts=None, drop=()):
    with h5py.File(path, "w") as fh:
        rods = fh.create_group("entry/first_rod")
        rods["time"] = np.asarray(time_s, float)
        rods["q1"] = np.asarray(q1, float)
        rods["symmetry"] = np.array(symmetry, dtype=h5py.string_dtype())
        rods["rod_positions"] = np.column_stack([q1, np.full((len(q1), 3), np.nan)])
        if cuts is not None:
            group = fh.create_group("entry/gisaxs_cuts")
            for name, values in cuts.items():
                if name not in drop:
                    group[name] = values
    return path


def test_compare_profile_through_the_results_file(tmp_path, lattices):
    # measured: two square frames and two hexagonal ones; runs: the square and the brick
    sq_square, sq_hex = lattices["square"][1], lattices["hexagonal"][1]
    rows = [_cut(sq_hex, 7.0, rng=1), _cut(sq_hex, 7.0, rng=2)]
    rows += [_cut(sq_square, 7.6, rng=3), _cut(sq_square, 7.6, rng=4)]
    q1_hex = float(sq_hex.q_per_L[np.argmax(sq_hex.s * (sq_hex.q_per_L > 3))]) / 7.0
    q1_sq = float(sq_square.q_per_L[np.argmax(sq_square.s * (sq_square.q_per_L > 3))]) / 7.6
    path = _write_results(
        tmp_path / "results.h5",
        time_s=[10.0, 20.0, 30.0, 40.0],
        q1=[q1_hex, q1_hex, q1_sq, q1_sq],
        symmetry=["hexagonal", "hexagonal", "square", "square"],
        cuts={
            "time": np.array([10.0, 20.0, 30.0, 40.0]),
            "q_par": Q_PAR_PER_NM,
            "intensity": np.array([r[0] for r in rows]),
            "intensity_errors": np.array([r[1] for r in rows]),
        },
    )
    runs = [
        lattice_run(*lattices["square"][0], patch_ratio=0.1, eps_kT=6),
        lattice_run(*lattices["brick"][0], patch_ratio=0.8, eps_kT=6),
    ]
    # lattice_run computes S(q) only to 14 / L: recompute it wider, as the engine does
    runs = [
        type(run)(**{**{f: getattr(run, f) for f in run.__slots__}, "structure_factor": sq})
        for run, sq in zip(runs, (lattices["square"][1], lattices["brick"][1]), strict=True)
    ]
    result = compare_rods(
        read_measured_rods(path),
        runs,
        contact_nm=7.6,
        match="profile",
        cuts=read_measured_cuts(path),
        profile_settings=SAME,
    )
    best = {m.phase: (m.best_label, round(float(m.contacts_nm[m.best]), 2)) for m in result.phases}
    assert best["square"][0] == "Px/Fx=0.1 eps=6kT"
    assert best["hexagonal"][0] == "Px/Fx=0.8 eps=6kT"
    assert best["square"][1] == pytest.approx(7.6, rel=0.01)
    report = result.report()
    assert "contact distance fitted" in report
    assert "misfit of each state point" in report
    # the first rod of each run, as used to place the scan
    assert first_rod_per_L(runs[0]) == pytest.approx(2 * np.pi / 1.05, rel=0.03)


def test_profile_needs_the_cuts(tmp_path, lattices):
    path = _write_results(tmp_path / "r.h5", time_s=[1.0], q1=[0.8], symmetry=["square"])
    run = lattice_run(*lattices["square"][0], patch_ratio=0.1, eps_kT=6)
    with pytest.raises(SimulationError, match="needs the q_par cuts"):
        compare_rods(read_measured_rods(path), [run], contact_nm=7.6, match="profile")
    with pytest.raises(SimulationError, match=r"r\.h5: no /entry/gisaxs_cuts"):
        read_measured_cuts(path)


@pytest.mark.parametrize("missing", ["time", "q_par", "intensity", "intensity_errors"])
def test_read_measured_cuts_names_a_missing_dataset(tmp_path, missing):
    cuts = {
        "time": np.array([1.0, 2.0]),
        "q_par": Q_PAR_PER_NM,
        "intensity": np.ones((2, Q_PAR_PER_NM.size)),
        "intensity_errors": np.ones((2, Q_PAR_PER_NM.size)),
    }
    path = _write_results(
        tmp_path / "r.h5",
        time_s=[1.0, 2.0],
        q1=[0.8, 0.8],
        symmetry=["square"] * 2,
        cuts=cuts,
        drop=(missing,),
    )
    with pytest.raises(SimulationError, match=rf"missing dataset /entry/gisaxs_cuts/{missing}"):
        read_measured_cuts(path)


def test_cuts_of_other_frames_are_refused(tmp_path, lattices):
    cuts = MeasuredCuts(
        time_s=np.array([1.0, 5.0]),
        q_par_per_nm=Q_PAR_PER_NM,
        intensity=np.ones((2, Q_PAR_PER_NM.size)),
        intensity_errors=np.ones((2, Q_PAR_PER_NM.size)),
    )
    path = _write_results(
        tmp_path / "r.h5", time_s=[1.0, 2.0], q1=[0.8, 0.8], symmetry=["square"] * 2
    )
    run = lattice_run(*lattices["square"][0], patch_ratio=0.1, eps_kT=6)
    with pytest.raises(SimulationError, match="does not match /entry/first_rod"):
        compare_rods(read_measured_rods(path), [run], contact_nm=7.6, match="profile", cuts=cuts)


# ---------------------------------------------------------------- the demo against MC


def _gisaxs_only_config(folder: Path) -> Path:
    """The demo's GISAXS table with absolute paths, in a TOML of its own."""
    demo = REPO / "sample_data" / "demo"
    table = tomllib.loads((demo / "demo.toml").read_text())["gisaxs"]
    lines = ["schema_version = 1", "[gisaxs]"]
    for key, value in table.items():
        if key == "frames":
            value = [str(demo / pattern) for pattern in value]
        elif key == "poni":
            value = str(demo / value)
        lines.append(f"{key} = {_toml(value)}")
    path = folder / "gisaxs.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@pytest.mark.slow
def test_demo_phases_go_to_state_points_of_their_kind(tmp_path):
    from pipeline.batch import reduce_run
    from pipeline.io import load_config
    from simulation.sweep import RunSettings, run_state_point

    reduce_run(load_config(_gisaxs_only_config(tmp_path)), tmp_path / "out", jobs=1)
    sims = []
    # N = 256, 20000 sweeps, seed 1 as in tests/test_sim_findings.py, with the snapshots of
    # `gixs simulate run` (every sweeps / 20; S(q) averages the last ones)
    for patch, eps in ((0.1, 6.0), (0.8, 6.0)):
        run = run_state_point(
            RunSettings(patch, eps, n_particles=256, n_sweeps=20_000, snapshot_every=1_000, seed=1)
        )
        sims.append(write_run(tmp_path / "sim" / f"p{patch:g}_e{eps:g}.h5", run))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "simulate",
            "compare",
            str(tmp_path / "out" / "results.h5"),
            *map(str, sims),
            "--contact-nm",
            "7.6",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    best = {}
    for line in done.stdout.splitlines():
        found = re.match(
            r"(hexagonal|pseudo-hexagonal|square)\s+\d+\s.*?(Px/Fx=\S+ eps=\S+)\s+(\S+)", line
        )
        if found:
            best[found.group(1)] = found.group(3)
    assert set(best) == {"hexagonal", "pseudo-hexagonal", "square"}, done.stdout
    assert best["square"] == "square", done.stdout
    assert best["hexagonal"] in {"hexagonal", "pseudo-hexagonal"}, done.stdout
    assert best["pseudo-hexagonal"] in {"hexagonal", "pseudo-hexagonal"}, done.stdout


def test_cli_profile_on_results_without_cuts_is_one_line_and_exit_2(tmp_path, lattices, capsys):
    from simulation.cli import main

    path = _write_results(tmp_path / "r.h5", time_s=[1.0], q1=[0.8], symmetry=["square"])
    run = write_run(
        tmp_path / "p0.1_e6.h5", lattice_run(*lattices["square"][0], patch_ratio=0.1, eps_kT=6)
    )
    assert main(["compare", str(path), str(run), "--contact-nm", "7.6"]) == 2
    err = capsys.readouterr().err
    assert "r.h5: no /entry/gisaxs_cuts" in err
    assert "--match positions" in err
    assert len(err.strip().splitlines()) == 1
