"""Calibration files: pyFAI PONI geometries and instrument-resolution JSON files.

The only module of :mod:`calibration` that opens files. Every error names the file.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from pyFAI.detectors import NexusDetector
from pyFAI.io.ponifile import PoniFile

from calibration.geometry import DetectorGeometry
from calibration.resolution import PEAK_SHAPES, InstrumentResolution
from detectors.errors import GeometryError
from detectors.pilatus import canonical_detector_name

#: Version of the resolution JSON schema written by :func:`save_resolution`.
RESOLUTION_SCHEMA_VERSION = 1

_RESOLUTION_KIND = "insitu-gixs instrument resolution"
_RESOLUTION_KEYS = {
    "schema_version",
    "kind",
    "calibrant",
    "detector",
    "wavelength_m",
    "peak_shape",
    "lines",
    "skipped_lines",
    "model",
}
_LINE_KEYS = {"q_per_nm", "fwhm_per_nm", "fwhm_err_per_nm", "lorentz_fraction"}
_MODEL_KEYS = {"name", "formula", "fwhm0_per_nm", "relative_fwhm", "q_range_per_nm"}
_MODEL_FORMULA = "fwhm_per_nm = sqrt(fwhm0_per_nm**2 + (relative_fwhm * q_per_nm)**2)"


def load_poni(path: str | Path, *, detector: str | None = None) -> DetectorGeometry:
    """Read a pyFAI PONI file (versions 1 to 3) into a :class:`DetectorGeometry`.

    The file is parsed by pyFAI's ``PoniFile`` and pyFAI's detector is kept as pyFAI
    builds it from the file: a named model with its ``Detector_config`` (binning,
    orientation, pixel sizes: a Rayonix MX225 binned 3 x 3 gives 2048 x 2048 frames of
    110 um pixels), a generic ``Detector: Detector`` with ``pixel1``, ``pixel2`` and
    ``max_shape`` (as pyFAI-calib2 and Dioptas write it), or a version-1 file with
    ``PixelSize1/2`` only. A generic detector without ``max_shape`` has no frame shape
    yet: :meth:`DetectorGeometry.with_frame_shape` gives it the frames' shape. A
    relative spline file is looked for next to the PONI file. The detector orientation
    is pyFAI's (``Detector_config`` ``"orientation"``; files without one get pyFAI's
    default, 3).

    Dioptas writes PONI files for images flipped vertically relative to pyFAI's view of
    the same detector, so with a Dioptas PONI the direct beam and the specular spot land
    on the wrong rows. Build the grazing-incidence geometry with
    ``GIGeometry.create(..., sample_orientation="auto")`` and run
    :func:`calibration.incidence.check_orientation` on a frame with the direct beam and
    the specular spot on the detector: it fails when the frame and the geometry disagree.

    Parameters
    ----------
    path : str or Path
        PONI file.
    detector : str or None
        pyFAI detector name that overrides the file's detector (any case or spelling
        ``canonical_detector_name`` accepts). It is applied before any check, so the file
        may then lack a Detector line or pixel sizes; the file's orientation is kept, and
        its detector configuration too when it names the same model.

    Returns
    -------
    DetectorGeometry
        Distances in m, angles in rad, as in the file.

    Raises
    ------
    GeometryError
        If the file is missing or unreadable, lacks a key (Distance, Poni1, Poni2, Rot1-3,
        Wavelength; a Detector line in version 2 or pixel sizes in version 1, unless
        `detector` is given), or holds a value pyFAI cannot use. The one-line message
        names the file and what to add.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: no such PONI file (expected a pyFAI .poni file)"
        raise GeometryError(msg)
    override = None if detector is None else canonical_detector_name(detector)
    try:
        poni = _read_poni_any_spelling(path, override)
    except GeometryError as err:  # a Detector line that names no detector pyFAI knows
        msg = f"{path}: {err}; or name the detector with --detector / detector ="
        raise GeometryError(msg) from None
    except KeyError as err:
        key = _poni_key(str(err.args[0]))
        msg = f"{path}: PONI file lacks the key {key}"
        if key == "Detector":
            msg += f" ({_ADD_DETECTOR})"
        raise GeometryError(msg) from err
    except (OSError, UnicodeDecodeError, ValueError, RuntimeError, TypeError) as err:
        detail = (str(err).splitlines() or [""])[0][:160]  # pyFAI may list every detector
        msg = f"{path}: cannot read the PONI file ({type(err).__name__}: {detail})"
        if override is None:
            msg += "; or name the detector with --detector / detector ="
        raise GeometryError(msg) from err
    pyfai_detector = poni.detector
    if pyfai_detector is None or type(pyfai_detector) is NexusDetector:
        msg = f"{path}: PONI file lacks the key Detector ({_ADD_DETECTOR})"
        raise GeometryError(msg)
    if not (pyfai_detector.pixel1 and pyfai_detector.pixel2):
        msg = (
            f"{path}: PONI file gives no pixel size (no Detector line and no "
            f"PixelSize1/PixelSize2): {_ADD_DETECTOR}"
        )
        raise GeometryError(msg)
    values = {
        "Distance": poni.dist,
        "Poni1": poni.poni1,
        "Poni2": poni.poni2,
        "Rot1": poni.rot1,
        "Rot2": poni.rot2,
        "Rot3": poni.rot3,
        "Wavelength": poni.wavelength,
    }
    missing = [key for key, value in values.items() if value is None]
    if missing:
        msg = f"{path}: PONI file lacks the key{'s' if len(missing) > 1 else ''} " + ", ".join(
            missing
        )
        raise GeometryError(msg)
    try:
        return DetectorGeometry.from_pyfai(
            pyfai_detector,
            distance_m=float(poni.dist),
            poni1_m=float(poni.poni1),
            poni2_m=float(poni.poni2),
            wavelength_m=float(poni.wavelength),
            rot1_rad=float(poni.rot1),
            rot2_rad=float(poni.rot2),
            rot3_rad=float(poni.rot3),
        )
    except GeometryError as err:
        msg = f"{path}: {err}"
        raise GeometryError(msg) from err


