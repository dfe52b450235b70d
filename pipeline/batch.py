"""Batch reduction of a whole in-situ run, in parallel processes, resumable.

Frames are reduced in chunks of :data:`CHUNK_FRAMES` consecutive frames of one detector.
Each chunk starts its first fit cold and warm-starts the rest from the previous frame, so
a chunk's result depends only on its frames: the same whatever the number of processes
and however often the run was interrupted. Every finished chunk is written as a
checkpoint (JSON, never pickle) keyed by a fingerprint of everything its results depend
on (:mod:`pipeline.fingerprint`): a second run skips the chunks whose fingerprint still
matches and gives the same output, and reduces again whatever changed (a setting, the
geometry, the mask, an input file, the package version). A chunk with a frame that could
not be read is not kept, so the frame is tried again by the next run.

The output folder is held by one run at a time (:func:`pipeline.io.lock_output_dir`), and
every file is written through a unique temporary name and an atomic rename.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from threadpoolctl import threadpool_limits
from tqdm import tqdm

from detectors.errors import ConfigError, FrameReadError
from detectors.io import Frame, FrameRef, read_frame
from pipeline import plots
from pipeline.checks import is_input_problem, untimed_frames_message
from pipeline.config import Config, Kind
from pipeline.fingerprint import FileIdentity, chunk_fingerprint, plan_fingerprint
from pipeline.io import (
    Chunk,
    check_free_space,
    check_output_dir,
    expand_frames,
    file_identity,
    load_chunk,
    load_plan,
    lock_output_dir,
    package_version,
    save_chunk,
    save_figure,
    write_csv,
    write_nexus,
)
from pipeline.reduce import FrameResult, ReductionPlan
from pipeline.reducer import FrameReducer
from pipeline.timeseries import SeriesRow, build_rows

#: Frames per checkpoint chunk (fixed, so results do not depend on --jobs).
CHUNK_FRAMES = 16

#: Name of the checkpoint folder inside the output folder.
CHECKPOINT_DIR = "checkpoints"


@dataclass(frozen=True, slots=True)
class RunOutputs:
    """What a batch run wrote and how it went.

    Attributes
    ----------
    nexus, csv : Path
        The NeXus HDF5 file and summary.csv.
    plots : tuple of Path
        PNG plots.
    rows : list of SeriesRow
        The time series.
    n_frames, n_bad, n_resumed : int
        Frames in the run, frames that could not be read or hold no usable data, frames
        taken from checkpoints.
    elapsed_s : float
        Wall time of the run, in s.
    """

    nexus: Path
    csv: Path
    plots: tuple[Path, ...]
    rows: list[SeriesRow]
    n_frames: int
    n_bad: int
    n_resumed: int
    elapsed_s: float

    @property
    def bad_frames(self) -> list[SeriesRow]:
        """Rows of frames that could not be read or hold no usable data, with the reason."""
        return [r for r in self.rows if is_input_problem(r.flags)]


def reduce_chunk(
    refs: Sequence[FrameRef],
    plan: ReductionPlan,
    *,
    checksums: Mapping[str, str] | None = None,
    fingerprint: str = "",
) -> Chunk:
    """Reduce consecutive frames of one detector, warm-starting each fit from the last.

    One :class:`~pipeline.reducer.FrameReducer` per chunk (the path watch mode and the
    ewoks tasks use too): its first fit starts cold, a frame that cannot be read becomes
    a flagged all-NaN result and the next frame starts cold. `checksums` (SHA-256 by file
    name) and `fingerprint` are stored with the chunk.
    """
    reducer = FrameReducer(plan)
    results: list[FrameResult] = []
    for ref in refs:
        result = reducer.reduce_ref(ref).result
        results.append(result)
    names = {str(ref.path) for ref in refs}
    kept = {name: sha for name, sha in (checksums or {}).items() if name in names}
    return Chunk(tuple(refs), tuple(results), kept, fingerprint)


def _reduce_and_save(
    refs: Sequence[FrameRef],
    plan: ReductionPlan,
    path: Path,
    checksums: Mapping[str, str],
    fingerprint: str,
) -> Chunk:
    chunk = reduce_chunk(refs, plan, checksums=checksums, fingerprint=fingerprint)
    # a read error is never kept: the frame (truncated while it was being written, say)
    # is tried again by the next run
    if fingerprint and all(r.read_ok for r in chunk.results):
        save_chunk(path, chunk)
    return chunk


def reduce_run(
    config: Config,
    out_dir: Path,
    *,
    jobs: int = 1,
    on_bad_frame: Literal["flag", "raise"] = "flag",
    progress: bool = True,
    force: bool = False,
    command: str | None = None,
    log: Callable[[str], object] | None = None,
    now: datetime | None = None,
) -> RunOutputs:
    """Reduce every frame of a run and write the NeXus file, summary.csv and the plots.

    Parameters
    ----------
    config : Config
        The run's settings (:func:`pipeline.io.load_config`).
    out_dir : Path
        Output folder (created); holds ``results.h5``, ``summary.csv``, the PNG plots and
        the checkpoints that make a second run resume. Held by this run while it runs.
    jobs : int
        Worker processes (1: reduce in this process).
    on_bad_frame : {"flag", "raise"}
        "flag": an unreadable frame becomes a flagged row and the run goes on;
        "raise": stop with its FrameReadError (for debugging).
    progress : bool
        Show a progress bar on stderr.
    force : bool
        Reduce every frame again, whatever the checkpoints hold.
    command : str or None
        Command line recorded in the output folder's lock (default: this process's).
    log : callable or None
        Called with one-line notes (a stale lock taken over).
    now : datetime or None
        Time stamp written into the output (tests pin it).

    Returns
    -------
    RunOutputs
        Paths written and the time series.

    Raises
    ------
    OutputError
        If the output folder is a file, cannot be written, is too full, or is held by
        another run (named), before any frame is reduced; or if a write fails.
    ConfigError, GeometryError, FrameReadError
        For settings, geometry or (with ``on_bad_frame="raise"``) frames that are bad; a
        detector none of whose frames can be read (a wrong detector or h5_dataset) is a
        ConfigError.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    with lock_output_dir(out_dir, command=command, on_stale=log):
        return _reduce_locked(
            config, out_dir, jobs=jobs, on_bad_frame=on_bad_frame, progress=progress,
            force=force, now=now, start=start,
        )  # fmt: skip


