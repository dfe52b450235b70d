"""Files in and out of the pipeline: TOML settings in; checkpoints, NeXus, CSV and PNG out.

The only module of :mod:`pipeline` that opens files. Output layout (NeXus, so that silx
view and h5web plot it with no settings)::

    /@default="entry"   /entry@default="first_rod"
    /entry/first_rod     NXdata  q1 (+q1_errors) against time; spacing, symmetry, fit_ok,
                                 rod_positions (n, 4)
    /entry/peak200       NXdata  fwhm (+fwhm_errors) against time; fwhm_corr, breadth,
                                 breadth_corr (+_errors), fwhm_peak_fit, center, domain
                                 (@scherrer_method, @scherrer_k)
    /entry/gisaxs_cuts   NXdata  intensity (+intensity_errors) [n_frames, n_q] on time x q_par
    /entry/giwaxs_cuts   NXdata  the same for GIWAXS
    /entry/summary       NXcollection  one dataset per summary.csv column
    /entry/reduction     NXprocess  program, version, date, config (NXnote, TOML), inputs
                                    (NXnote: file names + sha256), package versions, settings
                                    (k_factor, scherrer_method, scherrer_size_spread, ...)
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import pickle
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from glob import glob
from importlib import metadata
from pathlib import Path

import h5py
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
    """Write the run's NeXus HDF5 file (layout in this module's docstring).

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
    now = now or datetime.now(UTC)
    times = {kind: [r.time_s for r in rows if r.detector == kind] for kind in results}
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as fh:
        fh.attrs.update(
            {"default": "entry", "creator": "insitu-gixs", "file_time": now.isoformat()}
        )
        entry = _group(fh, "entry", "NXentry")
        entry["program_name"] = "insitu-gixs"
        entry["start_time"] = now.isoformat()
        if "gisaxs" in results:
            _write_rods(entry, results["gisaxs"], times["gisaxs"])
        if "giwaxs" in results:
            _write_peaks(entry, results["giwaxs"], times["giwaxs"])
        entry.attrs["default"] = "first_rod" if "gisaxs" in results else "peak200"
        for kind, kind_results in results.items():
            _write_cuts(entry, f"{kind}_cuts", kind_results, times[kind], plans[kind])
        summary = _group(entry, "summary", "NXcollection")
        records = [row.as_record() for row in chronological(rows)]
        for name in COLUMNS:
            values = [record[name] for record in records]
            if name in ("detector", "file", "symmetry", "scherrer_method", "flags"):
                summary[name] = np.array([str(v) for v in values], dtype=h5py.string_dtype())
            else:
                summary[name] = np.array([math.nan if v is None else v for v in values], float)
        _write_process(entry, config, plans, checksums, now)
    os.replace(tmp, path)


def _write_rods(entry: h5py.Group, results: Sequence[FrameResult], times: list[float]) -> None:
    group = _nxdata(entry, "first_rod", signal="q1", axes=["time"])
    group.attrs["auxiliary_signals"] = ["spacing"]
    rods = [r.rod for r in results]
    nan = math.nan
    _field(group, "time", times, "s")
    _field(group, "q1", [r.q1_per_nm if r else nan for r in rods], "1/nm")
    _field(group, "q1_errors", [r.q1_err_per_nm if r else nan for r in rods], "1/nm")
    _field(group, "spacing", [r.spacing_nm if r else nan for r in rods], "nm")
    _field(group, "spacing_hex", [r.spacing_hex_nm if r else nan for r in rods], "nm")
    _field(group, "spacing_square", [r.spacing_square_nm if r else nan for r in rods], "nm")
    _field(group, "gamma", [r.gamma_deg if r else nan for r in rods], "deg")
    _field(group, "reduced_chi2", [r.redchi if r else nan for r in rods], "")
    positions = np.full((len(rods), 4), np.nan)
    for i, rod in enumerate(rods):
        if rod is not None:
            found = np.asarray(rod.rod_positions_per_nm, dtype=float)[:4]
            positions[i, : found.size] = found
    group.create_dataset("rod_positions", data=positions).attrs["units"] = "1/nm"
    group["symmetry"] = np.array([r.symmetry if r else "" for r in rods], dtype=h5py.string_dtype())
    group["fit_ok"] = np.array([bool(r and r.ok) for r in rods])


