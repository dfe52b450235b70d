"""Files in and out of the pipeline: TOML settings in; checkpoints, NeXus, CSV and PNG out.

The only module of :mod:`pipeline` that opens files, with :mod:`pipeline.results_file`
(which owns the layout of ``results.h5``; :func:`write_nexus` writes through it).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from glob import glob
from importlib import metadata
from pathlib import Path
from typing import IO

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from calibration.geometry import GIGeometry
from calibration.io import load_poni, load_resolution
from calibration.resolution import InstrumentResolution
from detectors.errors import ConfigError, FrameReadError, GeometryError, OutputError
from detectors.io import (
    FrameRef,
    linked_files,
    list_frames,
    natural_key,
    read_frame,
    read_mask_file,
)
from pipeline.checkpoints import CheckpointFormatError, decode, encode
from pipeline.checks import check_cut_bins, check_fit_window, check_user_mask
from pipeline.config import Config, DetectorSettings, Kind, config_from_dict
from pipeline.cuts import bins_for_range, check_band_above_horizon
from pipeline.fingerprint import FileIdentity
from pipeline.fits import PeakFit, RodFit
from pipeline.reduce import FrameResult, ReductionPlan, plan_reduction
from pipeline.timeseries import COLUMNS, SeriesRow, chronological

#: Packages whose versions every output records.
RECORDED_PACKAGES = ("insitu-gixs", "numpy", "scipy", "pyFAI", "fabio", "lmfit", "h5py")


def load_config(path: Path) -> Config:
    """Read and validate a TOML run configuration.

    Raises
    ------
    ConfigError
        If the file is missing, is not valid TOML, or holds an unknown key or a bad value;
        the message names the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        msg = f"{path}: cannot read the configuration ({err.strerror or err})"
        raise ConfigError(msg) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = f"{path}: not valid TOML: {err}"
        raise ConfigError(msg) from None
    config = config_from_dict(data, base_dir=path.resolve().parent, source=str(path))
    return Config(config.detectors, config.scherrer, source=path.resolve(), text=text)


def expand_frames(
    settings: DetectorSettings, *, shape: tuple[int, int] | None = None
) -> list[FrameRef]:
    """Every frame of a detector's globs, once each.

    Files come in name order, numbers read as numbers (``scan_2`` before ``scan_10``),
    then the frames of each file in acquisition order. A file matched by two globs is
    listed once; a file that another matched file links (a Dectris master's data files,
    a BLISS file's LIMA files: :func:`~detectors.io.linked_files`) is read through that
    file only.

    A file whose frames cannot be listed (an unreadable HDF5 file, say) is kept as one
    frame reference, so that the batch flags it instead of stopping; of a file in several
    parts, the frames that are there are listed, and each missing part is a reference
    that fails when read, naming the missing file (``keep_missing`` of
    :func:`~detectors.io.list_frames`).

    Raises
    ------
    ConfigError
        If a glob matches no file.
    """
    names: list[str] = []
    for pattern in settings.frames:
        paths = (
            sorted(glob(pattern), key=natural_key)
            if any(c in pattern for c in "*?[")
            else [pattern]
        )
        if not paths or not Path(paths[0]).exists():
            msg = f"[{settings.kind}] frames: {pattern!r} matches no file"
            raise ConfigError(msg)
        names.extend(paths)
    # a data file that a matched master (Dectris, BLISS) links is read through the master
    seen = set().union(*(linked_files(Path(name)) for name in names))
    refs: list[FrameRef] = []
    for name in names:
        if Path(name).resolve() in seen:
            continue
        seen.add(Path(name).resolve())
        try:
            refs.extend(
                list_frames(
                    Path(name), shape=shape, h5_dataset=settings.h5_dataset, keep_missing=True
                )
            )
        except FrameReadError:
            refs.append(FrameRef(Path(name), 0, settings.h5_dataset))
    return refs


