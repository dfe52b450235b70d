"""Fits of 1-D q_par profiles: superlattice rods (GISAXS) and the {200} reflection (GIWAXS).

Both fits are separable least squares ("variable projection"): the model is a sum of
columns whose amplitudes (peak heights, background coefficients) enter linearly. For each
trial value of the few nonlinear parameters (rod position q1, width, lattice angle,
power-law exponent, peak centres) the linear ones are solved by weighted linear least
squares, with non-negative peak heights; a Levenberg-Marquardt loop moves the nonlinear
parameters only, with the analytic (Kaufman) Jacobian. This is the same minimum and, to
first order, the same standard errors as a fit of all parameters with lmfit (a test checks
this against :func:`lmfit.minimize`), at a fraction of the cost: lmfit spends ~0.7 ms of
fixed bookkeeping per fit, more than the per-frame budget of the four models here. The
inner loop (design, linear solve, Jacobian, Levenberg-Marquardt) is compiled with numba;
the first call of a process compiles it (~15 s, then cached on disk next to the module).

Conventions, as in lmfit: standard errors come from the covariance of the Jacobian scaled
by the reduced chi-square; ``bic = n ln(chi2 / n) + k ln n``, ``aic = n ln(chi2 / n) + 2 k``
with k the number of fitted parameters (linear ones included). Widths are FWHM. Peak
heights are in the units of the intensity. Expected failures (no data, a fit that does not
converge, a peak at the edge of its window) never raise: they give NaN values,
``ok=False`` and a message for the beamline user.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Literal

import numba
import numpy as np
from numpy.typing import NDArray

from detectors.errors import ConfigError
from pipeline.config import PEAK_SHAPES, PeakShape
from pipeline.lattice import (
    GAMMA_HEXAGONAL_DEG,
    GAMMA_SQUARE_DEG,
    HEXAGONAL_RATIOS,
    RHOMBIC_FAMILIES,
    SQUARE_RATIOS,
    Symmetry,
    lattice_spacing_nm,
    rhombic_ratios,
)

FloatArray = NDArray[np.float64]
InformationCriterion = Literal["bic", "aic"]
RodModelName = Literal["hexagonal", "square", "rhombic"]

#: Rock-salt PbSe reflections, in nm^-1 (SCIENCE.md): {111}, {200}, {220}.
Q111_PBSE_PER_NM = 17.77
Q200_PBSE_PER_NM = 20.52
Q220_PBSE_PER_NM = 29.02
#: {111} and {220} positions relative to {200} in a cubic lattice.
RATIO_111_TO_200 = math.sqrt(3.0) / 2.0
RATIO_220_TO_200 = math.sqrt(2.0)
#: Range of the rhombic (pseudo-hexagonal) lattice angle, in degrees.
GAMMA_RANGE_DEG = (62.0, 88.0)

_FOUR_LN2 = 4.0 * math.log(2.0)
_RIDGE = 1e-10  # relative ridge of the normal equations: keeps coinciding columns solvable
_GAMMA_GRID_DEG = np.arange(GAMMA_RANGE_DEG[0], GAMMA_RANGE_DEG[1] + 0.5, 1.0)
_MIN_POINTS = 12
_PEAKS_PER_WIDTH = 2  # first-rod candidates per matched-filter width
_WARM_GAMMAS_DEG = (66.0, 75.0, 84.0)  # rhombic starts of a warm start without a gamma


# --------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RodFitSettings:
    """Settings of the GISAXS rod fit (:func:`fit_rods`).

    Attributes
    ----------
    peak_shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Rod profile along q_par (a pseudo-Voigt rod has its own Lorentzian fraction).
    q1_window_per_nm : (float, float)
        Where the first rod is searched, in nm^-1.
    fit_range_per_nm : (float, float) or None
        q_par range fitted, in nm^-1; None: every finite bin of the cut.
    ic : {"bic", "aic"}
        Information criterion that compares the models.
    width_model : {"common", "linear"}
        "common": every rod has the FWHM of the first; "linear": the FWHM grows as
        w (1 + s (q / q1 - 1)) with a fitted s >= 0.
    background_order : int
        The background is q^-p (A0 + A1 x + ... + An x^n) + c, with x the q_par scaled to
        [-1, 1] over the fit range and Legendre polynomials in x; 0 is the plain power law
        plus constant. The default 3 absorbs most of the slow form-factor modulation of
        ~6 nm cubes, whose broad minima would otherwise pass for rods.
    max_width_per_nm : float
        Largest rod FWHM, in nm^-1: a model whose width runs to it fits a broad feature
        (form-factor modulation), not rods. 0.15 allows domains down to
        2 pi / 0.15 = 42 nm, four to five particles.
    delta_ic_rod : float
        A rod model must beat the background-only model by this much in the information
        criterion; below it the frame is "none". 10 is "very strong" evidence on the
        Kass-Raftery scale.
    delta_ic_symmetry : float
        Margin by which one lattice must beat the others to be named; closer than this,
        hexagonal vs square is "unknown", and the rhombic model must win by it to be
        "pseudo-hexagonal".
    gamma_margin_deg : float
        A rhombic fit with gamma within this many degrees of 60 (90) is called hexagonal
        (square).
    min_rod_snr : float
        The first rod's height over its standard error must reach this.
    rod_envelope : {"flat", "background"}
        "flat": rods add to the background; "background": each rod is multiplied by the
        background-only fit (scaled to 1 at its maximum), for I = P(q) S(q), where the
        falling form factor P pulls broad rods below the structure-factor peak.
    max_nfev : int
        Most model evaluations of one Levenberg-Marquardt refinement.
    """

    peak_shape: PeakShape = "gaussian"
    q1_window_per_nm: tuple[float, float] = (0.4, 1.4)
    fit_range_per_nm: tuple[float, float] | None = None
    ic: InformationCriterion = "bic"
    width_model: Literal["common", "linear"] = "common"
    background_order: int = 3
    max_width_per_nm: float = 0.15
    delta_ic_rod: float = 10.0
    delta_ic_symmetry: float = 10.0
    gamma_margin_deg: float = 3.0
    min_rod_snr: float = 3.0
    rod_envelope: Literal["flat", "background"] = "flat"
    max_nfev: int = 60

    def __post_init__(self) -> None:
        _check_choice("peak_shape", self.peak_shape, PEAK_SHAPES)
        _check_choice("rod_envelope", self.rod_envelope, ("flat", "background"))
        _check_choice("ic", self.ic, ("bic", "aic"))
        _check_choice("width_model", self.width_model, ("common", "linear"))
        _check_range("q1_window_per_nm", self.q1_window_per_nm)
        if self.fit_range_per_nm is not None:
            _check_range("fit_range_per_nm", self.fit_range_per_nm)
        _check_order("background_order", self.background_order)
        _check_positive("max_width_per_nm", self.max_width_per_nm)
        _check_positive("delta_ic_rod", self.delta_ic_rod, allow_zero=True)
        _check_positive("delta_ic_symmetry", self.delta_ic_symmetry, allow_zero=True)
        if not 0 <= self.gamma_margin_deg < 15:
            msg = (
                f"[rod fit] gamma_margin_deg must be in [0, 15) deg, got {self.gamma_margin_deg!r}"
            )
            raise ConfigError(msg)
        _check_positive("min_rod_snr", self.min_rod_snr, allow_zero=True)
        _check_nfev(self.max_nfev)


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
        _check_choice("peak_shape", self.peak_shape, PEAK_SHAPES, where="[peak fit]")
        _check_range("window_per_nm", self.window_per_nm, where="[peak fit]")
        _check_order("background_order", self.background_order, where="[peak fit]")
        _check_positive("search_half_width_per_nm", self.search_half_width_per_nm, "[peak fit]")
        _check_positive("min_snr", self.min_snr, "[peak fit]", allow_zero=True)
        _check_nfev(self.max_nfev, where="[peak fit]")


def _check_choice(
    name: str, value: object, allowed: tuple[str, ...], where: str = "[rod fit]"
) -> None:
    if value not in allowed:
        msg = f"{where} {name} must be one of {allowed}, got {value!r}"
        raise ConfigError(msg)


def _check_range(name: str, value: tuple[float, float], where: str = "[rod fit]") -> None:
    ok = (
        len(value) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
        and 0 <= value[0] < value[1]
    )
    if not ok:
        msg = f"{where} {name} must be [lo, hi] in nm^-1 with 0 <= lo < hi, got {value!r}"
        raise ConfigError(msg)


def _check_order(name: str, value: int, where: str = "[rod fit]") -> None:
    if not (isinstance(value, int) and 0 <= value <= 3):
        msg = f"{where} {name} must be an integer 0, 1, 2 or 3, got {value!r}"
        raise ConfigError(msg)


def _check_positive(
    name: str, value: float, where: str = "[rod fit]", *, allow_zero: bool = False
) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{where} {name} must be a finite number {bound}, got {value!r}"
        raise ConfigError(msg)


def _check_nfev(value: int, where: str = "[rod fit]") -> None:
    if not (isinstance(value, int) and value >= 5):
        msg = f"{where} max_nfev must be an integer >= 5, got {value!r}"
        raise ConfigError(msg)


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RodFit:
    """The superlattice rods of one GISAXS q_par cut.

    Attributes
    ----------
    q1_per_nm, q1_err_per_nm : float
        First rod and its standard error, in nm^-1 (NaN without a rod).
    symmetry : {"none", "hexagonal", "square", "pseudo-hexagonal", "unknown"}
        Lattice named by the model comparison (see :func:`fit_rods`).
    gamma_deg, gamma_err_deg : float
        Rhombic lattice angle, in degrees (NaN unless "pseudo-hexagonal").
    spacing_nm, spacing_err_nm : float
        Nearest-neighbour distance of the named lattice, in nm (NaN for "unknown" and
        "none").
    spacing_hex_nm, spacing_square_nm : float
        The spacing if the lattice were hexagonal or square, in nm (NaN without a rod).
    width_per_nm, width_err_per_nm : float
        FWHM of the first rod, in nm^-1.
    width_growth : float
        s of the "linear" width model (0 for "common").
    background_exponent, background_exponent_err : float
        Power-law exponent p of the background.
    rod_positions_per_nm : tuple of float
        Rods of the named model inside the fit range, ascending, in nm^-1.
    rod_heights : tuple of float
        Their fitted heights above the background (intensity units).
    redchi : float
        Reduced chi-square of the named model (of the background for "none").
    ic_none, ic_hexagonal, ic_square, ic_rhombic : float
        Information criterion of each model (NaN where a model was not fitted).
    ic : {"bic", "aic"}
        Which criterion those are.
    n_points : int
        Bins fitted.
    warm_started : bool
        Whether the result came from the warm start.
    ok : bool
        False when the fit failed; the values are then NaN. "none" is ok.
    message : str
        What was found, or why the fit failed, in words for the beamline user.
    """

    q1_per_nm: float
    q1_err_per_nm: float
    symmetry: Symmetry
    gamma_deg: float
    gamma_err_deg: float
    spacing_nm: float
    spacing_err_nm: float
    spacing_hex_nm: float
    spacing_square_nm: float
    width_per_nm: float
    width_err_per_nm: float
    width_growth: float
    background_exponent: float
    background_exponent_err: float
    rod_positions_per_nm: tuple[float, ...]
    rod_heights: tuple[float, ...]
    redchi: float
    ic_none: float
    ic_hexagonal: float
    ic_square: float
    ic_rhombic: float
    ic: InformationCriterion
    n_points: int
    warm_started: bool
    ok: bool
    message: str = ""


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
# the separable least-squares engine
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Profile:
    """A cleaned profile: finite, sorted, with positive uncertainties."""

    q: FloatArray
    y: FloatArray
    weight: FloatArray  # 1 / sigma
    legendre: FloatArray  # (n, order + 1) Legendre polynomials of the scaled q
    log_q: FloatArray
    y_w: FloatArray  # y / sigma
    envelope: FloatArray  # peaks are multiplied by this (1: additive peaks)

    @property
    def n(self) -> int:
        return int(self.q.size)

    @property
    def bin_per_nm(self) -> float:
        return float((self.q[-1] - self.q[0]) / max(self.q.size - 1, 1))


#: LLVM fast-math flags of the compiled kernels: reassociation (vectorised sums) but
#: not "no NaN / no inf", which would let the compiler drop the finiteness checks.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
_SHAPE_CODES: dict[str, int] = {"gaussian": 0, "lorentzian": 1, "pseudo_voigt": 2}
#: Model geometries: no peaks; lattice rods, theta = [p, q1, w, (s), (gamma)];
#: independent peaks, theta = [c0, w0, c1, w1, ...].
_MODE_BACKGROUND, _MODE_RODS, _MODE_PEAKS = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Model:
    """A separable model: background columns plus unit-height peak columns."""

    mode: int
    shape: PeakShape
    power_law: bool  # background q^-p * Legendre + constant, p = theta[0]; else Legendre
    n_theta: int
    families: FloatArray  # (n_peaks, 2); rods: a rod at q1 sqrt(a - 2 b cos gamma)
    linear_width: bool = False
    rhombic: bool = False

    @property
    def n_peaks(self) -> int:
        return int(self.families.shape[0])

    @property
    def n_columns_per_peak(self) -> int:
        return 2 if self.shape == "pseudo_voigt" else 1


@dataclass(frozen=True, slots=True)
class _Evaluation:
    """One evaluation of a model: weighted residual and linear solution."""

    theta: FloatArray
    residual: FloatArray
    chi2: float
    beta: FloatArray  # all columns, 0 where inactive
    active: NDArray[np.bool_]
    design: FloatArray  # weighted design, all columns, (n, k)
    norms: FloatArray  # its column norms
    derivative: FloatArray  # d(model)/d(theta) at fixed beta, weighted, (n, n_theta)
    n_background: int


@numba.njit(cache=True, fastmath=_FASTMATH)
def _geometry(
    mode: int, theta: FloatArray, families: FloatArray, linear_width: bool, rhombic: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Peak centres and FWHM, and their derivatives by theta, shape (m, n_theta)."""
    m = families.shape[0]
    n_theta = theta.size
    centers = np.empty(m)
    widths = np.empty(m)
    d_centers = np.zeros((m, n_theta))
    d_widths = np.zeros((m, n_theta))
    if mode == 2:
        for j in range(m):
            centers[j] = theta[2 * j]
            widths[j] = theta[2 * j + 1]
            d_centers[j, 2 * j] = 1.0
            d_widths[j, 2 * j + 1] = 1.0
    elif mode == 1:
        q1 = theta[1]
        w = theta[2]
        s = theta[3] if linear_width else 0.0
        gamma = math.radians(theta[n_theta - 1]) if rhombic else math.pi / 3.0
        cos_g = math.cos(gamma)
        sin_g = math.sin(gamma)
        for j in range(m):
            r = math.sqrt(families[j, 0] - 2.0 * families[j, 1] * cos_g)
            dr = families[j, 1] * sin_g / r * (math.pi / 180.0)  # per degree
            growth = 1.0 + s * (r - 1.0)
            centers[j] = q1 * r
            widths[j] = w * growth
            d_centers[j, 1] = r
            d_widths[j, 2] = growth
            if linear_width:
                d_widths[j, 3] = w * (r - 1.0)
            if rhombic:
                d_centers[j, n_theta - 1] = q1 * dr
                d_widths[j, n_theta - 1] = w * s * dr
    return centers, widths, d_centers, d_widths


