"""Scherrer analysis: domain size from the width of the {200} line in q.

D = 2 pi K / beta, with beta a width of the sample's line in q (nm^-1) after the
instrumental width is removed. Three methods (``[scherrer] method``), each with its K:

- ``"cube_profile"`` (default): the cut is fitted with the exact size-broadened line of
  cube-shaped domains, q along <100> (:func:`cube_line_profile`): for one cube of edge L
  the line is sinc^2(dq L / 2), its integral breadth exactly 2 pi / L; a Gaussian size
  distribution of relative width `size_spread` is averaged with the weight diffraction
  gives it (number x volume), and the instrument is convolved in. The fitted size is the
  volume-weighted mean edge <L^4> / <L^3>, and beta is the sample line's integral breadth
  2 pi / <L^4> / <L^3>, so D = 2 pi K / beta with K = 1 (Langford & Wilson, J. Appl.
  Cryst. 11, 102 (1978): K_beta = 1 for h00 of a cube). Instrument removal is exact here:
  the instrument is convolved into the model instead of being subtracted from a width.
- ``"integral_breadth"``: beta is the integral breadth (area / height) of the fitted peak
  profile (:func:`integral_breadth_per_nm`), instrument removed by the Voigt rule
  (:func:`remove_instrumental_breadth`); K = 1. Right for cubes only when the fitted shape
  follows the line; a pseudo-Voigt fitted to a sinc^2 line is 10-15 % too narrow.
- ``"fwhm"``: beta is the fitted FWHM, instrument removed by
  :func:`remove_instrumental_fwhm`; K = 0.8859 for h00 of a cube (K_w, Langford & Wilson
  1978). The study used K = 1 on the FWHM: ``method = "fwhm"``, ``k_factor = 1.0``
  reproduces its numbers (1.1 -> 5.7, 0.7 -> 9.0, 0.5 -> 12.6 nm).

FWHM removal by the rule of the fitted peak shape:

- Gaussian: in quadrature, beta = sqrt(beta_meas^2 - beta_inst^2);
- Lorentzian: linearly, beta = beta_meas - beta_inst;
- pseudo-Voigt (FWHM beta_meas, Lorentzian fraction eta): the measured profile is split
  into a Gaussian and a Lorentzian width with the Thompson-Cox-Hastings (TCH) relations
  (P. Thompson, D. E. Cox, J. B. Hastings, J. Appl. Cryst. 20, 79 (1987)), the
  instrumental profile is taken to have the *same* Lorentzian fraction (so its two widths
  are the measured ones scaled by beta_inst / beta_meas), the Gaussian parts are removed
  in quadrature and the Lorentzian parts linearly, and the sample's two widths are joined
  again with the TCH FWHM formula. This reduces to the Gaussian rule at eta = 0 and to
  the Lorentzian rule at eta = 1. Where the instrumental profile has been fitted
  separately with another shape, this rule is an approximation.

Integral-breadth removal (:func:`remove_instrumental_breadth`): measured and instrumental
profiles are each taken as the Voigt function with their FWHM and integral breadth, and
split into Gaussian and Lorentzian (Cauchy) integral breadths from the ratio
phi = FWHM / beta (Th. H. de Keijser, J. I. Langford, E. J. Mittemeijer, A. B. P. Vogels,
J. Appl. Cryst. 15, 308 (1982); :func:`voigt_breadths_per_nm`; the instrument with its own
Lorentzian share, 0 for the Gaussian calibrant fits); the Gaussian breadths are removed in
quadrature and the Lorentzian ones linearly, and the sample's Voigt breadth is joined again
exactly (J. I. Langford, J. Appl. Cryst. 11, 10 (1978)): beta = beta_G / erfcx(k),
k = beta_L / (sqrt(pi) beta_G).

The pseudo-Voigt here is the one :mod:`pipeline.fits` fits: a Gaussian and a Lorentzian of
the same FWHM, with `eta` the Lorentzian share of the peak *height*.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import erfcx

from pipeline.config import PEAK_SHAPES, PeakShape

FloatArray = NDArray[np.float64]

#: Integral breadth / FWHM of a Gaussian, sqrt(pi / (4 ln 2)).
GAUSS_BREADTH_PER_FWHM = math.sqrt(math.pi / (4.0 * math.log(2.0)))
#: Integral breadth / FWHM of a Lorentzian, pi / 2.
LORENTZ_BREADTH_PER_FWHM = math.pi / 2.0
#: FWHM of sinc^2(dq L / 2) times L / (2 pi) (Langford & Wilson 1978: K_w of h00, cube).
SINC2_FWHM_K = 0.8859

#: TCH: eta = sum(c_i rho^i), rho = Gamma_L / Gamma (coefficients of rho, rho^2, rho^3).
_TCH_ETA = (1.36603, -0.47719, 0.11116)
#: TCH: Gamma^5 = sum(c_i Gamma_G^(5-i) Gamma_L^i), i = 0..5.
_TCH_FWHM = (1.0, 2.69269, 2.42843, 4.47163, 0.07842, 1.0)


def remove_instrumental_fwhm(
    fwhm_per_nm: float,
    instrument_fwhm_per_nm: float,
    *,
    peak_shape: PeakShape,
    eta: float | None = None,
) -> float:
    """Sample FWHM with the instrumental FWHM removed.

    Parameters
    ----------
    fwhm_per_nm : float
        Measured FWHM in q, in nm^-1.
    instrument_fwhm_per_nm : float
        Instrumental FWHM at the same q, in nm^-1; 0 removes nothing.
    peak_shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Shape the width was fitted with; sets the rule (see the module docstring).
    eta : float, optional
        Lorentzian fraction of the pseudo-Voigt, in [0, 1] (NaN, from a failed fit, gives
        NaN); required for "pseudo_voigt" and ignored otherwise.

    Returns
    -------
    float
        Sample FWHM in nm^-1; NaN (not an error) when a width or eta is NaN or the
        measured width is not larger than the instrumental one.

    Raises
    ------
    ValueError
        If the instrumental width is negative, the shape is unknown, or "pseudo_voigt"
        comes without an `eta` in [0, 1].

    Examples
    --------
    >>> round(remove_instrumental_fwhm(0.5, 0.3, peak_shape="gaussian"), 6)
    0.4
    >>> round(remove_instrumental_fwhm(0.5, 0.3, peak_shape="lorentzian"), 6)
    0.2
    >>> remove_instrumental_fwhm(0.3, 0.5, peak_shape="gaussian")
    nan
    """
    if peak_shape not in PEAK_SHAPES:
        msg = f"peak_shape must be one of {PEAK_SHAPES}, got {peak_shape!r}"
        raise ValueError(msg)
    if instrument_fwhm_per_nm < 0:
        msg = (
            f"instrumental FWHM must be >= 0 nm^-1, got {instrument_fwhm_per_nm!r}; "
            "check the resolution calibration"
        )
        raise ValueError(msg)
    lorentz_eta = 1.0 if peak_shape == "lorentzian" else 0.0
    if peak_shape == "pseudo_voigt":
        if eta is None or eta < 0.0 or eta > 1.0:
            msg = f"a pseudo-Voigt width needs its Lorentzian fraction eta in [0, 1], got {eta!r}"
            raise ValueError(msg)
        lorentz_eta = eta
    if not all(map(math.isfinite, (fwhm_per_nm, instrument_fwhm_per_nm, lorentz_eta))):
        return math.nan  # a failed fit: NaN width, instrument or eta
    if fwhm_per_nm <= instrument_fwhm_per_nm:
        return math.nan
    ratio = instrument_fwhm_per_nm / fwhm_per_nm
    if lorentz_eta == 0.0:
        return fwhm_per_nm * math.sqrt(1.0 - ratio**2)
    if lorentz_eta == 1.0:
        return fwhm_per_nm * (1.0 - ratio)
    lorentz_fraction = _tch_lorentz_fraction(lorentz_eta)
    gauss_fraction = _tch_gauss_fraction(lorentz_fraction)
    return fwhm_per_nm * _tch_fwhm(
        gauss_fraction * math.sqrt(1.0 - ratio**2), lorentz_fraction * (1.0 - ratio)
    )


def scherrer_size_nm(fwhm_per_nm: float, *, k_factor: float = 1.0) -> float:
    """Scherrer domain size D = 2 pi K / beta.

    Parameters
    ----------
    fwhm_per_nm : float
        Sample FWHM beta in q, in nm^-1 (instrumental width already removed).
    k_factor : float, default 1.0
        Scherrer constant K (dimensionless), > 0.

    Returns
    -------
    float
        Domain size in nm; NaN when `fwhm_per_nm` is NaN or not positive.

    Raises
    ------
    ValueError
        If `k_factor` is not a positive finite number.

    Examples
    --------
    >>> [round(scherrer_size_nm(b), 1) for b in (1.1, 0.7, 0.5)]
    [5.7, 9.0, 12.6]
    """
    _check_k(k_factor)
    if not (math.isfinite(fwhm_per_nm) and fwhm_per_nm > 0):
        return math.nan
    return 2.0 * math.pi * k_factor / fwhm_per_nm


def scherrer_size_err_nm(
    fwhm_per_nm: float, fwhm_err_per_nm: float, *, k_factor: float = 1.0
) -> float:
    """Standard error of the Scherrer size from that of the width.

    Parameters
    ----------
    fwhm_per_nm : float
        Sample FWHM beta, in nm^-1.
    fwhm_err_per_nm : float
        Standard error of beta, in nm^-1.
    k_factor : float, default 1.0
        Scherrer constant K, > 0 (taken as exact).

    Returns
    -------
    float
        sigma_D = 2 pi K sigma_beta / beta^2, in nm; NaN where D is NaN or the error is
        not a finite number >= 0.

    Raises
    ------
    ValueError
        If `k_factor` is not a positive finite number.

    Examples
    --------
    >>> round(scherrer_size_err_nm(0.5, 0.01), 4)
    0.2513
    """
    _check_k(k_factor)
    if not (math.isfinite(fwhm_err_per_nm) and fwhm_err_per_nm >= 0):
        return math.nan
    size_nm = scherrer_size_nm(fwhm_per_nm, k_factor=k_factor)
    return size_nm * fwhm_err_per_nm / fwhm_per_nm if math.isfinite(size_nm) else math.nan


def integral_breadth_per_nm(
    fwhm_per_nm: float, *, peak_shape: PeakShape, eta: float | None = None
) -> float:
    """Integral breadth (area / height) of a fitted peak profile.

    Parameters
    ----------
    fwhm_per_nm : float
        FWHM of the profile, in nm^-1.
    peak_shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Profile shape.
    eta : float, optional
        Lorentzian share of the pseudo-Voigt's height, in [0, 1]; required for
        "pseudo_voigt", ignored otherwise.

    Returns
    -------
    float
        beta = FWHM * ((1 - eta) sqrt(pi / (4 ln 2)) + eta pi / 2), in nm^-1; NaN when the
        width or eta is NaN.

    Raises
    ------
    ValueError
        If the shape is unknown or "pseudo_voigt" comes without an `eta` in [0, 1].

    Examples
    --------
    >>> round(integral_breadth_per_nm(1.0, peak_shape="gaussian"), 5)
    1.06447
    >>> round(integral_breadth_per_nm(1.0, peak_shape="pseudo_voigt", eta=1.0), 5)
    1.5708
    """
    lorentz_eta = _lorentz_eta(peak_shape, eta)
    if not (math.isfinite(fwhm_per_nm) and math.isfinite(lorentz_eta)):
        return math.nan
    return fwhm_per_nm * _breadth_per_fwhm(lorentz_eta)


def integral_breadth_err_per_nm(
    fwhm_per_nm: float,
    fwhm_err_per_nm: float,
    *,
    peak_shape: PeakShape,
    eta: float | None = None,
    eta_err: float = 0.0,
) -> float:
    """Standard error of :func:`integral_breadth_per_nm` from those of FWHM and eta.

    The two errors are added in quadrature as if independent (the fit reports no
    covariance); FWHM and eta of a pseudo-Voigt are anti-correlated at fixed breadth, so
    this errs on the large side.

    Parameters
    ----------
    fwhm_per_nm, fwhm_err_per_nm : float
        FWHM and its standard error, in nm^-1.
    peak_shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Profile shape.
    eta, eta_err : float
        Lorentzian height share and its standard error ("pseudo_voigt" only).

    Returns
    -------
    float
        Standard error of beta, in nm^-1 (NaN where an input is NaN).

    Raises
    ------
    ValueError
        As :func:`integral_breadth_per_nm`.

    Examples
    --------
    >>> round(integral_breadth_err_per_nm(1.0, 0.01, peak_shape="gaussian"), 6)
    0.010645
    """
    lorentz_eta = _lorentz_eta(peak_shape, eta)
    per_fwhm = _breadth_per_fwhm(lorentz_eta)
    per_eta = fwhm_per_nm * (LORENTZ_BREADTH_PER_FWHM - GAUSS_BREADTH_PER_FWHM)
    eta_part = per_eta * eta_err if peak_shape == "pseudo_voigt" else 0.0
    return math.hypot(per_fwhm * fwhm_err_per_nm, eta_part)


def voigt_breadth_per_nm(gauss_breadth_per_nm: float, lorentz_breadth_per_nm: float) -> float:
    """Integral breadth of a Voigt profile from its Gaussian and Lorentzian breadths.

    beta = beta_G exp(-k^2) / erfc(k) = beta_G / erfcx(k), k = beta_L / (sqrt(pi) beta_G)
    (Langford, J. Appl. Cryst. 11, 10 (1978)); beta_L alone when beta_G = 0.

    Parameters
    ----------
    gauss_breadth_per_nm, lorentz_breadth_per_nm : float
        Integral breadths of the two components (>= 0), in nm^-1.

    Returns
    -------
    float
        Integral breadth of their convolution, in nm^-1.

    Examples
    --------
    >>> round(voigt_breadth_per_nm(1.0, 0.0), 6), round(voigt_breadth_per_nm(0.0, 1.0), 6)
    (1.0, 1.0)
    """
    if gauss_breadth_per_nm <= 0.0:
        return lorentz_breadth_per_nm
    k = lorentz_breadth_per_nm / (math.sqrt(math.pi) * gauss_breadth_per_nm)
    return float(gauss_breadth_per_nm / erfcx(k))


def remove_instrumental_breadth(
    fwhm_per_nm: float,
    instrument_fwhm_per_nm: float,
    *,
    peak_shape: PeakShape,
    eta: float | None = None,
    instrument_eta: float = 0.0,
) -> float:
    """Sample integral breadth with the instrument removed (Voigt rule, module docstring).

    Parameters
    ----------
    fwhm_per_nm : float
        FWHM of the fitted profile, in nm^-1.
    instrument_fwhm_per_nm : float
        Instrumental FWHM at the same q, in nm^-1; 0 removes nothing.
    peak_shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Shape the profile was fitted with.
    eta : float, optional
        Its Lorentzian height share ("pseudo_voigt" only).
    instrument_eta : float, default 0.0
        Lorentzian height share of the instrumental profile (0: Gaussian, as the
        calibrant's lines were fitted with "gaussian").

    Returns
    -------
    float
        The sample line's integral breadth, in nm^-1; NaN when an input is NaN or the
        measured profile is not wider than the instrument in either part.

    Raises
    ------
    ValueError
        If the instrumental width is negative, or as :func:`integral_breadth_per_nm`.

    Examples
    --------
    >>> round(remove_instrumental_breadth(0.5, 0.3, peak_shape="gaussian")
    ...       / integral_breadth_per_nm(0.4, peak_shape="gaussian"), 3)
    1.0
    """
    if instrument_fwhm_per_nm < 0:
        msg = (
            f"instrumental FWHM must be >= 0 nm^-1, got {instrument_fwhm_per_nm!r}; "
            "check the resolution calibration"
        )
        raise ValueError(msg)
    measured = integral_breadth_per_nm(fwhm_per_nm, peak_shape=peak_shape, eta=eta)
    if not (math.isfinite(measured) and math.isfinite(instrument_fwhm_per_nm)):
        return math.nan
    if instrument_fwhm_per_nm == 0.0:
        return measured
    gauss_m, lorentz_m = voigt_breadths_per_nm(fwhm_per_nm, _lorentz_eta(peak_shape, eta))
    gauss_i, lorentz_i = voigt_breadths_per_nm(instrument_fwhm_per_nm, instrument_eta)
    if gauss_m < gauss_i or lorentz_m < lorentz_i or (gauss_m, lorentz_m) == (gauss_i, lorentz_i):
        return math.nan
    return voigt_breadth_per_nm(math.sqrt(gauss_m**2 - gauss_i**2), lorentz_m - lorentz_i)


def voigt_breadths_per_nm(fwhm_per_nm: float, eta: float) -> tuple[float, float]:
    """Gaussian and Lorentzian integral breadths of the Voigt a pseudo-Voigt stands for.

    The Voigt with the pseudo-Voigt's FWHM and integral breadth beta: with
    phi = FWHM / beta in [2 / pi, 2 sqrt(ln 2 / pi)], de Keijser, Langford, Mittemeijer &
    Vogels, J. Appl. Cryst. 15, 308 (1982):
    beta_L = beta (2.0207 - 0.4803 phi - 1.7756 phi^2),
    beta_G = beta (0.6420 + 1.4187 sqrt(phi - 2 / pi) - 2.2043 phi + 1.8706 phi^2);
    exact (one part zero) for eta = 0 and eta = 1.

    Parameters
    ----------
    fwhm_per_nm : float
        FWHM of the pseudo-Voigt, in nm^-1.
    eta : float
        Its Lorentzian height share, in [0, 1].

    Returns
    -------
    (float, float)
        (beta_G, beta_L), in nm^-1, each >= 0.

    Examples
    --------
    >>> [round(b, 4) for b in voigt_breadths_per_nm(1.0, 0.0)]
    [1.0645, 0.0]
    """
    breadth = integral_breadth_per_nm(fwhm_per_nm, peak_shape="pseudo_voigt", eta=eta)
    if eta <= 0.0:
        return breadth, 0.0
    if eta >= 1.0:
        return 0.0, breadth
    phi = min(max(fwhm_per_nm / breadth, 2.0 / math.pi), 1.0 / GAUSS_BREADTH_PER_FWHM)
    lorentz = breadth * (2.0207 - 0.4803 * phi - 1.7756 * phi**2)
    gauss = breadth * (
        0.6420 + 1.4187 * math.sqrt(phi - 2.0 / math.pi) - 2.2043 * phi + 1.8706 * phi**2
    )
    return max(gauss, 0.0), max(lorentz, 0.0)


def _breadth_per_fwhm(lorentz_eta: float) -> float:
    """Integral breadth over FWHM of a pseudo-Voigt of Lorentzian height share eta."""
    return (1.0 - lorentz_eta) * GAUSS_BREADTH_PER_FWHM + lorentz_eta * LORENTZ_BREADTH_PER_FWHM


def _lorentz_eta(peak_shape: PeakShape, eta: float | None) -> float:
    if peak_shape not in PEAK_SHAPES:
        msg = f"peak_shape must be one of {PEAK_SHAPES}, got {peak_shape!r}"
        raise ValueError(msg)
    if peak_shape == "gaussian":
        return 0.0
    if peak_shape == "lorentzian":
        return 1.0
    if eta is None or not (math.isnan(eta) or 0.0 <= eta <= 1.0):
        msg = f"a pseudo-Voigt width needs its Lorentzian fraction eta in [0, 1], got {eta!r}"
        raise ValueError(msg)
    return eta


def _check_k(k_factor: float) -> None:
    if not (math.isfinite(k_factor) and k_factor > 0):
        msg = f"Scherrer k_factor must be a positive number, got {k_factor!r}"
        raise ValueError(msg)


def _tch_fwhm(gauss_fwhm: float, lorentz_fwhm: float) -> float:
    """TCH total FWHM of Gaussian and Lorentzian widths (same unit as the inputs)."""
    total = sum(c * gauss_fwhm ** (5 - i) * lorentz_fwhm**i for i, c in enumerate(_TCH_FWHM))
    return float(total**0.2)


def _tch_lorentz_fraction(eta: float) -> float:
    """Lorentzian width fraction Gamma_L / Gamma from the pseudo-Voigt eta (TCH, inverted)."""
    c1, c2, c3 = _TCH_ETA
    return _root_in_unit_interval(np.array([c3, c2, c1, -eta]))


def _tch_gauss_fraction(lorentz_fraction: float) -> float:
    """Gamma_G / Gamma for a profile with Gamma_L / Gamma = `lorentz_fraction`."""
    rho = lorentz_fraction
    coefficients = [c * rho**i for i, c in enumerate(_TCH_FWHM)]
    coefficients[-1] -= 1.0  # Gamma = 1
    return _root_in_unit_interval(np.array(coefficients))


def _root_in_unit_interval(coefficients: NDArray[np.float64]) -> float:
    """The real root in [0, 1] of a polynomial that is monotone there (highest power first)."""
    roots = np.roots(coefficients)
    real = roots[np.abs(roots.imag) < 1e-9].real
    inside = real[(real >= -1e-9) & (real <= 1.0 + 1e-9)]
    return float(np.clip(inside.min() if inside.size else 0.0, 0.0, 1.0))


# --------------------------------------------------------------------------------------
# the exact line of cube-shaped domains (method "cube_profile")
# --------------------------------------------------------------------------------------

#: Nodes of the size average, in standard deviations of the number distribution.
_SIZE_NODES = np.linspace(-4.0, 4.0, 41)
#: Column-length steps up to the largest edge, and the zero padding (dq grid spacing
#: pi / (padding x largest edge)).
_COLUMN_STEPS = 128
_COLUMN_PADDING = 16


def lorentz_height_share(area_share: float) -> float:
    """Lorentzian share of a pseudo-Voigt's height from its share of the area (lmfit's).

    Both parts have the same FWHM; height per area is 1 / (FWHM sqrt(pi / (4 ln 2))) for
    the Gaussian and 2 / (pi FWHM) for the Lorentzian.

    Examples
    --------
    >>> lorentz_height_share(0.0), lorentz_height_share(1.0), round(lorentz_height_share(0.5), 4)
    (0.0, 1.0, 0.4039)
    """
    lorentz = area_share / LORENTZ_BREADTH_PER_FWHM
    return lorentz / (lorentz + (1.0 - area_share) / GAUSS_BREADTH_PER_FWHM)


def volume_weighted_edge_ratio(size_spread: float) -> float:
    """<L^4> / <L^3> over the mean edge, for a Gaussian number distribution of edges.

    The integral breadth of a cube line measures this volume-weighted mean edge (each cube
    diffracts in proportion to its volume, with a line of breadth 2 pi / L).

    Parameters
    ----------
    size_spread : float
        Relative standard deviation of the edge, >= 0.

    Returns
    -------
    float
        The ratio, close to (1 + 6 s^2 + 3 s^4) / (1 + 3 s^2); from the same
        quadrature the profile uses.

    Examples
    --------
    >>> round(volume_weighted_edge_ratio(0.0), 6), round(volume_weighted_edge_ratio(0.1), 4)
    (1.0, 1.0294)
    """
    edges, weights = _edge_nodes(1.0, size_spread)
    return float(np.sum(weights * edges**4) / np.sum(weights * edges**3))


def cube_line_profile(
    dq_per_nm: FloatArray,
    *,
    edge_nm: float,
    size_spread: float = 0.0,
    instrument_fwhm_per_nm: float = 0.0,
    instrument_eta: float = 0.0,
) -> FloatArray:
    """Area-normalised {h00} line of cube-shaped domains, instrument convolved in.

    Computed in Fourier space (E. F. Bertaut, Acta Cryst. 3, 14 (1950); B. E. Warren, X-ray
    Diffraction (1969), ch. 13): a cube of edge L with q along <100> has columns of length
    L only, so its size coefficient is A_L(r) = 1 - r / L for r < L, and the line is
    (1 / pi) int_0^inf A(r) G(r) cos(dq r) dr, which is (L / 2 pi) sinc^2(dq L / 2) for
    one cube without the instrument. A Gaussian number distribution of edges (mean m,
    standard deviation `size_spread` * m) is averaged with each cube's volume as weight,
    A(r) = sum n_L L^3 A_L(r) / sum n_L L^3, and the instrument multiplies A by its
    Fourier transform G(r) (pseudo-Voigt of the given FWHM and Lorentzian height share).

    Parameters
    ----------
    dq_per_nm : ndarray of shape (n,)
        Distance from the line's centre, in nm^-1.
    edge_nm : float
        Volume-weighted mean edge <L^4> / <L^3>, in nm (> 0); the sample line's integral
        breadth is 2 pi / `edge_nm`.
    size_spread : float
        Relative standard deviation of the number distribution of edges (>= 0).
    instrument_fwhm_per_nm : float
        Instrumental FWHM, in nm^-1 (0: none).
    instrument_eta : float
        Lorentzian height share of the instrumental pseudo-Voigt, in [0, 1].

    Returns
    -------
    ndarray of shape (n,)
        The profile, in nm (its integral over dq is 1).

    Raises
    ------
    ValueError
        If `edge_nm` is not positive or `size_spread` is negative.

    Examples
    --------
    >>> p = cube_line_profile(np.array([0.0]), edge_nm=5.7)
    >>> round(float(p[0]) * 2 * math.pi, 4)  # height = L / (2 pi): breadth 2 pi / L
    5.7
    """
    if not (math.isfinite(edge_nm) and edge_nm > 0):
        msg = f"cube edge must be > 0 nm, got {edge_nm!r}"
        raise ValueError(msg)
    if not (math.isfinite(size_spread) and size_spread >= 0):
        msg = f"size_spread must be >= 0, got {size_spread!r}"
        raise ValueError(msg)
    mean_nm = edge_nm / volume_weighted_edge_ratio(size_spread)
    edges, weights = _edge_nodes(mean_nm, size_spread)
    line_table = _profile_on_grid(edges, weights * edges**3, instrument_fwhm_per_nm, instrument_eta)
    return _interp_even(np.abs(np.asarray(dq_per_nm, dtype=np.float64)), line_table)


def _profile_on_grid(
    edges: FloatArray, volumes: FloatArray, instrument_fwhm_per_nm: float, instrument_eta: float
) -> tuple[float, FloatArray]:
    """The line on a uniform dq grid (step, values at k * step) by one real FFT.

    The column function f(r) = A(r) G(r) is sampled at r_k = k dr (dr: 1/_COLUMN_STEPS of
    the largest edge), zero-padded to _COLUMN_PADDING times the largest edge, and the
    cosine integral (trapezoid rule) is read off the FFT: P(dq_m) = dr Re F_m / (2 pi),
    dq_m = pi m / (N dr).
    """
    r_max = float(edges.max())
    step = r_max / _COLUMN_STEPS
    n = _COLUMN_STEPS * _COLUMN_PADDING
    r = np.arange(_COLUMN_STEPS + 1, dtype=np.float64) * step
    order = np.argsort(edges)
    sorted_edges, sorted_volumes = edges[order], volumes[order] / volumes.sum()
    # A(r) = sum_{L > r} v_L (1 - r / L): suffix sums over the sorted edges
    tail_v = np.concatenate([np.cumsum(sorted_volumes[::-1])[::-1], [0.0]])
    tail_vl = np.concatenate([np.cumsum((sorted_volumes / sorted_edges)[::-1])[::-1], [0.0]])
    first = np.searchsorted(sorted_edges, r, side="right")
    column = np.clip(tail_v[first] - r * tail_vl[first], 0.0, None)
    column = column * _instrument_transform(r, instrument_fwhm_per_nm, instrument_eta)
    even = np.zeros(2 * n)
    even[: r.size] = column
    even[2 * n - r.size + 1 :] = column[:0:-1]
    spectrum = np.fft.rfft(even).real[: n + 1]
    values = spectrum * step / (2.0 * math.pi)
    # padded for _interp_even: padded[k + 1] = values[k], padded[0] = values[1] (even line)
    return math.pi / (n * step), np.concatenate([values[1:2], values, [0.0, 0.0]])


def _edge_nodes(mean_nm: float, size_spread: float) -> tuple[FloatArray, FloatArray]:
    """Edges and number weights of the size average (Gaussian, positive edges only)."""
    if size_spread == 0.0:
        return np.array([mean_nm]), np.array([1.0])
    edges = mean_nm * (1.0 + size_spread * _SIZE_NODES)
    weights = np.exp(-0.5 * _SIZE_NODES**2)
    keep = edges > 0.0
    return edges[keep], weights[keep]


def _instrument_transform(r: FloatArray, fwhm_per_nm: float, eta: float) -> FloatArray:
    """Fourier transform of the area-normalised instrumental pseudo-Voigt at lengths r (nm)."""
    if fwhm_per_nm <= 0.0:
        return np.ones_like(r)
    gauss_area = (1.0 - eta) * GAUSS_BREADTH_PER_FWHM
    lorentz_area = eta * LORENTZ_BREADTH_PER_FWHM
    lorentz_share = lorentz_area / (gauss_area + lorentz_area)
    gauss = np.exp(-((fwhm_per_nm * r) ** 2) / (16.0 * math.log(2.0)))
    lorentz = np.exp(-0.5 * fwhm_per_nm * r)
    return np.asarray((1.0 - lorentz_share) * gauss + lorentz_share * lorentz)


@dataclass(frozen=True, slots=True)
class CubeLineFit:
    """The {200} line of a cut fitted with the exact line of cube-shaped domains.

    Attributes
    ----------
    edge_nm, edge_err_nm : float
        Volume-weighted mean cube edge <L^4> / <L^3> and its standard error, in nm.
    center_per_nm : float
        Line centre, in nm^-1.
    fwhm_per_nm, fwhm_err_per_nm : float
        FWHM of the fitted line as observed (instrument included), in nm^-1.
    breadth_per_nm, breadth_err_per_nm : float
        Integral breadth (area / height) of the observed line, in nm^-1.
    sample_fwhm_per_nm, sample_fwhm_err_per_nm : float
        FWHM of the sample's line (instrument removed), in nm^-1.
    sample_breadth_per_nm, sample_breadth_err_per_nm : float
        Integral breadth of the sample's line, 2 pi / `edge_nm`, in nm^-1.
    redchi : float
        Reduced chi-square of the fit.
    ok : bool
        False when the fit failed; the values are then NaN.
    message : str
        Why not, in words for the beamline user.
    """

    edge_nm: float
    edge_err_nm: float
    center_per_nm: float
    fwhm_per_nm: float
    fwhm_err_per_nm: float
    breadth_per_nm: float
    breadth_err_per_nm: float
    sample_fwhm_per_nm: float
    sample_fwhm_err_per_nm: float
    sample_breadth_per_nm: float
    sample_breadth_err_per_nm: float
    redchi: float
    ok: bool
    message: str = ""


def fit_cube_line(
    q_per_nm: FloatArray,
    intensity: FloatArray,
    sigma: FloatArray,
    *,
    center_per_nm: float,
    fwhm_per_nm: float,
    window_per_nm: tuple[float, float],
    size_spread: float,
    instrument_fwhm_per_nm: float,
    instrument_eta: float = 0.0,
    neighbours: tuple[tuple[float, float, float], ...] = (),
    background_order: int = 2,
) -> CubeLineFit:
    """Fit the {200} line of a cut with :func:`cube_line_profile` (method "cube_profile").

    The model is a Legendre background of `background_order` plus a height times the cube
    line (centre and volume-weighted edge free) plus, for each neighbouring reflection,
    a height times a pseudo-Voigt of fixed centre, FWHM and Lorentzian share (from the
    {200} peak fit). Heights and background are solved linearly at each step (variable
    projection); centre and edge by a bounded Levenberg-Marquardt. The standard
    errors come from the Jacobian, scaled by sqrt(reduced chi-square) where that is > 1.

    Parameters
    ----------
    q_per_nm, intensity, sigma : ndarray of shape (n,)
        The cut: q_par in nm^-1, intensity and its standard error (NaN bins dropped).
    center_per_nm, fwhm_per_nm : float
        Start: centre and FWHM of the fitted {200} peak, in nm^-1.
    window_per_nm : (float, float)
        Fitted q range, in nm^-1.
    size_spread : float
        Relative standard deviation of the cube edge (fixed).
    instrument_fwhm_per_nm, instrument_eta : float
        Instrumental FWHM at the line, in nm^-1, and its Lorentzian height share.
    neighbours : tuple of (centre, FWHM, eta)
        Other reflections inside the window ({111}), in nm^-1.
    background_order : int
        Order of the polynomial background.

    Returns
    -------
    CubeLineFit
        Never raises for bad data: a failed fit has ``ok=False`` and a message.

    Examples
    --------
    >>> q = np.linspace(16.5, 23.5, 200)
    >>> y = 100 + 4000 * cube_line_profile(q - 20.52, edge_nm=5.7, instrument_fwhm_per_nm=0.25)
    >>> fit = fit_cube_line(q, y, np.sqrt(y), center_per_nm=20.5, fwhm_per_nm=0.9,
    ...                     window_per_nm=(16.5, 23.5), size_spread=0.0,
    ...                     instrument_fwhm_per_nm=0.25)
    >>> round(fit.edge_nm, 2), round(fit.sample_breadth_per_nm * fit.edge_nm / (2 * math.pi), 6)
    (5.7, 1.0)
    """
    q = np.asarray(q_per_nm, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    lo, hi = window_per_nm
    keep = np.isfinite(q) & np.isfinite(y) & np.isfinite(s) & (q >= lo) & (q <= hi)
    if not (math.isfinite(center_per_nm) and math.isfinite(fwhm_per_nm) and fwhm_per_nm > 0):
        return _failed_cube_fit("no {200} peak to start the cube-line fit from")
    n_linear = background_order + 2 + len(neighbours)
    if keep.sum() < n_linear + 4:
        return _failed_cube_fit(f"only {int(keep.sum())} valid bins in the {{200}} window")
    q, y, s = q[keep], y[keep], s[keep]
    positive = s[s > 0]
    s = np.where(s > 0, s, positive.min() if positive.size else 1.0)
    x = (2.0 * q - (lo + hi)) / (hi - lo)
    fixed = [
        np.polynomial.legendre.legval(x, np.eye(background_order + 1)[k])
        for k in range(background_order + 1)
    ]
    for centre, width, eta in neighbours:
        u = (q - centre) / width
        fixed.append((1.0 - eta) * np.exp(-4.0 * math.log(2.0) * u * u) + eta / (1.0 + 4.0 * u * u))
    fixed_design = np.array(fixed).T / s[:, None]
    weighted_y = y / s
    # the fixed block is eliminated once (Schur complement): each residual then needs
    # only the line's products, not a new linear solve
    fixed_inverse = np.linalg.inv(fixed_design.T @ fixed_design)
    fixed_coef = fixed_inverse @ (fixed_design.T @ weighted_y)
    fixed_residual = fixed_design @ fixed_coef - weighted_y
    fixed_columns_t = np.ascontiguousarray(fixed_design.T)

    family = _line_family(size_spread, round(instrument_fwhm_per_nm, 4), instrument_eta)
    bare = _line_family(size_spread, 0.0, 0.0)

    def table(edge_nm: float, with_instrument: bool = True) -> _LineTable:
        return (family if with_instrument else bare).at(edge_nm)

    def residual(center: float, line_table: _LineTable) -> FloatArray:
        # linear interpolation here (fast; <= 5e-4 of the height at the table's spacing)
        step, padded = line_table
        line = np.interp(np.abs(q - center) / step, family.index, padded[1:-2], right=0.0) / s
        # least squares of [fixed | line]: the line's part orthogonal to the fixed columns
        # takes the line's coefficient, the fixed fit's residual the rest
        orthogonal = line - fixed_design @ (fixed_inverse @ (fixed_columns_t @ line))
        norm2 = float(orthogonal @ orthogonal)
        if not norm2 > 0.0:  # the line is zero or a combination of the fixed columns
            singular = "Singular matrix"
            raise np.linalg.LinAlgError(singular)
        coef = -float(orthogonal @ fixed_residual) / norm2
        return np.asarray(fixed_residual + coef * orthogonal)

    # start: K_w = 0.8859 on the FWHM with the instrument removed in quadrature
    sample_fwhm0 = math.sqrt(max(fwhm_per_nm**2 - instrument_fwhm_per_nm**2, 0.25 * fwhm_per_nm**2))
    edge0 = 2.0 * math.pi * SINC2_FWHM_K / sample_fwhm0
    try:
        fitted = _levenberg_marquardt(
            residual,
            table,
            center_per_nm,
            min(max(edge0, _EDGE_BOUNDS_NM[0] * 1.2), _EDGE_BOUNDS_NM[1] / 1.2),
            (lo, hi),
        )
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as error:
        return _failed_cube_fit(f"the cube-line fit failed numerically ({error})")
    if isinstance(fitted, str):
        return _failed_cube_fit(fitted)
    center, edge, cost, jac = float(fitted[0]), float(fitted[1]), fitted[2], fitted[3]
    dof = max(q.size - n_linear - 2, 1)
    redchi = float(cost / dof)
    try:
        cov = np.linalg.inv(jac.T @ jac) * max(redchi, 1.0)
    except np.linalg.LinAlgError:
        cov = np.full((2, 2), np.nan)
    edge_err = math.sqrt(cov[1, 1]) if cov[1, 1] >= 0 else math.nan
    step = 1e-3 * edge
    observed = _line_widths(table(edge))
    observed_hi = _line_widths(table(edge + step))
    sample = _line_widths(table(edge, with_instrument=False))

    def err(value: float, shifted: float) -> float:
        return abs(shifted - value) / step * edge_err

    lo_edge, hi_edge = _EDGE_BOUNDS_NM
    at_bound = edge <= lo_edge * 1.001 or edge >= hi_edge * 0.999
    return CubeLineFit(
        edge_nm=edge,
        edge_err_nm=edge_err,
        center_per_nm=center,
        fwhm_per_nm=observed[0],
        fwhm_err_per_nm=err(observed[0], observed_hi[0]),
        breadth_per_nm=observed[1],
        breadth_err_per_nm=err(observed[1], observed_hi[1]),
        sample_fwhm_per_nm=sample[0],
        # without the instrument the line scales as 1 / edge (fixed relative spread)
        sample_fwhm_err_per_nm=sample[0] * edge_err / edge,
        sample_breadth_per_nm=2.0 * math.pi / edge,
        sample_breadth_err_per_nm=2.0 * math.pi * edge_err / edge**2,
        redchi=redchi,
        ok=not at_bound,
        message=f"the cube edge ran to a bound of {lo_edge:g}-{hi_edge:g} nm" if at_bound else "",
    )


#: The fitted volume-weighted edge stays within these bounds, in nm.
_EDGE_BOUNDS_NM = (0.5, 200.0)
#: Tabulated edges of a line family: log-spaced over the bounds, 2.3 % apart.
_FAMILY_EDGES = 261


@dataclass(frozen=True, slots=True)
class _LineFamily:
    """Cube lines for every edge, tabulated once per size spread and instrument.

    Without the instrument, P(dq; L) = L g(dq L); with it, g depends on L a little. Each
    row holds g on the grid u_k = k * u_step (the FFT grid scales as 1 / L), and a line at
    any edge is interpolated linearly in log(edge) between two rows.
    """

    log_edges: FloatArray
    u_step: float
    rows: FloatArray  # (n_edges, n_u + 3), padded as a _LineTable
    index: FloatArray  # 0, 1, ..., n_u - 1: the grid in units of its step

    def at(self, edge_nm: float) -> _LineTable:
        """The padded line table at `edge_nm` (clipped to the tabulated edges)."""
        position = (math.log(edge_nm) - self.log_edges[0]) / (self.log_edges[1] - self.log_edges[0])
        j = min(max(int(position), 0), self.log_edges.size - 2)
        w = min(max(position - j, 0.0), 1.0)
        g = (1.0 - w) * self.rows[j] + w * self.rows[j + 1]
        return self.u_step / edge_nm, edge_nm * g


@functools.lru_cache(maxsize=32)
def _line_family(
    size_spread: float, instrument_fwhm_per_nm: float, instrument_eta: float
) -> _LineFamily:
    """Tabulate :func:`cube_line_profile` over the edge bounds (cached per run settings)."""
    ratio = volume_weighted_edge_ratio(size_spread)
    log_edges = np.linspace(
        math.log(_EDGE_BOUNDS_NM[0]), math.log(_EDGE_BOUNDS_NM[1]), _FAMILY_EDGES
    )
    rows = []
    u_step = math.nan
    for edge in np.exp(log_edges):
        edges, weights = _edge_nodes(edge / ratio, size_spread)
        step, padded = _profile_on_grid(
            edges, weights * edges**3, instrument_fwhm_per_nm, instrument_eta
        )
        u_step = step * edge
        rows.append(padded / edge)
    table = np.array(rows)
    index = np.arange(table.shape[1] - 3, dtype=np.float64)
    return _LineFamily(log_edges, float(u_step), table, index)


#: Most Levenberg-Marquardt iterations of the cube-line fit.
_MAX_ITERATIONS = 60

#: (dq step, line values at k * step with one mirrored point before and two zeros after).
_LineTable = tuple[float, FloatArray]


def _levenberg_marquardt(
    residual: Callable[[float, _LineTable], FloatArray],
    table: Callable[[float], _LineTable],
    center0: float,
    edge0: float,
    center_bounds: tuple[float, float],
) -> tuple[float, float, float, FloatArray] | str:
    """Bounded Levenberg-Marquardt on (centre, edge).

    The line table is rebuilt only when the edge changes (the centre derivative reuses it).
    Returns centre, edge, chi-square and the Jacobian, or a message.
    """
    center, edge = center0, edge0
    current = table(edge)
    r = residual(center, current)
    cost = float(r @ r)
    damping = 1e-3
    for _ in range(_MAX_ITERATIONS):
        h_c = 1e-5 * max(abs(center), 1.0)
        h_e = 1e-4 * edge
        shifted = table(edge + h_e)
        jac = np.column_stack(
            [
                (residual(center + h_c, current) - r) / h_c,
                (residual(center, shifted) - r) / h_e,
            ]
        )
        gradient = jac.T @ r
        hessian = jac.T @ jac
        while True:
            step = np.linalg.solve(hessian + damping * np.diag(np.diag(hessian)), -gradient)
            new_center = min(max(center + step[0], center_bounds[0]), center_bounds[1])
            new_edge = min(max(edge + step[1], _EDGE_BOUNDS_NM[0]), _EDGE_BOUNDS_NM[1])
            candidate = table(new_edge)
            new_r = residual(new_center, candidate)
            new_cost = float(new_r @ new_r)
            if new_cost <= cost:
                moved_c, moved_e = abs(new_center - center), abs(new_edge - edge)
                center, edge, current, r, cost = new_center, new_edge, candidate, new_r, new_cost
                damping = max(damping / 10.0, 1e-9)
                break
            damping *= 10.0
            if damping > 1e10:
                return center, edge, cost, jac  # no step lowers chi-square: at the minimum
        # converged well inside the statistical errors (edge ~0.3 %, centre ~1e-4 relative)
        if moved_e <= 1e-4 * edge and moved_c <= 1e-5 * max(abs(center), 1.0):
            return center, edge, cost, jac
    return f"the cube-line fit did not converge in {_MAX_ITERATIONS} iterations"


def _interp_even(dq_per_nm: FloatArray, line_table: _LineTable) -> FloatArray:
    """Cubic (4-point Lagrange) interpolation of an even line tabulated at k * step.

    k >= 0; the line is 0 beyond the table.
    """
    step, padded = line_table
    x = dq_per_nm / step
    index = x.astype(np.int64)  # x >= 0
    t = x - index
    inside = index < padded.size - 4
    index = np.where(inside, index, 0)
    p0, p1, p2, p3 = (padded[index + j] for j in range(4))
    result = (
        -t * (t - 1) * (t - 2) / 6 * p0
        + (t + 1) * (t - 1) * (t - 2) / 2 * p1
        - (t + 1) * t * (t - 2) / 2 * p2
        + (t + 1) * t * (t - 1) / 6 * p3
    )
    return np.where(inside, result, 0.0)


def _line_widths(line_table: _LineTable) -> tuple[float, float]:
    """(FWHM, integral breadth) of a tabulated line, in nm^-1."""
    step, padded = line_table
    values = padded[1:-2]
    height = float(values[0])
    below = int(np.argmax(values < 0.5 * height))
    fine = np.linspace((below - 1) * step, below * step, 201)
    profile = _interp_even(fine, line_table)
    crossing = float(np.interp(-0.5 * height, -profile, fine))
    return 2.0 * crossing, 1.0 / height


def _failed_cube_fit(message: str) -> CubeLineFit:
    nan = math.nan
    return CubeLineFit(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, False, message)