def load_geometry(settings: DetectorSettings) -> GIGeometry:
    """The grazing-incidence geometry of a detector's settings (PONI + angles).

    The ``detector`` setting overrides the PONI file's detector before anything is
    checked; a generic detector without a frame shape takes the first frame's shape.
    """
    detector = load_poni(settings.poni, detector=settings.detector)
    if not detector.has_shape:
        detector = detector.with_frame_shape(_first_frame_shape(settings))
    return GIGeometry.create(
        detector,
        incidence_angle_deg=settings.incidence_angle_deg,
        tilt_angle_deg=settings.tilt_angle_deg,
        sample_orientation=settings.sample_orientation,
    )


def _first_frame_shape(settings: DetectorSettings) -> tuple[int, int]:
    """Frame shape of the first frame of a detector's settings (for a shapeless PONI)."""
    refs = expand_frames(settings)
    rows, cols = read_frame(refs[0]).data.shape
    return int(rows), int(cols)


def load_static_mask(
    geometry: GIGeometry,
    mask_file: Path | None,
    *,
    invert: bool = False,
    fix: str = "add --mask-invert",
) -> NDArray[np.bool_]:
    """Module gaps of the geometry's detector, combined with a user mask file if given.

    Parameters
    ----------
    geometry : GIGeometry
        The detector's geometry.
    mask_file : Path or None
        User mask (nonzero = masked), or None.
    invert : bool
        True for a mask written as nonzero = good pixel.
    fix : str
        How the user inverts the mask, for the message of a mask of the wrong polarity.

    Raises
    ------
    ConfigError
        If the mask hides most of the detector while its inverse would not.
    """
    gaps = geometry.detector.gap_mask()
    if mask_file is None:
        return gaps
    user = read_mask_file(mask_file, shape=geometry.detector.shape)
    if invert:
        user = ~user
    check_user_mask(user, gaps=gaps, mask_file=mask_file, fix=fix)
    return gaps | user


def load_plan(settings: DetectorSettings, config: Config) -> ReductionPlan:
    """Build a detector's per-frame plan from its settings, reading PONI, mask, resolution.

    Raises
    ------
    ConfigError
        For a user mask of the wrong polarity (hiding most of the detector or the whole
        cut band), a cut with too few bins to fit (a mask that hides most of the band, a
        tiny n_bins) or a fit window outside the cut, naming the file and the key.
    """
    geometry = load_geometry(settings)
    resolution = None if settings.resolution is None else load_resolution(settings.resolution)
    where = f"[{settings.kind}]" + (f" in {config.source}" if config.source else "")
    if resolution is not None and settings.resolution is not None:
        check_resolution_setup(
            resolution, geometry, resolution_file=settings.resolution, poni_file=settings.poni
        )
    fix = f"set mask_invert = {str(not settings.mask_invert).lower()} in {where}"
    mask = load_static_mask(geometry, settings.mask, invert=settings.mask_invert, fix=fix)

    def plan_with(static: NDArray[np.bool_]) -> ReductionPlan:
        return plan_reduction(
            settings, geometry=geometry, static_mask=static, resolution=resolution,
            scherrer=config.scherrer,
        )  # fmt: skip

    q_perp_band = settings.q_perp_band_per_nm
    if settings.kind == "gisaxs" and not isinstance(q_perp_band, str):
        check_band_above_horizon(
            q_perp_band, geometry, critical_angle_deg=settings.critical_angle_deg, where=where
        )
    try:
        plan = plan_with(mask)
    except GeometryError:
        if settings.mask is None:
            raise
        # does the band exist without the user mask? then the mask hides all of it
        bare = plan_with(geometry.detector.gap_mask())
        band = np.zeros(bare.static_mask.size, dtype=bool)
        band[bare.cut.pixel_index] = True
        check_user_mask(
            mask & ~bare.static_mask, gaps=bare.static_mask, mask_file=settings.mask, fix=fix,
            band=band.reshape(mask.shape),
        )  # fmt: skip
        raise
    unmasked = None if settings.mask is None else plan_with(geometry.detector.gap_mask()).cut.n_bins
    check_cut_bins(
        plan.cut, where=where, unmasked_bins=unmasked, mask_file=settings.mask, fix=fix,
        line_fwhm_per_nm=plan.resolved_fwhm_per_nm,
        bins_setting="auto" if settings.n_bins is None else "n_bins",
        resolution_file=settings.resolution if settings.kind == "giwaxs" else None,
        auto_bin_width_per_nm=lambda: _auto_bin_width_per_nm(plan),
    )  # fmt: skip
    if settings.kind == "gisaxs":
        check_fit_window(settings.q1_window_per_nm, plan.cut, key="q1_window_per_nm", where=where)
    else:
        check_fit_window(
            settings.peak_window_per_nm, plan.cut, key="peak_window_per_nm", where=where
        )
    return plan


