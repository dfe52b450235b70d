"""The GIWAXS {200} model: the PbSe {200} reflection with its {111} and {220} neighbours.

:func:`fit_peak200` fits a polynomial background plus independent peaks with the
separable engine (:mod:`pipeline.varpro`); the nonlinear parameters are named
``center200``, ``fwhm200``, ``center111``, ``fwhm111``, ``center220``, ``fwhm220``;
peak heights and background coefficients are the linear ones. Expected failures never
raise: they give NaN values, ``ok=False`` and a message for the beamline user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.config import PEAK_SHAPES, PeakShape
from pipeline.varpro import (
    MODE_PEAKS,
    FloatArray,
    Profile,
    SeparableModel,
    check_choice,
    check_nfev,
    check_order,
    check_positive,
    check_range,
    fit_statistics,
    levenberg_marquardt,
    prepare_profile,
    raise_nfev_fix,
    stderr,
)

#: Rock-salt PbSe reflections, in nm^-1 (SCIENCE.md): {111}, {200}, {220}.
Q111_PBSE_PER_NM = 17.77
Q200_PBSE_PER_NM = 20.52
Q220_PBSE_PER_NM = 29.02
#: {111} and {220} positions relative to {200} in a cubic lattice.
RATIO_111_TO_200 = math.sqrt(3.0) / 2.0
RATIO_220_TO_200 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------
# settings and result
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeakFitSettings:
    """Settings of the GIWAXS {200} fit (:func:`fit_peak200`).

    Attributes
    ----------
    peak_shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Profile of the reflections.
    window_per_nm : (float, float)
        Fitted q_par window, in nm^-1; {111} and {220} are fitted too where their
        expected position (from the {200} found) lies inside.
    background_order : int
        Order of the polynomial background (0-3).
    search_half_width_per_nm : float
        The {200} start is the data's maximum within this distance of 20.52 nm^-1.
    min_snr : float
        The {200} height over its standard error must reach this.
    max_nfev : int
        Most model evaluations of one Levenberg-Marquardt refinement.
    """

    peak_shape: PeakShape = "gaussian"
    window_per_nm: tuple[float, float] = (16.5, 23.5)
    background_order: int = 2
    search_half_width_per_nm: float = 1.3
    min_snr: float = 3.0
    max_nfev: int = 60

    def __post_init__(self) -> None:
        check_choice("peak_shape", self.peak_shape, PEAK_SHAPES, where="[peak fit]")
        check_range("window_per_nm", self.window_per_nm, where="[peak fit]")
        check_order("background_order", self.background_order, where="[peak fit]")
        check_positive("search_half_width_per_nm", self.search_half_width_per_nm, "[peak fit]")
        check_positive("min_snr", self.min_snr, "[peak fit]", allow_zero=True)
        check_nfev(self.max_nfev, where="[peak fit]")


@dataclass(frozen=True, slots=True)
class PeakFit:
    """The {200} reflection of one GIWAXS q_par cut.

    Attributes
    ----------
    center_per_nm, center_err_per_nm : float
        {200} position and its standard error, in nm^-1.
    fwhm_per_nm, fwhm_err_per_nm : float
        {200} FWHM (instrument not removed), in nm^-1.
    amplitude, amplitude_err : float
        {200} height above the background, in intensity units.
    eta, eta_err : float
        Lorentzian fraction of the pseudo-Voigt (0 for "gaussian", 1 for "lorentzian",
        with error 0).
    peak_shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Profile fitted.
    center111_per_nm, fwhm111_per_nm, center220_per_nm, fwhm220_per_nm : float
        The neighbouring reflections where they were fitted (else NaN), in nm^-1.
    redchi : float
        Reduced chi-square.
    n_points : int
        Bins fitted.
    warm_started : bool
        Whether the result came from the warm start.
    ok : bool
        False when no {200} peak could be fitted; the values are then NaN.
    message : str
        Why not, in words for the beamline user.
    """

    center_per_nm: float
    center_err_per_nm: float
    fwhm_per_nm: float
    fwhm_err_per_nm: float
    amplitude: float
    amplitude_err: float
    eta: float
    eta_err: float
    peak_shape: PeakShape
    center111_per_nm: float
    fwhm111_per_nm: float
    center220_per_nm: float
    fwhm220_per_nm: float
    redchi: float
    n_points: int
    warm_started: bool
    ok: bool
    message: str = ""


# --------------------------------------------------------------------------------------
# the {200} model
# --------------------------------------------------------------------------------------


def fit_peak200(
    q_per_nm: FloatArray,
    intensity: FloatArray,
    sigma: FloatArray,
    *,
    settings: PeakFitSettings,
    start: PeakFit | None = None,
) -> PeakFit:
    """Fit the {200} reflection of a GIWAXS q_par cut.

    The model is a polynomial background plus the {200} peak and, where their expected
    positions (sqrt 3 / 2 and sqrt 2 times the {200} found) fall inside the window, the
    {111} and {220} peaks, each with its own centre, width and height. The {200} starts
    at the data's maximum within `settings.search_half_width_per_nm` of 20.52 nm^-1
    (after a straight background through the window's ends), with the width at half of
    that maximum; its centre stays within that region.

    Parameters
    ----------
    q_per_nm, intensity, sigma : ndarray of shape (n,)
        The cut: q_par in nm^-1, intensity and its standard error. NaN bins are dropped,
        bins with sigma 0 get the smallest positive sigma.
    settings : PeakFitSettings
        Window, shape, background order and thresholds.
    start : PeakFit, optional
        The previous frame's result: its centres and widths start the fit; when that
        fails, the search from the data runs.

    Returns
    -------
    PeakFit
        Never raises for bad data: failures have ``ok=False``, NaN values and a message.

    Examples
    --------
    >>> q = np.linspace(16.5, 23.5, 300)
    >>> y = 50 + 2 * q + 1000 * np.exp(-4 * np.log(2) * ((q - 20.52) / 0.7) ** 2)
    >>> fit = fit_peak200(q, y, np.sqrt(y), settings=PeakFitSettings())
    >>> round(fit.center_per_nm, 3), round(fit.fwhm_per_nm, 3), fit.ok
    (20.52, 0.7, True)
    """
    prepared = prepare_profile(
        q_per_nm, intensity, sigma, settings.window_per_nm, settings.background_order
    )
    if isinstance(prepared, str):
        return _failed_peak(prepared, settings, 0)
    try:
        if start is not None and start.ok:
            warm = _fit_peak_from(prepared, settings, _warm_peak_start(start), warm=True)
            if warm.ok:
                return warm
        cold_start = _cold_peak_start(prepared, settings)
        if isinstance(cold_start, str):
            return _failed_peak(cold_start, settings, prepared.n)
        return _fit_peak_from(prepared, settings, cold_start, warm=False)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
        return _failed_peak(f"the {{200}} fit failed numerically ({err})", settings, prepared.n)


@dataclass(frozen=True, slots=True)
class _PeakStart:
    center_per_nm: float
    fwhm_per_nm: float
    neighbours: tuple[tuple[float, float], ...] = ()  # (centre, FWHM) of {111}, {220} if known


def _warm_peak_start(start: PeakFit) -> _PeakStart:
    known = tuple(
        (c, w)
        for c, w in (
            (start.center111_per_nm, start.fwhm111_per_nm),
            (start.center220_per_nm, start.fwhm220_per_nm),
        )
        if math.isfinite(c) and math.isfinite(w)
    )
    return _PeakStart(start.center_per_nm, start.fwhm_per_nm, known)


def _cold_peak_start(profile: Profile, settings: PeakFitSettings) -> _PeakStart | str:
    """The {200} start from the data: the maximum above a straight background near 20.52."""
    q, y = profile.q, profile.y
    lo, hi = settings.window_per_nm
    half = settings.search_half_width_per_nm
    region = np.abs(q - Q200_PBSE_PER_NM) <= half
    if not region.any():
        return (
            f"the fit window {lo:g}-{hi:g} nm^-1 holds no valid bin within {half:g} nm^-1 of "
            f"the PbSe {{200}} position {Q200_PBSE_PER_NM} nm^-1: check window_per_nm"
        )
    edge = max(3, profile.n // 20)
    q_left, q_right = float(np.mean(q[:edge])), float(np.mean(q[-edge:]))
    y_left, y_right = float(np.median(y[:edge])), float(np.median(y[-edge:]))
    line = y_left + (y_right - y_left) * (q - q_left) / max(q_right - q_left, 1e-12)
    excess = np.convolve(y - line, np.ones(5) / 5.0, mode="same")
    candidates = np.flatnonzero(region)
    top = int(candidates[np.argmax(excess[candidates])])
    height = float(excess[top])
    if not height > 0:
        return f"no {{200}} peak above the background in {lo:g}-{hi:g} nm^-1"
    if top in (candidates[0], candidates[-1]) and 0 < top < profile.n - 1:
        return (
            f"the largest signal near {{200}} ({q[top]:.2f} nm^-1) sits at the edge of the "
            f"search region {Q200_PBSE_PER_NM - half:.2f}-{Q200_PBSE_PER_NM + half:.2f} nm^-1: "
            "the {200} peak may lie outside it; check the q calibration"
        )
    left = top
    while left > 0 and excess[left] > height / 2:
        left -= 1
    right = top
    while right < profile.n - 1 and excess[right] > height / 2:
        right += 1
    fwhm = float(np.clip(q[right] - q[left], 2.0 * profile.bin_per_nm, (hi - lo) / 2.0))
    return _PeakStart(float(q[top]), fwhm)


def _fit_peak_from(
    profile: Profile, settings: PeakFitSettings, start: _PeakStart, *, warm: bool
) -> PeakFit:
    lo, hi = float(profile.q[0]), float(profile.q[-1])
    win_lo, win_hi = settings.window_per_nm
    window = f"{win_lo:g}-{win_hi:g} nm^-1"
    half = settings.search_half_width_per_nm
    w_min = profile.bin_per_nm
    w_max = (hi - lo) / 2.0
    if not (lo < start.center_per_nm < hi and math.isfinite(start.fwhm_per_nm)):
        return _failed_peak(f"no {{200}} start inside {window}", settings, profile.n, warm)
    c_lo = max(lo, Q200_PBSE_PER_NM - half)
    c_hi = min(hi, Q200_PBSE_PER_NM + half)
    w0 = _clip(start.fwhm_per_nm, w_min, w_max)
    theta0 = [_clip(start.center_per_nm, c_lo, c_hi), w0]
    lower, upper = [c_lo, w_min], [c_hi, w_max]
    names: list[str] = []
    param_names = ["center200", "fwhm200"]
    for name, ratio in (("111", RATIO_111_TO_200), ("220", RATIO_220_TO_200)):
        expected = start.center_per_nm * ratio
        if not lo < expected < hi:
            continue
        known = [n for n in start.neighbours if abs(n[0] - expected) < 0.04 * expected]
        center, width = known[0] if known else (expected, w0)
        names.append(name)
        param_names += [f"center{name}", f"fwhm{name}"]
        theta0 += [center, _clip(width, w_min, w_max)]
        lower += [max(lo, 0.96 * expected), w_min]
        upper += [min(hi, 1.04 * expected), w_max]
    model = SeparableModel(
        mode=MODE_PEAKS,
        shape=settings.peak_shape,
        power_law=False,
        param_names=tuple(param_names),
        families=np.zeros((1 + len(names), 2)),
    )
    refined = levenberg_marquardt(
        model,
        profile,
        np.asarray(theta0),
        np.asarray(lower),
        np.asarray(upper),
        max_nfev=settings.max_nfev,
    )
    if refined.hit_max_nfev:
        return _failed_peak(
            f"the {{200}} fit stopped at its evaluation limit (max_nfev = {settings.max_nfev}) "
            f"before converging: {raise_nfev_fix('giwaxs')}",
            settings,
            profile.n,
            warm,
        )
    ev = refined.evaluation
    stats = fit_statistics(ev, profile.n, model.n_theta, "bic")
    center, fwhm = refined.value("center200"), refined.value("fwhm200")
    if not (math.isfinite(ev.chi2) and np.all(np.isfinite(ev.theta))):
        return _failed_peak(
            f"the {{200}} fit did not converge in {window}", settings, profile.n, warm
        )
    m = model.n_peaks
    columns = [ev.n_background + k * m for k in range(model.n_columns_per_peak)]
    heights = np.array([ev.beta[c] for c in columns])
    amplitude = float(heights.sum())
    variance = stats.sum_variance(columns)
    amplitude_err = math.nan if variance is None else math.sqrt(max(variance, 0.0))
    if not (amplitude > 0 and amplitude >= settings.min_snr * amplitude_err):
        return _failed_peak(
            f"no {{200}} peak above {settings.min_snr:g} sigma in {window}",
            settings,
            profile.n,
            warm,
        )
    if refined.at_bound("center200"):
        return _failed_peak(
            f"the {{200}} peak ({center:.2f} nm^-1) sits at the edge of its search region "
            f"{c_lo:.2f}-{c_hi:.2f} nm^-1: check window_per_nm and the q calibration",
            settings,
            profile.n,
            warm,
        )
    if refined.at_upper[refined.index("fwhm200")]:
        return _failed_peak(
            f"the {{200}} peak is broader than half the fit window {window}: widen the window",
            settings,
            profile.n,
            warm,
        )
    if settings.peak_shape == "pseudo_voigt":
        gauss, lorentz = heights
        eta = float(lorentz / amplitude)
        grad = np.array([-lorentz, gauss]) / amplitude**2
        rows = [int(stats.linear_index[c]) for c in columns]
        if all(r >= 0 for r in rows):
            cov = stats.covariance[np.ix_(rows, rows)]
            eta_err = math.sqrt(max(float(grad @ cov @ grad), 0.0))
        else:  # one component at zero: its error is not defined by the Jacobian
            eta_err = math.nan
    else:
        eta = 1.0 if settings.peak_shape == "lorentzian" else 0.0
        eta_err = 0.0
    neighbours = {
        name: (refined.value(f"center{name}"), refined.value(f"fwhm{name}")) for name in names
    }
    nan2 = (math.nan, math.nan)
    return PeakFit(
        center_per_nm=center,
        center_err_per_nm=stderr(stats, refined.index("center200")),
        fwhm_per_nm=fwhm,
        fwhm_err_per_nm=stderr(stats, refined.index("fwhm200")),
        amplitude=amplitude,
        amplitude_err=amplitude_err,
        eta=eta,
        eta_err=eta_err,
        peak_shape=settings.peak_shape,
        center111_per_nm=neighbours.get("111", nan2)[0],
        fwhm111_per_nm=neighbours.get("111", nan2)[1],
        center220_per_nm=neighbours.get("220", nan2)[0],
        fwhm220_per_nm=neighbours.get("220", nan2)[1],
        redchi=stats.redchi,
        n_points=profile.n,
        warm_started=warm,
        ok=True,
        message=f"{{200}} at {center:.3f} nm^-1, FWHM {fwhm:.3f} nm^-1",
    )


def _clip(value: float, lo: float, hi: float) -> float:
    """`value` within [lo, hi] (numpy's clip costs microseconds on a Python float)."""
    return float(min(max(value, lo), hi))


def _failed_peak(
    message: str, settings: PeakFitSettings, n_points: int, warm: bool = False
) -> PeakFit:
    nan = math.nan
    return PeakFit(
        center_per_nm=nan,
        center_err_per_nm=nan,
        fwhm_per_nm=nan,
        fwhm_err_per_nm=nan,
        amplitude=nan,
        amplitude_err=nan,
        eta=nan,
        eta_err=nan,
        peak_shape=settings.peak_shape,
        center111_per_nm=nan,
        fwhm111_per_nm=nan,
        center220_per_nm=nan,
        fwhm220_per_nm=nan,
        redchi=nan,
        n_points=n_points,
        warm_started=warm,
        ok=False,
        message=message,
    )
