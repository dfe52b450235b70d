"""`gixs simulate compare` (and the usage errors of run/sweep) through real argparse calls."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest

from simulation.cli import add_simulate_parser, main
from simulation.io import write_run
from simulation.observables import SQRT2, SQRT3
from tests.sim_lattices import (
    hexagonal_lattice,
    lattice_run,
    square_lattice,
    write_reduce_results,
)


def _gixs(argv):
    """What `gixs simulate ...` does: a parser with the subcommands, then args.run(args)."""
    parser = argparse.ArgumentParser(prog="gixs simulate")
    add_simulate_parser(parser.add_subparsers(metavar="WHAT"))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    square = write_run(
        folder / "p0.1_e6.h5",
        lattice_run(*square_lattice(14, 1.02, noise_L=0.03, rng=1), patch_ratio=0.1, eps_kT=6),
    )
    hexagonal = write_run(
        folder / "p0.8_e6.h5",
        lattice_run(
            *hexagonal_lattice(14, 16, 1.1, noise_L=0.03, rng=2), patch_ratio=0.8, eps_kT=6
        ),
    )
    rods = np.full((4, 4), np.nan)
    rods[:2, :3] = 0.80 * np.array([1.0, SQRT3, 2.0])
    rods[2:, :3] = 0.83 * np.array([1.0, SQRT2, 2.0])
    results = write_reduce_results(
        folder / "results.h5",
        time_s=[1200.0, 1300.0, 2600.0, 2700.0],
        q1_per_nm=[0.80, 0.80, 0.83, 0.83],
        symmetry=["hexagonal", "hexagonal", "square", "square"],
        rod_positions_per_nm=rods,
    )
    return folder, results, square, hexagonal


def test_compare_prints_the_best_state_point_per_phase(files, capsys):
    folder, results, square, hexagonal = files
    out_png = folder / "overlay.png"
    code = _gixs(
        [
            "compare",
            str(results),
            str(square),
            str(hexagonal),
            "--contact-nm",
            "7.4",
            "--match",
            "ratios",
            "--out",
            str(out_png),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    hex_line = next(line for line in lines if line.startswith("hexagonal"))
    square_line = next(line for line in lines if line.startswith("square"))
    assert "Px/Fx=0.8 eps=6kT" in hex_line
    assert "Px/Fx=0.1 eps=6kT" in square_line
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_compare_with_a_missing_dataset_is_one_line_and_exit_2(files, tmp_path, capsys):
    _, _, square, _ = files
    broken = write_reduce_results(
        tmp_path / "broken.h5",
        time_s=[1.0],
        q1_per_nm=[0.8],
        symmetry=["square"],
        rod_positions_per_nm=np.full((1, 4), np.nan),
        drop=("q1",),
    )
    code = main(["compare", str(broken), str(square), "--contact-nm", "7.6"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "broken.h5: missing dataset /entry/first_rod/q1" in err


def test_compare_refuses_a_non_positive_contact_distance(files, capsys):
    _, results, square, _ = files
    assert main(["compare", str(results), str(square), "--contact-nm", "-1"]) == 2
    assert "contact" in capsys.readouterr().err


def test_compare_refuses_a_sim_file_that_is_not_one(files, capsys):
    _, results, _, _ = files
    assert main(["compare", str(results), str(results), "--contact-nm", "7.6"]) == 2
    assert "not a complete simulation run file" in capsys.readouterr().err


def test_missing_required_option_is_an_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--patch", "0.1"])
    assert exit_info.value.code == 2
    assert "--eps" in capsys.readouterr().err


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "compare" in capsys.readouterr().out


def test_module_entry_point_runs_as_a_subprocess(files):
    _, results, square, hexagonal = files
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulation.cli",
            "compare",
            str(results),
            str(square),
            str(hexagonal),
            "--contact-nm",
            "7.4",
            # this results file has rods but no q_par cuts
            "--match",
            "positions",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "measured phase" in done.stdout