#: Largest relative difference between the wavelengths of a resolution file and the PONI.
RESOLUTION_WAVELENGTH_RTOL = 1e-3


def check_resolution_setup(
    resolution: InstrumentResolution,
    geometry: GIGeometry,
    *,
    resolution_file: str | Path,
    poni_file: str | Path,
) -> None:
    """Refuse a resolution file measured on another detector or at another wavelength.

    The instrumental width depends on both (pixel size, distance, energy spread): removed
    from a line measured elsewhere, it gives a domain size that is simply wrong.

    Raises
    ------
    ConfigError
        If the file's detector (where it names one) is not the PONI's, or its wavelength
        differs from the PONI's by more than :data:`RESOLUTION_WAVELENGTH_RTOL`; the
        message names both files, both values and the fix.
    """
    fix = (
        "fit the resolution on a calibrant frame of this set-up "
        f"(`gixs calibrate resolution FRAME --poni {poni_file} --calibrant LaB6 --out FILE`)"
    )
    ours = geometry.detector.detector
    theirs, wavelength = resolution.wavelength_m, geometry.detector.wavelength_m
    differences = []
    if resolution.detector and _detector_key(resolution.detector) != _detector_key(ours):
        differences.append(f"with the detector {resolution.detector!r} ({poni_file}: {ours!r})")
    if abs(theirs - wavelength) > RESOLUTION_WAVELENGTH_RTOL * wavelength:
        differences.append(f"at wavelength_m = {theirs:.6g} ({poni_file}: {wavelength:.6g} m)")
    if differences:
        msg = f"{resolution_file}: the resolution was measured {' and '.join(differences)}: {fix}"
        raise ConfigError(msg)


def _detector_key(name: str) -> str:
    """A detector name without case, spaces, dashes or underscores ("Pilatus 300K")."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _auto_bin_width_per_nm(plan: ReductionPlan) -> float:
    """Width of the automatic bins (``n_bins = "auto"``) over the plan's q_par range, nm^-1."""
    lo, hi = plan.cut.q_par_range_per_nm
    return (hi - lo) / bins_for_range(plan.geometry.q_maps(), (lo, hi))


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A checkpoint: the results of a run of consecutive frames of one detector.

    Attributes
    ----------
    refs : tuple of FrameRef
        The frames, in the order they were reduced.
    results : tuple of FrameResult
        Their results.
    checksums : mapping of str to str
        SHA-256 of each file whose frames are in the chunk.
    fingerprint : str
        :func:`pipeline.fingerprint.chunk_fingerprint` of what the results depend on; a
        stored chunk is reused only when the run computes the same.
    """

    refs: tuple[FrameRef, ...]
    results: tuple[FrameResult, ...]
    checksums: Mapping[str, str]
    fingerprint: str = ""


#: The only types a checkpoint may hold (nothing else is rebuilt from the file).
_CHECKPOINT_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (Chunk, FrameRef, FrameResult, RodFit, PeakFit)
}


def save_chunk(path: Path, chunk: Chunk) -> None:
    """Write a checkpoint as JSON, atomically (a killed run leaves no half-written chunk).

    Raises
    ------
    OutputError
        If the file cannot be written (read-only folder, full disk); the message names it.
    """
    text = encode(chunk)
    with _atomic_output(path) as fh:
        fh.write(text.encode("utf-8"))


def load_chunk(path: Path) -> Chunk | None:
    """A checkpoint, or None when absent or not one this version writes.

    The file is read as data (JSON); nothing in it is executed or unpickled.
    """
    try:
        text = path.read_text(encoding="utf-8")
        chunk = decode(text, types=_CHECKPOINT_TYPES)
    except (OSError, UnicodeDecodeError, CheckpointFormatError):
        return None
    return chunk if isinstance(chunk, Chunk) else None


def file_identity(path: Path) -> FileIdentity | None:
    """Size, modification time and SHA-256 of a file; None when it cannot be read."""
    try:
        stat = os.stat(path)
        digest = sha256_file(path)
    except OSError:
        return None
    return FileIdentity(str(path), stat.st_size, stat.st_mtime_ns, digest)


#: Name of the lock file in an output folder (empty while no run holds the folder).
LOCK_NAME = ".gixs.lock"


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds an output folder: written into its lock file.

    Attributes
    ----------
    pid : int
        Process id of the run.
    host : str
        Host name it runs on.
    started : str
        ISO time at which it took the folder.
    command : str
        Its command line.
    """

    pid: int
    host: str
    started: str
    command: str

    def describe(self) -> str:
        """One line: pid, host, start time and command."""
        return f"pid {self.pid} on {self.host}, started {self.started}: {self.command}"


