"""Near-real-time mode: follow a run as the detectors write it, frame by frame.

:class:`Watcher` follows the folders of the configuration's ``frames`` globs with
`watchdog` (a polling observer by default, since beamline data sit on network file
systems where inotify sees nothing; inotify as an option). A file is reduced only when it
is complete: its size and modification time unchanged over :attr:`WatchSettings.settle_s`
and it parses; a file that does not parse is tried again until
:attr:`WatchSettings.give_up_s` after its last change, and then recorded as bad with its
reason. An HDF5 stack (BLISS/LIMA) is followed as it grows: the frames it holds once its
size is stable are reduced, and it stays followed.

Frames are reduced in the order they become complete (file-name order among those
complete at once) by one :class:`~pipeline.reducer.FrameReducer` per detector, with the
batch's cold starts (``cold_every=CHUNK_FRAMES``), so that the same frames give the same
results as ``gixs reduce``. Nothing is dropped: complete frames wait in a queue (the
backlog). Each frame is appended to the journal (the run's truth: a watcher stopped at any
moment, even by ``kill -9``, takes the run up again from it, no frame lost and none twice),
then to ``results.h5`` (SWMR, flushed); ``summary.csv`` and the plots follow, throttled.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from detectors.errors import ConfigError, FrameReadError
from detectors.io import Frame, FrameMeta, FrameRef, linked_files, list_frames, read_frame
from pipeline.batch import CHUNK_FRAMES
from pipeline.checks import untimed_frames_message
from pipeline.config import Config, DetectorSettings, Kind
from pipeline.reduce import FrameResult, ReductionPlan, reduce_frame
from pipeline.reducer import FrameReducer, Reduced, RunClock
from pipeline.results_file import RESULTS_NAME, Journal, JournalEntry, ResultsWriter
from pipeline.timeseries import SeriesRow

#: File name of the journal inside the output folder.
JOURNAL_NAME = "watch_journal.bin"

_H5_SUFFIXES = (".h5", ".hdf5", ".nxs", ".hdf")


def _is_h5(path: Path) -> bool:
    return path.suffix.lower() in _H5_SUFFIXES


#: Parsed frames are kept for the reducer only while the backlog is shorter than this.
_KEEP_PARSED_BELOW = 64


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """How a run is followed.

    Attributes
    ----------
    poll_s : float
        Polling interval of the folder observer, in s.
    inotify : bool
        Use the operating system's notifications (inotify) instead of polling.
    settle_s : float
        A file is complete when its size and time are unchanged over this long, in s.
    give_up_s : float
        A file that still does not parse this long after its last change is bad, in s.
    until_idle_s : float or None
        Stop when nothing new came for this long and the backlog is empty (None: run
        until stopped).
    outputs_every_s : float
        Least interval between rewrites of summary.csv and the plots, in s (and at least
        ten times the last rewrite's duration, so that plotting takes little of the time).
    batch_s : float
        Frames waiting are reduced for up to this long before results.h5 is grown and
        flushed once for all of them, in s.
    """

    poll_s: float = 0.5
    inotify: bool = False
    settle_s: float = 0.1
    give_up_s: float = 10.0
    until_idle_s: float | None = None
    outputs_every_s: float = 5.0
    batch_s: float = 0.2

    def __post_init__(self) -> None:
        for name in ("poll_s", "settle_s", "give_up_s", "outputs_every_s", "batch_s"):
            if not getattr(self, name) > 0:
                msg = f"watch: {name} must be > 0, got {getattr(self, name)!r}"
                raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Progress:
    """Counters of a watched run, as shown on the terminal.

    Attributes
    ----------
    seen, reduced, bad, backlog : int
        Frames found complete, frames written, frames written as bad, frames waiting.
    waiting_files : int
        Files seen but not complete yet.
    last : dict of kind to SeriesRow
        Each detector's last written row.
    """

    seen: int
    reduced: int
    bad: int
    backlog: int
    waiting_files: int
    last: dict[str, SeriesRow]

    def line(self) -> str:
        """One terminal line: counters, last q1 / symmetry and last {200} FWHM."""
        parts = [
            f"seen {self.seen}",
            f"reduced {self.reduced}",
            f"bad {self.bad}",
            f"backlog {self.backlog}",
        ]
        if self.waiting_files:
            parts.append(f"incomplete files {self.waiting_files}")
        rod = self.last.get("gisaxs")
        if rod is not None:
            parts.append(f"q1 {rod.q1_per_nm:.4f} nm^-1 {rod.symmetry or '-'}")
        peak = self.last.get("giwaxs")
        if peak is not None:
            parts.append(f"FWHM200 {peak.fwhm200_per_nm:.3f} nm^-1")
        return " | ".join(parts)


@dataclass(slots=True)
class _Candidate:
    kind: Kind
    path: Path
    size: int = -1
    mtime_ns: int = -1
    changed_at: float = 0.0
    done_size: int = -1  # size at which an HDF5 stack was last taken
    attempts: int = 0  # parses tried since the last change
    retry_at: float = 0.0


@dataclass(slots=True)
class _Shared:
    """What the live view reads (under `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    version: int = 0
    entries: list[JournalEntry] = field(default_factory=list)
    last_frame: dict[str, Any] = field(default_factory=dict)
    progress: Progress | None = None


class Watcher:
    """Follow a run's folders and reduce each frame as it is complete.

    Parameters
    ----------
    config : Config
        The run's settings (:func:`pipeline.io.load_config`).
    out_dir : Path
        Output folder: ``results.h5``, ``summary.csv``, plots, and the journal that lets a
        stopped watcher take the run up again.
    settings : WatchSettings
        Polling, completeness and stopping policy.
    clock : callable or None
        Wall clock in s (tests pin it); ``time.monotonic`` by default.

    Raises
    ------
    ConfigError, GeometryError
        For bad settings or geometry.
    FrameReadError
        If `out_dir` holds a run reduced with other settings.
    """

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        settings: WatchSettings | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.settings = settings or WatchSettings()
        self._now = clock or time.monotonic
        self.out_dir.mkdir(parents=True, exist_ok=True)
        run_clock = RunClock()
        self.reducers: dict[Kind, FrameReducer] = {}
        self._settings: dict[Kind, DetectorSettings] = {}
        for det in config.detectors:
            self.reducers[det.kind] = FrameReducer.from_settings(
                det, config, clock=run_clock, cold_every=CHUNK_FRAMES
            )
            self._settings[det.kind] = det
        self.plans: dict[Kind, ReductionPlan] = {k: r.plan for k, r in self.reducers.items()}
        fingerprints = {k: r.fingerprint for k, r in self.reducers.items()}
        self.journal = Journal(self.out_dir / JOURNAL_NAME, fingerprints)
        self.done: set[tuple[str, str, int, str]] = set()
        last: dict[Kind, Reduced] = {}
        for entry in self.journal.entries:
            self.done.add(entry.key)
            last[entry.reduced.result.kind] = entry.reduced
            epoch = entry.reduced.result.epoch_s
            if epoch is not None and run_clock.t0_epoch_s is None:
                run_clock.t0_epoch_s = epoch - entry.reduced.time_s  # the run's time zero
        for kind, reduced in last.items():
            if kind in self.reducers:
                self.reducers[kind].restore(reduced)
        # detectors with a frame on the time axis (an untimed one among them is a gap)
        self._timed: set[str] = {
            e.reduced.result.kind for e in self.journal.entries if math.isfinite(e.reduced.time_s)
        }
        self.shared = _Shared(entries=list(self.journal.entries))
        # results.h5 is rebuilt from the journal: a killed writer may have left it unopenable
        path = self.out_dir / RESULTS_NAME
        for stale in [*self.out_dir.glob(f"{RESULTS_NAME}.tmp*"), *self.out_dir.glob("*.tmp*")]:
            stale.unlink(missing_ok=True)
        tmp = path.with_suffix(f".h5.tmp{os.getpid()}")
        self.writer = ResultsWriter(tmp, self.plans, config, fingerprints=fingerprints, swmr=True)
        self.writer.append(self.journal.entries)
        os.replace(tmp, path)
        self.writer.path = path
        self._base_dir = config.source.parent if config.source is not None else None
        self._events: set[Path] = set()
        self._events_lock = threading.Lock()
        self._candidates: dict[Path, _Candidate] = {}
        self._links: dict[Path, tuple[tuple[int, int], frozenset[Path]]] = {}
        self._finished: dict[Path, tuple[int, int]] = {}  # file -> (size, mtime) when taken
        self._queue: deque[tuple[Kind, FrameRef, str, str, Frame | None]] = deque()
        self._queued: set[tuple[str, str, int, str]] = set()
        self._stop = threading.Event()
        self._seen = len(self.journal.entries)
        self._bad = sum(1 for e in self.journal.entries if not e.reduced.result.input_ok)
        self._last_activity = self._now()
        self._outputs_at = -math.inf
        self._outputs_dirty = bool(self.journal.entries)
        self._observer: Any = None
        self._plot_thread: threading.Thread | None = None
        self._outputs_cost_s = 0.0  # how long the last rewrite of summary.csv and plots took

    # --- following the folders -------------------------------------------------------

    def start(self) -> None:
        """Warm up the fits, start the folder observer and take every file already there."""
        self._warm_up()
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                for name in (event.src_path, getattr(event, "dest_path", "")):
                    if name:
                        watcher._note(Path(os.fsdecode(name)))

        if self.settings.inotify:
            observer: Any = Observer()
        else:
            observer = PollingObserver(timeout=self.settings.poll_s)
        for folder, recursive in self._folders():
            folder.mkdir(parents=True, exist_ok=True)
            observer.schedule(_Handler(), str(folder), recursive=recursive)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self.rescan()

    def _warm_up(self) -> None:
        """Reduce a synthetic frame per plan: the first real frame then waits for no kernel."""
        rng = np.random.default_rng(0)
        for plan in self.plans.values():
            data = rng.poisson(10.0, plan.geometry.detector.shape).astype(np.int32)
            reduce_frame(Frame(data, FrameMeta(Path("warm-up"), 0)), plan)

    def rescan(self) -> None:
        """Note every file the globs match now (at start, and now and then as a safety net)."""
        for folder, recursive in self._folders():
            if not folder.is_dir():
                continue
            walker = folder.rglob("*") if recursive else folder.iterdir()
            for path in sorted(walker):
                if path.is_file():
                    self._note(path)

    def stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler or another thread)."""
        self._stop.set()

    def _folders(self) -> list[tuple[Path, bool]]:
        folders: dict[Path, bool] = {}
        for det in self._settings.values():
            for pattern in det.frames:
                parts = Path(pattern).parts
                fixed = list(parts[:-1])
                cut = next((i for i, p in enumerate(fixed) if any(c in p for c in "*?[")), None)
                folder = Path(*fixed[:cut]) if cut is not None else Path(*fixed)
                recursive = cut is not None
                folders[folder] = folders.get(folder, False) or recursive
        return sorted(folders.items())

    def _kind_of(self, path: Path) -> Kind | None:
        """The detector whose frames globs match `path`, as `gixs reduce` expands them.

        A ``*`` stays within one folder (as in :func:`glob.glob`, not :func:`fnmatch`),
        and nothing in the output folder is a frame (``results.h5`` matches ``*.h5``).
        """
        if path.is_relative_to(self.out_dir.absolute()):
            return None
        name = str(path)
        for kind, det in self._settings.items():
            if any(name == pattern or PurePath(name).match(pattern) for pattern in det.frames):
                return kind
        return None

    def _note(self, path: Path) -> None:
        with self._events_lock:
            self._events.add(path)

    # --- the loop ------------------------------------------------------------------------

    def run(self, *, on_progress: Callable[[Progress], None] | None = None) -> Progress:
        """Follow the run until stopped (or idle for ``until_idle_s``); returns the counters."""
        if self._observer is None:
            self.start()
        tick = min(0.05, self.settings.settle_s / 2)
        last_rescan = self._now()
        shown = ""
        try:
            while not self._stop.is_set():
                now = self._now()
                self._take_events(now)
                self._check_candidates(now)
                worked = False
                if self._queue:
                    self._reduce_batch()
                    worked = True
                if now - last_rescan > 10 * self.settings.poll_s:
                    self.rescan()
                    last_rescan = now
                progress = self.progress()
                if on_progress is not None and progress.line() != shown:
                    shown = progress.line()
                    on_progress(progress)
                if not self._queue:
                    self._maybe_write_outputs(now)
                if self._idle_done(now):
                    break
                if not worked:
                    self._stop.wait(tick)
        finally:
            self.close()
        return self.progress()

    def close(self) -> None:
        """Stop the observer, write summary.csv and the plots, close the files."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._plot_thread is not None:
            self._plot_thread.join()
        self._write_outputs()
        self.writer.close()
        self.journal.close()

    def progress(self) -> Progress:
        """The run's counters now."""
        last: dict[str, SeriesRow] = {}
        for entry in reversed(self.journal.entries):
            kind = entry.reduced.result.kind
            if kind not in last and entry.reduced.result.input_ok:
                last[kind] = entry.row()
            if len(last) == len(self.reducers):
                break
        waiting = sum(1 for c in self._candidates.values() if c.done_size != c.size)
        return Progress(
            seen=self._seen,
            reduced=len(self.journal.entries),
            bad=self._bad,
            backlog=len(self._queue),
            waiting_files=waiting,
            last=last,
        )

    def _idle_done(self, now: float) -> bool:
        idle = self.settings.until_idle_s
        if idle is None or self._queue:
            return False
        if any(c.done_size != c.size for c in self._candidates.values()):
            return False
        return now - self._last_activity > idle

    def _take_events(self, now: float) -> None:
        with self._events_lock:
            paths, self._events = self._events, set()
        for path in sorted(paths):
            path = path.absolute()
            if path.suffix.startswith(".tmp") or path.name.startswith("."):
                continue
            kind = self._kind_of(path)
            if kind is None:
                continue
            if path in self._candidates:
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            if self._finished.get(path) == (stat.st_size, stat.st_mtime_ns):
                continue  # taken already, unchanged since
            self._candidates[path] = _Candidate(kind, path, changed_at=now)

    def _check_candidates(self, now: float) -> None:
        ready: list[_Candidate] = []
        for cand in list(self._candidates.values()):
            try:
                stat = cand.path.stat()
            except OSError:
                del self._candidates[cand.path]  # gone (renamed or removed)
                continue
            if (stat.st_size, stat.st_mtime_ns) != (cand.size, cand.mtime_ns):
                cand.size, cand.mtime_ns, cand.changed_at = stat.st_size, stat.st_mtime_ns, now
                cand.attempts, cand.retry_at = 0, 0.0
                self._last_activity = now
                continue
            if cand.size == cand.done_size or now - cand.changed_at < self.settings.settle_s:
                continue
            if now < cand.retry_at:
                continue
            ready.append(cand)
        linked = self._linked_files() if any(_is_h5(c.path) for c in ready) else set()
        for cand in sorted(ready, key=lambda c: (c.kind, str(c.path))):
            if cand.path.resolve() in linked:  # read through the file that links it
                del self._candidates[cand.path]
                self._finished[cand.path] = (cand.size, cand.mtime_ns)
                continue
            self._take_file(cand, now)

    def _linked_files(self) -> set[Path]:
        """The files that an HDF5 file of the run links (as `gixs reduce` leaves them out).

        Each file's links are read once per size and time (a Dectris master, a BLISS file).
        A data file taken before the file that links it appeared is not taken back.
        """
        linked: set[Path] = set()
        for cand in self._candidates.values():
            if not _is_h5(cand.path):
                continue
            stamp = (cand.size, cand.mtime_ns)
            known = self._links.get(cand.path)
            if known is None or known[0] != stamp:
                known = (stamp, frozenset(linked_files(cand.path)))
                self._links[cand.path] = known
            linked |= known[1]
        return linked

    def _take_file(self, cand: _Candidate, now: float) -> None:
        det = self._settings[cand.kind]
        shape = self.reducers[cand.kind].shape
        is_h5 = _is_h5(cand.path)
        frames: dict[FrameRef, Frame] = {}
        error = ""
        try:
            if cand.size == 0:
                msg = f"{cand.path}: empty file"
                raise FrameReadError(msg)
            if is_h5:
                refs = list_frames(cand.path, shape=shape, h5_dataset=det.h5_dataset)
            else:
                refs = list_frames(cand.path)
                # parsed: the file is whole; kept for the reducer while the backlog is short
                parsed = [read_frame(ref) for ref in refs]
                if len(self._queue) < _KEEP_PARSED_BELOW:
                    frames = dict(zip(refs, parsed, strict=True))
        except FrameReadError as err:
            if now - cand.changed_at < self.settings.give_up_s:
                # maybe still being written: try again, less and less often
                cand.retry_at = now + min(1.0, 0.05 * 2**cand.attempts)
                cand.attempts += 1
                return
            error = str(err)  # bounded: complete for give_up_s and still unreadable
            refs = [FrameRef(cand.path, 0, det.h5_dataset)]
            if is_h5:  # the frames that are there, and a read error for each missing part
                with contextlib.suppress(FrameReadError):
                    refs = list_frames(
                        cand.path, shape=shape, h5_dataset=det.h5_dataset, keep_missing=True
                    )
                    error = ""
        identity = _identity(cand.path, is_h5)
        for ref in refs:
            key = _frame_key(ref, identity)
            if key in self.done or key in self._queued:
                continue
            self._queued.add(key)
            self._queue.append((cand.kind, ref, identity, error, frames.get(ref)))
            self._seen += 1
        self._last_activity = now
        if is_h5 and not error:
            cand.done_size = cand.size
        else:
            del self._candidates[cand.path]
            self._finished[cand.path] = (cand.size, cand.mtime_ns)

    def _reduce_batch(self) -> None:
        """Reduce queued frames for up to `batch_s`, then append them to results.h5 at once.

        Each frame is in the journal as soon as it is reduced; results.h5 is grown and
        flushed once per batch (one resize per dataset), which keeps up at 20 frames/s.
        """
        entries: list[JournalEntry] = []
        deadline = self._now() + self.settings.batch_s
        try:
            while self._queue and (not entries or self._now() < deadline):
                entries.append(self._reduce_next())
        finally:  # a stop (Ctrl-C) mid-batch still writes what the journal holds
            self.writer.append(entries)
            with self.shared.lock:
                self.shared.entries.extend(entries)
                self.shared.version += 1

    def _reduce_next(self) -> JournalEntry:
        kind, ref, identity, error, frame = self._queue.popleft()
        reducer = self.reducers[kind]
        if error:
            reduced = reducer.flag(ref, error)
        elif frame is not None and frame.data.shape == reducer.shape:
            reduced = reducer.reduce(frame)
        else:
            reduced = reducer.reduce_ref(ref)  # reads it (again), and names a wrong shape
        result = reduced.result
        if math.isfinite(reduced.time_s):
            self._timed.add(kind)
        elif result.read_ok and kind not in self._timed:  # no time axis at all: say so
            raise ConfigError(untimed_frames_message(kind, result.path))
        checksum = identity if ref.frame_index == 0 and not identity.startswith("inode:") else ""
        entry = JournalEntry(reduced, self._display(result), identity, checksum)
        self.journal.append(entry)
        key = _frame_key(ref, identity)
        self._queued.discard(key)
        self.done.add(key)
        if not result.input_ok:
            self._bad += 1
        self._last_activity = self._now()
        self._outputs_dirty = True
        return entry

    def _display(self, result: FrameResult) -> str:
        if self._base_dir is None:
            return result.path
        try:
            return Path(result.path).resolve().relative_to(self._base_dir.resolve()).as_posix()
        except ValueError:
            return result.path

    # --- summary.csv and plots ---------------------------------------------------------

    def _maybe_write_outputs(self, now: float) -> None:
        wait_s = max(self.settings.outputs_every_s, 10.0 * self._outputs_cost_s)
        if not self._outputs_dirty or now - self._outputs_at < wait_s:
            return
        if self._plot_thread is not None and self._plot_thread.is_alive():
            return
        self._outputs_at = now
        self._outputs_dirty = False
        self._plot_thread = threading.Thread(
            target=self._write_outputs, args=(list(self.journal.entries),), daemon=True
        )
        self._plot_thread.start()

    def _write_outputs(self, entries: list[JournalEntry] | None = None) -> None:
        start = time.perf_counter()
        write_run_outputs(self.out_dir, entries or list(self.journal.entries), self.plans)
        self._outputs_cost_s = time.perf_counter() - start


def write_run_outputs(
    out_dir: Path, entries: list[JournalEntry], plans: dict[Kind, ReductionPlan]
) -> None:
    """Rewrite summary.csv and the PNG plots of a watched run from its journal entries."""
    from pipeline import plots
    from pipeline.io import save_figure, write_csv

    rows = [entry.row() for entry in entries]
    tmp = out_dir / "summary.csv.tmp"
    write_csv(tmp, rows)
    os.replace(tmp, out_dir / "summary.csv")
    results: dict[Kind, list[FrameResult]] = {}
    for entry in entries:
        results.setdefault(entry.reduced.result.kind, []).append(entry.reduced.result)
    # rows detector by detector, in acquisition order, as the plots take them
    ordered_rows = [e.row() for kind in results for e in entries if e.reduced.result.kind == kind]
    for name, fig in plots.run_figures(ordered_rows, results, plans):
        png = out_dir / f"{name}.png"
        save_figure(fig, png.with_suffix(".tmp.png"))
        os.replace(png.with_suffix(".tmp.png"), png)


def _frame_key(ref: FrameRef, identity: str) -> tuple[str, str, int, str]:
    """The journal's key of a frame not reduced yet (:attr:`JournalEntry.key`)."""
    return (str(ref.path), ref.dataset or "", ref.frame_index, identity)


def _identity(path: Path, is_h5: bool) -> str:
    if is_h5:
        stat = path.stat()
        return f"inode:{stat.st_dev}:{stat.st_ino}"
    return hashlib.sha256(path.read_bytes()).hexdigest()
