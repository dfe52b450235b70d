"""``gixs simulate run | sweep | compare``: the Monte Carlo reference simulator's CLI.

`add_simulate_parser` adds the three subcommands to an argparse subparsers object (the
``gixs`` CLI calls it lazily); each handler returns an exit code: 0 ok, 2 bad usage or
settings (one line on stderr saying what and how to fix). The heavy modules (engine,
freud, matplotlib) are imported inside the handlers so ``--help`` stays instant.

Examples
--------
::

    gixs simulate run --patch 0.1 --eps 6 --n 1024 --packing 0.6 --sweeps 20000 --seed 1 --out sim
    gixs simulate sweep --patch 0.1 0.5 0.8 --eps 2 4 6 --jobs 4 --out sim/sweep
    gixs simulate compare results.h5 sim/p0.1_e6.h5 sim/p0.8_e6.h5 --contact-nm 7.6
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detectors.errors import GixsError

EXIT_OK, EXIT_USAGE = 0, 2

_EPILOG = (
    "exit codes: 0 ok, 2 bad usage or settings. Lengths are in particle edges L; "
    "--contact-nm maps one L (face-to-face contact) to nm."
)


def add_simulate_parser(subparsers: Any) -> None:
    """Add ``run``, ``sweep`` and ``compare`` to an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``parser.add_subparsers()``; each subcommand sets ``run`` (a handler taking
        the parsed namespace and returning an exit code).
    """
    run = subparsers.add_parser(
        "run",
        help="run one state point (Px/Fx, eps/kT)",
        description="Monte Carlo (NVT, cluster moves) of N patchy truncated squares from a "
        "lattice start; "
        "writes OUT/p<patch>_e<eps>.h5 (settings, seed, snapshots, observables, S(q), rods) "
        "and a PNG snapshot coloured by local order.",
        epilog=_EPILOG,
    )
    run.add_argument("--patch", type=float, required=True, help="patch ratio Px/Fx in (0, 1]")
    run.add_argument("--eps", type=float, required=True, help="patch well depth eps/kT (>= 0)")
    _add_run_options(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(run=_run_run)

    sweep = subparsers.add_parser(
        "sweep",
        help="run a grid of state points in parallel and draw the state diagram",
        description="Runs every (Px/Fx, eps/kT) of the grid in --jobs processes; state "
        "points with a complete file in OUT are skipped, so a stopped sweep resumes. "
        "Draws OUT/state_diagram.png.",
        epilog=_EPILOG,
    )
    sweep.add_argument("--patch", type=float, nargs="+", required=True, help="Px/Fx values")
    sweep.add_argument("--eps", type=float, nargs="+", required=True, help="eps/kT values")
    _add_run_options(sweep)
    sweep.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(run=_run_sweep)

    compare = subparsers.add_parser(
        "compare",
        help="overlay simulated rods on the measured q1(t) of `gixs reduce`",
        description="Reads /entry/first_rod of a `gixs reduce` results file and one or more "
        "simulation run files, prints for each measured phase the state point whose rods "
        "fit best, and draws the overlay.",
        epilog=_EPILOG,
    )
    compare.add_argument("results", type=Path, help="results .h5 of `gixs reduce`")
    compare.add_argument("sims", type=Path, nargs="+", help="simulation run .h5 files")
    compare.add_argument(
        "--contact-nm",
        type=float,
        required=True,
        help="centre-to-centre contact distance of the nanocrystals in nm (e.g. 7.6); "
        "with --match profile the fit finds its own, this one places the plot's lines",
    )
    compare.add_argument(
        "--match",
        choices=("profile", "positions", "ratios"),
        default="profile",
        help="profile (default): each measured q_par cut against the whole simulated S(q), "
        "contact distance, background and envelope fitted; positions: rod positions in "
        "nm^-1; ratios: q_k/q1",
    )
    compare.add_argument(
        "--out", type=Path, default=None, help="PNG of the overlay (default: next to RESULTS)"
    )
    compare.set_defaults(run=_run_compare)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1024, help="number of particles (1024)")
    parser.add_argument(
        "--packing", type=float, default=0.6, help="packing fraction of the run (0.6)"
    )
    parser.add_argument(
        "--pressure",
        type=float,
        default=None,
        help="run NPT at this pressure in kT/L^2 (default: NVT, as the study)",
    )
    parser.add_argument(
        "--dilute-packing",
        type=float,
        default=0.3,
        help="packing fraction of the dilute hard-particle start, compressed to --packing (0.3)",
    )
    parser.add_argument(
        "--melt-sweeps", type=int, default=1000, help="hard sweeps melting the start (1000)"
    )
    parser.add_argument(
        "--corner-leg",
        type=float,
        default=0.1,
        help="leg c of the corner cuts, in L (0.1: {100} facets of 0.8 L; 0.2929: regular octagon)",
    )
    parser.add_argument("--sweeps", type=int, default=20000, help="MC sweeps (20000)")
    parser.add_argument(
        "--snapshot-every", type=int, default=None, help="sweeps between snapshots (sweeps/20)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--out", type=Path, default=Path("sim"), help="output folder (sim)")
    parser.add_argument(
        "--contact-nm",
        type=float,
        default=None,
        help="also print rods in nm^-1 for this contact distance",
    )


def _fail(message: str) -> int:
    print(f"gixs simulate: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _settings(args: argparse.Namespace, patch: float, eps: float) -> Any:
    from simulation.sweep import RunSettings

    snapshot_every = args.snapshot_every or max(1, args.sweeps // 20)
    return RunSettings(
        patch_ratio=patch,
        eps_kT=eps,
        n_particles=args.n,
        packing_fraction=args.packing,
        dilute_packing_fraction=args.dilute_packing,
        melt_sweeps=args.melt_sweeps,
        corner_leg_c=args.corner_leg,
        n_sweeps=args.sweeps,
        snapshot_every=snapshot_every,
        ensemble="NVT" if args.pressure is None else "NPT",
        pressure_kT_per_L2=args.pressure,
        seed=args.seed,
    )


def _summary_line(run: Any, contact_nm: float | None) -> str:
    final = run.final
    rods = run.rods.q_per_L
    line = (
        f"{run.label}: {final.classification.phase}"
        f"{' (coexistence)' if final.classification.coexistence else ''}; "
        f"packing {final.packing_fraction:.3f}, energy {final.energy_per_particle_kT:.2f} kT, "
        f"bonds {final.bonds_per_particle:.2f}, psi4 {final.psi4_local:.3f} "
        f"(global {final.psi4_global:.3f}), psi6 {final.psi6_local:.3f} "
        f"(global {final.psi6_global:.3f}); rods q*L "
        + " ".join(f"{q:.3f}" for q in rods)
        + f", q2/q1 {run.rods.ratio_q2_q1:.3f}"
    )
    if contact_nm is not None:
        per_nm = run.rods.per_nm(contact_nm=contact_nm, contact_L=run.contact_L)
        line += "; rods/nm^-1 " + " ".join(f"{q:.3f}" for q in per_nm)
    return line


def _run_run(args: argparse.Namespace) -> int:
    try:
        from simulation import io
        from simulation.sweep import run_state_point, snapshot_figure_of

        settings = _settings(args, args.patch, args.eps)
        settings.model()
        run = run_state_point(settings, progress=not args.quiet)
        path = io.write_run(args.out / f"{settings.name}.h5", run)
        png = io.save_figure(
            snapshot_figure_of(run, contact_nm=args.contact_nm), path.with_suffix(".png")
        )
    except (GixsError, OSError) as err:
        return _fail(str(err))
    print(_summary_line(run, args.contact_nm))
    print(f"wrote {path} and {png} (seed {run.seed})")
    return EXIT_OK


def _run_sweep(args: argparse.Namespace) -> int:
    try:
        from simulation import io
        from simulation.sweep import run_sweep, sweep_settings

        base = _settings(args, args.patch[0], args.eps[0])
        grid = sweep_settings(args.patch, args.eps, base)
        result = run_sweep(grid, args.out, jobs=args.jobs, progress=not args.quiet)
        for path in result.paths:
            print(_summary_line(io.read_run(path), args.contact_nm))
    except (GixsError, OSError) as err:
        return _fail(str(err))
    print(
        f"{result.n_run} state points run, {result.n_skipped} already complete; "
        f"state diagram {args.out / 'state_diagram.png'}"
    )
    return EXIT_OK


def _run_compare(args: argparse.Namespace) -> int:
    try:
        from simulation import io
        from simulation.compare import compare_rods
        from simulation.plots import plot_comparison

        measured = io.read_measured_rods(args.results)
        runs = [io.read_run(path) for path in args.sims]
        if not args.contact_nm > 0:
            return _fail(f"--contact-nm must be a contact distance > 0 nm, got {args.contact_nm}")
        cuts = io.read_measured_cuts(args.results) if args.match == "profile" else None
        comparison = compare_rods(
            measured, runs, contact_nm=args.contact_nm, match=args.match, cuts=cuts
        )
        out = args.out or args.results.with_name(args.results.stem + "_vs_simulation.png")
        png = io.save_figure(plot_comparison(measured, comparison), out)
    except (GixsError, OSError) as err:
        return _fail(str(err))
    print(comparison.report())
    print(f"wrote {png}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m simulation.cli`` (the same as ``gixs simulate``).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        Exit code.
    """
    parser = argparse.ArgumentParser(prog="gixs simulate", epilog=_EPILOG)
    add_simulate_parser(parser.add_subparsers(metavar="WHAT"))
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
