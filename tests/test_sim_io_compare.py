"""Run files, reading `gixs reduce` results, the rod comparison and the figures."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest
from silx.io.nxdata import NXdata

from detectors.errors import FrameReadError, SimulationError
from simulation.compare import compare_rods, rod_misfit
from simulation.io import (
    is_complete_run,
    read_measured_rods,
    read_run,
    save_figure,
    write_run,
)
from simulation.observables import SQRT2, SQRT3
from simulation.plots import (
    StatePointResult,
    plot_comparison,
    plot_patch_rule,
    plot_snapshot,
    plot_state_diagram,
    truncated_square_outline,
)
from tests.sim_lattices import (
    hexagonal_lattice,
    lattice_run,
    square_lattice,
    write_reduce_results,
)


@pytest.fixture(scope="module")
def square_run():
    return lattice_run(*square_lattice(16, 1.02, noise_L=0.03, rng=1), patch_ratio=0.1, eps_kT=6)


@pytest.fixture(scope="module")
def hexagonal_run():
    # spacing 1.22 L puts its q1 at the measured hexagonal 0.80 nm^-1 with the contact distance
    # of the comparison test (7.42 nm per L)
    return lattice_run(
        *hexagonal_lattice(16, 18, 1.22, noise_L=0.03, rng=2), patch_ratio=0.8, eps_kT=6
    )


def test_run_file_round_trip_and_nexus_validity(tmp_path, square_run):
    path = write_run(tmp_path / "runs" / "p0.1_e6.h5", square_run)
    assert path.exists()
    assert not path.with_name(path.name + ".tmp").exists()
    assert is_complete_run(path)
    back = read_run(path)
    assert back.settings == square_run.settings
    assert back.seed == square_run.seed
    assert back.final == square_run.final
    assert back.final.classification.phase == "square"
    np.testing.assert_array_equal(back.snapshot_positions_L, square_run.snapshot_positions_L)
    np.testing.assert_array_equal(back.final_label_codes, square_run.final_label_codes)
    np.testing.assert_array_equal(back.rods.q_per_L, square_run.rods.q_per_L)
    np.testing.assert_array_equal(back.structure_factor.s, square_run.structure_factor.s)
    assert back.snapshot_observables["phase"].tolist() == ["square"]
    assert back.label == "Px/Fx=0.1 eps=6kT"
    with h5py.File(path, "r") as fh:
        assert fh.attrs["default"] == "entry"
        for name in ("structure_factor", "trajectory", "snapshots"):
            nxdata = NXdata(fh[f"entry/{name}"])
            assert nxdata.is_valid, (name, nxdata.issues)


def test_unfinished_and_foreign_files_are_refused(tmp_path, square_run):
    path = write_run(tmp_path / "run.h5", square_run)
    with h5py.File(path, "a") as fh:
        fh["entry"].attrs["complete"] = False
    assert not is_complete_run(path)
    with pytest.raises(SimulationError, match=r"run\.h5: not a complete simulation run"):
        read_run(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    assert not is_complete_run(junk)
    assert not is_complete_run(tmp_path / "missing.h5")
    with pytest.raises(FrameReadError, match=r"junk\.h5: cannot open as HDF5"):
        read_run(junk)


def _measured(tmp_path, drop=()):
    # hexagonal frames (q1 0.80) then square frames (q1 0.83), one frame with no rod
    time = np.array([1200.0, 1300.0, 1400.0, 2600.0, 2700.0, 2800.0])
    q1 = np.array([0.80, 0.80, 0.81, 0.83, 0.83, np.nan])
    symmetry = ["hexagonal", "hexagonal", "hexagonal", "square", "square", ""]
    rods = np.full((6, 4), np.nan)
    rods[:3, :3] = q1[:3, None] * [1.0, SQRT3, 2.0]
    rods[3:5, :3] = q1[3:5, None] * [1.0, SQRT2, 2.0]
    return write_reduce_results(
        tmp_path / "results.h5",
        time_s=time,
        q1_per_nm=q1,
        symmetry=symmetry,
        rod_positions_per_nm=rods,
        drop=drop,
    )


def test_read_measured_rods(tmp_path):
    measured = read_measured_rods(_measured(tmp_path))
    assert measured.time_s.tolist()[:2] == [1200.0, 1300.0]
    assert measured.symmetry.tolist() == ["hexagonal"] * 3 + ["square"] * 2 + ["none"]
    assert measured.rod_positions_per_nm.shape == (6, 4)
    assert measured.source.endswith("results.h5")


@pytest.mark.parametrize("missing", ["q1", "symmetry", "time"])
def test_missing_measured_dataset_is_named(tmp_path, missing):
    path = _measured(tmp_path, drop=(missing,))
    with pytest.raises(
        SimulationError, match=rf"results\.h5: missing dataset /entry/first_rod/{missing}"
    ):
        read_measured_rods(path)


def test_measured_file_without_rods_group_or_not_hdf5(tmp_path):
    path = tmp_path / "giwaxs_only.h5"
    with h5py.File(path, "w") as fh:
        fh.create_group("entry/peak200")
    with pytest.raises(SimulationError, match="no /entry/first_rod"):
        read_measured_rods(path)
    with pytest.raises(FrameReadError, match="cannot open"):
        read_measured_rods(tmp_path / "nope.h5")


def test_optional_columns_may_be_missing(tmp_path):
    measured = read_measured_rods(_measured(tmp_path, drop=("rod_positions", "q1_errors")))
    assert measured.rod_positions_per_nm.shape == (6, 1)
    assert np.isnan(measured.q1_errors_per_nm).all()


def test_rod_misfit_in_order_and_by_ratio():
    measured = np.array([1.0, SQRT3, 2.0, np.nan])
    assert rod_misfit(measured, np.array([1.0, SQRT3, 2.0])) == pytest.approx(0.0)
    assert rod_misfit(measured, np.array([1.1, 1.1 * SQRT3, 2.2])) == pytest.approx(0.1)
    assert rod_misfit(measured, np.array([1.1, 1.1 * SQRT3, 2.2]), match="ratios") == pytest.approx(
        0
    )
    assert np.isnan(rod_misfit(measured, np.array([np.nan, np.nan])))
    assert np.isnan(rod_misfit(np.array([1.0]), np.array([1.0, 2.0]), match="ratios"))


@pytest.mark.parametrize("match", ["positions", "ratios"])
def test_each_measured_phase_gets_the_state_point_of_its_symmetry(
    tmp_path, square_run, hexagonal_run, match
):
    measured = read_measured_rods(_measured(tmp_path))
    # the square lattice spacing 1.02 L -> q1 = 0.83 nm^-1 when 1 L = 7.42 nm
    contact_nm = 2 * np.pi / (1.02 * 0.83)
    result = compare_rods(measured, [hexagonal_run, square_run], contact_nm=contact_nm, match=match)
    best = {m.phase: m.best_label for m in result.phases}
    assert best == {"hexagonal": hexagonal_run.label, "square": square_run.label}
    square = next(m for m in result.phases if m.phase == "square")
    assert square.n_frames == 2
    assert square.time_range_s == (2600.0, 2700.0)
    assert result.simulated_rods_per_nm.shape == (2, 3)
    assert result.simulated_rods_per_nm[1, 0] == pytest.approx(0.83, rel=5e-3)
    text = result.report()
    assert "square" in text
    assert square_run.label in text


def test_a_fluid_run_is_no_candidate_even_when_its_peaks_sit_on_the_rods(
    tmp_path, square_run, hexagonal_run
):
    # the hexagonal run relabelled fluid keeps rods that match the measured hexagonal phase
    # exactly, yet a liquid's S(q) peaks are no superlattice rods
    final = hexagonal_run.final
    fluid_final = replace(final, classification=replace(final.classification, phase="fluid"))
    fluid_run = replace(hexagonal_run, final=fluid_final)
    measured = read_measured_rods(_measured(tmp_path))
    contact_nm = 2 * np.pi / (1.02 * 0.83)
    result = compare_rods(measured, [fluid_run, square_run], contact_nm=contact_nm)
    hexagonal = next(m for m in result.phases if m.phase == "hexagonal")
    assert np.isnan(hexagonal.misfits[0])
    assert hexagonal.best_label == square_run.label
    with_real = compare_rods(measured, [hexagonal_run, square_run], contact_nm=contact_nm)
    assert next(m for m in with_real.phases if m.phase == "hexagonal").best == 0


def test_compare_needs_runs_and_a_contact_distance(tmp_path, square_run):
    measured = read_measured_rods(_measured(tmp_path))
    with pytest.raises(SimulationError, match="at least one"):
        compare_rods(measured, [], contact_nm=7.6)
    with pytest.raises(SimulationError, match="contact"):
        compare_rods(measured, [square_run], contact_nm=0.0)


def test_figures_are_written_as_png(tmp_path, square_run, hexagonal_run):
    outline = truncated_square_outline(1.0, 0.2)
    snapshot = plot_snapshot(
        square_run.snapshot_positions_L[-1],
        square_run.snapshot_angles_rad[-1],
        square_run.snapshot_box_L[-1],
        outline_L=outline,
        label_codes=square_run.final_label_codes,
        structure_factor=square_run.structure_factor,
        rods_per_L=square_run.rods.q_per_L,
        title=square_run.label,
    )
    polygons = snapshot.axes[0].collections[0]
    assert len(polygons.get_paths()) == 256
    measured = read_measured_rods(_measured(tmp_path))
    comparison = compare_rods(measured, [square_run, hexagonal_run], contact_nm=7.4)
    figures = {
        "snapshot.png": snapshot,
        "diagram.png": plot_state_diagram(
            [
                StatePointResult(0.1, 6.0, "square"),
                StatePointResult(0.8, 6.0, "hexagonal", coexistence=True),
                StatePointResult(0.5, 2.0, "fluid"),
            ]
        ),
        "compare.png": plot_comparison(measured, comparison),
        "patch_rule.png": plot_patch_rule(),
    }
    for name, figure in figures.items():
        path = save_figure(figure, tmp_path / "figs" / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000


def test_outline_is_validated():
    outline = truncated_square_outline(1.0, 0.25)
    assert outline.shape == (8, 2)
    with pytest.raises(SimulationError, match="corner_leg_c"):
        truncated_square_outline(1.0, 0.6)