@numba.njit(cache=True, fastmath=_FASTMATH)
def _cholesky_solve(matrix: FloatArray, rhs: FloatArray) -> FloatArray:
    """Solve matrix @ x = rhs for a small symmetric positive-definite matrix, rhs (k, r)."""
    k = matrix.shape[0]
    lower = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1):
            acc = matrix[i, j]
            for t in range(j):
                acc -= lower[i, t] * lower[j, t]
            if i == j:
                lower[i, i] = math.sqrt(max(acc, 1e-300))
            else:
                lower[i, j] = acc / lower[j, j]
    x = rhs.copy()
    for c in range(rhs.shape[1]):
        for i in range(k):
            acc = x[i, c]
            for t in range(i):
                acc -= lower[i, t] * x[t, c]
            x[i, c] = acc / lower[i, i]
        for i in range(k - 1, -1, -1):
            acc = x[i, c]
            for t in range(i + 1, k):
                acc -= lower[t, i] * x[t, c]
            x[i, c] = acc / lower[i, i]
    return x


@numba.njit(cache=True, fastmath=_FASTMATH)
def _evaluate_kernel(
    theta: FloatArray,
    mode: int,
    families: FloatArray,
    linear_width: bool,
    rhombic: bool,
    shape: int,
    power_law: bool,
    q: FloatArray,
    weight: FloatArray,
    y_w: FloatArray,
    legendre: FloatArray,
    log_q: FloatArray,
    envelope: FloatArray,
    with_jacobian: bool = True,
) -> tuple[
    FloatArray, FloatArray, NDArray[np.bool_], FloatArray, FloatArray, FloatArray, FloatArray
]:
    """One separable-model evaluation (compiled: the inner loop of every fit).

    Builds the weighted design (background columns, then unit-height peak columns; for a
    pseudo-Voigt all Gaussian columns, then all Lorentzian ones), solves the linear
    parameters by the normal equations of the column-normalised design with non-negative
    peak heights (columns that come out negative are dropped and the rest solved again),
    and returns the weighted residual, the linear parameters (0 where dropped), which
    columns are active, the derivative of the weighted model by theta at fixed linear
    parameters, Kaufman's projected Jacobian of the residual, the weighted design and its
    column norms (derivative and Jacobian are left zero unless `with_jacobian`).
    """
    centers, widths, d_centers, d_widths = _geometry(mode, theta, families, linear_width, rhombic)
    n = q.size
    n_leg = legendre.shape[1]
    n_bg = n_leg + 1 if power_law else n_leg
    m = centers.size
    per = 2 if shape == 2 else 1
    k = n_bg + m * per
    n_theta = theta.size
    four_ln2 = 4.0 * math.log(2.0)
    design = np.zeros((n, k))
    p_center = np.zeros((n, m * per))
    p_width = np.zeros((n, m * per))
    for i in range(n):
        wi = weight[i]
        scale = math.exp(-theta[0] * log_q[i]) * wi if power_law else wi
        for j in range(n_leg):
            design[i, j] = legendre[i, j] * scale
        if power_law:
            design[i, n_leg] = wi
        wp = wi * envelope[i]
        for j in range(m):
            u = (q[i] - centers[j]) / widths[j]
            inv_w = wp / widths[j]
            if shape != 1 and abs(u) < 6.0:  # beyond, a Gaussian is < 1e-43
                g = math.exp(-four_ln2 * u * u)
                dg = -2.0 * four_ln2 * u * g
                design[i, n_bg + j] = g * wp
                p_center[i, j] = -dg * inv_w
                p_width[i, j] = -dg * u * inv_w
            if shape != 0:
                col = j if shape == 1 else m + j
                lor = 1.0 / (1.0 + 4.0 * u * u)
                dl = -8.0 * u * lor * lor
                design[i, n_bg + col] = lor * wp
                p_center[i, col] = -dl * inv_w
                p_width[i, col] = -dl * u * inv_w
    gram = np.zeros((k, k))
    moment = np.zeros(k)
    for i in range(n):
        for a in range(k):
            xa = design[i, a]
            if xa == 0.0:
                continue
            moment[a] += xa * y_w[i]
            for b in range(a + 1):
                gram[a, b] += xa * design[i, b]
    norms = np.empty(k)
    for a in range(k):
        norms[a] = math.sqrt(gram[a, a])
    floor = 1e-12 * max(norms.max(), 1e-300)
    active = norms > floor
    beta = np.zeros(k)
    idx = np.nonzero(active)[0]
    sub = np.zeros((0, 0))
    for _ in range(k):
        idx = np.nonzero(active)[0]
        ka = idx.size
        sub = np.empty((ka, ka))
        rhs = np.empty((ka, 1))
        for a in range(ka):
            ia = idx[a]
            rhs[a, 0] = moment[ia] / norms[ia]
            for b in range(a + 1):
                ib = idx[b]
                value = gram[ia, ib] / (norms[ia] * norms[ib])
                sub[a, b] = value
                sub[b, a] = value
            sub[a, a] += 1e-10
        coef = _cholesky_solve(sub, rhs)
        beta[:] = 0.0
        negative = False
        for a in range(ka):
            beta[idx[a]] = coef[a, 0] / norms[idx[a]]
            if idx[a] >= n_bg and coef[a, 0] < 0.0:
                active[idx[a]] = False
                negative = True
        if not negative:
            break
    if not np.all(active[idx]):  # the loop ran out: drop what is still negative
        for a in range(idx.size):
            if not active[idx[a]]:
                beta[idx[a]] = 0.0
        idx = np.nonzero(active)[0]
    residual = y_w.copy()
    for i in range(n):
        acc = 0.0
        for t in range(idx.size):
            acc += design[i, idx[t]] * beta[idx[t]]
        residual[i] -= acc
    derivative = np.zeros((n, n_theta))
    if not with_jacobian:  # only the residual and the linear parameters are wanted
        return residual, beta, active, derivative, derivative, design, norms
    if power_law:
        for i in range(n):
            acc = 0.0
            for j in range(n_leg):
                acc += design[i, j] * beta[j]
            derivative[i, 0] = -log_q[i] * acc
    for col in range(m * per):
        height = beta[n_bg + col]
        if height == 0.0:
            continue
        peak = col % m
        for t in range(n_theta):
            dc = d_centers[peak, t] * height
            dw = d_widths[peak, t] * height
            if dc == 0.0 and dw == 0.0:
                continue
            for i in range(n):
                derivative[i, t] += p_center[i, col] * dc + p_width[i, col] * dw
    # Kaufman: J = -(I - P) D, P the projection on the active columns
    ka = idx.size
    cross = np.zeros((ka, n_theta))
    for i in range(n):
        for a in range(ka):
            xa = design[i, idx[a]]
            if xa == 0.0:
                continue
            for t in range(n_theta):
                cross[a, t] += xa * derivative[i, t]
    sub = np.empty((ka, ka))
    for a in range(ka):
        ia = idx[a]
        for b in range(a + 1):
            value = gram[ia, idx[b]] / (norms[ia] * norms[idx[b]])
            sub[a, b] = value
            sub[b, a] = value
        sub[a, a] += 1e-10
        for t in range(n_theta):
            cross[a, t] /= norms[ia]
    projection = _cholesky_solve(sub, cross)
    jacobian = -derivative
    for i in range(n):
        for a in range(ka):
            xa = design[i, idx[a]]
            if xa == 0.0:
                continue
            xa /= norms[idx[a]]
            for t in range(n_theta):
                jacobian[i, t] += xa * projection[a, t]
    return residual, beta, active, derivative, jacobian, design, norms


