"""Scherrer analysis: domain size from a peak width in q.

D = 2 pi K / beta, with beta the FWHM in q (nm^-1) after the instrumental width is removed.
Widths are removed by the rule of the fitted peak shape:

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
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from pipeline.config import PEAK_SHAPES, PeakShape

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