def _reduce_locked(
    config: Config,
    out_dir: Path,
    *,
    jobs: int,
    on_bad_frame: Literal["flag", "raise"],
    progress: bool,
    force: bool,
    now: datetime | None,
    start: float,
) -> RunOutputs:
    plans: dict[Kind, ReductionPlan] = {}
    work: list[tuple[Kind, int, tuple[FrameRef, ...]]] = []
    for settings in config.detectors:
        plans[settings.kind] = load_plan(settings, config)
        shape = plans[settings.kind].geometry.detector.shape
        frames = [
            ref for ref in expand_frames(settings, shape=shape) if not _is_inside(ref.path, out_dir)
        ]
        check_first_frames(
            frames, shape=shape, kind=settings.kind, period_s=settings.exposure_period_s
        )
        for i in range(0, len(frames), CHUNK_FRAMES):
            work.append((settings.kind, i // CHUNK_FRAMES, tuple(frames[i : i + CHUNK_FRAMES])))
    n_total = sum(len(refs) for _, _, refs in work)
    check_free_space(out_dir, needed_bytes=output_bytes(plans, work))

    version = package_version()
    plan_keys = {
        s.kind: plan_fingerprint(plans[s.kind], s, version=version) for s in config.detectors
    }
    identities: dict[str, FileIdentity | None] = {}
    for _, _, refs in work:
        for ref in refs:
            if str(ref.path) not in identities:
                identities[str(ref.path)] = file_identity(ref.path)
    checksums = {name: ident.sha256 for name, ident in identities.items() if ident is not None}

    chunks: dict[tuple[Kind, int], Chunk] = {}
    pending: list[tuple[Kind, int, tuple[FrameRef, ...], str]] = []
    for kind, index, refs in work:
        key = chunk_fingerprint(plan_keys[kind], refs, identities)
        done = None if force or not key else load_chunk(_chunk_path(out_dir, kind, index))
        if done is not None and done.fingerprint == key and done.refs == refs:
            chunks[(kind, index)] = done
        else:
            pending.append((kind, index, refs, key))
    n_resumed = sum(len(c.refs) for c in chunks.values())

    with tqdm(
        total=n_total, initial=n_resumed, unit="frame", disable=not progress, desc="gixs reduce"
    ) as bar:
        chunks |= reduce_chunks(
            pending, plans, out_dir, jobs=jobs, advance=bar.update, checksums=checksums
        )

    results: dict[Kind, list[FrameResult]] = {kind: [] for kind in plans}
    for kind, index, _ in work:
        results[kind].extend(chunks[(kind, index)].results)
    bad = [r for rs in results.values() for r in rs if not r.input_ok]
    unread = [r for r in bad if not r.read_ok]
    if unread and on_bad_frame == "raise":
        raise FrameReadError(unread[0].flags[0].removeprefix("read_error: "))

    period = {s.kind: s.exposure_period_s for s in config.detectors}
    base_dir = config.source.parent if config.source is not None else None
    rows = build_rows(results, period_s=period, base_dir=base_dir)
    nexus, csv_path = out_dir / "results.h5", out_dir / "summary.csv"
    read = {name: sha for name, sha in checksums.items() if _was_read(name, results)}
    write_nexus(nexus, rows, results, plans, config, checksums=read, now=now)
    write_csv(csv_path, rows)
    pngs = []
    for name, fig in plots.run_figures(rows, results, plans):
        png = out_dir / f"{name}.png"
        save_figure(fig, png)
        pngs.append(png)
    return RunOutputs(
        nexus=nexus,
        csv=csv_path,
        plots=tuple(pngs),
        rows=rows,
        n_frames=n_total,
        n_bad=len(bad),
        n_resumed=n_resumed,
        elapsed_s=time.perf_counter() - start,
    )


def check_first_frames(
    frames: Sequence[FrameRef], *, shape: tuple[int, int], kind: Kind, period_s: float | None
) -> None:
    """Refuse, in one line, a detector whose frames cannot be read or cannot be timed.

    A wrong detector (frame shape) or a wrong ``h5_dataset`` fails on every frame; this
    says so once, before any work, instead of one line per frame. A single bad frame
    (truncated, say) is flagged by the run as usual. Frames that carry neither a time
    stamp nor a frame period (the first, the last and up to 16 frames between), with no
    ``exposure_period_s`` set, would give a run without a time axis.

    Parameters
    ----------
    frames : sequence of FrameRef
        The detector's frames, in acquisition order.
    shape : tuple of int
        The detector's frame shape.
    kind : {"gisaxs", "giwaxs"}
        The detector, for the message.
    period_s : float or None
        The configured ``exposure_period_s``, in s.

    Raises
    ------
    ConfigError
        If the first and the last frame cannot be read, or neither carries a time.
    """
    if not frames:
        return
    errors: list[FrameReadError] = []
    read: list[Frame] = []
    for ref in dict.fromkeys((frames[0], frames[-1])):
        try:
            read.append(read_frame(ref, shape=shape))
        except FrameReadError as err:
            errors.append(err)
    if not read:
        tried = (
            f"the first and the last of the {len(frames)} listed fail"
            if len(frames) > 1
            else "the only one listed fails"
        )
        msg = (
            f"[{kind}] no frame can be read ({tried}): {errors[0]}; check the detector, "
            "h5_dataset and frames settings"
        )
        raise ConfigError(msg)
    if period_s is None and not any(_timed(f) for f in read):
        # first and last untimed (bad frames, maybe): look at some frames in between
        step = max(1, len(frames) // _TIME_SAMPLES)
        read = [f for ref in frames[step:-1:step] if (f := _read_or_none(ref, shape))]
    if period_s is None and not any(_timed(f) for f in read):
        raise ConfigError(untimed_frames_message(kind, f"{frames[0].path} and the others"))


#: Frames looked at for a time stamp when the first and the last carry none.
_TIME_SAMPLES = 16


def _timed(frame: Frame) -> bool:
    return frame.meta.epoch_s is not None or frame.meta.period_s is not None


def _read_or_none(ref: FrameRef, shape: tuple[int, int]) -> Frame | None:
    try:
        return read_frame(ref, shape=shape)
    except FrameReadError:
        return None


def output_bytes(
    plans: Mapping[Kind, ReductionPlan], work: Sequence[tuple[Kind, int, tuple[FrameRef, ...]]]
) -> int:
    """A lower bound of the bytes a run writes: checkpoints, results.h5, CSV and plots.

    Examples
    --------
    >>> output_bytes({}, []) > 0
    True
    """
    per_frame = {kind: 64 * plan.q_par_per_nm.size + 2_000 for kind, plan in plans.items()}
    frames = sum(per_frame[kind] * len(refs) for kind, _, refs in work)
    return frames + 100_000 * len(plans) + 200_000


def _is_inside(path: Path, folder: Path) -> bool:
    """True when `path` is `folder` or lies inside it (outputs are never read as frames)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def _was_read(name: str, results: Mapping[Kind, Sequence[FrameResult]]) -> bool:
    return any(r.path == name and r.read_ok for rs in results.values() for r in rs)


def reduce_chunks(
    work: Sequence[tuple[Kind, int, tuple[FrameRef, ...], str]],
    plans: Mapping[Kind, ReductionPlan],
    out_dir: Path,
    *,
    jobs: int = 1,
    advance: Callable[[int], object] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> dict[tuple[Kind, int], Chunk]:
    """Reduce chunks of frames, in this process or in `jobs` worker processes.

    Parameters
    ----------
    work : sequence of (kind, chunk index, frame references, fingerprint)
        The chunks to reduce, each with its :func:`pipeline.fingerprint.chunk_fingerprint`
        ("": not checkpointed).
    plans : mapping of kind to ReductionPlan
        Each detector's plan (sent to the workers with each chunk).
    out_dir : Path
        Output folder; each chunk's checkpoint is written under it as soon as it is done
        (unless a frame of it could not be read).
    jobs : int
        Worker processes (1: this process).
    advance : callable or None
        Called with the number of frames of each finished chunk (a progress bar).
    checksums : mapping of str to str or None
        SHA-256 of the input files, stored with the chunks.

    Returns
    -------
    dict
        The reduced chunks keyed by (kind, chunk index).
    """
    sums = dict(checksums or {})

    def own(refs: tuple[FrameRef, ...]) -> dict[str, str]:
        names = {str(ref.path) for ref in refs}
        return {name: sha for name, sha in sums.items() if name in names}

    done: dict[tuple[Kind, int], Chunk] = {}
    if jobs <= 1 or len(work) <= 1:
        for kind, index, refs, key in work:
            path = _chunk_path(out_dir, kind, index)
            done[(kind, index)] = _reduce_and_save(refs, plans[kind], path, own(refs), key)
            if advance is not None:
                advance(len(refs))
        return done
    with ProcessPoolExecutor(max_workers=jobs, initializer=_one_blas_thread) as pool:
        futures = {
            pool.submit(
                _reduce_and_save,
                refs,
                plans[kind],
                _chunk_path(out_dir, kind, index),
                own(refs),
                key,
            ): (kind, index)
            for kind, index, refs, key in work
        }
        for future in as_completed(futures):
            where = futures[future]
            done[where] = future.result()
            if advance is not None:
                advance(len(done[where].refs))
    return done


def _one_blas_thread() -> None:
    """Give a worker process one BLAS thread: `jobs` workers then share the cores.

    With the default (one BLAS thread a core in every worker) two workers on two cores
    ran at 0.6x the speed of one process; limited, 1.16x.
    """
    threadpool_limits(limits=1)


def _chunk_path(out_dir: Path, kind: Kind, index: int) -> Path:
    return out_dir / CHECKPOINT_DIR / f"{kind}_{index:06d}.json"
