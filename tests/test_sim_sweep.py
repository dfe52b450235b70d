"""Runs and sweeps with the real engine: bad settings, files, seeds, resume."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest

from simulation.cli import main
from simulation.io import is_complete_run, read_run
from simulation.sweep import RunSettings, run_state_point, run_sweep, seed_for, sweep_settings

TINY = [
    *("--n", "64", "--packing", "0.3", "--dilute-packing", "0.2", "--melt-sweeps", "50"),
    *("--corner-leg", "0.1", "--sweeps", "20", "--snapshot-every", "10", "--quiet"),
]


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--eps", "-1", "eps"),
        ("--patch", "1.5", "patch"),
        ("--patch", "0", "patch"),
        ("--packing", "0.99", "pack"),
        ("--n", "1", "N"),
        ("--n", "4", "box"),
        ("--corner-leg", "0.6", "corner_leg_c"),
        ("--melt-sweeps", "0", "melt_sweeps"),
        ("--dilute-packing", "0", "dilute_packing"),
    ],
)
def test_bad_settings_fail_before_any_run_with_one_line(tmp_path, capsys, option, value, words):
    argv = ["run", "--patch", "0.5", "--eps", "6", *TINY, "--out", str(tmp_path)]
    argv[argv.index(option) + 1] = value
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert words.lower() in err.lower()
    assert not list(tmp_path.glob("*.h5"))


def test_run_writes_a_complete_file_and_png_with_the_seed(tmp_path, capsys):
    code = main(
        ["run", "--patch", "0.5", "--eps", "4", *TINY, "--seed", "7", "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 0
    path = tmp_path / "p0.5_e4.h5"
    assert is_complete_run(path)
    assert (tmp_path / "p0.5_e4.png").read_bytes()[:4] == b"\x89PNG"
    run = read_run(path)
    assert run.seed == 7
    assert run.settings["n_particles"] == 64
    assert run.settings["corner_leg_c"] == 0.1
    assert (run.settings["dilute_packing_fraction"], run.settings["melt_sweeps"]) == (0.2, 50)
    assert run.final.packing_fraction == pytest.approx(0.3)
    assert run.snapshot_positions_L.shape[1:] == (64, 2)
    assert run.snapshot_sweeps[-1] == 20
    assert "Px/Fx=0.5 eps=4kT" in out
    with h5py.File(path, "r") as fh:
        assert fh["entry/settings/eps_kT"][()] == 4.0


def test_same_seed_same_run_other_seed_other_run():
    settings = RunSettings(
        0.5, 4.0, n_particles=64, packing_fraction=0.3, n_sweeps=30, snapshot_every=10, seed=3
    )
    first = run_state_point(settings)
    second = run_state_point(settings)
    other = run_state_point(replace(settings, seed=4))
    np.testing.assert_array_equal(first.snapshot_positions_L, second.snapshot_positions_L)
    np.testing.assert_array_equal(first.snapshot_angles_rad, second.snapshot_angles_rad)
    assert first.records["n_bonds"].tolist() == second.records["n_bonds"].tolist()
    assert not np.array_equal(first.snapshot_positions_L[-1], other.snapshot_positions_L[-1])


def test_sweep_resumes_and_draws_the_state_diagram(tmp_path):
    base = RunSettings(
        0.1, 2.0, n_particles=64, packing_fraction=0.3, n_sweeps=10, snapshot_every=5, seed=1
    )
    grid = sweep_settings([0.1, 0.8], [2.0], base)
    assert [g.seed for g in grid] == [seed_for(1, 0.1, 2.0), seed_for(1, 0.8, 2.0)]
    first = run_sweep(grid, tmp_path, jobs=2, progress=False)
    assert (first.n_run, first.n_skipped) == (2, 0)
    assert (tmp_path / "state_diagram.png").exists()
    (tmp_path / "p0.8_e2.h5").unlink()
    again = run_sweep(grid, tmp_path, jobs=2, progress=False)
    assert (again.n_run, again.n_skipped) == (1, 1)
    assert {p.patch_ratio for p in again.points} == {0.1, 0.8}
