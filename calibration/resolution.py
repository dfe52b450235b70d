"""Instrumental resolution: the width of calibrant powder lines as a smooth function of q.

The Scherrer stage removes the instrumental width beta_inst(q) from a measured peak width.
This module measures beta_inst on a calibrant frame (LaB6 or CeO2 for GIWAXS, silver
behenate for GISAXS):

1. :func:`radial_profile` integrates the calibrant rings azimuthally with pyFAI;
2. :func:`measure_resolution` fits every calibrant line found in the profile (peak plus
   local linear background, lmfit) and a smooth model through the fitted widths;
3. :meth:`InstrumentResolution.fwhm_per_nm` gives beta_inst at any q.

The model is ``FWHM(q)^2 = fwhm0^2 + (relative_fwhm * q)^2``: a constant term (beam size,
pixel size, sample footprint, which barely change with q at small angles) added in
quadrature to a term proportional to q (bandwidth d_lambda/lambda and beam divergence,
which broaden a line in proportion to its q). With one fitted line the model is the
constant ``fwhm0 = FWHM`` and ``relative_fwhm = 0``.

The widths include what the azimuthal integration adds (pixel splitting, bin width): reduce
sample frames with bins as fine as the ones used here, or the two widths do not compare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, overload

import lmfit
import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyFAI.calibrant import get_calibrant
from pyFAI.integrator.azimuthal import AzimuthalIntegrator
from scipy.optimize import nnls

from calibration.geometry import DetectorGeometry
from detectors.errors import ConfigError, GeometryError

#: Calibrants this module knows, by lower-case name, with pyFAI's spelling.
CALIBRANTS = {"lab6": "LaB6", "ceo2": "CeO2", "agbh": "AgBh"}

#: Peak shapes :func:`measure_resolution` can fit, with the lmfit model of each.
PEAK_SHAPES = ("gaussian", "lorentzian", "pseudo_voigt")

PeakShape = Literal["gaussian", "lorentzian", "pseudo_voigt"]

#: A line is kept when its fitted height is at least this many standard errors.
MIN_HEIGHT_SIGNIFICANCE = 5.0

#: Fewest profile points a line's fit window must hold.
MIN_POINTS_PER_LINE = 8

_GAUSS_FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


@dataclass(frozen=True, slots=True)
class InstrumentResolution:
    """Instrumental line width measured on a calibrant, per line and as a smooth model.

    Attributes
    ----------
    calibrant : str
        Calibrant name as pyFAI spells it (``"LaB6"``, ``"CeO2"``, ``"AgBh"``).
    shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Peak shape fitted to each line. Gaussian widths add in quadrature, Lorentzian
        widths linearly; for pseudo-Voigt lines, `line_lorentz_fraction` says how
        Lorentzian each line is.
    wavelength_m : float
        X-ray wavelength of the calibrant frame, in m.
    line_q_per_nm : tuple of float
        Fitted centre of each kept line, in nm^-1, ascending.
    line_fwhm_per_nm, line_fwhm_err_per_nm : tuple of float
        Fitted full width at half maximum of each line and its standard error, in nm^-1.
    line_lorentz_fraction : tuple of float
        Lorentzian fraction of each line: 0 for "gaussian", 1 for "lorentzian", fitted
        for "pseudo_voigt".
    fwhm0_per_nm : float
        Constant term of the model, in nm^-1 (the width extrapolated to q = 0).
    relative_fwhm : float
        Term proportional to q (dimensionless, FWHM / q); 0 for the constant model.
    model : {"constant", "quadrature"}
        ``"constant"`` when one line was fitted, else ``"quadrature"``:
        FWHM(q) = sqrt(fwhm0_per_nm^2 + (relative_fwhm * q)^2).
    skipped_lines : tuple of str
        One sentence per calibrant line inside the profile that was not used, and why.
    detector : str
        pyFAI detector name of the calibrant frame, or "" when not given.
    """

    calibrant: str
    shape: PeakShape
    wavelength_m: float
    line_q_per_nm: tuple[float, ...]
    line_fwhm_per_nm: tuple[float, ...]
    line_fwhm_err_per_nm: tuple[float, ...]
    line_lorentz_fraction: tuple[float, ...]
    fwhm0_per_nm: float
    relative_fwhm: float
    model: Literal["constant", "quadrature"]
    skipped_lines: tuple[str, ...] = ()
    detector: str = ""

    def __post_init__(self) -> None:
        n_lines = len(self.line_q_per_nm)
        lengths = {
            len(self.line_fwhm_per_nm),
            len(self.line_fwhm_err_per_nm),
            len(self.line_lorentz_fraction),
        }
        if n_lines == 0 or lengths != {n_lines}:
            msg = (
                f"instrument resolution for {self.calibrant!r} needs one or more lines with "
                f"q, FWHM, FWHM error and Lorentz fraction each; got {n_lines} q values and "
                f"{sorted(lengths)} of the others"
            )
            raise GeometryError(msg)
        if self.shape not in PEAK_SHAPES:
            msg = f"peak shape must be one of {PEAK_SHAPES}, got {self.shape!r}"
            raise GeometryError(msg)
        if self.model not in ("constant", "quadrature"):
            msg = f"resolution model must be 'constant' or 'quadrature', got {self.model!r}"
            raise GeometryError(msg)
        if not (self.fwhm0_per_nm >= 0 and self.relative_fwhm >= 0):
            msg = (
                "resolution model coefficients must be >= 0, got "
                f"fwhm0_per_nm={self.fwhm0_per_nm!r}, relative_fwhm={self.relative_fwhm!r}"
            )
            raise GeometryError(msg)
        if not all(w > 0 and math.isfinite(w) for w in self.line_fwhm_per_nm):
            msg = f"line widths must be finite and > 0 nm^-1, got {self.line_fwhm_per_nm}"
            raise GeometryError(msg)

    @property
    def q_range_per_nm(self) -> tuple[float, float]:
        """The q range of the fitted lines, in nm^-1; the model is extrapolated outside."""
        return min(self.line_q_per_nm), max(self.line_q_per_nm)

    @overload
    def fwhm_per_nm(self, q_per_nm: float) -> float: ...

    @overload
    def fwhm_per_nm(self, q_per_nm: NDArray[np.float64]) -> NDArray[np.float64]: ...

    def fwhm_per_nm(self, q_per_nm: float | NDArray[np.float64]) -> float | NDArray[np.float64]:
        """Instrumental FWHM beta_inst at `q_per_nm`, in nm^-1, from the smooth model.

        Parameters
        ----------
        q_per_nm : float or ndarray
            Scattering vector magnitude, in nm^-1.

        Returns
        -------
        float or ndarray
            sqrt(fwhm0_per_nm^2 + (relative_fwhm * q)^2), same shape as `q_per_nm`.

        Examples
        --------
        >>> res = InstrumentResolution("LaB6", "gaussian", 1.24e-10, (15.1, 21.4), (0.1, 0.12),
        ...                            (0.001, 0.001), (0.0, 0.0), 0.05, 0.005, "quadrature")
        >>> round(res.fwhm_per_nm(20.0), 4)
        0.1118
        """
        q = np.asarray(q_per_nm, dtype=np.float64)
        fwhm = np.sqrt(self.fwhm0_per_nm**2 + (self.relative_fwhm * q) ** 2)
        if fwhm.ndim == 0:
            return float(fwhm)
        return fwhm


def calibrant_lines_per_nm(
    name: str, *, wavelength_m: float, q_range_per_nm: tuple[float, float] | None = None
) -> NDArray[np.float64]:
    """Positions of a calibrant's powder lines, in nm^-1, ascending.

    Parameters
    ----------
    name : str
        ``"LaB6"``, ``"CeO2"`` or ``"AgBh"`` (silver behenate), case-insensitive.
    wavelength_m : float
        X-ray wavelength, in m: lines beyond 2k (2 theta > 180 deg) are left out.
    q_range_per_nm : (float, float), optional
        Keep only lines with q inside this closed interval, in nm^-1.

    Returns
    -------
    ndarray of shape (n_lines,)
        q = 2 pi / d of each line, in nm^-1.

    Raises
    ------
    ConfigError
        If the calibrant is not one of the three above.

    Examples
    --------
    >>> calibrant_lines_per_nm("lab6", wavelength_m=0.12398e-9, q_range_per_nm=(10, 22)).round(2)
    array([15.12, 21.38])
    >>> calibrant_lines_per_nm("AgBh", wavelength_m=0.12398e-9, q_range_per_nm=(0, 2.5)).round(3)
    array([1.076, 2.153])
    """
    calibrant = get_calibrant(_pyfai_calibrant_name(name), wavelength=wavelength_m)
    d_nm = np.asarray(calibrant.dspacing, dtype=np.float64) * 0.1  # pyFAI gives Angstrom
    q_per_nm = np.sort(2 * np.pi / d_nm)
    q_per_nm = q_per_nm[q_per_nm < 4 * np.pi / (wavelength_m * 1e9)]
    if q_range_per_nm is not None:
        q_lo, q_hi = q_range_per_nm
        q_per_nm = q_per_nm[(q_per_nm >= q_lo) & (q_per_nm <= q_hi)]
    return q_per_nm


def radial_profile(
    data: NDArray[np.floating],
    geometry: DetectorGeometry,
    *,
    mask: NDArray[np.bool_] | None = None,
    n_bins: int = 2000,
    q_range_per_nm: tuple[float, float] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Azimuthally integrated intensity of a powder (calibrant) frame versus q.

    A plain pyFAI ``integrate1d`` in ``"q_nm^-1"`` without pixel splitting (each pixel
    counts at its centre: its size is already in the measured intensity, and splitting
    would add it a second time), with solid-angle correction and Poisson errors.
    Negative (gap, bad) and non-finite pixels are masked.

    Parameters
    ----------
    data : ndarray of shape (rows, cols)
        Calibrant frame, in counts.
    geometry : DetectorGeometry
        The detector geometry (PONI) of the frame.
    mask : ndarray of bool, shape (rows, cols), optional
        True where a pixel must be ignored (pyFAI convention).
    n_bins : int
        Number of q bins; keep the bins narrower than a tenth of the line FWHM (the bin
        width adds to the measured width: bins of FWHM/10 widen it by about 0.5 %).
    q_range_per_nm : (float, float), optional
        q range of the profile, in nm^-1; default the whole frame.

    Returns
    -------
    q_per_nm, intensity, sigma : ndarray of shape (n,)
        Bin centres in nm^-1, mean intensity and its standard error, in counts per pixel.
        Bins that no pixel reaches are left out.

    Raises
    ------
    GeometryError
        If the frame shape does not match the detector or `n_bins` < 2.
    """
    if data.shape != geometry.shape:
        msg = (
            f"frame of shape {data.shape} does not match detector {geometry.detector} of "
            f"shape {geometry.shape}; check the PONI file"
        )
        raise GeometryError(msg)
    if n_bins < 2:
        msg = f"n_bins must be >= 2, got {n_bins}"
        raise GeometryError(msg)
    frame = np.asarray(data, dtype=np.float64)
    invalid = ~np.isfinite(frame) | (frame < 0)
    if mask is not None:
        invalid |= np.asarray(mask, dtype=bool)
    integrator = AzimuthalIntegrator(
        dist=geometry.distance_m,
        poni1=geometry.poni1_m,
        poni2=geometry.poni2_m,
        rot1=geometry.rot1_rad,
        rot2=geometry.rot2_rad,
        rot3=geometry.rot3_rad,
        detector=geometry.pyfai_detector(),
        wavelength=geometry.wavelength_m,
    )
    result = integrator.integrate1d(
        np.where(invalid, 0.0, frame),
        n_bins,
        unit="q_nm^-1",
        radial_range=q_range_per_nm,
        mask=invalid,
        error_model="poisson",
        method=("no", "csr", "cython"),
    )
    count = np.asarray(result.count, dtype=np.float64)
    reached = count > 0
    q_per_nm = np.asarray(result.radial, dtype=np.float64)[reached]
    intensity = np.asarray(result.intensity, dtype=np.float64)[reached]
    sigma = np.asarray(result.sigma, dtype=np.float64)[reached]
    return q_per_nm, intensity, sigma


