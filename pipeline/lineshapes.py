"""Peak line shapes: pure maths, one definition of each, parametrised by centre and FWHM.

Every shape has height 1 at its centre, as the rod and {200} models use them (their
heights are the linear parameters of the separable fit). The functions are compiled with
numba so that the fitting kernel (:mod:`pipeline.varpro`) calls the very same definition
on scalars that users call here on arrays; ``lmfit`` models built from them
(:mod:`pipeline.lmfit_models`) therefore evaluate the same profile as the fast engine.

- Gaussian: exp(-4 ln 2 u^2), u = (x - center) / fwhm; its integral breadth is
  fwhm sqrt(pi / (4 ln 2)) = 1.0645 fwhm.
- Lorentzian: 1 / (1 + 4 u^2); integral breadth pi fwhm / 2.
- pseudo-Voigt: (1 - eta) Gaussian + eta Lorentzian with one FWHM, 0 <= eta <= 1.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

#: LLVM fast-math flags of the compiled kernels: reassociation (vectorised sums) but
#: not "no NaN / no inf", which would let the compiler drop the finiteness checks.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: 4 ln 2: a Gaussian of FWHM w is exp(-4 ln 2 (x / w)^2).
FOUR_LN2 = 4.0 * math.log(2.0)


@numba.njit(cache=True)
def gaussian_unit(u: Any) -> Any:
    """Unit-height Gaussian of unit FWHM at ``u`` (a float or an ndarray).

    Parameters
    ----------
    u : float or ndarray
        Distance from the centre in units of the FWHM.

    Returns
    -------
    float or ndarray
        exp(-4 ln 2 u^2), of the shape of `u`.
    """
    return np.exp(-FOUR_LN2 * u * u)


@numba.njit(cache=True)
def lorentzian_unit(u: Any) -> Any:
    """Unit-height Lorentzian of unit FWHM at ``u`` (a float or an ndarray).

    Parameters
    ----------
    u : float or ndarray
        Distance from the centre in units of the FWHM.

    Returns
    -------
    float or ndarray
        1 / (1 + 4 u^2), of the shape of `u`.
    """
    return 1.0 / (1.0 + 4.0 * u * u)


def gaussian(x: Any, center: float, fwhm: float) -> Any:
    """Unit-height Gaussian.

    Parameters
    ----------
    x : float or ndarray
        Positions (e.g. q in nm^-1).
    center, fwhm : float
        Centre and full width at half maximum, in the units of `x`; `fwhm` > 0.

    Returns
    -------
    float or ndarray
        Profile values, 1 at `center` and 0.5 at `center` +- `fwhm` / 2.

    Examples
    --------
    >>> float(gaussian(1.0, 1.0, 0.2)), round(float(gaussian(1.1, 1.0, 0.2)), 6)
    (1.0, 0.5)
    """
    return gaussian_unit((np.asarray(x, dtype=np.float64) - center) / fwhm)


def lorentzian(x: Any, center: float, fwhm: float) -> Any:
    """Unit-height Lorentzian.

    Parameters
    ----------
    x : float or ndarray
        Positions (e.g. q in nm^-1).
    center, fwhm : float
        Centre and full width at half maximum, in the units of `x`; `fwhm` > 0.

    Returns
    -------
    float or ndarray
        Profile values, 1 at `center` and 0.5 at `center` +- `fwhm` / 2.

    Examples
    --------
    >>> float(lorentzian(1.0, 1.0, 0.2)), round(float(lorentzian(1.1, 1.0, 0.2)), 6)
    (1.0, 0.5)
    """
    return lorentzian_unit((np.asarray(x, dtype=np.float64) - center) / fwhm)


def pseudo_voigt(x: Any, center: float, fwhm: float, eta: float) -> Any:
    """Unit-height pseudo-Voigt: (1 - eta) Gaussian + eta Lorentzian of one FWHM.

    Parameters
    ----------
    x : float or ndarray
        Positions (e.g. q in nm^-1).
    center, fwhm : float
        Centre and FWHM, in the units of `x`; `fwhm` > 0.
    eta : float
        Lorentzian fraction, 0 (Gaussian) to 1 (Lorentzian).

    Returns
    -------
    float or ndarray
        Profile values, 1 at `center` and 0.5 at `center` +- `fwhm` / 2.

    Examples
    --------
    >>> round(float(pseudo_voigt(1.1, 1.0, 0.2, 0.3)), 6)
    0.5
    """
    u = (np.asarray(x, dtype=np.float64) - center) / fwhm
    return (1.0 - eta) * gaussian_unit(u) + eta * lorentzian_unit(u)