@numba.njit(cache=True, fastmath=_FASTMATH)
def _lm_kernel(
    theta0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    max_nfev: int,
    mode: int,
    families: FloatArray,
    linear_width: bool,
    rhombic: bool,
    shape: int,
    power_law: bool,
    q: FloatArray,
    weight: FloatArray,
    y_w: FloatArray,
    legendre: FloatArray,
    log_q: FloatArray,
    envelope: FloatArray,
) -> tuple[
    FloatArray,
    int,
    tuple[
        FloatArray, FloatArray, NDArray[np.bool_], FloatArray, FloatArray, FloatArray, FloatArray
    ],
]:
    """Bounded Levenberg-Marquardt on theta (projected steps).

    Returns theta, the number of evaluations and the evaluation at theta.
    """
    theta = np.minimum(np.maximum(theta0, lower), upper)
    out = _evaluate_kernel(
        theta,
        mode,
        families,
        linear_width,
        rhombic,
        shape,
        power_law,
        q,
        weight,
        y_w,
        legendre,
        log_q,
        envelope,
    )
    best = out
    residual = out[0]
    jacobian = out[4]
    chi2 = residual @ residual
    nfev = 1
    damping = 1e-3
    n_theta = theta.size
    while nfev < max_nfev and np.isfinite(chi2):
        jt = np.ascontiguousarray(jacobian.T)
        hessian = jt @ jacobian
        gradient = jt @ residual
        diag = np.empty(n_theta)
        top = 1e-300
        for t in range(n_theta):
            top = max(top, hessian[t, t])
        for t in range(n_theta):
            diag[t] = max(hessian[t, t], 1e-12 * top)
        free = np.empty(n_theta, dtype=np.bool_)
        for t in range(n_theta):
            # a parameter held at a bound by a gradient pushing outwards stays there
            free[t] = not (
                (theta[t] <= lower[t] and gradient[t] > 0)
                or (theta[t] >= upper[t] and gradient[t] < 0)
            )
        f = np.nonzero(free)[0]
        if f.size == 0:
            break
        system = np.empty((f.size, f.size))
        rhs = np.empty(f.size)
        for a in range(f.size):
            rhs[a] = -gradient[f[a]]
            for b in range(f.size):
                system[a, b] = hessian[f[a], f[b]]
            system[a, a] += damping * diag[f[a]]
        step = np.zeros(n_theta)
        step[f] = np.linalg.solve(system, rhs)
        trial = np.minimum(np.maximum(theta + step, lower), upper)
        if np.all(np.abs(trial - theta) <= 1e-10 * (np.abs(theta) + 1e-10)):
            break
        out = _evaluate_kernel(
            trial,
            mode,
            families,
            linear_width,
            rhombic,
            shape,
            power_law,
            q,
            weight,
            y_w,
            legendre,
            log_q,
            envelope,
        )
        nfev += 1
        trial_chi2 = out[0] @ out[0]
        if trial_chi2 < chi2:
            decrease = (chi2 - trial_chi2) / (chi2 + 1e-300)
            theta = trial
            best = out
            residual = out[0]
            jacobian = out[4]
            chi2 = trial_chi2
            damping = max(damping * 0.2, 1e-9)
            if decrease < 1e-7:
                break
        else:
            damping *= 10.0
            if damping > 1e10:
                break
    return theta, nfev, best


def _evaluation(
    theta: FloatArray,
    out: tuple[
        FloatArray, FloatArray, NDArray[np.bool_], FloatArray, FloatArray, FloatArray, FloatArray
    ],
    model: _Model,
    profile: _Profile,
) -> _Evaluation:
    residual, beta, active, derivative, _, design, norms = out
    return _Evaluation(
        theta=theta,
        residual=residual,
        chi2=float(residual @ residual),
        beta=beta,
        active=active,
        design=design,
        norms=norms,
        derivative=derivative,
        n_background=profile.legendre.shape[1] + int(model.power_law),
    )


