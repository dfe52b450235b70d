"""The rod and {200} models as lmfit ``Model`` objects, for users who refit a stored cut.

The fast engine (:mod:`pipeline.varpro`) solves the linear parameters (background
coefficients, peak heights) by projection and moves only the nonlinear ones. Here the same
model is written as one lmfit function of *every* parameter, with the same names and
starting values at the engine's solution, so that a cut from ``results.h5`` can be
refitted with lmfit and read with ``fit_report()``::

    model, params = rod_lmfit_model(q, intensity, sigma, fit=rod_fit, settings=settings)
    result = model.fit(intensity, params, q=q, weights=1 / sigma)
    print(result.fit_report())

Names: ``exponent`` (held), ``q1``, ``fwhm``, ``growth`` (with the linear width model),
``gamma`` (pseudo-hexagonal), ``bg0``, ``bg1``, ... (background basis coefficients),
``const``, and per rod family ``h0``, ``h1``, ... (or ``hg0``/``hl0`` for the Gaussian and
Lorentzian parts of a pseudo-Voigt). For the {200}: ``center200``, ``fwhm200``,
``height200`` (``hg200``/``hl200``), ``center111``..., ``bg0``, ... Heights are not bounded
below by 0 here unless they were solved as 0 (lmfit's bounds would bias the errors of
heights near 0); the engine holds them >= 0.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import lmfit
import numpy as np

from pipeline.lattice import GAMMA_HEXAGONAL_DEG
from pipeline.lineshapes import gaussian, lorentzian
from pipeline.peak200 import RATIO_111_TO_200, RATIO_220_TO_200, PeakFit, PeakFitSettings
from pipeline.rods import (
    RodFit,
    RodFitSettings,
    rod_envelope,
    rod_families,
)
from pipeline.varpro import FloatArray, bspline_basis

__all__ = ["peak200_lmfit_model", "rod_lmfit_model"]


def _background_basis(q: FloatArray, order: int, knot_spacing_per_nm: float | None) -> FloatArray:
    if knot_spacing_per_nm is not None:
        return bspline_basis(q, knot_spacing_per_nm)
    x = (2.0 * q - (q[0] + q[-1])) / (q[-1] - q[0])
    return np.polynomial.legendre.legvander(x, order)


def _shape_columns(shape: str, q: FloatArray, center: float, fwhm: float) -> list[FloatArray]:
    if shape == "gaussian":
        return [gaussian(q, center, fwhm)]
    if shape == "lorentzian":
        return [lorentzian(q, center, fwhm)]
    return [gaussian(q, center, fwhm), lorentzian(q, center, fwhm)]


def _height_names(shape: str, label: str) -> list[str]:
    return [f"hg{label}", f"hl{label}"] if shape == "pseudo_voigt" else [f"h{label}"]


def _linear_starts(design: FloatArray, y: FloatArray, sigma: FloatArray) -> FloatArray:
    """Weighted linear least squares: the engine's linear solution at fixed nonlinear values."""
    coef, *_ = np.linalg.lstsq(design / sigma[:, None], y / sigma, rcond=None)
    return np.asarray(coef, dtype=np.float64)


