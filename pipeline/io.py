"""Files in and out of the pipeline: TOML settings in; checkpoints, NeXus, CSV and PNG out.

The only module of :mod:`pipeline` that opens files, with :mod:`pipeline.results_file`
(which owns the layout of ``results.h5``; :func:`write_nexus` writes through it).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import pickle
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from glob import glob
from importlib import metadata
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from calibration.geometry import GIGeometry
from calibration.io import load_poni, load_resolution
from detectors.errors import ConfigError, FrameReadError
from detectors.io import FrameRef, list_frames, read_mask_file
from detectors.pilatus import canonical_detector_name, static_mask
from pipeline.config import Config, DetectorSettings, Kind, config_from_dict
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
    """Every frame of a detector's globs, in file-name order then frame order.

    A file whose frames cannot be listed (an unreadable HDF5 file, say) is kept as one
    frame reference, so that the batch flags it instead of stopping.

    Raises
    ------
    ConfigError
        If a glob matches no file.
    """
    refs: list[FrameRef] = []
    for pattern in settings.frames:
        paths = sorted(glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not paths or not Path(paths[0]).exists():
            msg = f"[{settings.kind}] frames: {pattern!r} matches no file"
            raise ConfigError(msg)
        for name in paths:
            try:
                refs.extend(list_frames(Path(name), shape=shape, h5_dataset=settings.h5_dataset))
            except FrameReadError:
                refs.append(FrameRef(Path(name), 0, settings.h5_dataset))
    return refs


def load_geometry(settings: DetectorSettings) -> GIGeometry:
    """The grazing-incidence geometry of a detector's settings (PONI + angles)."""
    detector = load_poni(settings.poni)
    if settings.detector is not None:
        name = canonical_detector_name(settings.detector)
        detector = replace(detector, detector=name)
    return GIGeometry.create(
        detector,
        incidence_angle_deg=settings.incidence_angle_deg,
        tilt_angle_deg=settings.tilt_angle_deg,
        sample_orientation=settings.sample_orientation,
    )


def load_static_mask(geometry: GIGeometry, mask_file: Path | None) -> NDArray[np.bool_]:
    """Module gaps of the geometry's detector, combined with a user mask file if given."""
    user = None if mask_file is None else read_mask_file(mask_file, shape=geometry.detector.shape)
    return static_mask(geometry.detector.detector, user_mask=user)


def load_plan(settings: DetectorSettings, config: Config) -> ReductionPlan:
    """Build a detector's per-frame plan from its settings, reading PONI, mask, resolution."""
    geometry = load_geometry(settings)
    resolution = None if settings.resolution is None else load_resolution(settings.resolution)
    return plan_reduction(
        settings,
        geometry=geometry,
        static_mask=load_static_mask(geometry, settings.mask),
        resolution=resolution,
        scherrer=config.scherrer,
    )


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A checkpoint: the results of a run of consecutive frames of one detector."""

    refs: tuple[FrameRef, ...]
    results: tuple[FrameResult, ...]
    checksums: Mapping[str, str]


def save_chunk(path: Path, chunk: Chunk) -> None:
    """Write a checkpoint atomically (a killed run leaves no half-written chunk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        pickle.dump((_package_version(), chunk), fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_chunk(path: Path) -> Chunk | None:
    """A checkpoint written by this version, or None when absent, stale or unreadable."""
    try:
        with open(path, "rb") as fh:
            version, chunk = pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, TypeError):
        return None
    return chunk if version == _package_version() and isinstance(chunk, Chunk) else None


def write_csv(path: Path, rows: Sequence[SeriesRow]) -> None:
    """Write summary.csv: one row per frame in time order, the columns of :data:`COLUMNS`."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for row in chronological(rows):
            writer.writerow(_csv_value(v) for v in row.as_record().values())


def save_figure(fig: Figure, path: Path) -> None:
    """Save a matplotlib figure as PNG."""
    fig.savefig(path, dpi=110)


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

    entries = entries_from_batch(rows, results, checksums)
    write_results(path, entries, plans, config, now=now)


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _package_version() -> str:
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