_KernelArgs = tuple[
    int,
    FloatArray,
    bool,
    bool,
    int,
    bool,
    FloatArray,
    FloatArray,
    FloatArray,
    FloatArray,
    FloatArray,
    FloatArray,
]


def _model_args(model: _Model, profile: _Profile) -> _KernelArgs:
    return (
        model.mode,
        model.families,
        model.linear_width,
        model.rhombic,
        _SHAPE_CODES[model.shape],
        model.power_law,
        profile.q,
        profile.weight,
        profile.y_w,
        profile.legendre,
        profile.log_q,
        profile.envelope,
    )


@dataclass(frozen=True, slots=True)
class _Refined:
    evaluation: _Evaluation
    nfev: int
    at_lower: NDArray[np.bool_]
    at_upper: NDArray[np.bool_]


def _levenberg_marquardt(
    model: _Model,
    profile: _Profile,
    theta0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    *,
    max_nfev: int,
) -> _Refined:
    """Refine theta from `theta0` within [lower, upper]; the final evaluation and bounds hit."""
    theta, nfev, out = _lm_kernel(
        np.asarray(theta0, dtype=np.float64),
        np.asarray(lower, dtype=np.float64),
        np.asarray(upper, dtype=np.float64),
        max_nfev,
        *_model_args(model, profile),
    )
    span = upper - lower
    return _Refined(
        evaluation=_evaluation(theta, out, model, profile),
        nfev=int(nfev),
        at_lower=theta <= lower + 1e-6 * span,
        at_upper=theta >= upper - 1e-6 * span,
    )


@dataclass(slots=True)
class _Statistics:
    """Fit statistics of one evaluation; the covariance is computed when first asked for."""

    evaluation: _Evaluation
    n_theta: int
    chi2: float
    redchi: float
    ic: float
    n_params: int
    fixed: NDArray[np.bool_]
    _covariance: FloatArray | None = None

    @property
    def covariance(self) -> FloatArray:
        """Covariance (lmfit scaling): the nonlinear parameters, then the active linear ones."""
        if self._covariance is None:
            ev = self.evaluation
            norms = ev.norms[ev.active]
            scaled = ev.design[:, ev.active] / norms
            # parameters held fixed (lower == upper) do not count in the covariance
            derivative = np.where(self.fixed[None, :], 0.0, ev.derivative)
            jac_full = np.concatenate([derivative, scaled], axis=1)
            covariance = np.linalg.pinv(jac_full.T @ jac_full) * self.redchi
            # back from the column-normalised linear parameters to the heights
            scale = np.concatenate([np.ones(self.n_theta), 1.0 / norms])
            self._covariance = covariance * np.outer(scale, scale)
        return self._covariance

    @property
    def linear_index(self) -> NDArray[np.intp]:
        """For each linear column, its row in the covariance (-1 where inactive)."""
        active = self.evaluation.active
        index = np.full(active.size, -1, dtype=np.intp)
        index[np.flatnonzero(active)] = self.n_theta + np.arange(int(active.sum()))
        return index


def _statistics(
    ev: _Evaluation,
    n_points: int,
    n_theta: int,
    ic: InformationCriterion,
    fixed: NDArray[np.bool_] | None = None,
) -> _Statistics:
    """chi2, reduced chi2 and information criterion as lmfit computes them."""
    fixed = np.zeros(n_theta, dtype=bool) if fixed is None else fixed
    n_params = n_theta - int(fixed.sum()) + ev.beta.size
    chi2 = max(ev.chi2, 1e-300)
    dof = max(n_points - n_params, 1)
    redchi = chi2 / dof
    value = _information_criterion(chi2, n_points, n_params, ic)
    return _Statistics(ev, n_theta, chi2, redchi, value, n_params, fixed)


def _information_criterion(
    chi2: float, n_points: int, n_params: int, ic: InformationCriterion
) -> float:
    """Information criterion as lmfit defines it: n ln(chi2 / n) + k ln n, or + 2 k."""
    penalty = math.log(n_points) if ic == "bic" else 2.0
    return n_points * math.log(max(chi2, 1e-300) / n_points) + penalty * n_params


def _stderr(stats: _Statistics, row: int) -> float:
    value = float(stats.covariance[row, row])
    return math.sqrt(value) if value >= 0 and math.isfinite(value) else math.nan


def _prepare_profile(
    q_per_nm: FloatArray,
    intensity: FloatArray,
    sigma: FloatArray,
    q_range: tuple[float, float] | None,
    order: int,
) -> _Profile | str:
    """Drop NaN bins, restrict to the range, sort; a message where nothing usable is left."""
    q = np.asarray(q_per_nm, dtype=np.float64).ravel()
    y = np.asarray(intensity, dtype=np.float64).ravel()
    s = np.asarray(sigma, dtype=np.float64).ravel()
    if not q.size == y.size == s.size:
        return f"q_par, intensity and sigma differ in length ({q.size}, {y.size}, {s.size})"
    good = np.isfinite(q) & np.isfinite(y) & np.isfinite(s) & (q > 0)
    if q_range is not None:
        good &= (q >= q_range[0]) & (q <= q_range[1])
    where = "" if q_range is None else f" in {q_range[0]:g}-{q_range[1]:g} nm^-1"
    if not good.any():
        return f"no valid bin{where}: every intensity is NaN (masked or outside the detector)"
    if good.sum() < _MIN_POINTS:
        return f"only {int(good.sum())} valid bins{where}; the fit needs at least {_MIN_POINTS}"
    q, y, s = q[good], y[good], s[good]
    if not np.any(y != 0):
        return f"every intensity{where} is zero: check the mask, the band and the exposure"
    positive = s > 0
    if not positive.any():
        return f"no bin{where} has a positive uncertainty: the cut has no counts"
    # a bin without counts has sigma 0: give it the smallest uncertainty of the profile
    s = np.where(positive, s, s[positive].min())
    order_idx = np.argsort(q, kind="stable")
    q, y, s = q[order_idx], y[order_idx], s[order_idx]
    if q[-1] <= q[0]:
        return "all valid bins sit at the same q_par"
    x = (2.0 * q - (q[0] + q[-1])) / (q[-1] - q[0])
    legendre = np.polynomial.legendre.legvander(x, order)
    return _Profile(
        q=q,
        y=y,
        weight=1.0 / s,
        legendre=np.ascontiguousarray(legendre),
        log_q=np.log(q),
        envelope=np.ones_like(q),
        y_w=y / s,
    )


# --------------------------------------------------------------------------------------
# GISAXS: rods
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RodModelSpec:
    """Rods of one lattice model; theta = [p, q1, w, (s), (gamma)]."""

    name: RodModelName
    families: FloatArray  # rows (a, b): rod at q1 sqrt(a - 2 b cos gamma)
    linear_width: bool

    @property
    def rhombic(self) -> bool:
        return self.name == "rhombic"

    @property
    def n_theta(self) -> int:
        return 3 + int(self.linear_width) + int(self.rhombic)

    def ratios(self, gamma_deg: float) -> FloatArray:
        """Rod positions in units of q1."""
        cos_g = math.cos(math.radians(gamma_deg))
        return np.sqrt(self.families[:, 0] - 2.0 * self.families[:, 1] * cos_g)

    def model(self, shape: PeakShape) -> _Model:
        return _Model(
            mode=_MODE_RODS,
            shape=shape,
            power_law=True,
            n_theta=self.n_theta,
            families=self.families,
            linear_width=self.linear_width,
            rhombic=self.rhombic,
        )


def _rod_spec(
    name: RodModelName, q1_per_nm: float, q_max_per_nm: float, linear_width: bool
) -> _RodModelSpec:
    """The rods of a model that can fall inside the profile for a first rod near q1."""
    ratios = _SMALLEST_RATIOS[name]
    count = int(np.searchsorted(ratios, q_max_per_nm / q1_per_nm, side="right"))
    return _cached_rod_spec(name, count, linear_width)


@functools.lru_cache(maxsize=256)
def _cached_rod_spec(name: RodModelName, count: int, linear_width: bool) -> _RodModelSpec:
    """The first `count` rod families of a model (ordered by their smallest position)."""
    if name == "rhombic":
        order = np.argsort(_SMALLEST_RATIOS_UNSORTED_RHOMBIC, kind="stable")
        families = np.asarray(RHOMBIC_FAMILIES, dtype=np.float64)[np.sort(order[:count])]
    else:
        ratios = np.asarray(HEXAGONAL_RATIOS if name == "hexagonal" else SQUARE_RATIOS)[:count]
        families = np.stack([ratios**2, np.zeros_like(ratios)], axis=1)
    return _RodModelSpec(
        name=name, families=np.ascontiguousarray(families), linear_width=linear_width
    )


