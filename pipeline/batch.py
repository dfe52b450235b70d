"""Batch reduction of a whole in-situ run, in parallel processes, resumable.

Frames are reduced in chunks of :data:`CHUNK_FRAMES` consecutive frames of one detector.
Each chunk starts its first fit cold and warm-starts the rest from the previous frame, so
a chunk's result depends only on its frames: the same whatever the number of processes
and however often the run was interrupted. Every finished chunk is written as a
checkpoint; a second run skips the chunks already there and gives the same output.
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

from detectors.errors import FrameReadError
from detectors.io import FrameRef
from pipeline import plots
from pipeline.config import Config, Kind
from pipeline.io import (
    Chunk,
    expand_frames,
    load_chunk,
    load_plan,
    save_chunk,
    save_figure,
    sha256_file,
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
        Frames in the run, frames that could not be read, frames taken from checkpoints.
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
        """Rows of frames that could not be read (listed with their reason)."""
        return [r for r in self.rows if "read_error" in r.flags]


def reduce_chunk(refs: Sequence[FrameRef], plan: ReductionPlan) -> Chunk:
    """Reduce consecutive frames of one detector, warm-starting each fit from the last.

    One :class:`~pipeline.reducer.FrameReducer` per chunk (the path watch mode and the
    ewoks tasks use too): its first fit starts cold, a frame that cannot be read becomes
    a flagged all-NaN result and the next frame starts cold. Returns the chunk with the
    SHA-256 of each file whose first frame is in it.
    """
    reducer = FrameReducer(plan)
    results: list[FrameResult] = []
    checksums: dict[str, str] = {}
    for ref in refs:
        result = reducer.reduce_ref(ref).result
        results.append(result)
        if result.read_ok and ref.frame_index == 0:
            checksums[str(ref.path)] = sha256_file(ref.path)
    return Chunk(tuple(refs), tuple(results), checksums)


def _reduce_and_save(refs: Sequence[FrameRef], plan: ReductionPlan, path: Path) -> Chunk:
    chunk = reduce_chunk(refs, plan)
    save_chunk(path, chunk)
    return chunk


def reduce_run(
    config: Config,
    out_dir: Path,
    *,
    jobs: int = 1,
    on_bad_frame: Literal["flag", "raise"] = "flag",
    progress: bool = True,
    now: datetime | None = None,
) -> RunOutputs:
    """Reduce every frame of a run and write the NeXus file, summary.csv and the plots.

    Parameters
    ----------
    config : Config
        The run's settings (:func:`pipeline.io.load_config`).
    out_dir : Path
        Output folder (created); holds ``results.h5``, ``summary.csv``, the PNG plots and
        the checkpoints that make a second run resume.
    jobs : int
        Worker processes (1: reduce in this process).
    on_bad_frame : {"flag", "raise"}
        "flag": an unreadable frame becomes a flagged row and the run goes on;
        "raise": stop with its FrameReadError (for debugging).
    progress : bool
        Show a progress bar on stderr.
    now : datetime or None
        Time stamp written into the output (tests pin it).

    Returns
    -------
    RunOutputs
        Paths written and the time series.

    Raises
    ------
    ConfigError, GeometryError, FrameReadError
        For settings, geometry or (with ``on_bad_frame="raise"``) frames that are bad.
    """
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    plans: dict[Kind, ReductionPlan] = {}
    work: list[tuple[Kind, int, tuple[FrameRef, ...]]] = []
    for settings in config.detectors:
        plans[settings.kind] = load_plan(settings, config)
        frames = expand_frames(settings, shape=plans[settings.kind].geometry.detector.shape)
        for i in range(0, len(frames), CHUNK_FRAMES):
            work.append((settings.kind, i // CHUNK_FRAMES, tuple(frames[i : i + CHUNK_FRAMES])))

    chunks: dict[tuple[Kind, int], Chunk] = {}
    pending: list[tuple[Kind, int, tuple[FrameRef, ...]]] = []
    for kind, index, refs in work:
        done = load_chunk(_chunk_path(out_dir, kind, index))
        if done is not None and done.refs == refs:
            chunks[(kind, index)] = done
        else:
            pending.append((kind, index, refs))
    n_resumed = sum(len(c.refs) for c in chunks.values())

    n_total = sum(len(refs) for _, _, refs in work)
    with tqdm(
        total=n_total, initial=n_resumed, unit="frame", disable=not progress, desc="gixs reduce"
    ) as bar:
        chunks |= reduce_chunks(pending, plans, out_dir, jobs=jobs, advance=bar.update)

    results: dict[Kind, list[FrameResult]] = {kind: [] for kind in plans}
    checksums: dict[str, str] = {}
    for kind, index, _ in work:
        results[kind].extend(chunks[(kind, index)].results)
        checksums.update(chunks[(kind, index)].checksums)
    bad = [r for rs in results.values() for r in rs if not r.read_ok]
    if bad and on_bad_frame == "raise":
        raise FrameReadError(bad[0].flags[0].removeprefix("read_error: "))

    period = {s.kind: s.exposure_period_s for s in config.detectors}
    base_dir = config.source.parent if config.source is not None else None
    rows = build_rows(results, period_s=period, base_dir=base_dir)
    nexus, csv_path = out_dir / "results.h5", out_dir / "summary.csv"
    write_nexus(nexus, rows, results, plans, config, checksums=checksums, now=now)
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


def reduce_chunks(
    work: Sequence[tuple[Kind, int, tuple[FrameRef, ...]]],
    plans: Mapping[Kind, ReductionPlan],
    out_dir: Path,
    *,
    jobs: int = 1,
    advance: Callable[[int], object] | None = None,
) -> dict[tuple[Kind, int], Chunk]:
    """Reduce chunks of frames, in this process or in `jobs` worker processes.

    Parameters
    ----------
    work : sequence of (kind, chunk index, frame references)
        The chunks to reduce.
    plans : mapping of kind to ReductionPlan
        Each detector's plan (sent to the workers with each chunk).
    out_dir : Path
        Output folder; each chunk's checkpoint is written under it as soon as it is done.
    jobs : int
        Worker processes (1: this process).
    advance : callable or None
        Called with the number of frames of each finished chunk (a progress bar).

    Returns
    -------
    dict
        The reduced chunks keyed by (kind, chunk index).
    """
    done: dict[tuple[Kind, int], Chunk] = {}
    if jobs <= 1 or len(work) <= 1:
        for kind, index, refs in work:
            done[(kind, index)] = _reduce_and_save(
                refs, plans[kind], _chunk_path(out_dir, kind, index)
            )
            if advance is not None:
                advance(len(refs))
        return done
    with ProcessPoolExecutor(max_workers=jobs, initializer=_one_blas_thread) as pool:
        futures = {
            pool.submit(_reduce_and_save, refs, plans[kind], _chunk_path(out_dir, kind, index)): (
                kind,
                index,
            )
            for kind, index, refs in work
        }
        for future in as_completed(futures):
            key = futures[future]
            done[key] = future.result()
            if advance is not None:
                advance(len(done[key].refs))
    return done


def _one_blas_thread() -> None:
    """Give a worker process one BLAS thread: `jobs` workers then share the cores.

    With the default (one BLAS thread a core in every worker) two workers on two cores
    ran at 0.6x the speed of one process; limited, 1.16x.
    """
    threadpool_limits(limits=1)


def _chunk_path(out_dir: Path, kind: Kind, index: int) -> Path:
    return out_dir / CHECKPOINT_DIR / f"{kind}_{index:06d}.pkl"
