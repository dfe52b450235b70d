"""Scherrer analysis: domain size from the width of the {200} line in q.

D = 2 pi K / beta, with beta a width of the sample's line in q (nm^-1) after the
instrumental width is removed. Three methods (``[scherrer] method``), each with its K:

- ``"cube_profile"`` (default): the cut is fitted with the exact size-broadened line of
  cube-shaped domains, q along <100> (:mod:`pipeline.cube_line`): for one cube of edge L
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

import math

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
