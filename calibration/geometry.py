"""Grazing-incidence geometry: a pyFAI detector geometry plus the incidence angle.

The one place where degrees become radians and where pyFAI's `FiberIntegrator` is built.
pyFAI caches its per-pixel arrays by unit *name*, so an integrator built for one incidence
angle or sample orientation must never be reused for another: :meth:`GIGeometry.integrator`
always returns a fresh one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pyFAI.units
from numpy.typing import NDArray
from pyFAI.detectors import Detector, detector_factory
from pyFAI.integrator.fiber import FiberIntegrator

from detectors.errors import GeometryError

#: Critical angle of ethylene glycol at 10 keV, in degrees (SCIENCE.md).
ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG = 0.13

#: Sample orientations that pyFAI's fiber units accept (EXIF-like codes).
SAMPLE_ORIENTATIONS = (1, 2, 3, 4)

#: Smallest incidence angle taken as a grazing angle, in degrees; below it the value is
#: almost surely in radians (pyFAI's own API takes radians: 0.3 deg is 0.005236 rad).
MIN_INCIDENCE_ANGLE_DEG = 0.02

#: Largest incidence angle accepted, in degrees.
MAX_INCIDENCE_ANGLE_DEG = 10.0


def incidence_angle_problem(incidence_angle_deg: float) -> str | None:
    """Why an incidence angle is no grazing angle, or None when it is plausible.

    A value below :data:`MIN_INCIDENCE_ANGLE_DEG` is almost surely in radians, one
    above :data:`MAX_INCIDENCE_ANGLE_DEG` perhaps in mrad; the reason says so.

    Parameters
    ----------
    incidence_angle_deg : float
        The incidence angle as given, meant in degrees.

    Returns
    -------
    str or None
        One sentence naming the likely cause, or None.

    Examples
    --------
    >>> print(incidence_angle_problem(0.005236))
    0.005236 deg is no grazing angle (below 0.02 deg): 0.005236 looks like 0.3 deg given in \