_ADD_DETECTOR = (
    "add a Detector line with a pyFAI detector name such as Pilatus300kw, or "
    'Detector: Detector with Detector_config {"pixel1": ..., "pixel2": ..., "max_shape": '
    "[rows, cols]} (pixel sizes in m), or name the detector with --detector / detector ="
)


def _read_poni_any_spelling(path: Path, detector: str | None) -> PoniFile:
    """:func:`_read_poni`, with the file's detector name taken in any spelling.

    pyFAI knows "Pilatus300kw" but not "pilatus 300k-w", and logs its whole list of
    detectors (some 5 kB) before it raises: its log is held back, and a name it does not
    know is looked up as :func:`canonical_detector_name` does (which raises
    GeometryError with the close matches when that fails too).
    """
    logger = logging.getLogger("pyFAI.detectors._common")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        try:
            return _read_poni(path, detector)
        except RuntimeError:
            named = _poni_entries(path.read_text(encoding="utf-8")).get("detector")
            if detector is not None or not named:
                raise
            return _read_poni(path, canonical_detector_name(named))
    finally:
        logger.setLevel(level)


def _poni_entries(text: str) -> dict[str, Any]:
    """The "key: value" lines of a PONI file, keys lower-case, as pyFAI splits them."""
    data: dict[str, Any] = {}
    for line in text.splitlines():
        if ":" not in line or line.startswith("#"):
            continue
        key, value = line.split(":", 1)
        data[key.strip().lower()] = value.strip()
    return data