def _write_peaks(entry: h5py.Group, results: Sequence[FrameResult], times: list[float]) -> None:
    group = _nxdata(entry, "peak200", signal="fwhm", axes=["time"])
    group.attrs["auxiliary_signals"] = ["fwhm_corr"]
    peaks = [r.peak for r in results]
    nan = math.nan
    _field(group, "time", times, "s")
    _field(group, "fwhm", [r.fwhm_per_nm for r in results], "1/nm")
    _field(group, "fwhm_errors", [r.fwhm_err_per_nm for r in results], "1/nm")
    _field(group, "fwhm_peak_fit", [p.fwhm_per_nm if p else nan for p in peaks], "1/nm")
    _field(group, "fwhm_peak_fit_errors", [p.fwhm_err_per_nm if p else nan for p in peaks], "1/nm")
    _field(group, "fwhm_corr", [r.fwhm_corr_per_nm for r in results], "1/nm")
    _field(group, "breadth", [r.breadth_per_nm for r in results], "1/nm")
    _field(group, "breadth_errors", [r.breadth_err_per_nm for r in results], "1/nm")
    _field(group, "breadth_corr", [r.breadth_corr_per_nm for r in results], "1/nm")
    _field(group, "breadth_corr_errors", [r.breadth_corr_err_per_nm for r in results], "1/nm")
    _field(group, "center", [p.center_per_nm if p else nan for p in peaks], "1/nm")
    _field(group, "center_errors", [p.center_err_per_nm if p else nan for p in peaks], "1/nm")
    _field(group, "instrument_fwhm", [r.instrument_fwhm_per_nm for r in results], "1/nm")
    _field(group, "domain", [r.domain_nm for r in results], "nm")
    _field(group, "domain_errors", [r.domain_err_nm for r in results], "nm")
    method = next((r.scherrer_method for r in results if r.scherrer_method), "")
    group["domain"].attrs["scherrer_method"] = method
    group["domain"].attrs["scherrer_k"] = next(
        (r.k_factor for r in results if math.isfinite(r.k_factor)), math.nan
    )
    _field(group, "reduced_chi2", [p.redchi if p else nan for p in peaks], "")
    group["fit_ok"] = np.array([bool(p and p.ok) for p in peaks])


def _write_cuts(
    entry: h5py.Group,
    name: str,
    results: Sequence[FrameResult],
    times: list[float],
    plan: ReductionPlan,
) -> None:
    group = _nxdata(entry, name, signal="intensity", axes=["time", "q_par"])
    group.attrs["time_indices"] = 0
    group.attrs["q_par_indices"] = 1
    intensity = np.array([r.intensity for r in results]).reshape(len(results), -1)
    sigma = np.array([r.sigma for r in results]).reshape(len(results), -1)
    group.create_dataset("intensity", data=intensity, compression="gzip")
    group.create_dataset("intensity_errors", data=sigma, compression="gzip")
    _field(group, "time", times, "s")
    _field(group, "q_par", plan.q_par_per_nm, "1/nm")
    lo, hi = plan.cut.q_perp_band_per_nm
    group.attrs["q_perp_band"] = [lo, hi]
    group.attrs["q_perp_band_units"] = "1/nm"


def _write_process(
    entry: h5py.Group,
    config: Config,
    plans: Mapping[Kind, ReductionPlan],
    checksums: Mapping[str, str],
    now: datetime,
) -> None:
    process = _group(entry, "reduction", "NXprocess")
    process["program"] = "insitu-gixs"
    process["version"] = _package_version()
    process["date"] = now.isoformat()
    process["sequence_index"] = 1
    note = _group(process, "config", "NXnote")
    note["type"] = "application/toml"
    note["file_name"] = str(config.source or "")
    note["data"] = config.text
    inputs = _group(process, "inputs", "NXnote")
    names = sorted(checksums)
    inputs["file_name"] = np.array(names, dtype=h5py.string_dtype())
    inputs["checksum"] = np.array([checksums[n] for n in names], dtype=h5py.string_dtype())
    inputs["algorithm"] = "sha256"
    versions = _group(process, "versions", "NXnote")
    versions["type"] = "application/json"
    versions["data"] = json.dumps(package_versions())
    settings = _group(process, "settings", "NXparameters")
    settings["k_factor"] = config.scherrer.k
    settings["scherrer_method"] = config.scherrer.method
    settings["scherrer_size_spread"] = config.scherrer.size_spread
    for kind, plan in plans.items():
        sub = _group(settings, kind, "NXparameters")
        geo = plan.geometry
        sub["detector"] = geo.detector.detector
        sub["poni"] = json.dumps(geo.detector.pyfai_config())
        sub["incidence_angle"] = geo.incidence_angle_deg
        sub["incidence_angle"].attrs["units"] = "deg"
        sub["sample_orientation"] = geo.sample_orientation
        sub["q_perp_band"] = list(plan.cut.q_perp_band_per_nm)
        sub["q_perp_band"].attrs["units"] = "1/nm"
        sub["q_par_range"] = list(plan.cut.q_par_range_per_nm)
        sub["q_par_range"].attrs["units"] = "1/nm"
        sub["peak_shape"] = plan.peak_settings.peak_shape
        if plan.resolution is not None:
            sub["instrument_resolution"] = json.dumps(_jsonable(plan.resolution))


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


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _nxdata(parent: h5py.Group, name: str, *, signal: str, axes: list[str]) -> h5py.Group:
    group = _group(parent, name, "NXdata")
    group.attrs["signal"] = signal
    group.attrs["axes"] = axes
    return group


def _field(group: h5py.Group, name: str, values: Iterable[float], units: str) -> None:
    dataset = group.create_dataset(name, data=np.asarray(list(values), dtype=np.float64))
    if units:
        dataset.attrs["units"] = units


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