radians; give the angle in degrees
    >>> incidence_angle_problem(0.3) is None
    True
    """
    value = incidence_angle_deg
    if not math.isfinite(value) or value <= 0:
        return f"{value!r} deg is no incidence angle: give a positive angle in degrees"
    if value < MIN_INCIDENCE_ANGLE_DEG:
        as_deg = math.degrees(value)
        cause = (
            f"{value:g} looks like {as_deg:.3g} deg given in radians"
            if MIN_INCIDENCE_ANGLE_DEG <= as_deg < MAX_INCIDENCE_ANGLE_DEG
            else "is it in radians?"
        )
        return (
            f"{value:g} deg is no grazing angle (below {MIN_INCIDENCE_ANGLE_DEG:g} deg): "
            f"{cause}; give the angle in degrees"
        )
    if value >= MAX_INCIDENCE_ANGLE_DEG:
        as_deg = math.degrees(value * 1e-3)
        cause = (
            f"{value:g} looks like {as_deg:.3g} deg given in mrad"
            if MIN_INCIDENCE_ANGLE_DEG <= as_deg
            else "is it in other units?"
        )
        return (
            f"{value:g} deg is no grazing angle (not below {MAX_INCIDENCE_ANGLE_DEG:g} deg): "
            f"{cause}; give the angle in degrees"
        )
    return None


@dataclass(frozen=True, slots=True)
class DetectorGeometry:
    """A pyFAI (PONI) detector geometry, in SI units as pyFAI stores them.

    The detector is pyFAI's own: its class name plus the part of its configuration that
    differs from that model's defaults (binning, pixel sizes, ``max_shape``, spline file),
    as pyFAI's ``Detector.get_config()`` writes it. So a PONI's binned Rayonix or generic
    ``Detector`` is rebuilt exactly as pyFAI loads it, not from the name alone.

    Parameters
    ----------
    detector : str
        pyFAI detector class name, case-insensitive (``"Pilatus300kw"``, ``"Eiger2_4M"``,
        ``"Detector"`` for a generic detector given by its pixel sizes).
    distance_m, poni1_m, poni2_m : float
        Sample-detector distance and point of normal incidence, in m.
    wavelength_m : float
        X-ray wavelength, in m.
    rot1_rad, rot2_rad, rot3_rad : float
        pyFAI detector rotations, in rad.
    orientation : int
        pyFAI detector orientation (1-4; 3 is pyFAI's default).
    detector_config : str
        JSON object of pyFAI detector settings beyond the model's defaults (without the
        orientation), e.g. ``'{"pixel1": 0.000109971, "pixel2": 0.000109971}'`` for a
        Rayonix MX225 binned 3 x 3; ``""``: the model as named.

    Raises
    ------
    GeometryError
        If a value is out of range or pyFAI cannot build the detector.
    """

    detector: str
    distance_m: float
    poni1_m: float
    poni2_m: float
    wavelength_m: float
    rot1_rad: float = 0.0
    rot2_rad: float = 0.0
    rot3_rad: float = 0.0
    orientation: int = 3
    detector_config: str = ""
    _shape: tuple[int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.distance_m) and self.distance_m > 0):
            msg = f"sample-detector distance must be > 0 m, got {self.distance_m!r}"
            raise GeometryError(msg)
        if not (math.isfinite(self.wavelength_m) and 0 < self.wavelength_m < 1e-8):
            msg = f"wavelength must be in (0, 10 nm), got {self.wavelength_m!r} m"
            raise GeometryError(msg)
        if self.orientation not in (1, 2, 3, 4):
            msg = f"detector orientation must be 1, 2, 3 or 4, got {self.orientation!r}"
            raise GeometryError(msg)
        det = self.pyfai_detector()  # raises GeometryError for an unknown detector
        if not (det.pixel1 and det.pixel2 and det.pixel1 > 0 and det.pixel2 > 0):
            msg = (
                f"detector {self.detector} has no pixel size: add pixel1 and pixel2 (in m) "
                "to its Detector_config, or name a detector model"
            )
            raise GeometryError(msg)
        if det.shape is not None:
            rows, cols = det.shape
            object.__setattr__(self, "_shape", (int(rows), int(cols)))

    @classmethod
    def from_pyfai(
        cls,
        detector: Detector,
        *,
        distance_m: float,
        poni1_m: float,
        poni2_m: float,
        wavelength_m: float,
        rot1_rad: float = 0.0,
        rot2_rad: float = 0.0,
        rot3_rad: float = 0.0,
    ) -> DetectorGeometry:
        """The geometry of a pyFAI detector object as it is (binning, pixels, shape, spline).

        Parameters
        ----------
        detector : pyFAI Detector
            As pyFAI built it, e.g. ``PoniFile(path).detector``.
        distance_m, poni1_m, poni2_m, wavelength_m, rot1_rad, rot2_rad, rot3_rad : float
            The PONI geometry, in m and rad.

        Raises
        ------
        GeometryError
            If pyFAI cannot rebuild the detector from its configuration, or a value is
            out of range.
        """
        name = type(detector).__name__
        config = {k: _plain(v) for k, v in detector.get_config().items()}
        orientation = int(config.pop("orientation", 3))
        extra = _smallest_config(name, orientation, config, _signature(detector))
        return cls(
            detector=name,
            distance_m=distance_m,
            poni1_m=poni1_m,
            poni2_m=poni2_m,
            wavelength_m=wavelength_m,
            rot1_rad=rot1_rad,
            rot2_rad=rot2_rad,
            rot3_rad=rot3_rad,
            orientation=orientation,
            detector_config=json.dumps(extra, sort_keys=True) if extra else "",
        )

    def pyfai_detector(self) -> Detector:
        """Build a fresh pyFAI detector: the model, its configuration and orientation.

        Raises
        ------
        GeometryError
            If pyFAI cannot build it (unknown name, bad configuration).
        """
        try:
            config = json.loads(self.detector_config) if self.detector_config else {}
        except json.JSONDecodeError as err:
            msg = f"detector_config is not a JSON object ({err})"
            raise GeometryError(msg) from err
        if not isinstance(config, dict):
            msg = f"detector_config must be a JSON object, got {self.detector_config!r}"
            raise GeometryError(msg)
        config["orientation"] = self.orientation
        try:
            return detector_factory(self.detector, config=config)
        except (RuntimeError, KeyError, ValueError, TypeError, OSError) as err:
            detail = (str(err).splitlines() or [""])[0][:160]  # pyFAI may list every detector
            msg = f"pyFAI cannot build detector {self.detector!r} from {config} ({detail})"
            raise GeometryError(msg) from err

    @property
    def has_shape(self) -> bool:
        """False for a generic detector whose frame shape is not known yet."""
        return self._shape is not None

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape (rows, cols) of the detector, as pyFAI has it (binning applied).

        Raises
        ------
        GeometryError
            If the detector has no shape (a generic detector without ``max_shape``): use
            :meth:`with_frame_shape`.
        """
        if self._shape is None:
            msg = (
                f'detector {self.detector} has no frame shape: add "max_shape": [rows, cols] '
                "to its Detector_config in the PONI file, or name the detector model"
            )
            raise GeometryError(msg)
        return self._shape

    @property
    def pixel_size_m(self) -> tuple[float, float]:
        """Pixel size (along rows: pyFAI's pixel1, along columns: pixel2), in m."""
        det = self.pyfai_detector()
        return float(det.pixel1), float(det.pixel2)

    def with_frame_shape(self, shape: tuple[int, int]) -> DetectorGeometry:
        """The same geometry with a frame shape for a detector that has none.

        A detector that has a shape is returned unchanged (its shape is checked against
        every frame when read).

        Examples
        --------
        >>> det = DetectorGeometry("Detector", 0.5, 0.01, 0.02, 1e-10,
        ...                        detector_config='{"pixel1": 1e-4, "pixel2": 1e-4}')
        >>> det.has_shape, det.with_frame_shape((100, 200)).shape
        (False, (100, 200))
        """
        if self.has_shape:
            return self
        config = json.loads(self.detector_config) if self.detector_config else {}
        config["max_shape"] = [int(shape[0]), int(shape[1])]
        return replace(self, detector_config=json.dumps(config, sort_keys=True))

    def gap_mask(self) -> NDArray[np.bool_]:
        """Pixels pyFAI masks by construction (module gaps), True = masked.

        Returns
        -------
        ndarray of bool, shape (rows, cols)
            A new array; all False for a detector without gaps.
        """
        det = self.pyfai_detector()
        shape = self.shape
        mask = det.mask
        if mask is None:
            return np.zeros(shape, dtype=bool)
        return np.asarray(mask) != 0

    @property
    def k_per_nm(self) -> float:
        """Wavenumber k = 2 pi / lambda, in nm^-1."""
        return 2 * math.pi / (self.wavelength_m * 1e9)

    def pyfai_config(self) -> dict[str, object]:
        """The geometry as a pyFAI PONI (version 2.1) configuration dictionary."""
        config: dict[str, Any] = json.loads(self.detector_config) if self.detector_config else {}
        config["orientation"] = self.orientation
        return {
            "poni_version": 2.1,
            "detector": self.detector,
            "detector_config": config,
            "dist": self.distance_m,
            "poni1": self.poni1_m,
            "poni2": self.poni2_m,
            "rot1": self.rot1_rad,
            "rot2": self.rot2_rad,
            "rot3": self.rot3_rad,
            "wavelength": self.wavelength_m,
        }