def measure_resolution(
    q_per_nm: ArrayLike,
    intensity: ArrayLike,
    *,
    calibrant: str,
    wavelength_m: float,
    shape: PeakShape = "gaussian",
    sigma: ArrayLike | None = None,
    detector: str = "",
) -> InstrumentResolution:
    """Fit the calibrant lines in a radial profile and a smooth FWHM(q) through them.

    Each line of `calibrant` inside the profile is fitted with a `shape` peak plus a
    linear background, in a window of at most +-3 FWHM that stays clear of the
    neighbouring lines. A line is skipped (and said why in ``skipped_lines``) when its
    window leaves the profile, the fit fails, its height is below
    ``MIN_HEIGHT_SIGNIFICANCE`` standard errors, or it is too broad for its window.

    Parameters
    ----------
    q_per_nm, intensity : array_like of shape (n,)
        Radial profile, q ascending in nm^-1 (as from :func:`radial_profile`).
    calibrant : str
        ``"LaB6"``, ``"CeO2"`` or ``"AgBh"``, case-insensitive.
    wavelength_m : float
        X-ray wavelength, in m.
    shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Peak shape; "gaussian" matches the Gaussian widths the Scherrer stage subtracts
        in quadrature.
    sigma : array_like of shape (n,), optional
        Standard errors of `intensity`, used as fit weights where > 0.
    detector : str
        pyFAI detector name, recorded in the result.

    Returns
    -------
    InstrumentResolution
        Per-line widths in nm^-1 and the smooth model.

    Raises
    ------
    ConfigError
        If the calibrant or the shape is unknown.
    GeometryError
        If the arrays do not match, or no line could be fitted (the message names the
        calibrant, the q range and why each line was skipped).
    """
    q = np.asarray(q_per_nm, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    err = None if sigma is None else np.asarray(sigma, dtype=np.float64)
    if q.ndim != 1 or q.shape != y.shape or (err is not None and err.shape != q.shape):
        msg = (
            f"q, intensity and sigma must be 1-D arrays of one length, got shapes {q.shape}, "
            f"{y.shape} and {None if err is None else err.shape}"
        )
        raise GeometryError(msg)
    if shape not in PEAK_SHAPES:
        msg = f"peak shape must be one of {PEAK_SHAPES}, got {shape!r}"
        raise ConfigError(msg)
    name = _pyfai_calibrant_name(calibrant)
    finite = np.isfinite(q) & np.isfinite(y)
    if err is not None:
        finite &= np.isfinite(err)
    q, y = q[finite], y[finite]
    err = None if err is None else err[finite]
    if q.size < MIN_POINTS_PER_LINE:
        msg = f"radial profile for {name} has {q.size} finite points; need a real profile"
        raise GeometryError(msg)
    order = np.argsort(q)
    q, y = q[order], y[order]
    err = None if err is None else err[order]

    all_lines = calibrant_lines_per_nm(name, wavelength_m=wavelength_m)
    q_lo, q_hi = float(q[0]), float(q[-1])
    fits: list[_LineFit] = []
    skipped: list[str] = []
    for index, q_line in enumerate(all_lines):
        if not q_lo <= q_line <= q_hi:
            continue
        neighbours = np.delete(all_lines, index)
        gap = float(np.min(np.abs(neighbours - q_line))) if neighbours.size else np.inf
        outcome = _fit_line(q, y, err, float(q_line), gap_per_nm=gap, shape=shape)
        if isinstance(outcome, str):
            skipped.append(f"{name} line at q = {q_line:.3f} nm^-1: {outcome}")
        else:
            fits.append(outcome)
    if not fits:
        reasons = "; ".join(skipped) if skipped else "no line of it lies in this range"
        msg = (
            f"no {name} line could be fitted in q = {q_lo:.3f}-{q_hi:.3f} nm^-1 ({reasons}); "
            "check the calibrant name, the PONI file and the q range"
        )
        raise GeometryError(msg)
    fwhm0, relative = _fit_smooth_model(fits)
    return InstrumentResolution(
        calibrant=name,
        shape=shape,
        wavelength_m=wavelength_m,
        line_q_per_nm=tuple(f.q_per_nm for f in fits),
        line_fwhm_per_nm=tuple(f.fwhm_per_nm for f in fits),
        line_fwhm_err_per_nm=tuple(f.fwhm_err_per_nm for f in fits),
        line_lorentz_fraction=tuple(f.lorentz_fraction for f in fits),
        fwhm0_per_nm=fwhm0,
        relative_fwhm=relative,
        model="constant" if len(fits) == 1 else "quadrature",
        skipped_lines=tuple(skipped),
        detector=detector,
    )


def resolution_from_frame(
    data: NDArray[np.floating],
    geometry: DetectorGeometry,
    *,
    calibrant: str,
    mask: NDArray[np.bool_] | None = None,
    shape: PeakShape = "gaussian",
    n_bins: int = 2000,
    q_range_per_nm: tuple[float, float] | None = None,
) -> InstrumentResolution:
    """:func:`radial_profile` then :func:`measure_resolution`, for one calibrant frame.

    Parameters are those of the two functions; the detector name and wavelength come
    from `geometry`.

    Raises
    ------
    ConfigError
        If the calibrant or the shape is unknown.
    GeometryError
        If the frame does not match the detector, or no line could be fitted.
    """
    q_per_nm, intensity, sigma = radial_profile(
        data, geometry, mask=mask, n_bins=n_bins, q_range_per_nm=q_range_per_nm
    )
    return measure_resolution(
        q_per_nm,
        intensity,
        sigma=sigma,
        calibrant=calibrant,
        wavelength_m=geometry.wavelength_m,
        shape=shape,
        detector=geometry.detector,
    )


@dataclass(frozen=True, slots=True)
class _LineFit:
    q_per_nm: float
    fwhm_per_nm: float
    fwhm_err_per_nm: float
    lorentz_fraction: float


def _pyfai_calibrant_name(name: str) -> str:
    try:
        return CALIBRANTS[name.strip().lower()]
    except KeyError:
        allowed = ", ".join(CALIBRANTS.values())
        msg = f"unknown calibrant {name!r}; use one of {allowed} (case-insensitive)"
        raise ConfigError(msg) from None


def _peak_model(shape: PeakShape) -> lmfit.Model:
    if shape == "gaussian":
        return lmfit.models.GaussianModel(prefix="p_")
    if shape == "lorentzian":
        return lmfit.models.LorentzianModel(prefix="p_")
    return lmfit.models.PseudoVoigtModel(prefix="p_")


def _fit_line(
    q: NDArray[np.float64],
    y: NDArray[np.float64],
    err: NDArray[np.float64] | None,
    q_line: float,
    *,
    gap_per_nm: float,
    shape: PeakShape,
) -> _LineFit | str:
    """Fit one line; return the fit, or the reason it was skipped."""
    half_window = 0.45 * gap_per_nm
    step = float(np.median(np.diff(q)))
    if q_line - half_window < q[0] - step or q_line + half_window > q[-1] + step:
        half_window = min(q_line - q[0], q[-1] - q_line)
    first = _fit_in_window(q, y, err, q_line, half_window, shape)
    if isinstance(first, str):
        return first
    # Refit in a window of +-3 FWHM so that the linear background stays local.
    narrow = min(half_window, 3 * first.fwhm_per_nm)
    if narrow < half_window:
        second = _fit_in_window(q, y, err, q_line, narrow, shape)
        if isinstance(second, str):
            return second
        first = second
    if half_window < 2 * first.fwhm_per_nm:
        return (
            f"only +-{half_window:.3f} nm^-1 of profile around a line of FWHM "
            f"{first.fwhm_per_nm:.3f} nm^-1 (too close to the edge of the q range)"
        )
    if first.fwhm_per_nm > gap_per_nm / 2:
        return f"FWHM {first.fwhm_per_nm:.3f} nm^-1 overlaps the neighbouring line"
    return first


def _fit_in_window(
    q: NDArray[np.float64],
    y: NDArray[np.float64],
    err: NDArray[np.float64] | None,
    q_line: float,
    half_window: float,
    shape: PeakShape,
) -> _LineFit | str:
    inside = np.abs(q - q_line) <= half_window
    if np.count_nonzero(inside) < MIN_POINTS_PER_LINE:
        return (
            f"fewer than {MIN_POINTS_PER_LINE} profile points within +-{half_window:.3f} "
            "nm^-1 (line at the edge of the profile, or bins too coarse)"
        )
    qw, yw = q[inside], y[inside]
    n_edge = max(2, qw.size // 10)
    slope = (np.mean(yw[-n_edge:]) - np.mean(yw[:n_edge])) / (qw[-1] - qw[0])
    background = np.mean(yw[:n_edge]) + slope * (qw - np.mean(qw[:n_edge]))
    net = yw - background
    near = np.abs(qw - q_line) <= half_window / 2
    peak_index = int(np.flatnonzero(near)[np.argmax(net[near])])
    height = float(net[peak_index])
    if not height > 0:
        return "no peak above the background"
    above = net >= height / 2
    left = peak_index
    while left > 0 and above[left - 1]:
        left -= 1
    right = peak_index
    while right < qw.size - 1 and above[right + 1]:
        right += 1
    fwhm_guess = max(float(qw[right] - qw[left]), 2 * float(np.median(np.diff(qw))))

    model = _peak_model(shape) + lmfit.models.LinearModel(prefix="bg_")
    params = model.make_params()
    params["bg_slope"].set(value=float(slope))
    params["bg_intercept"].set(value=float(background[0] - slope * qw[0]))
    sigma_guess = fwhm_guess / (_GAUSS_FWHM_PER_SIGMA if shape == "gaussian" else 2.0)
    params["p_sigma"].set(value=sigma_guess, min=sigma_guess / 100, max=2 * half_window)
    params["p_center"].set(
        value=float(qw[peak_index]), min=q_line - half_window / 2, max=q_line + half_window / 2
    )
    params["p_amplitude"].set(value=height * fwhm_guess * 1.06, min=0.0)
    if shape == "pseudo_voigt":
        params["p_fraction"].set(value=0.5, min=0.0, max=1.0)
    weights = None
    if err is not None:
        err_w = err[inside]
        positive = err_w > 0
        floor = float(np.min(err_w[positive])) if np.any(positive) else 1.0
        weights = 1.0 / np.where(positive, err_w, floor)
    result = model.fit(yw, params, x=qw, weights=weights)
    if not (result.success and result.errorbars):
        return f"the {shape} fit did not converge ({result.message})"
    fitted = result.params
    height_fit, height_err = fitted["p_height"].value, fitted["p_height"].stderr
    if height_err is None or not height_fit > MIN_HEIGHT_SIGNIFICANCE * height_err:
        return (
            f"too weak: fitted height {height_fit:.3g} is below {MIN_HEIGHT_SIGNIFICANCE:g} "
            f"standard errors ({height_err})"
        )
    fwhm, fwhm_err = fitted["p_fwhm"].value, fitted["p_fwhm"].stderr
    if fwhm_err is None or not math.isfinite(fwhm_err) or fwhm >= half_window:
        return f"too broad for its +-{half_window:.3f} nm^-1 window (FWHM {fwhm:.3f} nm^-1)"
    fraction = {"gaussian": 0.0, "lorentzian": 1.0}.get(shape)
    if fraction is None:
        fraction = float(fitted["p_fraction"].value)
    return _LineFit(float(fitted["p_center"].value), float(fwhm), float(fwhm_err), fraction)


def _fit_smooth_model(fits: list[_LineFit]) -> tuple[float, float]:
    """Weighted non-negative least squares of FWHM^2 = fwhm0^2 + relative^2 q^2."""
    if len(fits) == 1:
        return fits[0].fwhm_per_nm, 0.0
    q = np.array([f.q_per_nm for f in fits])
    fwhm = np.array([f.fwhm_per_nm for f in fits])
    fwhm_err = np.array([f.fwhm_err_per_nm for f in fits])
    # sigma(FWHM^2) = 2 FWHM sigma(FWHM); floor it so a perfect fit cannot dominate.
    sigma_sq = 2 * fwhm * np.maximum(fwhm_err, 1e-3 * fwhm)
    design = np.column_stack([np.ones_like(q), q**2]) / sigma_sq[:, None]
    (u, w), _ = nnls(design, fwhm**2 / sigma_sq)
    return float(math.sqrt(u)), float(math.sqrt(w))