def check_output_dir(out_dir: Path) -> None:
    """Make sure `out_dir` is a folder that can be written, creating it if missing.

    Raises
    ------
    OutputError
        If it names a file, cannot be created, or cannot be written; the message names it
        and says what to do.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        msg = f"{out_dir}: the output folder is a file; give --out a folder (created if missing)"
        raise OutputError(msg)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        msg = (
            f"{out_dir}: cannot create the output folder ({err.strerror or err}); "
            "give --out a folder you can write"
        )
        raise OutputError(msg) from None
    try:
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".gixs-probe.")
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        msg = (
            f"{out_dir}: cannot write into the output folder ({_reason(err)}); "
            "give --out a folder you can write"
        )
        raise OutputError(msg) from None


def check_free_space(out_dir: Path, *, needed_bytes: int) -> None:
    """Refuse to start a run whose outputs cannot fit on the output folder's disk.

    Raises
    ------
    OutputError
        If fewer than `needed_bytes` are free there.
    """
    free = shutil.disk_usage(out_dir).free
    if free < needed_bytes:
        msg = (
            f"{out_dir}: only {free / 1e6:.2f} MB free on its disk, the run needs about "
            f"{needed_bytes / 1e6:.2f} MB; free some space or give --out another folder"
        )
        raise OutputError(msg)


@contextlib.contextmanager
def lock_output_dir(
    out_dir: Path,
    *,
    command: str | None = None,
    now: datetime | None = None,
    on_stale: Callable[[str], object] | None = None,
) -> Iterator[LockHolder]:
    """Hold `out_dir` for one run: a second run on the same folder is refused.

    The lock is an advisory ``flock`` on ``out_dir/.gixs.lock``, which the kernel releases
    when the process ends however it ends; the file holds who has it (pid, host, start
    time, command) while it is held, and is emptied on release. A lock file left full by
    a run that died is taken over, and `on_stale` is called with a line that says so.

    Parameters
    ----------
    out_dir : Path
        The output folder (must exist).
    command : str or None
        The command line to record (default: this process's).
    now : datetime or None
        Start time to record (default: now).
    on_stale : callable or None
        Called with a message when a stale lock is taken over.

    Yields
    ------
    LockHolder
        What this run wrote into the lock file.

    Raises
    ------
    OutputError
        If another live run holds the folder (naming it), or the lock cannot be written.
    """
    path = Path(out_dir) / LOCK_NAME
    try:
        fh = open(path, "a+", encoding="utf-8")  # held for the whole run
    except OSError as err:
        msg = f"{path}: cannot create the lock file ({_reason(err)})"
        raise OutputError(msg) from None
    try:
        previous = _read_holder(fh)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = previous.describe() if previous else "another run"
            msg = (
                f"{out_dir}: the output folder is in use by {who}; wait for it to end, or "
                "give --out another folder"
            )
            raise OutputError(msg) from None
        except OSError:
            # no flock on this file system: go by the recorded pid
            if previous is not None and _is_alive(previous):
                msg = f"{out_dir}: the output folder is in use by {previous.describe()}"
                raise OutputError(msg) from None
        previous = _read_holder(fh)
        if previous is not None and on_stale is not None:
            state = "no longer running" if not _is_alive(previous) else "lock released"
            on_stale(f"{out_dir}: taking over the lock left by {previous.describe()} ({state})")
        holder = LockHolder(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
            command=command if command is not None else " ".join(sys.argv),
        )
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(dataclass_dict(holder)))
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as err:
            msg = f"{path}: cannot write the lock file ({_reason(err)})"
            raise OutputError(msg) from None
        try:
            yield holder
        finally:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.flush()
    finally:
        fh.close()


def read_lock_holder(out_dir: Path) -> LockHolder | None:
    """Who the lock file of `out_dir` names (None when it is empty or missing)."""
    try:
        with open(Path(out_dir) / LOCK_NAME, encoding="utf-8") as fh:
            return _read_holder(fh)
    except OSError:
        return None


def dataclass_dict(obj: object) -> dict[str, object]:
    """The fields of a dataclass instance as a dict (not recursive)."""
    return _fields(obj)


def _read_holder(fh: IO[str]) -> LockHolder | None:
    fh.seek(0)
    try:
        data = json.loads(fh.read() or "null")
        return None if data is None else LockHolder(**data)
    except (ValueError, TypeError):
        return None


def _is_alive(holder: LockHolder) -> bool:
    """True unless the holder's pid is known not to run (on this host)."""
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reason(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on the disk"
    if err.errno == errno.EROFS:
        return "read-only file system"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return err.strerror or str(err)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[IO[bytes]]:
    """Write `path` through a unique temporary file in its folder and an atomic rename.

    Raises
    ------
    OutputError
        If the folder cannot be written (read-only, full); no partial file is left.
    """
    with _atomic_path(path) as tmp, open(tmp, "wb") as fh:
        yield fh


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A unique temporary name next to `path`, renamed onto it when the block succeeds.

    Raises
    ------
    OutputError
        For an OSError while writing (the temporary file is removed).
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        if isinstance(err, OutputError):
            raise
        msg = f"{path}: cannot write ({_reason(err)}); free some space or give --out another folder"
        raise OutputError(msg) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_csv(path: Path, rows: Sequence[SeriesRow]) -> None:
    """Write summary.csv: one row per frame in time order, the columns of :data:`COLUMNS`."""
    with _atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for row in chronological(rows):
            writer.writerow(_csv_value(v) for v in row.as_record().values())


def save_figure(fig: Figure, path: Path) -> None:
    """Save a matplotlib figure as PNG (atomically)."""
    with _atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def write_nexus(
    path: Path,
    rows: Sequence[SeriesRow],
    results: Mapping[Kind, Sequence[FrameResult]],
    plans: Mapping[Kind, ReductionPlan],
    config: Config,
    *,
    checksums: Mapping[str, str],
    now: datetime | None = None,
) -> None:
    """Write the run's NeXus HDF5 file (layout and writer in :mod:`pipeline.results_file`).

    Parameters
    ----------
    path : Path
        Output file (overwritten).
    rows : sequence of SeriesRow
        The time series, both detectors.
    results : mapping of kind to sequence of FrameResult
        Each detector's frame results in acquisition order (for the stacked cuts and fits).
    plans : mapping of kind to ReductionPlan
        Each detector's plan (q grid, band, geometry, resolution).
    config : Config
        The run's settings, written in full.
    checksums : mapping of str to str
        SHA-256 of each input file.
    now : datetime or None
        Time stamp of the reduction (tests pin it).
    """
    from pipeline.results_file import entries_from_batch, write_results

    # built in memory and written as plain bytes: HDF5 that meets a full disk while it
    # writes crashes the process (a segfault) instead of raising
    image = io.BytesIO()
    write_results(image, entries_from_batch(rows, results, checksums), plans, config, now=now)
    with _atomic_output(path) as out:
        out.write(image.getbuffer())


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def package_version() -> str:
    """Version of insitu-gixs ("0+unknown" when it is not installed)."""
    try:
        return metadata.version("insitu-gixs")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _fields(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}  # type: ignore[attr-defined]


def _jsonable(obj: object) -> object:
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(v) for k, v in _fields(obj).items()}
    if isinstance(obj, tuple | list | np.ndarray):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value