def _read_poni(path: Path, detector: str | None) -> PoniFile:
    """Parse a PONI file with pyFAI, with the model `detector` in place of the file's.

    Without an override and without a relative spline file, pyFAI reads the file itself.
    Otherwise the lines are split into keys as pyFAI's ``PoniFile.read_from_file`` does
    and pyFAI reads the dictionary: with `detector`, the file's orientation is kept and
    its other detector settings (pixel sizes, binning, spline) only when it names the
    same model; a relative spline file found next to the PONI file is given by its path
    (pyFAI would look for it in the working directory).
    """
    data = _poni_entries(path.read_text(encoding="utf-8"))
    config: dict[str, Any] = {}
    if "detector_config" in data:
        try:
            config = json.loads(data["detector_config"])
        except json.JSONDecodeError as err:
            msg = f"Detector_config is not JSON ({err})"
            raise ValueError(msg) from err
    spline_moved = _spline_beside(path, data, config)
    if detector is None:
        if not spline_moved:
            return PoniFile(str(path))
        if "detector_config" in data:
            data["detector_config"] = config
        return PoniFile(data)
    if _named_model(data.get("detector")) != detector:
        config = {k: v for k, v in config.items() if k == "orientation"}
        for key in ("pixelsize1", "pixelsize2", "splinefile"):
            data.pop(key, None)
    data["detector"] = detector
    data["detector_config"] = config
    if float(data.get("poni_version", 1)) < 2:
        if "splinefile" in data and data["splinefile"].lower() != "none":
            config["splineFile"] = data["splinefile"]
        data["poni_version"] = "2.1" if "orientation" in config else "2"
    return PoniFile(data)


def _spline_beside(path: Path, data: dict[str, Any], config: dict[str, Any]) -> bool:
    """Give a relative spline file found next to the PONI file by its path (in place)."""
    moved = False
    for table, key in ((data, "splinefile"), (config, "splineFile")):
        name = table.get(key)
        if not isinstance(name, str) or name.lower() in ("", "none"):
            continue
        spline = Path(name)
        if not spline.is_absolute() and (path.parent / spline).is_file():
            table[key] = str((path.parent / spline).resolve())
            moved = True
    return moved


