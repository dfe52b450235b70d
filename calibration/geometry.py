"""Grazing-incidence geometry: a pyFAI detector geometry plus the incidence angle.

The one place where degrees become radians and where pyFAI's `FiberIntegrator` is built.
pyFAI caches its per-pixel arrays by unit *name*, so an integrator built for one incidence
angle or sample orientation must never be reused for another: :meth:`GIGeometry.integrator`
always returns a fresh one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

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


@dataclass(frozen=True, slots=True)
class DetectorGeometry:
    """A pyFAI (PONI) detector geometry, in SI units as pyFAI stores them.

    Parameters
    ----------
    detector : str
        pyFAI detector name, case-insensitive (``"Pilatus300kw"``, ``"Eiger2_4M"``).
    distance_m, poni1_m, poni2_m : float
        Sample-detector distance and point of normal incidence, in m.
    wavelength_m : float
        X-ray wavelength, in m.
    rot1_rad, rot2_rad, rot3_rad : float
        pyFAI detector rotations, in rad.
    orientation : int
        pyFAI detector orientation (1-4; 3 is pyFAI's default).
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
        self.pyfai_detector()  # raises GeometryError for an unknown detector name

    def pyfai_detector(self) -> Detector:
        """Build the pyFAI detector, with this geometry's orientation.

        Raises
        ------
        GeometryError
            If pyFAI does not know the detector name.
        """
        try:
            return detector_factory(self.detector, config={"orientation": self.orientation})
        except (RuntimeError, KeyError, ValueError) as err:
            msg = f"pyFAI knows no detector called {self.detector!r} ({err})"
            raise GeometryError(msg) from err

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape (rows, cols) of the detector."""
        rows, cols = self.pyfai_detector().shape
        return int(rows), int(cols)

    @property
    def k_per_nm(self) -> float:
        """Wavenumber k = 2 pi / lambda, in nm^-1."""
        return 2 * math.pi / (self.wavelength_m * 1e9)

    def pyfai_config(self) -> dict[str, object]:
        """The geometry as a pyFAI PONI (version 2.1) configuration dictionary."""
        return {
            "poni_version": 2.1,
            "detector": self.detector,
            "detector_config": {"orientation": self.orientation},
            "dist": self.distance_m,
            "poni1": self.poni1_m,
            "poni2": self.poni2_m,
            "rot1": self.rot1_rad,
            "rot2": self.rot2_rad,
            "rot3": self.rot3_rad,
            "wavelength": self.wavelength_m,
        }


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
        if not (math.isfinite(self.incidence_angle_deg) and 0 < self.incidence_angle_deg < 10):
            msg = (
                f"incidence angle must be in (0, 10) degrees, got {self.incidence_angle_deg!r}; "
                "give it in degrees, not radians"
            )
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
        sample surface, q_perp increasing towards row 0 of the frame as stored and
        q_par increasing with the column index.

        Raises
        ------
        GeometryError
            If an angle is out of range or no orientation gives the usual picture.
        """
        if sample_orientation != "auto":
            return cls(detector, incidence_angle_deg, tilt_angle_deg, int(sample_orientation))
        for orientation in SAMPLE_ORIENTATIONS:
            candidate = cls(detector, incidence_angle_deg, tilt_angle_deg, orientation)
            if _is_usual_picture(candidate.q_maps()):
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


def _is_usual_picture(maps: QMaps) -> bool:
    """True when q_perp grows towards row 0 and q_par grows with the column index."""
    d_perp_d_row = np.nanmedian(np.diff(maps.q_perp_per_nm, axis=0))
    d_par_d_col = np.nanmedian(np.diff(maps.q_par_per_nm, axis=1))
    return bool(d_perp_d_row < 0 and d_par_d_col > 0)
