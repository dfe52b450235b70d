"""Where to cut: q_perp band policies, the q_par reach of a band, and the kind of a frame.

Pure functions of the geometry and the static mask, run once per detector. Rods of a 2D
lattice are vertical lines at fixed q_par, brightest in the Yoneda band, so GISAXS cuts go
through a band there (:func:`yoneda_band_per_nm`). In-plane atomic reflections ({200} of
PbSe) sit on the sample horizon, and a q_par cut of a ring through a band of half-width w
moves it by about -w^2 / (2 q), so GIWAXS cuts go through the lowest, narrow band the
detector reaches (:func:`lowest_band_per_nm`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from calibration.geometry import ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG, GIGeometry, QMaps
from detectors.errors import ConfigError, GeometryError

#: Default half-width of the Yoneda band, in nm^-1. At 10 keV and alpha_i = 0.3 deg the band
#: 0.28-0.48 nm^-1 around alpha_f = 0.13 deg covers exit angles 0.02-0.24 deg: it stays above
#: the sample horizon (q_perp = k sin alpha_i = 0.265 nm^-1) and below the specular spot
#: (0.53 nm^-1), and spans about +-7 pixels of a Pilatus at 0.578 m. Rods are vertical, so
#: the width adds counts without moving them.
YONEDA_HALF_WIDTH_PER_NM = 0.1

#: Default width of the in-plane (GIWAXS) band, in nm^-1: a 0-0.5 nm^-1 band widened a
#: 0.48 nm^-1 wide {200} peak by only 0.3 % (0-2 nm^-1: by 2 %).
IN_PLANE_BAND_WIDTH_PER_NM = 0.5

#: PbSe {200} (rock salt, a0 = 0.6124 nm), in nm^-1: the reflection a GIWAXS frame must reach.
PBSE_200_Q_PER_NM = 20.52


def yoneda_band_per_nm(
    geometry: GIGeometry,
    *,
    critical_angle_deg: float = ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG,
    half_width_per_nm: float = YONEDA_HALF_WIDTH_PER_NM,
) -> tuple[float, float]:
    """The q_perp band around the Yoneda band, for rod cuts (GISAXS).

    The Yoneda band lies at exit angle alpha_f = alpha_c, the critical angle of the liquid:
    q_perp = k (sin alpha_c + sin alpha_i).

    Parameters
    ----------
    geometry : GIGeometry
        Grazing-incidence geometry (wavelength and incidence angle).
    critical_angle_deg : float
        Critical angle alpha_c of the subphase, in degrees (ethylene glycol at 10 keV: 0.13).
    half_width_per_nm : float
        Half-width of the band, in nm^-1 (default :data:`YONEDA_HALF_WIDTH_PER_NM`).

    Returns
    -------
    tuple of float
        The band (lo, hi), in nm^-1.

    Raises
    ------
    ValueError
        If the critical angle is not in [0, 10) degrees or the half-width is not > 0.

    Examples
    --------
    >>> from calibration.geometry import DetectorGeometry
    >>> det = DetectorGeometry("Pilatus300kw", 0.578, 0.030, 0.1268, 0.12398e-9)
    >>> lo, hi = yoneda_band_per_nm(GIGeometry(det, incidence_angle_deg=0.3))
    >>> round(lo, 3), round(hi, 3)
    (0.28, 0.48)
    """
    if not (math.isfinite(critical_angle_deg) and 0 <= critical_angle_deg < 10):
        msg = (
            f"critical angle must be in [0, 10) degrees, got {critical_angle_deg!r}; "
            "give it in degrees (ethylene glycol at 10 keV: 0.13)"
        )
        raise ValueError(msg)
    _check_positive(half_width_per_nm, "half_width_per_nm")
    centre = geometry.q_perp_at_exit_angle_per_nm(critical_angle_deg)
    return centre - half_width_per_nm, centre + half_width_per_nm


def check_band_above_horizon(
    band: tuple[float, float],
    geometry: GIGeometry,
    *,
    critical_angle_deg: float,
    where: str,
) -> None:
    """Refuse a rod-cut band that lies wholly below the sample horizon.

    Below the horizon (exit angle 0, q_perp = k sin alpha_i) the surface hides the rods:
    such a cut holds no rod, and its frames would come out "none" (a band meant in A^-1,
    10x too low, does).

    Parameters
    ----------
    band : tuple of float
        The q_perp band (lo, hi), in nm^-1.
    geometry : GIGeometry
        Grazing-incidence geometry (wavelength and incidence angle).
    critical_angle_deg : float
        Critical angle of the subphase, in degrees (for the Yoneda band the fix proposes).
    where : str
        Where the band was given (table and file), for the message.

    Raises
    ------
    ConfigError
        If ``band[1]`` is at or below the horizon; the message names the key, the
        horizon and the Yoneda band.
    """
    horizon = geometry.q_perp_at_exit_angle_per_nm(0.0)
    if band[1] > horizon:
        return
    yoneda = yoneda_band_per_nm(geometry, critical_angle_deg=critical_angle_deg)
    msg = (
        f"{where} q_perp_band_per_nm = [{band[0]:g}, {band[1]:g}] nm^-1 lies below the "
        f"sample horizon (q_perp = k sin alpha_i = {horizon:.3f} nm^-1 at alpha_i = "
        f"{geometry.incidence_angle_deg:g} deg), where no rod is seen: give the band in "
        f'nm^-1 above it, or "yoneda" ({yoneda[0]:.3f}-{yoneda[1]:.3f} nm^-1)'
    )
    raise ConfigError(msg)


def lowest_band_per_nm(
    maps: QMaps,
    *,
    static_mask: NDArray[np.bool_] | None,
    width_per_nm: float = IN_PLANE_BAND_WIDTH_PER_NM,
) -> tuple[float, float]:
    """The lowest q_perp band the detector reaches, for in-plane cuts (GIWAXS).

    The band starts at the lowest q_perp of an unmasked pixel, or at 0 where the detector
    reaches below q_perp = 0 (the direct-beam height), and is `width_per_nm` wide.

    Parameters
    ----------
    maps : QMaps
        Per-pixel q maps of the detector (``geometry.q_maps()``).
    static_mask : ndarray of bool, shape (rows, cols), or None
        True for pixels never used.
    width_per_nm : float
        Width of the band, in nm^-1 (default :data:`IN_PLANE_BAND_WIDTH_PER_NM`); keep it
        narrow, since a band of half-width w moves a ring at q by about -w^2 / (2 q).

    Returns
    -------
    tuple of float
        The band (lo, hi), in nm^-1.

    Raises
    ------
    ValueError
        If `width_per_nm` is not > 0 or the mask has the wrong shape.
    GeometryError
        If every pixel is masked.
    """
    _check_positive(width_per_nm, "width_per_nm")
    q_perp = maps.q_perp_per_nm[_usable(maps, static_mask)]
    if q_perp.size == 0:
        msg = "every pixel of the detector is masked: no q_perp band is reachable"
        raise GeometryError(msg)
    lo = max(0.0, float(q_perp.min()))
    return lo, lo + width_per_nm


def q_par_coverage_per_nm(
    maps: QMaps, static_mask: NDArray[np.bool_] | None, band: tuple[float, float]
) -> tuple[float, float]:
    """The |q_par| range that unmasked pixels of a q_perp band reach.

    Parameters
    ----------
    maps : QMaps
        Per-pixel q maps of the detector (``geometry.q_maps()``).
    static_mask : ndarray of bool, shape (rows, cols), or None
        True for pixels never used.
    band : tuple of float
        The q_perp band (lo, hi), in nm^-1 (both ends included).

    Returns
    -------
    tuple of float
        Smallest and largest |q_par| of the band's unmasked pixel centres, in nm^-1.

    Raises
    ------
    ValueError
        If the mask has the wrong shape.
    GeometryError
        If no unmasked pixel lies in the band.
    """
    q_perp = maps.q_perp_per_nm
    in_band = _usable(maps, static_mask) & (q_perp >= band[0]) & (q_perp <= band[1])
    q_par = np.abs(maps.q_par_per_nm[in_band])
    if q_par.size == 0:
        msg = (
            f"no unmasked pixel has q_perp in {band} nm^-1; the detector spans q_perp "
            f"{np.nanmin(q_perp):.3g} to {np.nanmax(q_perp):.3g} nm^-1"
        )
        raise GeometryError(msg)
    return float(q_par.min()), float(q_par.max())


def bins_for_range(
    maps: QMaps,
    q_par_range_per_nm: tuple[float, float],
    *,
    pixels_per_bin: float = 2.0,
    max_bins: int = 300,
) -> int:
    """Number of q_par bins over a range so that each bin spans about `pixels_per_bin` columns.

    Bins narrower than a pixel column split columns unevenly between bins, and where rows
    of a column differ (horizon, Yoneda band) that spikes the cut.

    Parameters
    ----------
    maps : QMaps
        Per-pixel q maps of the detector.
    q_par_range_per_nm : tuple of float
        The cut's |q_par| range, in nm^-1.
    pixels_per_bin : float
        Pixel columns a bin should span.
    max_bins : int
        Upper limit.

    Returns
    -------
    int
        Between 10 and `max_bins`.
    """
    lo, hi = q_par_range_per_nm
    q_par = np.abs(maps.q_par_per_nm)
    step = np.abs(np.diff(maps.q_par_per_nm, axis=1))
    inside = (q_par[:, 1:] >= lo) & (q_par[:, 1:] <= hi) & np.isfinite(step)
    if not inside.any():
        return max_bins
    column_step = float(np.median(step[inside]))
    return int(np.clip((hi - lo) / (pixels_per_bin * column_step), 10, max_bins))


def frame_kind(
    maps: QMaps,
    static_mask: NDArray[np.bool_] | None,
    *,
    reflection_q_per_nm: float = PBSE_200_Q_PER_NM,
) -> Literal["gisaxs", "giwaxs"]:
    """GIWAXS when the lowest (in-plane) band reaches an atomic reflection, else GISAXS.

    Parameters
    ----------
    maps : QMaps
        Per-pixel q maps of the detector (``geometry.q_maps()``).
    static_mask : ndarray of bool, shape (rows, cols), or None
        True for pixels never used.
    reflection_q_per_nm : float
        |q| of the in-plane reflection that makes a frame wide-angle, in nm^-1 (default
        PbSe {200}, 20.52).

    Returns
    -------
    {"gisaxs", "giwaxs"}
        ``"giwaxs"`` when unmasked pixels of :func:`lowest_band_per_nm` reach
        `reflection_q_per_nm` in |q_par|.

    Raises
    ------
    GeometryError
        If every pixel is masked.
    """
    band = lowest_band_per_nm(maps, static_mask=static_mask)
    try:
        lo, hi = q_par_coverage_per_nm(maps, static_mask, band)
    except GeometryError:
        return "gisaxs"
    return "giwaxs" if lo <= reflection_q_per_nm <= hi else "gisaxs"


def _usable(maps: QMaps, static_mask: NDArray[np.bool_] | None) -> NDArray[np.bool_]:
    """Pixels not masked and with finite q, shape (rows, cols)."""
    usable = np.isfinite(maps.q_par_per_nm) & np.isfinite(maps.q_perp_per_nm)
    if static_mask is not None:
        if np.shape(static_mask) != usable.shape:
            msg = (
                f"static_mask has shape {np.shape(static_mask)}, expected the detector's "
                f"{usable.shape}"
            )
            raise ValueError(msg)
        usable &= ~np.asarray(static_mask, dtype=bool)
    return usable


def _check_positive(value: float, name: str) -> None:
    """Raise a ValueError unless `value` is a finite number > 0."""
    if not (math.isfinite(value) and value > 0):
        msg = f"{name} must be a finite number > 0 (nm^-1), got {value!r}"
        raise ValueError(msg)
