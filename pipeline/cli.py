"""The ``gixs`` command: a thin layer over the Python API.

Each subcommand parses its arguments, calls the same functions a notebook calls, and
imports its heavy modules only when it runs, so that ``gixs --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from detectors.errors import GixsError

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.watch import WatchSettings

EXIT_OK, EXIT_SOME_FRAMES_BAD, EXIT_USAGE = 0, 1, 2

_EPILOG = """\
exit status: 0 all frames reduced ("no rod" is a result, not a failure);
1 some frames could not be read or hold no usable data (all zero, NaN, dead
  or saturated; listed, and flagged in the output), or a calibration check
  did not pass;
2 bad usage, configuration, geometry or input file, or an output folder that
  cannot be written or is in use by another run (one error line names it)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gixs`` command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except GixsError as err:
        print(f"gixs: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gixs",
        description="Reduce in-situ GISAXS/GIWAXS of self-assembling nanocrystal monolayers.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(metavar="COMMAND")
    _add_reduce(sub)
    _add_watch(sub)
    _add_inspect(sub)
    _add_calibrate(sub)
    _add_make_sample_data(sub)
    _add_simulate(sub)
    return parser


def _add_reduce(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reduce",
        help="reduce a whole run described by a TOML config",
        description="Batch-reduce every frame of a run: q_par cuts, first rod, lattice "
        "spacing and symmetry (GISAXS), {200} width and Scherrer size (GIWAXS). Writes "
        "results.h5 (NeXus), summary.csv and PNG plots. Resumable: a second run skips "
        "the frames already reduced.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=Path, help="TOML run configuration")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: ./results)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--force", action="store_true", help="reduce every frame again, ignoring checkpoints"
    )
    p.set_defaults(run=_run_reduce)


def _run_reduce(args: argparse.Namespace) -> int:
    from pipeline.batch import reduce_run
    from pipeline.io import load_config

    if args.jobs < 1:
        print("gixs: error: --jobs must be >= 1", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    out = args.out if args.out is not None else Path("results")
    from pipeline.kernels import prepare_kernels

    prepare_kernels(sys.stderr)  # one line when the numba kernels compile (first run)
    outputs = reduce_run(
        config, out, jobs=args.jobs, progress=not args.quiet, force=args.force,
        command=" ".join(["gixs", *sys.argv[1:]]), log=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print(
        f"reduced {outputs.n_frames} frames ({outputs.n_resumed} from checkpoints) "
        f"in {outputs.elapsed_s:.1f} s"
    )
    for path in (outputs.nexus, outputs.csv, *outputs.plots):
        print(f"wrote {path}")
    for row in outputs.bad_frames:
        where = f"{row.file} {row.dataset}" if row.dataset else row.file
        print(f"bad frame: {where} [{row.frame}]: {row.flags}", file=sys.stderr)
    return EXIT_SOME_FRAMES_BAD if outputs.n_bad else EXIT_OK


def _add_watch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "watch",
        help="reduce a run as the detectors write it",
        description="Follow the folders of the config's frames globs and reduce each frame "
        "once its file is complete (same results as `gixs reduce` for the same frames). "
        "results.h5 grows as frames come (SWMR: readable meanwhile), summary.csv and the "
        "plots follow. Stop it at any time (Ctrl-C, SIGTERM, even kill -9) and start it "
        "again on the same --out: the run is taken up where it was, no frame twice.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=Path, help="TOML run configuration")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: ./results)")
    p.add_argument("--poll-s", type=float, default=0.5, help="polling interval, s (default 0.5)")
    p.add_argument(
        "--inotify", action="store_true", help="use inotify instead of polling (local disks)"
    )
    p.add_argument(
        "--serve",
        nargs="?",
        const=5006,
        type=int,
        default=None,
        metavar="PORT",
        help="serve the live view on http://127.0.0.1:PORT (default 5006)",
    )
    p.add_argument(
        "--until-idle",
        type=float,
        default=None,
        metavar="S",
        help="stop once nothing new came for S seconds (default: run until stopped)",
    )
    p.add_argument(
        "--give-up-s",
        type=float,
        default=10.0,
        help="a file that does not parse this long after its last change is bad (default 10)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(run=_run_watch)


def _run_watch(args: argparse.Namespace) -> int:
    from pipeline.io import check_output_dir, load_config, lock_output_dir
    from pipeline.watch import WatchSettings

    try:
        settings = WatchSettings(
            poll_s=args.poll_s,
            inotify=args.inotify,
            until_idle_s=args.until_idle,
            give_up_s=args.give_up_s,
        )
    except ValueError as err:
        print(f"gixs: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    config = load_config(args.config)
    out = args.out if args.out is not None else Path("results")
    # one run at a time on an output folder: a live watcher and a manual `gixs reduce`
    # cannot both write it
    check_output_dir(out)
    with lock_output_dir(
        out,
        command=" ".join(["gixs", *sys.argv[1:]]),
        on_stale=lambda line: print(line, file=sys.stderr),
    ):
        return _watch_locked(args, config, out, settings)


def _watch_locked(
    args: argparse.Namespace, config: Config, out: Path, settings: WatchSettings
) -> int:
    import signal

    from pipeline.watch import Progress, Watcher

    watcher = Watcher(config, out, settings)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: watcher.stop())
    server = None
    if args.serve is not None:
        from pipeline.live import serve

        server = serve(watcher, port=args.serve)
        print(f"live view on http://127.0.0.1:{server.port}/", flush=True)

    def show(progress: Progress) -> None:
        if not args.quiet:
            print(progress.line(), file=sys.stderr, flush=True)

    try:
        final = watcher.run(on_progress=show)
    finally:
        if server is not None:
            server.stop()
    print(f"watched: {final.reduced} frames reduced, {final.bad} bad; output in {out}")
    for entry in watcher.journal.entries:
        result = entry.reduced.result
        if not result.input_ok:
            where = f"{entry.file} {result.dataset}" if result.dataset else entry.file
            print(f"bad frame: {where} [{result.frame_index}]: {entry.reason}", file=sys.stderr)
    return EXIT_SOME_FRAMES_BAD if final.bad else EXIT_OK


def _add_inspect(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "inspect",
        help="reduce one frame, no config",
        description="Reduce one frame: the rods (q1, spacing, symmetry) of a GISAXS frame or "
        "the {200} FWHM and Scherrer size of a GIWAXS frame. The kind follows from the q "
        "range on the detector (GIWAXS when it reaches the PbSe {200} at 20.5 nm^-1).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("frame", type=Path, help="frame file (CBF, EDF, TIFF or HDF5)")
    p.add_argument("--poni", type=Path, required=True, help="pyFAI PONI geometry file")
    p.add_argument("--incidence-angle", type=float, required=True, help="alpha_i in degrees")
    p.add_argument("--detector", help="pyFAI detector name (default: the PONI file's)")
    p.add_argument("--mask", type=Path, help="user mask (EDF/TIFF/NPY, nonzero = masked)")
    p.add_argument(
        "--mask-invert", action="store_true", help="the mask is written as nonzero = good pixel"
    )
    p.add_argument("--resolution", type=Path, help="instrumental resolution JSON")
    p.add_argument("--kind", choices=("gisaxs", "giwaxs"), help="force the kind of frame")
    p.add_argument("--frame-index", type=int, default=0, help="frame within the file")
    p.add_argument("--h5-dataset", help="HDF5 dataset of the frames (default: found)")
    p.add_argument(
        "--sample-orientation",
        default="auto",
        help="pyFAI sample orientation 1-4, or 'auto' (default): horizontal sample, "
        "q_perp up on the frame as stored",
    )
    p.add_argument("--tilt-angle", type=float, default=0.0, help="sample tilt in degrees")
    p.add_argument("--band", type=float, nargs=2, metavar=("LO", "HI"), help="q_perp band in nm^-1")
    p.add_argument(
        "--q-range", type=float, nargs=2, metavar=("LO", "HI"), help="q_par range in nm^-1"
    )
    p.add_argument(
        "--peak-shape", choices=("gaussian", "lorentzian", "pseudo_voigt"), default="gaussian"
    )
    p.add_argument(
        "--max-nfev", type=int, default=60, help="evaluation limit of each fit (default 60)"
    )
    p.add_argument(
        "--scherrer-method",
        choices=("cube_profile", "integral_breadth", "fwhm"),
        default="cube_profile",
        help="Scherrer width: the fitted cube line (default), the peak's integral breadth "
        "or its FWHM",
    )
    p.add_argument(
        "--k-factor",
        type=float,
        default=None,
        help="Scherrer constant K (default: 1 on the integral breadth, 0.8859 on the FWHM; "
        "the study: --scherrer-method fwhm --k-factor 1)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (CSV columns)")
    p.set_defaults(run=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from pipeline.checks import is_input_problem
    from pipeline.config import MAX_NFEV_RANGE, is_nfev
    from pipeline.inspect import inspect_frame
    from pipeline.kernels import prepare_kernels

    prepare_kernels(sys.stderr)  # one line when the numba kernels compile (first run)

    orientation = args.sample_orientation
    if orientation != "auto":
        try:
            orientation = int(orientation)
        except ValueError:
            print("gixs: error: --sample-orientation must be 'auto' or 1-4", file=sys.stderr)
            return EXIT_USAGE
    _check_incidence_option(args.incidence_angle)
    if not is_nfev(args.max_nfev):
        lo, hi = MAX_NFEV_RANGE
        print(f"gixs: error: --max-nfev {args.max_nfev}: give an integer in [{lo}, {hi}]",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    row = inspect_frame(
        args.frame,
        poni=args.poni,
        incidence_angle_deg=args.incidence_angle,
        detector=args.detector,
        mask=args.mask,
        mask_invert=args.mask_invert,
        resolution=args.resolution,
        kind=args.kind,
        frame_index=args.frame_index,
        h5_dataset=args.h5_dataset,
        sample_orientation=orientation,
        tilt_angle_deg=args.tilt_angle,
        q_perp_band_per_nm=tuple(args.band) if args.band else None,
        q_par_range_per_nm=tuple(args.q_range) if args.q_range else None,
        peak_shape=args.peak_shape,
        max_nfev=args.max_nfev,
        k_factor=args.k_factor,
        scherrer_method=args.scherrer_method,
    )
    record = row.as_record()
    # a frame with no usable data (all zero, NaN, dead, saturated) is a bad frame
    code = EXIT_SOME_FRAMES_BAD if is_input_problem(row.flags) else EXIT_OK
    if args.json:
        print(json.dumps({k: _json_value(v) for k, v in record.items()}))
        return code
    for key, value in record.items():
        print(f"{key:>18}: {'' if value is None else value}")
    return code


def _check_incidence_option(value: float) -> None:
    """Refuse an --incidence-angle that is no grazing angle (radians, say), naming the option."""
    from calibration.geometry import incidence_angle_problem
    from detectors.errors import GeometryError

    problem = incidence_angle_problem(value)
    if problem is not None:
        msg = f"--incidence-angle {value:g}: {problem}"
        raise GeometryError(msg)


def _json_value(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _add_calibrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibrate",
        help="check the incidence angle, measure the instrumental resolution",
        description="Calibration helpers: 'incidence' estimates alpha_i from a frame "
        "(specular spot or Yoneda band) and checks the PONI orientation; 'resolution' fits "
        "calibrant lines and writes the instrumental width beta_inst(q) for the Scherrer step.",
    )
    csub = p.add_subparsers(metavar="WHAT")
    inc = csub.add_parser("incidence", help="estimate the incidence angle from a frame")
    inc.add_argument("frame", type=Path)
    inc.add_argument("--poni", type=Path, required=True)
    inc.add_argument("--incidence-angle", type=float, required=True, help="motor value, degrees")
    inc.add_argument("--detector", help="pyFAI detector name (default: the PONI file's)")
    inc.add_argument("--mask", type=Path)
    inc.add_argument("--tolerance", type=float, default=0.02, help="accepted difference, degrees")
    inc.add_argument("--critical-angle", type=float, default=0.13, help="degrees (Yoneda)")
    inc.set_defaults(run=_run_calibrate_incidence)
    res = csub.add_parser("resolution", help="instrumental resolution from a calibrant frame")
    res.add_argument("frame", type=Path)
    res.add_argument("--poni", type=Path, required=True)
    res.add_argument("--calibrant", required=True, help="LaB6, CeO2 or AgBh")
    res.add_argument("--detector", help="pyFAI detector name (default: the PONI file's)")
    res.add_argument("--mask", type=Path)
    res.add_argument("--out", type=Path, required=True, help="resolution JSON to write")
    res.add_argument("--peak-shape", choices=("gaussian", "lorentzian"), default="gaussian")
    res.set_defaults(run=_run_calibrate_resolution)


def _run_calibrate_incidence(args: argparse.Namespace) -> int:
    from pipeline.calibrate import check_incidence

    _check_incidence_option(args.incidence_angle)
    report = check_incidence(
        args.frame,
        poni=args.poni,
        incidence_angle_deg=args.incidence_angle,
        detector=args.detector,
        mask=args.mask,
        critical_angle_deg=args.critical_angle,
        tolerance_deg=args.tolerance,
    )
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_SOME_FRAMES_BAD


def _run_calibrate_resolution(args: argparse.Namespace) -> int:
    from pipeline.calibrate import measure_resolution_file

    res = measure_resolution_file(
        args.frame,
        poni=args.poni,
        calibrant=args.calibrant,
        mask=args.mask,
        out=args.out,
        peak_shape=args.peak_shape,
        detector=args.detector,
    )
    for q, fwhm, err in zip(
        res.line_q_per_nm, res.line_fwhm_per_nm, res.line_fwhm_err_per_nm, strict=True
    ):
        print(f"{res.calibrant} line at q = {q:.3f} nm^-1: FWHM {fwhm:.4f} +- {err:.4f} nm^-1")
    for skipped in res.skipped_lines:
        print(f"skipped: {skipped}")
    print(f"wrote {args.out}")
    return EXIT_OK


def _add_make_sample_data(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "make-sample-data",
        help="write the seeded demo beamtime",
        description="Write a small seeded in-situ run (GISAXS and GIWAXS CBF frames, PONI "
        "files, calibrant frames, demo.toml, truth.json) into DIR.",
    )
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_make_sample_data)


def _run_make_sample_data(args: argparse.Namespace) -> int:
    from sample_data.io import write_demo

    path = write_demo(args.dir, seed=args.seed, progress=True)
    print(f"wrote the demo run to {path}")
    return EXIT_OK


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from simulation.cli import add_simulate_parser  # argparse only: --help stays instant

    p = sub.add_parser(
        "simulate",
        help="Monte Carlo of patchy truncated nanocubes; compare rods with a reduced run",
        description="Monte Carlo reference simulator: 'run' one state point, 'sweep' a grid "
        "of (Px/Fx, eps/kT), 'compare' simulated rods with the rods of `gixs reduce`.",
    )
    add_simulate_parser(p.add_subparsers(metavar="WHAT"))


if __name__ == "__main__":
    sys.exit(main())