#: Smallest position of each rod family over the allowed gamma range, in units of q1.
_SMALLEST_RATIOS_UNSORTED_RHOMBIC = np.minimum(
    rhombic_ratios(GAMMA_RANGE_DEG[0]), rhombic_ratios(GAMMA_RANGE_DEG[1])
)
_SMALLEST_RATIOS: dict[str, FloatArray] = {
    "hexagonal": np.asarray(HEXAGONAL_RATIOS),
    "square": np.asarray(SQUARE_RATIOS),
    "rhombic": np.sort(_SMALLEST_RATIOS_UNSORTED_RHOMBIC),
}


@dataclass(frozen=True, slots=True)
class _RodCandidate:
    model: RodModelName
    score: float
    q1_per_nm: float
    width_per_nm: float
    gamma_deg: float


def _matched_filter_snr(
    profile: _Profile, residual: FloatArray, widths_per_nm: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Signal-to-noise of a narrow peak of each FWHM at each q of a uniform grid.

    A zero-mean kernel (the peak minus a 3x broader peak of the same area) answers to
    narrow peaks on top of `residual` and not to slow modulations such as form-factor
    oscillations. Each row is divided by its robust spread (1.4826 x the median absolute
    deviation) where that exceeds 1, so that a misfit background does not pass for rods.

    Returns
    -------
    grid : ndarray of shape (n,)
        Uniform q grid spanning the profile, in nm^-1.
    snr : ndarray of shape (len(widths_per_nm), n)
        Height over its standard error of a peak of that width at each grid point.
    """
    n = profile.n
    step = profile.bin_per_nm
    grid = profile.q[0] + step * np.arange(n)
    w2 = profile.weight**2
    signal = np.interp(grid, profile.q, residual * w2)
    weight = np.interp(grid, profile.q, w2)
    snr = np.empty((widths_per_nm.size, n))
    for row, width in enumerate(widths_per_nm):
        half = min(math.ceil(2.5 * width / step), (n - 1) // 2)
        offsets = step * np.arange(-half, half + 1)
        narrow = np.exp(-_FOUR_LN2 * (offsets / width) ** 2)
        broad = np.exp(-_FOUR_LN2 * (offsets / (3.0 * width)) ** 2)
        kernel = narrow - broad * (narrow.sum() / broad.sum())
        numerator = np.convolve(signal, kernel, mode="same")
        denominator = np.convolve(weight, kernel * kernel, mode="same")
        snr[row] = numerator / np.sqrt(np.maximum(denominator, 1e-300))
    # where the background model misses slow structure (form-factor oscillations at high
    # counts), the SNR swings far beyond N(0, 1) everywhere: rescale by its robust spread
    spread = 1.4826 * np.median(np.abs(snr - np.median(snr, axis=1)[:, None]), axis=1)
    snr /= np.maximum(spread, 1.0)[:, None]
    return grid, snr


def _model_scores(
    grid: FloatArray, snr: FloatArray, q1s: FloatArray, width: float, q_max: float
) -> list[_RodCandidate]:
    """Score each lattice with its first rod at each of `q1s` by the squared SNR at its rods.

    Each rod inside the profile scores max(SNR, 0)^2 - 1: a rod where the data show
    nothing costs a little (noise alone scores 0.5 on average), so that a lattice with a
    smaller q1, which puts rods everywhere, does not win on noise.
    """

    def score(positions: FloatArray) -> FloatArray:
        positions = np.sort(positions, axis=-1)
        keep = np.ones(positions.shape, dtype=bool)
        keep[..., 1:] = np.diff(positions, axis=-1) > width  # coinciding rods count once
        keep &= positions <= q_max
        values = np.maximum(np.interp(positions, grid, snr), 0.0)
        return np.sum(np.where(keep, values * values - 1.0, 0.0), axis=-1)

    out = []
    lattices: tuple[tuple[RodModelName, tuple[float, ...]], ...] = (
        ("hexagonal", HEXAGONAL_RATIOS),
        ("square", SQUARE_RATIOS),
    )
    for name, ratios in lattices:
        scores = score(q1s[:, None] * np.asarray(ratios)[None, :])
        out += [
            _RodCandidate(name, float(sc), float(q1), width, math.nan)
            for sc, q1 in zip(scores, q1s, strict=True)
        ]
    families = np.asarray(RHOMBIC_FAMILIES, dtype=np.float64)
    cos_g = np.cos(np.radians(_GAMMA_GRID_DEG))[:, None]
    ratios = np.sqrt(families[None, :, 0] - 2.0 * families[None, :, 1] * cos_g)
    scores = score(q1s[:, None, None] * ratios[None, :, :])
    best_gamma = np.argmax(scores, axis=1)
    out += [
        _RodCandidate(
            "rhombic", float(scores[i, g]), float(q1s[i]), width, float(_GAMMA_GRID_DEG[g])
        )
        for i, g in enumerate(best_gamma)
    ]
    return out


def _search_widths(profile: _Profile, settings: RodFitSettings) -> FloatArray:
    smallest = max(2.5 * profile.bin_per_nm, 0.02)
    largest = max(settings.max_width_per_nm, smallest)
    count = max(round(math.log(largest / smallest) / math.log(1.8)) + 1, 1)
    return np.geomspace(smallest, largest, count)


def _cold_candidates(
    profile: _Profile, residual: FloatArray, settings: RodFitSettings
) -> tuple[dict[RodModelName, list[_RodCandidate]], str]:
    """Starts of each lattice model from a scan of the whole q1 window.

    For each filter width, the two strongest local maxima of the matched-filter SNR inside
    the window that reach `settings.min_rod_snr` are first-rod candidates, as are the q1
    that would make them the sqrt 3, sqrt 2 or second rod. Each lattice keeps, per width,
    the candidate whose rods explain most of the excess; the exact fit criterion then
    picks among those (:func:`_best_start`).

    Also returns a message (else "") when the strongest peak near the window lies just
    below it (or just above it, with none inside): the first rod is then likely outside.
    """
    lo, hi = settings.q1_window_per_nm
    q_max = float(profile.q[-1])
    widths = _search_widths(profile, settings)
    grid, snr = _matched_filter_snr(profile, residual, widths)
    inside = (grid > lo) & (grid < hi)
    local_max = np.zeros(snr.shape, dtype=bool)
    local_max[:, 1:-1] = (snr[:, 1:-1] > snr[:, :-2]) & (snr[:, 1:-1] >= snr[:, 2:])
    # the filter is not trusted within 1.5 widths of the profile's ends
    ends = (grid[None, :] - grid[0] < 1.5 * widths[:, None]) | (
        grid[-1] - grid[None, :] < 1.5 * widths[:, None]
    )
    strong = local_max & ~ends & (snr >= settings.min_rod_snr)
    peaks = strong & inside
    margin = settings.max_width_per_nm
    below = strong & (grid >= lo - margin) & (grid <= lo)
    above = strong & (grid >= hi) & (grid <= hi + margin)
    best_inside = float(snr[peaks].max()) if peaks.any() else 0.0
    # no rod lies below the first: a clear peak just below the window is the first rod
    clear = max(settings.min_rod_snr + 1.0, 0.5 * best_inside)
    edge = ""
    if below.any() and float(snr[below].max()) >= clear:
        edge = f"{float(grid[np.nonzero(below)[1][np.argmax(snr[below])]]):.3f} nm^-1, below"
    elif above.any() and not peaks.any():
        edge = f"{float(grid[np.nonzero(above)[1][np.argmax(snr[above])]]):.3f} nm^-1, above"
    message = (
        f"the strongest rod ({edge} the q1 window {lo:g}-{hi:g} nm^-1) lies outside the "
        "window: the first rod may be missed; widen q1_window_per_nm"
        if edge
        else ""
    )
    starts: dict[RodModelName, list[_RodCandidate]] = {}
    for row, width in enumerate(widths):
        cols = np.flatnonzero(peaks[row])
        if cols.size == 0:
            continue
        strongest = grid[cols[np.argsort(-snr[row, cols])[:_PEAKS_PER_WIDTH]]]
        # each peak may be a higher rod: try it as the sqrt 3, sqrt 2 or second rod too
        q1s = (strongest[:, None] / np.array([1.0, math.sqrt(3.0), math.sqrt(2.0), 2.0])).ravel()
        q1s = q1s[(q1s >= lo) & (q1s <= hi)]
        best: dict[RodModelName, _RodCandidate] = {}
        for candidate in _model_scores(grid, snr[row], q1s, float(width), q_max):
            if candidate.model not in best or candidate.score > best[candidate.model].score:
                best[candidate.model] = candidate
        for name, candidate in best.items():
            known = starts.setdefault(name, [])
            # the same first rod found at another width is one start
            if all(abs(candidate.q1_per_nm - k.q1_per_nm) > 0.5 * width for k in known):
                known.append(candidate)
    return starts, message


def _warm_candidates(
    profile: _Profile, start: RodFit, settings: RodFitSettings
) -> dict[RodModelName, list[_RodCandidate]]:
    """Starts of every lattice model at the previous frame's first rod and width.

    The rhombic model starts at the previous gamma where there was one, else at each of
    :data:`_WARM_GAMMAS_DEG` (the exact criterion then picks one).
    """
    width = float(np.clip(start.width_per_nm, profile.bin_per_nm, settings.max_width_per_nm))
    q1 = start.q1_per_nm
    gammas = (
        (start.gamma_deg,)
        if start.symmetry == "pseudo-hexagonal" and math.isfinite(start.gamma_deg)
        else _WARM_GAMMAS_DEG
    )
    return {
        "hexagonal": [_RodCandidate("hexagonal", 0.0, q1, width, math.nan)],
        "square": [_RodCandidate("square", 0.0, q1, width, math.nan)],
        "rhombic": [_RodCandidate("rhombic", 0.0, q1, width, gamma) for gamma in gammas],
    }


@dataclass(frozen=True, slots=True)
class _RodModelFit:
    spec: _RodModelSpec
    refined: _Refined
    stats: _Statistics

    @property
    def theta(self) -> FloatArray:
        return self.refined.evaluation.theta

    def first_rod_snr(self) -> float:
        """Height of the first rod (family ratio 1) over its standard error."""
        ev = self.refined.evaluation
        column = ev.n_background  # the first family is the first rod; with pseudo-Voigt
        per_col = 2 if ev.beta.size - ev.n_background == 2 * self.spec.families.shape[0] else 1
        m = self.spec.families.shape[0]
        columns = [column + k * m for k in range(per_col)]
        height = float(sum(ev.beta[c] for c in columns))
        rows = [int(self.stats.linear_index[c]) for c in columns if self.stats.linear_index[c] >= 0]
        if height <= 0 or not rows:
            return 0.0
        variance = float(self.stats.covariance[np.ix_(rows, rows)].sum())
        return height / math.sqrt(variance) if variance > 0 else math.inf


def _best_start(
    profile: _Profile, options: list[_RodCandidate], exponent: float, settings: RodFitSettings
) -> tuple[_RodCandidate, float]:
    """The start with the lowest information criterion before refinement, and that value."""
    scored = [(c, _start_ic(profile, c, exponent, settings)) for c in options]
    return min(scored, key=lambda item: item[1])


def _start_ic(
    profile: _Profile, candidate: _RodCandidate, exponent: float, settings: RodFitSettings
) -> float:
    """Information criterion of a lattice at its start (inf without a first rod there)."""
    spec, theta, low, high = _rod_problem(profile, candidate, exponent, settings)
    model = spec.model(settings.peak_shape)
    residual, beta, *_ = _evaluate_kernel(theta, *_model_args(model, profile), False)
    n_background = profile.legendre.shape[1] + 1
    first_rod = beta[n_background :: spec.families.shape[0]].sum()  # Gaussian + Lorentzian
    if not first_rod > 0:  # a lattice without its first rod is not this lattice
        return math.inf
    n_params = spec.n_theta - int(np.count_nonzero(low == high)) + beta.size
    return _information_criterion(float(residual @ residual), profile.n, n_params, settings.ic)


def _rod_problem(
    profile: _Profile, candidate: _RodCandidate, exponent: float, settings: RodFitSettings
) -> tuple[_RodModelSpec, FloatArray, FloatArray, FloatArray]:
    """The model, start and bounds of one lattice from one start."""
    q_max = float(profile.q[-1])
    linear = settings.width_model == "linear"
    spec = _rod_spec(candidate.model, candidate.q1_per_nm, q_max, linear)
    lo, hi = settings.q1_window_per_nm
    w_min = min(profile.bin_per_nm, settings.max_width_per_nm / 2)
    theta0 = [exponent, candidate.q1_per_nm, candidate.width_per_nm]
    # with a polynomial factor the exponent is held (see _fit_rods); free only for order 0
    p_lo, p_hi = (-1.0, 8.0) if settings.background_order == 0 else (exponent, exponent)
    lower = [p_lo, lo, w_min]
    upper = [p_hi, hi, settings.max_width_per_nm]
    if linear:
        theta0.append(0.0)
        lower.append(0.0)
        upper.append(3.0)
    if spec.rhombic:
        theta0.append(candidate.gamma_deg)
        lower.append(GAMMA_RANGE_DEG[0])
        upper.append(GAMMA_RANGE_DEG[1])
    low, high = np.asarray(lower), np.asarray(upper)
    return spec, np.clip(np.asarray(theta0), low, high), low, high


def _fit_rod_model(
    profile: _Profile,
    candidate: _RodCandidate,
    exponent: float,
    settings: RodFitSettings,
) -> _RodModelFit:
    spec, theta0, lower, upper = _rod_problem(profile, candidate, exponent, settings)
    refined = _levenberg_marquardt(
        spec.model(settings.peak_shape), profile, theta0, lower, upper, max_nfev=settings.max_nfev
    )
    stats = _statistics(refined.evaluation, profile.n, spec.n_theta, settings.ic, lower == upper)
    return _RodModelFit(spec=spec, refined=refined, stats=stats)


def _background_model() -> _Model:
    return _Model(
        mode=_MODE_BACKGROUND,
        shape="gaussian",
        power_law=True,
        n_theta=1,
        families=np.zeros((0, 2)),
    )


def _start_exponent(profile: _Profile) -> float:
    """Power-law exponent: minus the slope of a straight line through log I vs log q."""
    positive = profile.y > 0
    if positive.sum() < 3:
        return 2.0
    x = profile.log_q[positive]
    y = np.log(profile.y[positive])
    x = x - x.mean()
    slope = float(x @ (y - y.mean()) / max(float(x @ x), 1e-300))
    return float(np.clip(-slope, -1.0, 8.0))


def fit_rods(
    q_per_nm: FloatArray,
    intensity: FloatArray,
    sigma: FloatArray,
    *,
    settings: RodFitSettings,
    start: RodFit | None = None,
) -> RodFit:
    """Find and fit the superlattice rods of a GISAXS q_par cut; name the lattice.

    The background is q^-p times a low-order polynomial plus a constant (see
    `settings.background_order`; with a polynomial, p is held at the log-log slope of the
    data, with order 0 it is fitted). Four models are fitted and compared by the
    information criterion: background only ("none"); a hexagonal lattice (rods at
    q1 x 1, sqrt 3, 2, sqrt 7, ...); a square one (1, sqrt 2, 2, sqrt 5, ...); a rhombic
    one with free gamma in (62, 88) deg, refined only where its start beats both. Rods are
    tied to q1 (and gamma), each has its own height >= 0, and all share one width (or a
    width growing linearly with q). The first rod is found without a fixed guess: the
    background-only fit is subtracted and a zero-mean matched filter scans the q1 window
    at several widths; the strongest peaks, and the q1 that would make them the sqrt 3,
    sqrt 2 or second rod, start each lattice, and the exact criterion picks the start.
    A lattice whose first rod is below `settings.min_rod_snr` sigma, or whose width runs
    to `settings.max_width_per_nm`, does not count. Naming:

    - "none": the best rod model beats the background by less than
      `settings.delta_ic_rod`, or its first rod is below `settings.min_rod_snr` sigma;
    - "pseudo-hexagonal": the rhombic model beats hexagonal and square by
      `delta_ic_symmetry` and its gamma is more than `gamma_margin_deg` from 60 and 90
      (closer, it is called hexagonal or square);
    - "hexagonal" / "square": the better of the two by `delta_ic_symmetry`;
    - "unknown": a first rod, but hexagonal and square closer than that (for example
      when no higher rod falls inside the fit range).

    Parameters
    ----------
    q_per_nm, intensity, sigma : ndarray of shape (n,)
        The cut: q_par in nm^-1, intensity and its standard error. NaN bins are dropped,
        bins with sigma 0 get the smallest positive sigma.
    settings : RodFitSettings
        Window, models and thresholds.
    start : RodFit, optional
        The previous frame's result. Its q1, width (and gamma) start the fits instead of
        the search; when that fails or names another lattice, the full search decides.

    Returns
    -------
    RodFit
        Never raises for bad data: failures have ``ok=False`` and a message.

    Examples
    --------
    >>> q = np.linspace(0.3, 2.4, 400)
    >>> rods = sum(h * np.exp(-4 * np.log(2) * ((q - 0.8 * r) / 0.06) ** 2)
    ...            for h, r in [(400, 1), (150, 3 ** 0.5), (120, 2)])
    >>> y = 2000 * q ** -3 + 100 + rods
    >>> fit = fit_rods(q, y, np.sqrt(y), settings=RodFitSettings())
    >>> fit.symmetry, round(fit.q1_per_nm, 3), round(fit.spacing_nm, 2)
    ('hexagonal', 0.8, 9.07)
    """
    prepared = _prepare_profile(
        q_per_nm, intensity, sigma, settings.fit_range_per_nm, settings.background_order
    )
    if isinstance(prepared, str):
        return _failed_rods(prepared, settings, 0)
    profile = prepared
    lo, hi = settings.q1_window_per_nm
    in_window = (profile.q >= lo) & (profile.q <= hi)
    if in_window.sum() < 3:
        return _failed_rods(
            f"the cut ({profile.q[0]:.3g}-{profile.q[-1]:.3g} nm^-1) has no valid bins in the "
            f"q1 window {lo:g}-{hi:g} nm^-1: check q1_window_per_nm and the q_par range",
            settings,
            profile.n,
        )
    try:
        return _fit_rods(profile, settings, start)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
        return _failed_rods(f"the rod fit failed numerically ({err})", settings, profile.n)


def _fit_rods(profile: _Profile, settings: RodFitSettings, start: RodFit | None) -> RodFit:
    if settings.background_order == 0:
        exponent0 = (
            start.background_exponent
            if start is not None and math.isfinite(start.background_exponent)
            else _start_exponent(profile)
        )
        p_lo, p_hi = -1.0, 8.0
    else:
        # a polynomial factor is nearly degenerate with the exponent: hold it at the
        # log-log slope of the data (the polynomial absorbs the rest)
        exponent0 = p_lo = p_hi = _start_exponent(profile)
    background = _levenberg_marquardt(
        _background_model(),
        profile,
        np.array([exponent0]),
        np.array([p_lo]),
        np.array([p_hi]),
        max_nfev=settings.max_nfev,
    )
    bg_stats = _statistics(
        background.evaluation, profile.n, 1, settings.ic, np.array([p_lo == p_hi])
    )
    if not math.isfinite(bg_stats.ic):
        return _failed_rods("the background fit did not converge", settings, profile.n)
    residual = background.evaluation.residual / profile.weight
    if settings.rod_envelope == "background":
        profile = replace(profile, envelope=_background_envelope(background.evaluation, profile))
    lo, hi = settings.q1_window_per_nm
    if (
        start is not None
        and start.ok
        and math.isfinite(start.width_per_nm)
        and lo <= start.q1_per_nm <= hi
    ):
        warm_context = _Context(profile, settings, background, bg_stats, warm=True)
        warm = _decide(warm_context, _warm_candidates(profile, start, settings))
        # a change of lattice (or a lost rod) is confirmed by the full search
        if warm.ok and warm.symmetry == start.symmetry:
            return warm
    context = _Context(profile, settings, background, bg_stats, warm=False)
    candidates, edge_message = _cold_candidates(profile, residual, settings)
    if edge_message:
        return _failed_rods(edge_message, settings, profile.n)
    return _decide(context, candidates)


@dataclass(frozen=True, slots=True)
class _Context:
    """What every rod model of one frame shares."""

    profile: _Profile
    settings: RodFitSettings
    background: _Refined
    bg_stats: _Statistics
    warm: bool

    @property
    def window(self) -> str:
        lo, hi = self.settings.q1_window_per_nm
        return f"{lo:g}-{hi:g} nm^-1"

    def no_rod(self, message: str, ics: tuple[float, float, float, float] | None = None) -> RodFit:
        """The "none" result: no rod, the background fit's values."""
        nan = math.nan
        ic_values = ics if ics is not None else (self.bg_stats.ic, nan, nan, nan)
        return replace(
            _failed_rods(message, self.settings, self.profile.n, ic_values, self.warm),
            background_exponent=float(self.background.evaluation.theta[0]),
            background_exponent_err=math.nan
            if self.bg_stats.fixed[0]
            else _stderr(self.bg_stats, 0),
            redchi=self.bg_stats.redchi,
            ok=True,
        )


def _background_envelope(ev: _Evaluation, profile: _Profile) -> FloatArray:
    """The background-only fit, scaled to 1 at its maximum (floored at 1e-6)."""
    shape = (ev.design @ ev.beta) / profile.weight
    top = float(np.max(shape))
    if not (top > 0 and np.all(np.isfinite(shape))):
        return np.ones_like(profile.q)
    return np.ascontiguousarray(np.maximum(shape / top, 1e-6))


def _decide(context: _Context, candidates: dict[RodModelName, list[_RodCandidate]]) -> RodFit:
    """Refine the promising lattice models and name the lattice."""
    profile, settings, window = context.profile, context.settings, context.window
    if not candidates:
        return context.no_rod(f"no rod above {settings.min_rod_snr:g} sigma in {window}")
    exponent = float(context.background.evaluation.theta[0])
    starts = {
        name: _best_start(profile, options, exponent, settings)
        for name, options in candidates.items()
    }
    fits: dict[RodModelName, _RodModelFit] = {
        "hexagonal": _fit_rod_model(profile, starts["hexagonal"][0], exponent, settings),
        "square": _fit_rod_model(profile, starts["square"][0], exponent, settings),
    }
    # the rhombic model is refined only where its start beats both lattices' starts
    rhombic_start, rhombic_ic = starts["rhombic"]
    if rhombic_ic < min(starts["hexagonal"][1], starts["square"][1]) - settings.delta_ic_symmetry:
        fits["rhombic"] = _fit_rod_model(profile, rhombic_start, exponent, settings)
    nan = math.nan
    ics = (
        context.bg_stats.ic,
        fits["hexagonal"].stats.ic,
        fits["square"].stats.ic,
        fits["rhombic"].stats.ic if "rhombic" in fits else nan,
    )
    # a model whose width ran to its bound fits a broad feature, not rods; one without a
    # significant first rod is not that lattice
    broad = {name for name, fit in fits.items() if fit.refined.at_upper[2]}
    fitted = {name: fit for name, fit in fits.items() if math.isfinite(fit.stats.ic)}
    snrs = {name: fit.first_rod_snr() for name, fit in fitted.items() if name not in broad}
    eligible = {name: fitted[name] for name, snr in snrs.items() if snr >= settings.min_rod_snr}
    if not eligible:
        if not snrs:
            message = (
                f"only features broader than {settings.max_width_per_nm:g} nm^-1 "
                f"in {window}: no rod"
            )
        else:
            top = max(snrs, key=lambda name: snrs[name])
            message = (
                f"no first rod above {settings.min_rod_snr:g} sigma in {window} "
                f"(best: {snrs[top]:.1f} sigma at {fitted[top].theta[1]:.3f} nm^-1)"
            )
        return context.no_rod(message, ics)
    best_name = min(eligible, key=lambda name: eligible[name].stats.ic)
    best = eligible[best_name]
    gain = context.bg_stats.ic - best.stats.ic
    if gain < settings.delta_ic_rod:
        return context.no_rod(
            f"no rod in {window}: the best rod model ({best_name}) improves the "
            f"{settings.ic.upper()} by {gain:.1f} < {settings.delta_ic_rod:g}",
            ics,
        )
    q1 = float(best.theta[1])
    if best.refined.at_lower[1] or best.refined.at_upper[1]:
        return _failed_rods(
            f"the first rod ({q1:.3f} nm^-1) sits at the edge of the q1 window {window}: "
            "widen q1_window_per_nm",
            settings,
            profile.n,
            ics,
            context.warm,
        )
    symmetry, chosen = _name_lattice(fits, eligible, best_name, settings)
    return _rod_result(chosen, symmetry, profile, settings, ics, context.warm)


def _name_lattice(
    fits: dict[RodModelName, _RodModelFit],
    eligible: dict[RodModelName, _RodModelFit],
    best_name: RodModelName,
    settings: RodFitSettings,
) -> tuple[Symmetry, _RodModelFit]:
    """The symmetry label and the model fit that reports it.

    Margins are taken against every fitted model (also one whose width ran to its bound,
    whose criterion is still a fair measure of how well it fits).
    """
    hexagonal, square = eligible.get("hexagonal"), eligible.get("square")
    plain = [fit for fit in (hexagonal, square) if fit is not None]
    best_plain = min(plain, key=lambda fit: fit.stats.ic) if plain else None
    rhombic = eligible.get("rhombic")
    if (
        best_name == "rhombic"
        and rhombic is not None
        and (
            best_plain is None
            or best_plain.stats.ic - rhombic.stats.ic >= settings.delta_ic_symmetry
        )
    ):
        gamma = float(rhombic.theta[-1])
        if gamma - GAMMA_HEXAGONAL_DEG <= settings.gamma_margin_deg and hexagonal is not None:
            return "hexagonal", hexagonal
        if GAMMA_SQUARE_DEG - gamma <= settings.gamma_margin_deg and square is not None:
            return "square", square
        return "pseudo-hexagonal", rhombic
    if best_plain is None:  # only a rhombic fit, and it did not win clearly
        return "unknown", eligible[best_name]
    other = fits["square" if best_plain is hexagonal else "hexagonal"]
    if other.stats.ic - best_plain.stats.ic < settings.delta_ic_symmetry:
        return "unknown", best_plain
    return ("hexagonal" if best_plain is hexagonal else "square"), best_plain


def _rod_result(
    fit: _RodModelFit,
    symmetry: Symmetry,
    profile: _Profile,
    settings: RodFitSettings,
    ics: tuple[float, float, float, float],
    warm: bool,
) -> RodFit:
    theta = fit.theta
    stats = fit.stats
    ev = fit.refined.evaluation
    q1 = float(theta[1])
    q1_err = _stderr(stats, 1)
    spacing_hex = lattice_spacing_nm(q1, "hexagonal")
    spacing_square = lattice_spacing_nm(q1, "square")
    gamma = gamma_err = math.nan
    if symmetry == "pseudo-hexagonal":
        gamma = float(theta[-1])
        gamma_err = _stderr(stats, fit.spec.n_theta - 1)
        spacing = lattice_spacing_nm(q1, symmetry, gamma_deg=gamma)
        # d ln a = -d q1 / q1 - cot(gamma) d gamma
        grad = np.zeros(stats.covariance.shape[0])
        grad[1] = -1.0 / q1
        grad[fit.spec.n_theta - 1] = -math.radians(1.0) / math.tan(math.radians(gamma))
        spacing_err = spacing * math.sqrt(max(float(grad @ stats.covariance @ grad), 0.0))
    elif symmetry in ("hexagonal", "square"):
        spacing = lattice_spacing_nm(q1, symmetry)
        spacing_err = spacing * q1_err / q1
    else:
        spacing = spacing_err = math.nan
    growth = float(theta[3]) if fit.spec.linear_width else 0.0
    ratios = fit.spec.ratios(float(theta[-1]) if fit.spec.rhombic else GAMMA_HEXAGONAL_DEG)
    m = ratios.size
    heights = ev.beta[ev.n_background : ev.n_background + m].copy()
    if ev.beta.size - ev.n_background == 2 * m:
        heights += ev.beta[ev.n_background + m :]
    positions = q1 * ratios
    inside = positions <= profile.q[-1]
    if symmetry == "unknown":
        inside &= ratios == 1.0
    order = np.argsort(positions)
    rods: list[tuple[float, float]] = []
    for i in order:
        if not inside[i]:
            continue
        if rods and abs(positions[i] - rods[-1][0]) < 1e-9:
            rods[-1] = (rods[-1][0], rods[-1][1] + float(heights[i]))
        else:
            rods.append((float(positions[i]), float(heights[i])))
    message = (
        f"{symmetry} lattice, first rod at {q1:.4f} +- {q1_err:.4f} nm^-1"
        if symmetry != "unknown"
        else (
            f"first rod at {q1:.4f} nm^-1 but hexagonal vs square undecided "
            f"(spacing {spacing_hex:.2f} nm if hexagonal, {spacing_square:.2f} nm if square)"
        )
    )
    return RodFit(
        q1_per_nm=q1,
        q1_err_per_nm=q1_err,
        symmetry=symmetry,
        gamma_deg=gamma,
        gamma_err_deg=gamma_err,
        spacing_nm=spacing,
        spacing_err_nm=spacing_err,
        spacing_hex_nm=spacing_hex,
        spacing_square_nm=spacing_square,
        width_per_nm=float(theta[2]),
        width_err_per_nm=_stderr(stats, 2),
        width_growth=growth,
        background_exponent=float(theta[0]),
        background_exponent_err=math.nan if stats.fixed[0] else _stderr(stats, 0),
        rod_positions_per_nm=tuple(p for p, _ in rods),
        rod_heights=tuple(h for _, h in rods),
        redchi=stats.redchi,
        ic_none=ics[0],
        ic_hexagonal=ics[1],
        ic_square=ics[2],
        ic_rhombic=ics[3],
        ic=settings.ic,
        n_points=profile.n,
        warm_started=warm,
        ok=True,
        message=message,
    )


def _failed_rods(
    message: str,
    settings: RodFitSettings,
    n_points: int,
    ics: tuple[float, float, float, float] | None = None,
    warm: bool = False,
) -> RodFit:
    nan = math.nan
    ic_values = ics if ics is not None else (nan, nan, nan, nan)
    return RodFit(
        q1_per_nm=nan,
        q1_err_per_nm=nan,
        symmetry="none",
        gamma_deg=nan,
        gamma_err_deg=nan,
        spacing_nm=nan,
        spacing_err_nm=nan,
        spacing_hex_nm=nan,
        spacing_square_nm=nan,
        width_per_nm=nan,
        width_err_per_nm=nan,
        width_growth=nan,
        background_exponent=nan,
        background_exponent_err=nan,
        rod_positions_per_nm=(),
        rod_heights=(),
        redchi=nan,
        ic_none=ic_values[0],
        ic_hexagonal=ic_values[1],
        ic_square=ic_values[2],
        ic_rhombic=ic_values[3],
        ic=settings.ic,
        n_points=n_points,
        warm_started=warm,
        ok=False,
        message=message,
    )


# --------------------------------------------------------------------------------------
# GIWAXS: the {200} reflection
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
    prepared = _prepare_profile(
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


def _cold_peak_start(profile: _Profile, settings: PeakFitSettings) -> _PeakStart | str:
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
    profile: _Profile, settings: PeakFitSettings, start: _PeakStart, *, warm: bool
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
    w0 = float(np.clip(start.fwhm_per_nm, w_min, w_max))
    theta0 = [float(np.clip(start.center_per_nm, c_lo, c_hi)), w0]
    lower, upper = [c_lo, w_min], [c_hi, w_max]
    names: list[str] = []
    for name, ratio in (("111", RATIO_111_TO_200), ("220", RATIO_220_TO_200)):
        expected = start.center_per_nm * ratio
        if not lo < expected < hi:
            continue
        known = [n for n in start.neighbours if abs(n[0] - expected) < 0.04 * expected]
        center, width = known[0] if known else (expected, w0)
        names.append(name)
        theta0 += [center, float(np.clip(width, w_min, w_max))]
        lower += [max(lo, 0.96 * expected), w_min]
        upper += [min(hi, 1.04 * expected), w_max]
    model = _Model(
        mode=_MODE_PEAKS,
        shape=settings.peak_shape,
        power_law=False,
        n_theta=len(theta0),
        families=np.zeros((1 + len(names), 2)),
    )
    refined = _levenberg_marquardt(
        model,
        profile,
        np.asarray(theta0),
        np.asarray(lower),
        np.asarray(upper),
        max_nfev=settings.max_nfev,
    )
    ev = refined.evaluation
    stats = _statistics(ev, profile.n, model.n_theta, "bic")
    center, fwhm = float(ev.theta[0]), float(ev.theta[1])
    if not (np.isfinite(ev.chi2) and np.all(np.isfinite(ev.theta))):
        return _failed_peak(
            f"the {{200}} fit did not converge in {window}", settings, profile.n, warm
        )
    m = model.n_peaks
    columns = [ev.n_background + k * m for k in range(model.n_columns_per_peak)]
    heights = np.array([ev.beta[c] for c in columns])
    amplitude = float(heights.sum())
    rows = [int(stats.linear_index[c]) for c in columns]
    active_rows = [r for r in rows if r >= 0]
    block = stats.covariance[np.ix_(active_rows, active_rows)]
    amplitude_err = math.sqrt(max(float(block.sum()), 0.0)) if active_rows else math.nan
    if not (amplitude > 0 and amplitude >= settings.min_snr * amplitude_err):
        return _failed_peak(
            f"no {{200}} peak above {settings.min_snr:g} sigma in {window}",
            settings,
            profile.n,
            warm,
        )
    if refined.at_lower[0] or refined.at_upper[0]:
        return _failed_peak(
            f"the {{200}} peak ({center:.2f} nm^-1) sits at the edge of its search region "
            f"{c_lo:.2f}-{c_hi:.2f} nm^-1: check window_per_nm and the q calibration",
            settings,
            profile.n,
            warm,
        )
    if refined.at_upper[1]:
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
        full_rows = [r if r >= 0 else None for r in rows]
        if all(r is not None for r in full_rows):
            cov = stats.covariance[np.ix_(rows, rows)]
            eta_err = math.sqrt(max(float(grad @ cov @ grad), 0.0))
        else:  # one component at zero: its error is not defined by the Jacobian
            eta_err = math.nan
    else:
        eta = 1.0 if settings.peak_shape == "lorentzian" else 0.0
        eta_err = 0.0
    neighbours = {
        name: (float(ev.theta[2 + 2 * i]), float(ev.theta[3 + 2 * i]))
        for i, name in enumerate(names)
    }
    nan2 = (math.nan, math.nan)
    return PeakFit(
        center_per_nm=center,
        center_err_per_nm=_stderr(stats, 0),
        fwhm_per_nm=fwhm,
        fwhm_err_per_nm=_stderr(stats, 1),
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
