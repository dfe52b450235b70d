"""Run settings: one TOML file becomes frozen, validated, versioned settings.

The file is read in :mod:`pipeline.io`; this module turns the parsed dictionary into
dataclasses and checks every value, naming the file, the key and the allowed values.

Schema (version 1)::

    schema_version = 1
    [gisaxs]                          # and/or [giwaxs]; at least one
    frames = ["gisaxs/*.cbf"]         # globs relative to the config file (CBF/EDF/TIFF/HDF5)
    poni = "gisaxs.poni"              # pyFAI geometry
    incidence_angle_deg = 0.3
    detector = "Pilatus300kw"         # optional: overrides the PONI file's detector
    h5_dataset = "/entry_0000/measurement/data"   # optional: HDF5 frame dataset(s): a path,
                                      # a list, or a pattern ("/*.1/measurement/pilatus")
    mask = "mask.edf"                 # optional: user mask, nonzero = masked
    mask_invert = false               # true for a mask written with 1 = good pixel
    tilt_angle_deg = 0.0
    sample_orientation = "auto"       # or a pyFAI code 1-4
    q_perp_band_per_nm = "yoneda"     # "yoneda" (GISAXS), "lowest" (GIWAXS) or [lo, hi]
    critical_angle_deg = 0.13         # for the Yoneda band
    q_par_range_per_nm = [0.3, 2.4]
    n_bins = "auto"                  # or a number; auto: bins about 2 pixel columns wide
    peak_shape = "gaussian"           # "gaussian", "lorentzian" or "pseudo_voigt"
    max_nfev = 60                     # evaluation limit of each fit (a fit that hits it is flagged)
    exposure_period_s = 10.0          # used only for frames without a time stamp
    q1_window_per_nm = [0.4, 1.4]     # GISAXS only: where the first rod is searched
    peak_window_per_nm = [16.5, 23.5] # GIWAXS only: the {200} fit window
    resolution = "resolution.json"    # GIWAXS only: from `gixs calibrate resolution`
    [scherrer]
    method = "cube_profile"           # or "integral_breadth", "fwhm" (see pipeline.scherrer)
    k_factor = 1.0                    # optional: default 1 (cube_profile, integral_breadth),
                                      # 0.8859 (fwhm); the study: method "fwhm", k_factor 1
    size_spread = 0.1                 # cube_profile: relative sd of the cube edge
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from calibration.geometry import incidence_angle_problem
from detectors.errors import ConfigError, GeometryError
from detectors.pilatus import canonical_detector_name

SCHEMA_VERSION = 1

Kind = Literal["gisaxs", "giwaxs"]
KINDS: tuple[Kind, ...] = ("gisaxs", "giwaxs")
PeakShape = Literal["gaussian", "lorentzian", "pseudo_voigt"]
PEAK_SHAPES: tuple[PeakShape, ...] = ("gaussian", "lorentzian", "pseudo_voigt")
BAND_POLICIES = ("yoneda", "lowest")
ScherrerMethod = Literal["cube_profile", "integral_breadth", "fwhm"]
SCHERRER_METHODS: tuple[ScherrerMethod, ...] = ("cube_profile", "integral_breadth", "fwhm")
#: Scherrer constant of each method for cubes with q along <100> (Langford & Wilson 1978):
#: 1 on the integral breadth, 0.8859 on the FWHM of the sinc^2 line.
DEFAULT_K_FACTOR: dict[ScherrerMethod, float] = {
    "cube_profile": 1.0,
    "integral_breadth": 1.0,
    "fwhm": 0.8859,
}

_COMMON_KEYS = {
    "frames",
    "poni",
    "incidence_angle_deg",
    "detector",
    "h5_dataset",
    "mask",
    "mask_invert",
    "tilt_angle_deg",
    "sample_orientation",
    "q_perp_band_per_nm",
    "critical_angle_deg",
    "q_par_range_per_nm",
    "n_bins",
    "peak_shape",
    "max_nfev",
    "exposure_period_s",
}
_KIND_KEYS: dict[Kind, set[str]] = {
    "gisaxs": _COMMON_KEYS | {"q1_window_per_nm"},
    "giwaxs": _COMMON_KEYS | {"peak_window_per_nm", "resolution"},
}
#: Defaults that differ between the detectors: (q_par range, q_perp band policy), nm^-1.
KIND_DEFAULTS: dict[Kind, dict[str, Any]] = {
    "gisaxs": {"q_par_range_per_nm": (0.3, 2.4), "q_perp_band_per_nm": "yoneda"},
    "giwaxs": {"q_par_range_per_nm": (15.5, 23.5), "q_perp_band_per_nm": "lowest"},
}
#: Allowed evaluation limits of a fit (``max_nfev``), inclusive.
MAX_NFEV_RANGE = (5, 100_000)
_TOP_KEYS = {"schema_version", "gisaxs", "giwaxs", "scherrer"}
_SCHERRER_KEYS = {"method", "k_factor", "size_spread"}


def is_nfev(value: object) -> bool:
    """Whether `value` is an evaluation limit: an integer within :data:`MAX_NFEV_RANGE`."""
    lo, hi = MAX_NFEV_RANGE
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """How to reduce the frames of one detector (one ``[gisaxs]`` or ``[giwaxs]`` table).

    Paths are absolute (resolved against the config file's folder). Band and ranges are in
    nm^-1, angles in degrees.
    """

    kind: Kind
    frames: tuple[str, ...]
    poni: Path
    incidence_angle_deg: float
    detector: str | None = None
    h5_dataset: str | tuple[str, ...] | None = None
    mask: Path | None = None
    mask_invert: bool = False
    tilt_angle_deg: float = 0.0
    sample_orientation: int | Literal["auto"] = "auto"
    q_perp_band_per_nm: tuple[float, float] | Literal["yoneda", "lowest"] = "yoneda"
    critical_angle_deg: float = 0.13
    q_par_range_per_nm: tuple[float, float] = (0.3, 2.4)
    n_bins: int | None = None
    peak_shape: PeakShape = "gaussian"
    max_nfev: int = 60
    exposure_period_s: float | None = None
    q1_window_per_nm: tuple[float, float] = (0.4, 1.4)
    peak_window_per_nm: tuple[float, float] = (16.5, 23.5)
    resolution: Path | None = None

    def __post_init__(self) -> None:
        where = f"[{self.kind}]"
        if not self.frames:
            msg = f"{where} frames: give at least one file or glob"
            raise ConfigError(msg)
        problem = incidence_angle_problem(self.incidence_angle_deg)
        if problem is not None:
            msg = f"{where} incidence_angle_deg = {self.incidence_angle_deg!r}: {problem}"
            raise ConfigError(msg)
        if self.detector is not None:
            try:
                canonical_detector_name(self.detector)
            except GeometryError as err:
                msg = f"{where} detector = {self.detector!r}: {err}"
                raise ConfigError(msg) from None
        if self.sample_orientation != "auto" and self.sample_orientation not in (1, 2, 3, 4):
            msg = (
                f"{where} sample_orientation must be 'auto' or 1, 2, 3, 4, "
                f"got {self.sample_orientation!r}"
            )
            raise ConfigError(msg)
        if isinstance(self.q_perp_band_per_nm, str):
            if self.q_perp_band_per_nm not in BAND_POLICIES:
                msg = (
                    f"{where} q_perp_band_per_nm must be 'yoneda', 'lowest' or [lo, hi], "
                    f"got {self.q_perp_band_per_nm!r}"
                )
                raise ConfigError(msg)
        else:
            _check_range(self.q_perp_band_per_nm, f"{where} q_perp_band_per_nm", lowest=-math.inf)
        _check_range(self.q_par_range_per_nm, f"{where} q_par_range_per_nm")
        _check_range(self.q1_window_per_nm, f"{where} q1_window_per_nm")
        _check_range(self.peak_window_per_nm, f"{where} peak_window_per_nm")
        if self.n_bins is not None and not 10 <= self.n_bins <= 100_000:
            msg = f"{where} n_bins must be an integer in [10, 100000], got {self.n_bins!r}"
            raise ConfigError(msg)
        if self.peak_shape not in PEAK_SHAPES:
            msg = f"{where} peak_shape must be one of {PEAK_SHAPES}, got {self.peak_shape!r}"
            raise ConfigError(msg)
        if not is_nfev(self.max_nfev):
            lo, hi = MAX_NFEV_RANGE
            msg = (
                f"{where} max_nfev must be an integer in [{lo}, {hi}] (default 60), "
                f"got {self.max_nfev!r}"
            )
            raise ConfigError(msg)
        if self.exposure_period_s is not None and not self.exposure_period_s > 0:
            msg = f"{where} exposure_period_s must be > 0 s, got {self.exposure_period_s!r}"
            raise ConfigError(msg)


#: Accepted Scherrer constants: Langford & Wilson, J. Appl. Cryst. 11, 102 (1978) give
#: 0.62-2.08 for the shapes, widths and directions in use; a value beyond is a typo.
K_FACTOR_RANGE = (0.5, 2.5)


@dataclass(frozen=True, slots=True)
class ScherrerSettings:
    """Scherrer analysis settings: D = 2 pi K / beta (see :mod:`pipeline.scherrer`).

    Attributes
    ----------
    method : {"cube_profile", "integral_breadth", "fwhm"}
        Which width beta and how it is measured; "cube_profile" (default) fits the exact
        line of cube-shaped domains.
    k_factor : float or None
        Scherrer constant K; None takes the method's K for cubes, q along <100>
        (:data:`DEFAULT_K_FACTOR`). The study's convention: method "fwhm", k_factor 1.0.
    size_spread : float
        "cube_profile" only: relative standard deviation of the cube edge (number
        distribution, Gaussian), in [0, 0.3]; 0.1 is the study's 5.7 +- 0.6 nm.
    """

    method: ScherrerMethod = "cube_profile"
    k_factor: float | None = None
    size_spread: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in SCHERRER_METHODS:
            msg = f"[scherrer] method must be one of {SCHERRER_METHODS}, got {self.method!r}"
            raise ConfigError(msg)
        lo, hi = K_FACTOR_RANGE
        if self.k_factor is not None and not (
            math.isfinite(self.k_factor) and lo <= self.k_factor <= hi
        ):
            msg = (
                f"[scherrer] k_factor must be in [{lo:g}, {hi:g}] (Scherrer constants lie "
                f"between 0.62 and 2.08; 1 for an integral breadth, 0.8859 for a cube's "
                f"FWHM), got {self.k_factor!r}"
            )
            raise ConfigError(msg)
        if not (math.isfinite(self.size_spread) and 0.0 <= self.size_spread <= 0.3):
            msg = f"[scherrer] size_spread must be in [0, 0.3], got {self.size_spread!r}"
            raise ConfigError(msg)

    @property
    def k(self) -> float:
        """The Scherrer constant used: `k_factor`, or the method's default."""
        return DEFAULT_K_FACTOR[self.method] if self.k_factor is None else self.k_factor


@dataclass(frozen=True, slots=True)
class Config:
    """A whole run's settings, with the TOML text it came from (written into the output)."""

    detectors: tuple[DetectorSettings, ...]
    scherrer: ScherrerSettings = field(default_factory=ScherrerSettings)
    source: Path | None = None
    text: str = ""
    schema_version: int = SCHEMA_VERSION

    def settings(self, kind: Kind) -> DetectorSettings | None:
        """The settings of detector `kind`, or None when the run has no such table."""
        return next((d for d in self.detectors if d.kind == kind), None)


def config_from_dict(data: Mapping[str, Any], *, base_dir: Path, source: str) -> Config:
    """Build validated settings from a parsed TOML document.

    Parameters
    ----------
    data : mapping
        The parsed TOML document.
    base_dir : Path
        Folder against which relative paths and globs are resolved.
    source : str
        Name of the file, used in error messages.

    Returns
    -------
    Config
        The validated settings (without `text`; :func:`pipeline.io.load_config` adds it).

    Raises
    ------
    ConfigError
        For an unknown key, a wrong type or an out-of-range value, naming `source`, the
        key and what is allowed.
    """
    try:
        data = _migrate(dict(data), source)
        _check_keys(data, _TOP_KEYS, source, "top level")
        detectors = tuple(
            _detector_settings(kind, data[kind], base_dir, source) for kind in KINDS if kind in data
        )
        if not detectors:
            msg = f"{source}: no [gisaxs] or [giwaxs] table; give at least one"
            raise ConfigError(msg)
        scherrer_table = _table(data.get("scherrer", {}), "scherrer", source)
        _check_keys(scherrer_table, _SCHERRER_KEYS, source, "[scherrer]")
        scherrer = ScherrerSettings(
            method=scherrer_table.get("method", "cube_profile"),
            k_factor=_number(scherrer_table, "k_factor", None, "scherrer"),
            size_spread=_number(scherrer_table, "size_spread", 0.1, "scherrer"),
        )
    except ConfigError as err:
        text = str(err)
        raise ConfigError(text if text.startswith(source) else f"{source}: {text}") from None
    return Config(detectors=detectors, scherrer=scherrer, source=None)


def _migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    version = data.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        msg = (
            f"{source}: schema_version {version!r} is not known to this version "
            f"(it reads schema_version = {SCHEMA_VERSION})"
        )
        raise ConfigError(msg)
    return data


def _detector_settings(kind: Kind, raw: Any, base_dir: Path, source: str) -> DetectorSettings:
    table = _table(raw, kind, source)
    _check_keys(table, _KIND_KEYS[kind], source, f"[{kind}]")
    for required in ("frames", "poni", "incidence_angle_deg"):
        if required not in table:
            msg = f"[{kind}] {required} is missing"
            raise ConfigError(msg)
    frames = table["frames"]
    if isinstance(frames, str):
        frames = [frames]
    if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
        msg = f"[{kind}] frames must be a file name or glob, or a list of them, got {frames!r}"
        raise ConfigError(msg)
    band: Any = table.get("q_perp_band_per_nm", KIND_DEFAULTS[kind]["q_perp_band_per_nm"])
    if not isinstance(band, str):
        band = _pair(band, "q_perp_band_per_nm", kind)
    orientation = table.get("sample_orientation", "auto")
    defaults = DetectorSettings.__dataclass_fields__
    return DetectorSettings(
        kind=kind,
        frames=tuple(str(_resolve(f, base_dir)) for f in frames),
        poni=_resolve(_string(table, "poni", kind), base_dir),
        incidence_angle_deg=_number(table, "incidence_angle_deg", None, kind),
        detector=_optional_string(table, "detector", kind),
        h5_dataset=_h5_dataset(table, kind),
        mask=_optional_path(table, "mask", base_dir, kind),
        mask_invert=_boolean(table, "mask_invert", kind),
        tilt_angle_deg=_number(table, "tilt_angle_deg", 0.0, kind),
        sample_orientation=orientation,
        q_perp_band_per_nm=band,
        critical_angle_deg=_number(table, "critical_angle_deg", 0.13, kind),
        q_par_range_per_nm=_pair(
            table.get("q_par_range_per_nm", KIND_DEFAULTS[kind]["q_par_range_per_nm"]),
            "q_par_range_per_nm",
            kind,
        ),
        n_bins=_integer(table, "n_bins", None, kind),
        peak_shape=table.get("peak_shape", "gaussian"),
        max_nfev=table.get("max_nfev", 60),
        exposure_period_s=_number(table, "exposure_period_s", None, kind),
        q1_window_per_nm=_pair(
            table.get("q1_window_per_nm", defaults["q1_window_per_nm"].default),
            "q1_window_per_nm",
            kind,
        ),
        peak_window_per_nm=_pair(
            table.get("peak_window_per_nm", defaults["peak_window_per_nm"].default),
            "peak_window_per_nm",
            kind,
        ),
        resolution=_optional_path(table, "resolution", base_dir, kind),
    )


def _table(raw: Any, name: str, source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        msg = f"{source}: [{name}] must be a table, got {type(raw).__name__}"
        raise ConfigError(msg)
    return raw


def _check_keys(table: Mapping[str, Any], allowed: set[str], source: str, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        msg = (
            f"{source}: unknown key {unknown[0]!r} in {where}; "
            f"allowed keys: {', '.join(sorted(allowed))}"
        )
        raise ConfigError(msg)


def _resolve(name: str, base_dir: Path) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base_dir / path


def _string(table: Mapping[str, Any], key: str, kind: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value:
        msg = f"[{kind}] {key} must be a non-empty string, got {value!r}"
        raise ConfigError(msg)
    return value


def _optional_string(table: Mapping[str, Any], key: str, kind: str) -> str | None:
    value = table.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        msg = f"[{kind}] {key} must be a string, got {value!r}"
        raise ConfigError(msg)
    return value


def _h5_dataset(table: Mapping[str, Any], kind: str) -> str | tuple[str, ...] | None:
    """``h5_dataset``: a dataset path or pattern, or a list of paths (a tuple)."""
    value = table.get("h5_dataset")
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v for v in value):
            msg = f"[{kind}] h5_dataset must be a path, a pattern or a list of paths, got {value!r}"
            raise ConfigError(msg)
        return tuple(value)
    return _optional_string(table, "h5_dataset", kind)


def _optional_path(table: Mapping[str, Any], key: str, base_dir: Path, kind: str) -> Path | None:
    value = _optional_string(table, key, kind)
    return None if value is None else _resolve(value, base_dir)


def _number(table: Mapping[str, Any], key: str, default: float | None, kind: str = "") -> Any:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        where = f"[{kind}] " if kind else ""
        msg = f"{where}{key} must be a number, got {value!r}"
        raise ConfigError(msg)
    return float(value)


def _boolean(table: Mapping[str, Any], key: str, kind: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        msg = f"[{kind}] {key} must be true or false, got {value!r}"
        raise ConfigError(msg)
    return value


def _integer(table: Mapping[str, Any], key: str, default: int | None, kind: str) -> int | None:
    value = table.get(key, default)
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"[{kind}] {key} must be an integer or 'auto', got {value!r}"
        raise ConfigError(msg)
    return value


def _pair(value: Any, key: str, kind: str) -> tuple[float, float]:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if not ok:
        msg = f"[{kind}] {key} must be a pair of numbers [lo, hi], got {value!r}"
        raise ConfigError(msg)
    return float(value[0]), float(value[1])


def _check_range(pair: tuple[float, float], where: str, *, lowest: float = 0.0) -> None:
    lo, hi = pair
    if not (math.isfinite(lo) and math.isfinite(hi) and lowest <= lo < hi):
        msg = f"{where} must be [lo, hi] with {lowest} <= lo < hi, got {list(pair)!r}"
        raise ConfigError(msg)