#: Order in which detector settings are tried when the smallest configuration that
#: rebuilds a detector is searched: the settings that imply the others come first.
_CONFIG_ORDER = ("splineFile", "binning", "max_shape", "pixel1", "pixel2")


def _signature(detector: Detector) -> tuple[object, ...]:
    """What makes two pyFAI detectors the same for a reduction."""
    shape = None if detector.shape is None else tuple(int(n) for n in detector.shape)
    return (
        type(detector).__name__,
        shape,
        _plain(detector.pixel1),
        _plain(detector.pixel2),
        tuple(int(n) for n in detector.binning),
        getattr(detector, "splinefile", None),
        int(detector.orientation),
    )


def _smallest_config(
    name: str, orientation: int, config: dict[str, Any], target: tuple[object, ...]
) -> dict[str, Any]:
    """The fewest of `config`'s settings with which pyFAI rebuilds the detector `target`.

    A named model as pyFAI ships it needs none; a binned Rayonix needs its pixel sizes; a
    spline detector its spline file (pyFAI then derives the pixel sizes and shape, and
    would log the others as left over); a generic detector all of them.
    """
    order = sorted(config, key=lambda k: (*_CONFIG_ORDER, k).index(k))
    kept: dict[str, Any] = {}
    for key in [None, *order]:
        if key is not None:
            kept[key] = config[key]
        try:
            built = detector_factory(name, config={**kept, "orientation": orientation})
        except (RuntimeError, KeyError, ValueError, TypeError, OSError):
            continue
        if _same_signature(_signature(built), target):
            return kept
    return config