def _named_model(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return canonical_detector_name(name)
    except GeometryError:
        return None


def save_poni(path: str | Path, geometry: DetectorGeometry) -> None:
    """Write `geometry` as a pyFAI PONI file (version 2.1) that :func:`load_poni` reads back.

    Parameters
    ----------
    path : str or Path
        PONI file to write (overwritten).
    geometry : DetectorGeometry
        The geometry to write.

    Raises
    ------
    GeometryError
        If the file cannot be written.
    """
    path = Path(path)
    poni = PoniFile(geometry.pyfai_config())
    try:
        with path.open("w", encoding="utf-8") as stream:
            poni.write(stream)
    except OSError as err:
        msg = f"{path}: cannot write the PONI file ({err})"
        raise GeometryError(msg) from err


def save_resolution(path: str | Path, resolution: InstrumentResolution) -> None:
    """Write an instrument resolution as a small JSON file (schema version 1).

    Parameters
    ----------
    path : str or Path
        JSON file to write (overwritten).
    resolution : InstrumentResolution
        Result of :func:`calibration.resolution.measure_resolution`.

    Raises
    ------
    GeometryError
        If the file cannot be written.
    """
    path = Path(path)
    document = {
        "schema_version": RESOLUTION_SCHEMA_VERSION,
        "kind": _RESOLUTION_KIND,
        "calibrant": resolution.calibrant,
        "detector": resolution.detector,
        "wavelength_m": resolution.wavelength_m,
        "peak_shape": resolution.shape,
        "lines": [
            {
                "q_per_nm": q,
                "fwhm_per_nm": fwhm,
                "fwhm_err_per_nm": err,
                "lorentz_fraction": fraction,
            }
            for q, fwhm, err, fraction in zip(
                resolution.line_q_per_nm,
                resolution.line_fwhm_per_nm,
                resolution.line_fwhm_err_per_nm,
                resolution.line_lorentz_fraction,
                strict=True,
            )
        ],
        "skipped_lines": list(resolution.skipped_lines),
        "model": {
            "name": resolution.model,
            "formula": _MODEL_FORMULA,
            "fwhm0_per_nm": resolution.fwhm0_per_nm,
            "relative_fwhm": resolution.relative_fwhm,
            "q_range_per_nm": list(resolution.q_range_per_nm),
        },
    }
    try:
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        msg = f"{path}: cannot write the resolution file ({err})"
        raise GeometryError(msg) from err


def load_resolution(path: str | Path) -> InstrumentResolution:
    """Read a resolution JSON file written by :func:`save_resolution`.

    Parameters
    ----------
    path : str or Path
        JSON file.

    Returns
    -------
    InstrumentResolution

    Raises
    ------
    GeometryError
        If the file is missing, not JSON, of another schema version, or has a missing,
        unknown or invalid key; the message names the file and the key.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        msg = f"{path}: resolution file not found (make one with `gixs calibrate resolution`)"
        raise GeometryError(msg) from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = f"{path}: cannot read the resolution file as JSON ({err})"
        raise GeometryError(msg) from err
    _check_keys(path, document, _RESOLUTION_KEYS, "")
    version = document["schema_version"]
    if version != RESOLUTION_SCHEMA_VERSION:
        msg = (
            f"{path}: schema_version {version!r} is not supported (expected "
            f"{RESOLUTION_SCHEMA_VERSION}); write it again with this version of insitu-gixs"
        )
        raise GeometryError(msg)
    if document["kind"] != _RESOLUTION_KIND:
        msg = f"{path}: kind is {document['kind']!r}, expected {_RESOLUTION_KIND!r}"
        raise GeometryError(msg)
    if document["peak_shape"] not in PEAK_SHAPES:
        msg = f"{path}: peak_shape must be one of {PEAK_SHAPES}, got {document['peak_shape']!r}"
        raise GeometryError(msg)
    lines = document["lines"]
    if not isinstance(lines, list) or not lines:
        msg = f"{path}: lines must be a non-empty list of fitted calibrant lines"
        raise GeometryError(msg)
    for index, line in enumerate(lines):
        _check_keys(path, line, _LINE_KEYS, f"lines[{index}].")
    model = document["model"]
    _check_keys(path, model, _MODEL_KEYS, "model.")
    try:
        return InstrumentResolution(
            calibrant=str(document["calibrant"]),
            shape=document["peak_shape"],
            wavelength_m=_number(path, document["wavelength_m"], "wavelength_m"),
            line_q_per_nm=tuple(_number(path, ln["q_per_nm"], "q_per_nm") for ln in lines),
            line_fwhm_per_nm=tuple(_number(path, ln["fwhm_per_nm"], "fwhm_per_nm") for ln in lines),
            line_fwhm_err_per_nm=tuple(
                _number(path, ln["fwhm_err_per_nm"], "fwhm_err_per_nm") for ln in lines
            ),
            line_lorentz_fraction=tuple(
                _number(path, ln["lorentz_fraction"], "lorentz_fraction") for ln in lines
            ),
            fwhm0_per_nm=_number(path, model["fwhm0_per_nm"], "model.fwhm0_per_nm"),
            relative_fwhm=_number(path, model["relative_fwhm"], "model.relative_fwhm"),
            model=model["name"],
            skipped_lines=tuple(str(s) for s in document["skipped_lines"]),
            detector=str(document["detector"]),
        )
    except GeometryError as err:
        msg = f"{path}: {err}"
        raise GeometryError(msg) from err


def _poni_key(pyfai_key: str) -> str:
    """The PONI file spelling of a key pyFAI reads in lower case."""
    return {"detector": "Detector", "detector_config": "Detector_config"}.get(pyfai_key, pyfai_key)


def _check_keys(path: Path, table: Any, expected: set[str], prefix: str) -> None:
    if not isinstance(table, dict):
        msg = f"{path}: {prefix or 'the file'} must be a JSON object, got {type(table).__name__}"
        raise GeometryError(msg)
    missing = sorted(expected - table.keys())
    unknown = sorted(table.keys() - expected)
    if missing:
        msg = f"{path}: resolution file lacks the key {prefix}{missing[0]}"
        raise GeometryError(msg)
    if unknown:
        msg = (
            f"{path}: unknown key {prefix}{unknown[0]} in the resolution file; "
            f"expected only {sorted(expected)}"
        )
        raise GeometryError(msg)


def _number(path: Path, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{path}: {key} must be a finite number, got {value!r}"
        raise GeometryError(msg)
    return float(value)