def rod_lmfit_model(
    q_per_nm: FloatArray,
    intensity: FloatArray,
    sigma: FloatArray,
    *,
    fit: RodFit,
    settings: RodFitSettings,
) -> tuple[lmfit.Model, lmfit.Parameters]:
    """The reported rod fit as an lmfit Model with its parameters at the engine's solution.

    Parameters
    ----------
    q_per_nm, intensity, sigma : ndarray of shape (n,)
        The cut the fit was made on (finite bins, ascending q), in nm^-1 and counts.
    fit : RodFit
        :func:`pipeline.rods.fit_rods`'s result on that cut, with a rod (``ok`` or not).
    settings : RodFitSettings
        The settings of that fit (background basis).

    Returns
    -------
    model : lmfit.Model
        Independent variable ``q`` (the cut's own q: the rod envelope is bound to it).
    params : lmfit.Parameters
        Named as in the module docstring, starting at the engine's values; ``exponent``
        and ``gamma`` for non-rhombic lattices do not vary.

    Raises
    ------
    ValueError
        If `fit` has no first rod, or the arrays differ in length.

    Notes
    -----
    The rod envelope ("background" rod model) is the background-only fit of this cut,
    fixed, as in the engine.
    """
    q = np.asarray(q_per_nm, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if not (q.size == y.size == s.size):
        msg = (
            f"rod_lmfit_model: q, intensity, sigma differ in length ({q.size}, {y.size}, {s.size})"
        )
        raise ValueError(msg)
    if not math.isfinite(fit.q1_per_nm):
        msg = "rod_lmfit_model: the fit has no first rod (symmetry 'none' or failed)"
        raise ValueError(msg)
    shape, envelope_kind = (
        fit.rod_model.split("/")
        if fit.rod_model
        else (
            settings.peak_shape,
            settings.rod_envelope,
        )
    )
    families = rod_families(fit, q_max_per_nm=float(q[-1]))
    basis = _background_basis(q, settings.background_order, settings.background_knot_spacing_per_nm)
    envelope = (
        rod_envelope(q, y, s, fit.background_exponent, basis)
        if envelope_kind == "background"
        else np.ones_like(q)
    )
    rhombic = fit.symmetry == "pseudo-hexagonal"
    gamma0 = fit.gamma_deg if rhombic else GAMMA_HEXAGONAL_DEG
    n_bg = basis.shape[1]
    n_rods = families.shape[0]
    height_names = [n for j in range(n_rods) for n in _height_names(shape, str(j))]

    def rods_model(q: FloatArray, envelope: FloatArray, **p: float) -> FloatArray:
        cos_g = math.cos(math.radians(p["gamma"]))
        background = (
            q ** -p["exponent"]
            * (
                _background_basis(
                    q, settings.background_order, settings.background_knot_spacing_per_nm
                )
                @ np.array([p[f"bg{k}"] for k in range(n_bg)])
            )
            + p["const"]
        )
        rods = np.zeros_like(q)
        for j, (a, b) in enumerate(families):
            ratio = math.sqrt(a - 2.0 * b * cos_g)
            width = p["fwhm"] * (1.0 + p["growth"] * (ratio - 1.0))
            columns = _shape_columns(shape, q, p["q1"] * ratio, width)
            for name, column in zip(_height_names(shape, str(j)), columns, strict=True):
                rods = rods + p[name] * column
        return np.asarray(background + envelope * rods, dtype=np.float64)

    names = ["exponent", "q1", "fwhm", "growth", "gamma", "const"]
    names += [f"bg{k}" for k in range(n_bg)] + height_names
    model = lmfit.Model(_with_signature(rods_model, names, envelope), independent_vars=["q"])
    # linear starts: the engine's projection at the reported nonlinear values
    cos_g = math.cos(math.radians(gamma0))
    columns: list[FloatArray] = [q**-fit.background_exponent * basis[:, k] for k in range(n_bg)]
    columns.append(np.ones_like(q))
    for a, b in families:
        ratio = math.sqrt(a - 2.0 * b * cos_g)
        width = fit.width_per_nm * (1.0 + fit.width_growth * (ratio - 1.0))
        columns += [envelope * c for c in _shape_columns(shape, q, fit.q1_per_nm * ratio, width)]
    linear = _linear_starts(np.stack(columns, axis=1), y, s)
    params = lmfit.Parameters()
    params.add("exponent", value=fit.background_exponent, vary=False)
    params.add(
        "q1",
        value=fit.q1_per_nm,
        min=settings.q1_window_per_nm[0],
        max=settings.q1_window_per_nm[1],
    )
    params.add("fwhm", value=fit.width_per_nm, min=0.0, max=settings.max_width_per_nm)
    params.add("growth", value=fit.width_growth, vary=settings.width_model == "linear", min=0.0)
    params.add("gamma", value=gamma0, vary=rhombic, min=0.0, max=180.0)
    for k in range(n_bg):
        params.add(f"bg{k}", value=float(linear[k]))
    params.add("const", value=float(linear[n_bg]))
    for name, value in zip(height_names, linear[n_bg + 1 :], strict=True):
        params.add(name, value=float(value))
    return model, params


def _with_signature(func: Any, names: list[str], envelope: FloatArray | None) -> Any:
    """`func(q, envelope, **p)` as `f(q, *, name=0.0, ...)` with the envelope bound.

    lmfit reads parameter names from the signature, so the wrapper spells them out. The
    envelope is fixed on the cut it was made for (ones where None).
    """
    parameters = [inspect.Parameter("q", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=0.0) for n in names]

    def wrapper(q: FloatArray, **p: float) -> FloatArray:
        bound = np.ones_like(q) if envelope is None else envelope
        return func(q, bound, **p)

    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__name__ = func.__name__
    return wrapper


def peak200_lmfit_model(
    q_per_nm: FloatArray,
    intensity: FloatArray,
    sigma: FloatArray,
    *,
    fit: PeakFit,
    settings: PeakFitSettings,
) -> tuple[lmfit.Model, lmfit.Parameters]:
    """The reported {200} fit as an lmfit Model with its parameters at the engine's solution.

    Parameters
    ----------
    q_per_nm, intensity, sigma : ndarray of shape (n,)
        The cut restricted to ``settings.window_per_nm`` (finite bins, ascending q).
    fit : PeakFit
        :func:`pipeline.peak200.fit_peak200`'s result on that cut.
    settings : PeakFitSettings
        Its settings (window, background order, shape).

    Returns
    -------
    model : lmfit.Model
        Independent variable ``q``.
    params : lmfit.Parameters
        ``center200``, ``fwhm200``, heights, neighbours and ``bg0``... at the engine's values.

    Raises
    ------
    ValueError
        If `fit` is not ok.
    """
    if not fit.ok:
        msg = f"peak200_lmfit_model: the {{200}} fit is not ok ({fit.message})"
        raise ValueError(msg)
    q = np.asarray(q_per_nm, dtype=np.float64)
    y = np.asarray(intensity, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    shape = fit.peak_shape
    lo, hi = float(q[0]), float(q[-1])
    peaks = [("200", fit.center_per_nm, fit.fwhm_per_nm)]
    for label, center, width in (
        ("111", fit.center111_per_nm, fit.fwhm111_per_nm),
        ("220", fit.center220_per_nm, fit.fwhm220_per_nm),
    ):
        if math.isfinite(center):
            peaks.append((label, center, width))
    order = settings.background_order
    height_names = [n for label, _, _ in peaks for n in _height_names(shape, label)]
    names = [f"bg{k}" for k in range(order + 1)]
    names += [f"{kind}{label}" for label, _, _ in peaks for kind in ("center", "fwhm")]
    names += height_names

    def peaks_model(q: FloatArray, envelope: FloatArray, **p: float) -> FloatArray:
        x = (2.0 * q - (lo + hi)) / (hi - lo)
        out = np.polynomial.legendre.legvander(x, order) @ np.array(
            [p[f"bg{k}"] for k in range(order + 1)]
        )
        for label, _, _ in peaks:
            columns = _shape_columns(shape, q, p[f"center{label}"], p[f"fwhm{label}"])
            for name, column in zip(_height_names(shape, label), columns, strict=True):
                out = out + p[name] * column
        return np.asarray(out, dtype=np.float64)

    model = lmfit.Model(_with_signature(peaks_model, names, None), independent_vars=["q"])
    x = (2.0 * q - (lo + hi)) / (hi - lo)
    columns = list(np.polynomial.legendre.legvander(x, order).T)
    for _, center, width in peaks:
        columns += _shape_columns(shape, q, center, width)
    linear = _linear_starts(np.stack(columns, axis=1), y, s)
    params = lmfit.Parameters()
    for k in range(order + 1):
        params.add(f"bg{k}", value=float(linear[k]))
    for label, center, width in peaks:
        expected = (
            fit.center_per_nm
            * {"200": 1.0, "111": RATIO_111_TO_200, "220": RATIO_220_TO_200}[label]
        )
        params.add(f"center{label}", value=center, min=0.9 * expected, max=1.1 * expected)
        params.add(f"fwhm{label}", value=width, min=0.0)
    for name, value in zip(height_names, linear[order + 1 :], strict=True):
        params.add(name, value=float(value))
    return model, params