def _same_signature(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(
        _same(x, y) if isinstance(x, float) and isinstance(y, float) else x == y
        for x, y in zip(a, b, strict=True)
    )


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a pyFAI configuration value (enums, tuples, numpy scalars)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


@dataclass(frozen=True, slots=True)
class QMaps:
    """Per-pixel grazing-incidence q components at pixel centres.

    Attributes
    ----------
    q_par_per_nm : ndarray of shape (rows, cols)
        Signed q_parallel, in nm^-1 (positive to the right of the direct beam).
    q_perp_per_nm : ndarray of shape (rows, cols)
        q_perpendicular, in nm^-1 (positive above the sample horizon).
    """

    q_par_per_nm: NDArray[np.float64]
    q_perp_per_nm: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class GIGeometry:
    """Grazing-incidence geometry: detector geometry + incidence and tilt angles.

    Parameters
    ----------
    detector : DetectorGeometry
        The pyFAI geometry of the detector.
    incidence_angle_deg : float
        Incidence angle alpha_i, in degrees (0 < alpha_i < 10).
    tilt_angle_deg : float
        Tilt of the sample about the beam, in degrees.
    sample_orientation : int
        pyFAI fiber sample orientation (1-4). Use :meth:`create` with ``"auto"`` to pick
        the one for a horizontal sample surface with q_perp up on the frame as stored.
    """

    detector: DetectorGeometry
    incidence_angle_deg: float
    tilt_angle_deg: float = 0.0
    sample_orientation: int = 4

    def __post_init__(self) -> None:
        problem = incidence_angle_problem(self.incidence_angle_deg)
        if problem is not None:
            msg = f"incidence angle {problem}"
            raise GeometryError(msg)
        if self.sample_orientation not in SAMPLE_ORIENTATIONS:
            msg = (
                f"sample orientation must be one of {SAMPLE_ORIENTATIONS} or 'auto', "
                f"got {self.sample_orientation!r}"
            )
            raise GeometryError(msg)

    @classmethod
    def create(
        cls,
        detector: DetectorGeometry,
        *,
        incidence_angle_deg: float,
        tilt_angle_deg: float = 0.0,
        sample_orientation: int | Literal["auto"] = "auto",
    ) -> GIGeometry:
        """Build a geometry, resolving ``sample_orientation="auto"``.

        ``"auto"`` picks the pyFAI sample orientation for the usual set-up: horizontal
        sample surface, q_perp increasing towards row 0 and q_par increasing with the
        column index of the frame as pyFAI's default detector orientation (3) stores it; a
        frame stored flipped, with the PONI's detector orientation saying so, gets the
        same sample orientation as the unflipped frame.

        The incidence angle must be a grazing angle (see :func:`incidence_angle_problem`)
        and below the top of the detector: with the sample horizon above every pixel, no
        scattering from above the surface reaches the detector.

        Raises
        ------
        GeometryError
            If an angle is out of range, the detector lies wholly below the sample horizon,
            or no orientation gives the usual picture.
        """
        if sample_orientation != "auto":
            geometry = cls(detector, incidence_angle_deg, tilt_angle_deg, int(sample_orientation))
            _check_reach(geometry, geometry.q_maps())
            return geometry
        for orientation in SAMPLE_ORIENTATIONS:
            candidate = cls(detector, incidence_angle_deg, tilt_angle_deg, orientation)
            maps = candidate.q_maps()
            if _is_usual_picture(maps, detector.orientation):
                _check_reach(candidate, maps)
                return candidate
        msg = (
            f"no pyFAI sample orientation puts q_perp up and q_par to the right for detector "
            f"{detector.detector} with orientation {detector.orientation}; give "
            "sample_orientation explicitly"
        )
        raise GeometryError(msg)

    @property
    def incidence_angle_rad(self) -> float:
        """Incidence angle alpha_i, in rad."""
        return math.radians(self.incidence_angle_deg)

    @property
    def tilt_angle_rad(self) -> float:
        """Tilt angle, in rad."""
        return math.radians(self.tilt_angle_deg)

    @property
    def k_per_nm(self) -> float:
        """Wavenumber k = 2 pi / lambda, in nm^-1."""
        return self.detector.k_per_nm

    @property
    def specular_q_perp_per_nm(self) -> float:
        """q_perp of the specular reflection, 2 k sin(alpha_i), in nm^-1."""
        return 2 * self.k_per_nm * math.sin(self.incidence_angle_rad)

    def q_perp_at_exit_angle_per_nm(self, exit_angle_deg: float) -> float:
        """q_perp = k (sin alpha_f + sin alpha_i) for an exit angle alpha_f, in nm^-1.

        Examples
        --------
        >>> det = DetectorGeometry("Pilatus300kw", 0.578, 0.03, 0.12, 0.12398e-9)
        >>> geo = GIGeometry(det, incidence_angle_deg=0.3)
        >>> round(geo.q_perp_at_exit_angle_per_nm(0.13), 3)  # Yoneda band of ethylene glycol
        0.38
        """
        return self.k_per_nm * (
            math.sin(math.radians(exit_angle_deg)) + math.sin(self.incidence_angle_rad)
        )

    def unit(self, name: Literal["qip_nm^-1", "qoop_nm^-1"]) -> pyFAI.units.Unit:
        """The pyFAI fiber unit `name` for this incidence, tilt and sample orientation."""
        return pyFAI.units.get_unit_fiber(
            name,
            incident_angle=self.incidence_angle_rad,
            tilt_angle=self.tilt_angle_rad,
            sample_orientation=self.sample_orientation,
        )

    def integrator(self) -> FiberIntegrator:
        """A fresh pyFAI `FiberIntegrator` for this geometry.

        Fresh on every call on purpose: pyFAI caches per-pixel arrays by unit name, so a
        shared integrator would silently keep the q values of another incidence angle.
        """
        det = self.detector
        return FiberIntegrator(
            dist=det.distance_m,
            poni1=det.poni1_m,
            poni2=det.poni2_m,
            rot1=det.rot1_rad,
            rot2=det.rot2_rad,
            rot3=det.rot3_rad,
            detector=det.pyfai_detector(),
            wavelength=det.wavelength_m,
        )

    def q_maps(self) -> QMaps:
        """Per-pixel q_par and q_perp at pixel centres, in nm^-1, as pyFAI computes them."""
        fi = self.integrator()
        q_par = fi.array_from_unit(unit=self.unit("qip_nm^-1"), typ="center", scale=True)
        fi = self.integrator()
        q_perp = fi.array_from_unit(unit=self.unit("qoop_nm^-1"), typ="center", scale=True)
        return QMaps(np.asarray(q_par, dtype=np.float64), np.asarray(q_perp, dtype=np.float64))

    def with_incidence(self, incidence_angle_deg: float) -> GIGeometry:
        """The same geometry at another incidence angle, in degrees."""
        return replace(self, incidence_angle_deg=incidence_angle_deg)

    def elevation_rad(self, maps: QMaps) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Elevation of each pixel above the incident beam, from this geometry's q maps.

        The elevation is the angle above the incident beam in the plane of the beam and
        the surface normal: with n the unit vector from the sample to the pixel,
        ``n_beam = 1 - |q|^2 / (2 k^2)``, ``n_up = (q_perp / k - sin a + n_beam sin a) /
        cos a`` at the incidence a, and the elevation is ``atan2(n_up, n_beam)``; it does
        not depend on a. A pixel at elevation e sees the exit angle e - a.

        Parameters
        ----------
        maps : QMaps
            The q maps of this geometry (:meth:`q_maps`).

        Returns
        -------
        elevation_rad, reach : ndarray of shape (rows, cols)
            The elevation, in rad, and ``sqrt(n_up^2 + n_beam^2)`` (the cosine of the
            pixel's horizontal angle out of that plane).
        """
        k = self.k_per_nm
        sin_a, cos_a = math.sin(self.incidence_angle_rad), math.cos(self.incidence_angle_rad)
        q_sq = maps.q_par_per_nm**2 + maps.q_perp_per_nm**2
        n_beam = 1 - q_sq / (2 * k**2)
        n_up = (maps.q_perp_per_nm / k - sin_a + n_beam * sin_a) / cos_a
        return np.arctan2(n_up, n_beam), np.hypot(n_up, n_beam)


def _check_reach(geometry: GIGeometry, maps: QMaps) -> None:
    """Refuse an incidence angle that puts the sample horizon above the whole detector."""
    elevation_rad, _ = geometry.elevation_rad(maps)
    top_deg = math.degrees(float(np.nanmax(elevation_rad)))
    alpha_deg = geometry.incidence_angle_deg
    if alpha_deg < top_deg:
        return
    as_mrad = math.degrees(alpha_deg * 1e-3)
    cause = (
        f"; {alpha_deg:g} looks like {as_mrad:.3g} deg given in mrad"
        if MIN_INCIDENCE_ANGLE_DEG <= as_mrad < top_deg
        else ""
    )
    msg = (
        f"incidence angle {alpha_deg:g} deg is beyond the detector's reach: the top of "
        f"detector {geometry.detector.detector} is {top_deg:.3g} deg above the direct beam, "
        f"so the sample horizon lies above every pixel and no scattering from the surface "
        f"reaches it{cause}; check the incidence angle (in degrees) and the PONI file"
    )
    raise GeometryError(msg)


def flipped_axes(detector_orientation: int) -> tuple[bool, bool]:
    """Whether a frame stored in this pyFAI detector orientation is flipped (rows, columns).

    Against pyFAI's default orientation 3: up-down in orientations 1 and 2, left-right in
    1 and 4 (pyFAI's orientation is the corner where pixel (0, 0) lies, seen from the
    sample: 1 top left, 2 top right, 3 bottom right, 4 bottom left).

    Examples
    --------
    >>> flipped_axes(3), flipped_axes(2), flipped_axes(4)
    ((False, False), (True, False), (False, True))
    """
    return detector_orientation in (1, 2), detector_orientation in (1, 4)


def _is_usual_picture(maps: QMaps, detector_orientation: int) -> bool:
    """True when q_perp grows upwards and q_par to the right in pyFAI's default orientation.

    That is q_perp towards row 0 and q_par with the column index of the frame as pyFAI's
    detector orientation 3 stores it; a frame stored in another orientation (the PONI's
    ``Detector_config`` says which) is that picture flipped (:func:`flipped_axes`).
    """
    rows_flipped, columns_flipped = flipped_axes(detector_orientation)
    d_perp_d_row = np.nanmedian(np.diff(maps.q_perp_per_nm, axis=0))
    d_par_d_col = np.nanmedian(np.diff(maps.q_par_per_nm, axis=1))
    if rows_flipped:
        d_perp_d_row = -d_perp_d_row
    if columns_flipped:
        d_par_d_col = -d_par_d_col
    return bool(d_perp_d_row < 0 and d_par_d_col > 0)
