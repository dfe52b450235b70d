"""Separable least squares ("variable projection") with a bounded Levenberg-Marquardt loop.

The engine knows nothing of rods or reflections: a :class:`SeparableModel` is a sum of
columns whose amplitudes (background coefficients, unit-height peak heights) enter
linearly, and a few nonlinear parameters (named in ``SeparableModel.param_names``) that
place and widen the peaks. For each trial value of the nonlinear parameters the linear
ones are solved by weighted linear least squares, with non-negative peak heights; a
Levenberg-Marquardt loop moves the nonlinear parameters only, with the analytic (Kaufman)
Jacobian. This is the same minimum and, to first order, the same standard errors as a
fit of all parameters with lmfit (a test checks this against :func:`lmfit.minimize`), at
a fraction of the cost: lmfit spends ~0.7 ms of fixed bookkeeping per fit, more than the
per-frame budget of the models here. The inner loop (design, linear solve, Jacobian,
Levenberg-Marquardt) is compiled with numba and cached on disk next to the module.

Conventions, as in lmfit: standard errors come from the covariance of the Jacobian scaled
by the reduced chi-square; ``bic = n ln(chi2 / n) + k ln n``, ``aic = n ln(chi2 / n) + 2 k``
with k the number of fitted parameters (linear ones included). Widths are FWHM. The
result of a refinement carries its convergence status (:class:`Refined`: evaluations
used, whether the evaluation limit stopped it).

Peak geometries (``SeparableModel.mode``):

- ``MODE_BACKGROUND``: no peaks; parameters ``("exponent",)`` of the power law;
- ``MODE_RODS``: rods of a 2D lattice, parameters ``("exponent", "q1", "fwhm",
  ["growth"], ["gamma"])``; rod j sits at q1 sqrt(a_j - 2 b_j cos gamma) (families
  (a_j, b_j)) with FWHM fwhm (1 + growth (r_j - 1));
- ``MODE_PEAKS``: independent peaks, parameters ``("center0", "fwhm0", "center1", ...)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import BSpline

from detectors.errors import ConfigError
from pipeline.config import MAX_NFEV_RANGE, PeakShape, is_nfev
from pipeline.lineshapes import FASTMATH, FOUR_LN2, gaussian_unit, lorentzian_unit

FloatArray = NDArray[np.float64]
InformationCriterion = Literal["bic", "aic"]

#: Fewest valid bins a profile must have to be fitted.
MIN_POINTS = 12


# --------------------------------------------------------------------------------------
# settings checks shared by the models
# --------------------------------------------------------------------------------------


def check_choice(
    name: str, value: object, allowed: tuple[str, ...], where: str = "[rod fit]"
) -> None:
    """Raise ConfigError unless `value` is one of `allowed`."""
    if value not in allowed:
        msg = f"{where} {name} must be one of {allowed}, got {value!r}"
        raise ConfigError(msg)


def check_range(name: str, value: tuple[float, float], where: str = "[rod fit]") -> None:
    """Raise ConfigError unless `value` is a q range [lo, hi] with 0 <= lo < hi."""
    ok = (
        len(value) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
        and 0 <= value[0] < value[1]
    )
    if not ok:
        msg = f"{where} {name} must be [lo, hi] in nm^-1 with 0 <= lo < hi, got {value!r}"
        raise ConfigError(msg)


def check_order(name: str, value: int, where: str = "[rod fit]") -> None:
    """Raise ConfigError unless `value` is a polynomial order 0-3."""
    if not (isinstance(value, int) and 0 <= value <= 3):
        msg = f"{where} {name} must be an integer 0, 1, 2 or 3, got {value!r}"
        raise ConfigError(msg)


def check_positive(
    name: str, value: float, where: str = "[rod fit]", *, allow_zero: bool = False
) -> None:
    """Raise ConfigError unless `value` is finite and > 0 (>= 0 with `allow_zero`)."""
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{where} {name} must be a finite number {bound}, got {value!r}"
        raise ConfigError(msg)


def check_nfev(value: int, where: str = "[rod fit]") -> None:
    """Raise ConfigError unless `value` is an evaluation limit (:func:`is_nfev`)."""
    if not is_nfev(value):
        lo, hi = MAX_NFEV_RANGE
        msg = f"{where} max_nfev must be an integer in [{lo}, {hi}], got {value!r}"
        raise ConfigError(msg)


def raise_nfev_fix(table: str) -> str:
    """The fix named where a fit stopped at its evaluation limit (`table`: "gisaxs" ...).

    Examples
    --------
    >>> raise_nfev_fix("giwaxs")
    'raise max_nfev (the [giwaxs] key; --max-nfev of gixs inspect)'
    """
    return f"raise max_nfev (the [{table}] key; --max-nfev of gixs inspect)"


# --------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
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
        """Number of bins."""
        return int(self.q.size)

    @property
    def bin_per_nm(self) -> float:
        """Mean bin spacing, in nm^-1."""
        return float((self.q[-1] - self.q[0]) / max(self.q.size - 1, 1))


_SHAPE_CODES: dict[str, int] = {"gaussian": 0, "lorentzian": 1, "pseudo_voigt": 2}
#: Model geometries: no peaks; lattice rods, theta = [p, q1, w, (s), (gamma)];
#: independent peaks, theta = [c0, w0, c1, w1, ...].
MODE_BACKGROUND, MODE_RODS, MODE_PEAKS = 0, 1, 2
#: Relative chi-square change below which a refinement has converged.
_CHI2_RTOL = 1e-7


@dataclass(frozen=True, slots=True)
class SeparableModel:
    """A separable model: background columns plus unit-height peak columns."""

    mode: int
    shape: PeakShape
    power_law: bool  # background q^-p * Legendre + constant, p = theta[0]; else Legendre
    param_names: tuple[str, ...]  # the nonlinear parameters, in the order of theta
    families: FloatArray  # (n_peaks, 2); rods: a rod at q1 sqrt(a - 2 b cos gamma)
    linear_width: bool = False
    rhombic: bool = False

    @property
    def n_theta(self) -> int:
        """Number of nonlinear parameters."""
        return len(self.param_names)

    @property
    def n_peaks(self) -> int:
        """Number of peaks (rods or reflections)."""
        return int(self.families.shape[0])

    @property
    def n_columns_per_peak(self) -> int:
        """Linear columns of each peak: 2 for a pseudo-Voigt (Gaussian, Lorentzian), else 1."""
        return 2 if self.shape == "pseudo_voigt" else 1


@dataclass(frozen=True, slots=True)
class Evaluation:
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


@numba.njit(cache=True, fastmath=FASTMATH)
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


@numba.njit(cache=True, fastmath=FASTMATH)
def _indices(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Indices where `mask` is True (np.nonzero, written out: it compiles much faster)."""
    out = np.empty(mask.size, dtype=np.int64)
    n = 0
    for i in range(mask.size):
        if mask[i]:
            out[n] = i
            n += 1
    return out[:n]


@numba.njit(cache=True, fastmath=FASTMATH)
def _sum_squares(values: FloatArray) -> float:
    acc = 0.0
    for v in values:
        acc += v * v
    return acc


@numba.njit(cache=True, fastmath=FASTMATH)
def _cholesky_factor(matrix: FloatArray) -> FloatArray:
    """Lower Cholesky factor of a small symmetric positive-definite matrix."""
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
    return lower


@numba.njit(cache=True, fastmath=FASTMATH)
def _cholesky_substitute(lower: FloatArray, rhs: FloatArray) -> FloatArray:
    """Solve L L^T x = rhs for the factor L of :func:`_cholesky_factor`, rhs (k, r)."""
    k = lower.shape[0]
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


@numba.njit(cache=True, fastmath=FASTMATH)
def _cholesky_solve(matrix: FloatArray, rhs: FloatArray) -> FloatArray:
    """Solve matrix @ x = rhs for a small symmetric positive-definite matrix, rhs (k, r)."""
    return _cholesky_substitute(_cholesky_factor(matrix), rhs)


@numba.njit(cache=True, fastmath=FASTMATH)
def _normalised_gram(gram: FloatArray, norms: FloatArray, idx: NDArray[np.int64]) -> FloatArray:
    """The Gram matrix (lower triangle given) of the columns `idx`, each scaled to norm 1.

    A ridge of 1e-10 on the diagonal keeps it positive definite.
    """
    ka = idx.size
    sub = np.empty((ka, ka))
    for a in range(ka):
        ia = idx[a]
        for b in range(a + 1):
            value = gram[ia, idx[b]] / (norms[ia] * norms[idx[b]])
            sub[a, b] = value
            sub[b, a] = value
        sub[a, a] += 1e-10
    return sub


@numba.njit(cache=True, fastmath=FASTMATH)
def evaluate_kernel(
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
    with_jacobian: bool,
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
                g = gaussian_unit(u)
                dg = -2.0 * FOUR_LN2 * u * g
                design[i, n_bg + j] = g * wp
                p_center[i, j] = -dg * inv_w
                p_width[i, j] = -dg * u * inv_w
            if shape != 0:
                col = j if shape == 1 else m + j
                lor = lorentzian_unit(u)
                dl = -8.0 * u * lor * lor
                design[i, n_bg + col] = lor * wp
                p_center[i, col] = -dl * inv_w
                p_width[i, col] = -dl * u * inv_w
    # each row has few non-zero columns (B-splines are local, Gaussians are cut at 6
    # widths): the products below visit only those, in ascending column order
    row_columns = np.empty((n, k), dtype=np.int64)
    row_counts = np.zeros(n, dtype=np.int64)
    for i in range(n):
        count = 0
        for a in range(k):
            if design[i, a] != 0.0:
                row_columns[i, count] = a
                count += 1
        row_counts[i] = count
    gram = np.zeros((k, k))
    moment = np.zeros(k)
    for i in range(n):
        for s in range(row_counts[i]):
            a = row_columns[i, s]
            xa = design[i, a]
            moment[a] += xa * y_w[i]
            for t in range(s + 1):
                b = row_columns[i, t]
                gram[a, b] += xa * design[i, b]
    norms = np.empty(k)
    for a in range(k):
        norms[a] = math.sqrt(gram[a, a])
    floor = 1e-300
    for a in range(k):
        floor = max(floor, 1e-12 * norms[a])
    active = np.empty(k, dtype=np.bool_)
    for a in range(k):
        active[a] = norms[a] > floor
    beta = np.zeros(k)
    idx = _indices(active)
    factor = np.zeros((0, 0))  # of the normalised Gram matrix of the active columns
    for _ in range(k):
        idx = _indices(active)
        ka = idx.size
        rhs = np.empty((ka, 1))
        for a in range(ka):
            rhs[a, 0] = moment[idx[a]] / norms[idx[a]]
        factor = _cholesky_factor(_normalised_gram(gram, norms, idx))
        coef = _cholesky_substitute(factor, rhs)
        for a in range(k):
            beta[a] = 0.0
        negative = False
        for a in range(ka):
            beta[idx[a]] = coef[a, 0] / norms[idx[a]]
            if idx[a] >= n_bg and coef[a, 0] < 0.0:
                active[idx[a]] = False
                negative = True
        if not negative:
            break
    if idx.size != _indices(active).size:  # the loop ran out: drop what is still negative
        for a in range(idx.size):
            if not active[idx[a]]:
                beta[idx[a]] = 0.0
        idx = _indices(active)
        factor = _cholesky_factor(_normalised_gram(gram, norms, idx))
    residual = y_w.copy()
    for i in range(n):
        acc = 0.0
        for s in range(row_counts[i]):
            a = row_columns[i, s]
            acc += design[i, a] * beta[a]  # beta is 0 on inactive columns
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
    position = np.full(k, -1, dtype=np.int64)  # column -> its row among the active ones
    for a in range(ka):
        position[idx[a]] = a
    cross = np.zeros((ka, n_theta))
    for i in range(n):
        for s in range(row_counts[i]):
            a = position[row_columns[i, s]]
            if a < 0:
                continue
            xa = design[i, idx[a]]
            for t in range(n_theta):
                cross[a, t] += xa * derivative[i, t]
    for a in range(ka):
        for t in range(n_theta):
            cross[a, t] /= norms[idx[a]]
    projection = _cholesky_substitute(factor, cross)  # the linear solve's own factor
    jacobian = -derivative
    for i in range(n):
        for s in range(row_counts[i]):
            a = position[row_columns[i, s]]
            if a < 0:
                continue
            xa = design[i, idx[a]] / norms[idx[a]]
            for t in range(n_theta):
                jacobian[i, t] += xa * projection[a, t]
    return residual, beta, active, derivative, jacobian, design, norms


@numba.njit(cache=True, fastmath=FASTMATH)
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
    bool,
    tuple[
        FloatArray, FloatArray, NDArray[np.bool_], FloatArray, FloatArray, FloatArray, FloatArray
    ],
]:
    """Bounded Levenberg-Marquardt on theta (projected steps).

    Returns theta, the number of evaluations, whether it converged (False when the
    evaluation limit stopped it or chi-square is not finite) and the evaluation at theta.
    """
    n_theta = theta0.size
    # a bool that is not a compile-time literal: the Python callers' signature is reused
    jacobian_wanted = n_theta > 0
    theta = np.empty(n_theta)
    for t in range(n_theta):
        theta[t] = min(max(theta0[t], lower[t]), upper[t])
    out = evaluate_kernel(
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
        jacobian_wanted,
    )
    best = out
    chi2 = _sum_squares(out[0])
    nfev = 1
    converged = False
    damping = 1e-3
    hessian = np.empty((n_theta, n_theta))
    gradient = np.empty(n_theta)
    while nfev < max_nfev and math.isfinite(chi2):
        residual, jacobian = best[0], best[4]
        top = 1e-300
        for a in range(n_theta):
            acc = 0.0
            for i in range(residual.size):
                acc += jacobian[i, a] * residual[i]
            gradient[a] = acc
            for b in range(a + 1):
                acc = 0.0
                for i in range(residual.size):
                    acc += jacobian[i, a] * jacobian[i, b]
                hessian[a, b] = acc
                hessian[b, a] = acc
            top = max(top, hessian[a, a])
        # a parameter held at a bound by a gradient pushing outwards stays there
        free = np.empty(n_theta, dtype=np.int64)
        n_free = 0
        for t in range(n_theta):
            if not (
                (theta[t] <= lower[t] and gradient[t] > 0)
                or (theta[t] >= upper[t] and gradient[t] < 0)
            ):
                free[n_free] = t
                n_free += 1
        if n_free == 0:
            converged = True
            break
        # converged when the Gauss-Newton step predicts less than _CHI2_RTOL of chi-square
        # to gain: the steps that would confirm it (a tiny accepted one, then rejected
        # ones while the damping grows) are not evaluated
        newton = np.empty((n_free, n_free))
        along = np.empty((n_free, 1))
        for a in range(n_free):
            along[a, 0] = gradient[free[a]]
            for b in range(n_free):
                newton[a, b] = hessian[free[a], free[b]]
        step = _cholesky_solve(newton, along)
        predicted = 0.0
        for a in range(n_free):
            predicted += along[a, 0] * step[a, 0]
        if 0.0 <= predicted <= _CHI2_RTOL * chi2:
            converged = True
            break
        system = np.empty((n_free, n_free))
        rhs = np.empty((n_free, 1))
        for a in range(n_free):
            rhs[a, 0] = -gradient[free[a]]
            for b in range(n_free):
                system[a, b] = hessian[free[a], free[b]]
            system[a, a] += damping * max(hessian[free[a], free[a]], 1e-12 * top)
        solution = _cholesky_solve(system, rhs)
        trial = theta.copy()
        moved = False
        for a in range(n_free):
            t = free[a]
            trial[t] = min(max(theta[t] + solution[a, 0], lower[t]), upper[t])
            if abs(trial[t] - theta[t]) > 1e-10 * (abs(theta[t]) + 1e-10):
                moved = True
        if not moved:
            converged = True
            break
        out = evaluate_kernel(
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
            jacobian_wanted,
        )
        nfev += 1
        trial_chi2 = _sum_squares(out[0])
        if trial_chi2 < chi2:
            decrease = (chi2 - trial_chi2) / (chi2 + 1e-300)
            theta = trial
            best = out
            chi2 = trial_chi2
            damping = max(damping * 0.2, 1e-9)
            if decrease < _CHI2_RTOL:
                converged = True
                break
        else:
            damping *= 10.0
            if damping > 1e10:  # no step downhill: a minimum within the precision
                converged = True
                break
    return theta, nfev, converged and math.isfinite(chi2), best


def evaluation_of(
    theta: FloatArray,
    out: tuple[
        FloatArray, FloatArray, NDArray[np.bool_], FloatArray, FloatArray, FloatArray, FloatArray
    ],
    model: SeparableModel,
    profile: Profile,
) -> Evaluation:
    """Wrap the kernel's output tuple at `theta` as an :class:`Evaluation`."""
    residual, beta, active, derivative, _, design, norms = out
    return Evaluation(
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


def model_args(model: SeparableModel, profile: Profile) -> _KernelArgs:
    """The kernel arguments that describe `model` on `profile`."""
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
class Refined:
    """A refinement's final evaluation and its convergence status.

    Attributes
    ----------
    evaluation : Evaluation
        The model at the best parameters found.
    param_names : tuple of str
        Names of the nonlinear parameters, in the order of ``evaluation.theta``.
    shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Line shape of the model's peaks.
    nfev : int
        Model evaluations used.
    max_nfev : int
        The evaluation limit it ran under.
    converged : bool
        True when the loop stopped on a converged step; False when the evaluation limit
        stopped it (see :attr:`hit_max_nfev`) or chi-square is not finite.
    at_lower, at_upper : ndarray of bool, shape (n_theta,)
        Which parameters ended at their bounds.
    """

    evaluation: Evaluation
    param_names: tuple[str, ...]
    shape: PeakShape
    nfev: int
    max_nfev: int
    converged: bool
    at_lower: NDArray[np.bool_]
    at_upper: NDArray[np.bool_]

    @property
    def hit_max_nfev(self) -> bool:
        """Whether the evaluation limit ended the refinement before it converged."""
        return not self.converged and self.nfev >= self.max_nfev

    def index(self, name: str) -> int:
        """Position of the nonlinear parameter `name` in theta (and the covariance)."""
        return self.param_names.index(name)

    def value(self, name: str) -> float:
        """Value of the nonlinear parameter `name`."""
        return float(self.evaluation.theta[self.param_names.index(name)])

    def at_bound(self, name: str) -> bool:
        """Whether the nonlinear parameter `name` ended at one of its bounds."""
        i = self.param_names.index(name)
        return bool(self.at_lower[i] or self.at_upper[i])


def levenberg_marquardt(
    model: SeparableModel,
    profile: Profile,
    theta0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    *,
    max_nfev: int,
) -> Refined:
    """Refine theta from `theta0` within [lower, upper]; the final evaluation and bounds hit."""
    theta, nfev, converged, out = _lm_kernel(
        np.asarray(theta0, dtype=np.float64),
        np.asarray(lower, dtype=np.float64),
        np.asarray(upper, dtype=np.float64),
        max_nfev,
        *model_args(model, profile),
    )
    span = upper - lower
    return Refined(
        evaluation=evaluation_of(theta, out, model, profile),
        param_names=model.param_names,
        shape=model.shape,
        nfev=int(nfev),
        max_nfev=int(max_nfev),
        converged=bool(converged),
        at_lower=theta <= lower + 1e-6 * span,
        at_upper=theta >= upper - 1e-6 * span,
    )


@dataclass(slots=True)
class Statistics:
    """Fit statistics of one evaluation; the covariance is computed when first asked for."""

    evaluation: Evaluation
    n_theta: int
    chi2: float
    redchi: float
    ic: float
    n_params: int
    fixed: NDArray[np.bool_]
    _covariance: FloatArray | None = None
    _linear_index: NDArray[np.intp] | None = None

    @property
    def covariance(self) -> FloatArray:
        """Covariance (lmfit scaling): the nonlinear parameters, then the active linear ones.

        Rows and columns of parameters held fixed (lower == upper), or that the model does
        not depend on (the centre and width of a peak of height 0), are 0. The inverse of
        J^T J by Cholesky (compiled); where J^T J is otherwise not positive definite, the
        pseudo-inverse.
        """
        if self._covariance is None:
            ev = self.evaluation
            covariance, ok = _covariance_kernel(
                ev.derivative, ev.design, ev.active, ev.norms, self.fixed, self.redchi
            )
            self._covariance = covariance if ok else self._pseudo_inverse_covariance()
        return self._covariance

    def _pseudo_inverse_covariance(self) -> FloatArray:
        ev = self.evaluation
        norms = ev.norms[ev.active]
        free = np.concatenate([~self.fixed, np.ones(norms.size, dtype=bool)])
        jac = np.concatenate([ev.derivative[:, ~self.fixed], ev.design[:, ev.active] / norms], 1)
        covariance = np.zeros((free.size, free.size))
        covariance[np.ix_(free, free)] = np.linalg.pinv(jac.T @ jac) * self.redchi
        # back from the column-normalised linear parameters to the heights
        scale = np.concatenate([np.ones(self.n_theta), 1.0 / norms])
        return np.asarray(covariance * np.outer(scale, scale), dtype=np.float64)

    def sum_variance(self, columns: list[int]) -> float | None:
        """Variance of the sum of the linear parameters in `columns` (design columns).

        Inactive columns are 0 exactly and add nothing; None where none is active.
        """
        index = self.linear_index
        rows = [int(index[c]) for c in columns if index[c] >= 0]
        if not rows:
            return None
        covariance = self.covariance
        return float(sum(covariance[a, b] for a in rows for b in rows))

    @property
    def linear_index(self) -> NDArray[np.intp]:
        """For each linear column, its row in the covariance (-1 where inactive)."""
        if self._linear_index is None:
            active = self.evaluation.active
            index = np.full(active.size, -1, dtype=np.intp)
            index[np.flatnonzero(active)] = self.n_theta + np.arange(int(active.sum()))
            self._linear_index = index
        return self._linear_index


@numba.njit(cache=True, fastmath=FASTMATH)
def cholesky_inverse(matrix: FloatArray, relative_floor: float) -> tuple[FloatArray, bool]:
    """Inverse of a small symmetric positive-definite matrix by Cholesky, (L L^T)^-1.

    Parameters
    ----------
    matrix : ndarray of shape (p, p)
        Symmetric (only the lower triangle is read).
    relative_floor : float
        A pivot must exceed this fraction of its diagonal entry (0: any positive pivot).

    Returns
    -------
    inverse : ndarray of shape (p, p)
        L^-T L^-1 (zeros where it fails).
    ok : bool
        False where a pivot is not above the floor or not finite: the matrix is not
        (numerically) positive definite.
    """
    p = matrix.shape[0]
    inverse = np.zeros((p, p))
    lower = _cholesky_factor(matrix)  # floors a pivot that is not positive at 1e-300
    for r in range(p):
        pivot = lower[r, r] * lower[r, r]
        if not (pivot > 1e-300 and pivot > relative_floor * matrix[r, r] and math.isfinite(pivot)):
            return inverse, False
    factor_inverse = np.zeros((p, p))  # L^-1, lower triangular
    for c in range(p):
        factor_inverse[c, c] = 1.0 / lower[c, c]
        for r in range(c + 1, p):
            acc = 0.0
            for t in range(c, r):
                acc -= lower[r, t] * factor_inverse[t, c]
            factor_inverse[r, c] = acc / lower[r, r]
    for r in range(p):
        for c in range(r + 1):
            acc = 0.0
            for t in range(r, p):
                acc += factor_inverse[t, r] * factor_inverse[t, c]
            inverse[r, c] = acc
            inverse[c, r] = acc
    return inverse, True


@numba.njit(cache=True, fastmath=FASTMATH)
def _covariance_kernel(
    derivative: FloatArray,
    design: FloatArray,
    active: NDArray[np.bool_],
    norms: FloatArray,
    fixed: NDArray[np.bool_],
    redchi: float,
) -> tuple[FloatArray, bool]:
    """Covariance of theta and the active linear parameters: redchi (J^T J)^-1, scaled.

    J holds the derivatives by the free nonlinear parameters and the column-normalised
    active design columns; the result is scaled back to the heights and has zero rows
    and columns for the fixed parameters and for those the model does not depend on (a
    peak whose height is 0), as the pseudo-inverse gives them. False (and zeros) where
    J^T J is otherwise not positive definite (Cholesky), for the caller's pseudo-inverse.
    """
    n, n_theta = derivative.shape
    columns = np.empty(n_theta + design.shape[1], dtype=np.int64)  # J column -> cov row
    scale = np.empty(columns.size)
    used = np.empty(n_theta, dtype=np.bool_)
    for t in range(n_theta):
        used[t] = False
        if not fixed[t]:
            for i in range(n):
                if derivative[i, t] != 0.0:
                    used[t] = True
                    break
    p = 0
    for t in range(n_theta):
        if used[t]:
            columns[p] = t
            scale[p] = 1.0
            p += 1
    n_rows = n_theta
    for a in range(design.shape[1]):
        if active[a]:
            columns[p] = n_rows
            scale[p] = 1.0 / norms[a]
            p += 1
            n_rows += 1
    jac = np.empty((n, p))
    for i in range(n):
        c = 0
        for t in range(n_theta):
            if used[t]:
                jac[i, c] = derivative[i, t]
                c += 1
        for a in range(design.shape[1]):
            if active[a]:
                jac[i, c] = design[i, a] / norms[a]
                c += 1
    gram = np.zeros((p, p))
    for r in range(p):
        for c in range(r + 1):
            acc = 0.0
            for i in range(n):
                acc += jac[i, r] * jac[i, c]
            gram[r, c] = acc
            gram[c, r] = acc
    covariance = np.zeros((n_rows, n_rows))
    inverse, ok = cholesky_inverse(gram, 0.0)
    if not ok:
        return covariance, False
    for r in range(p):
        for c in range(r + 1):
            value = inverse[r, c] * redchi * scale[r] * scale[c]
            if not math.isfinite(value):
                return np.zeros((n_rows, n_rows)), False
            covariance[columns[r], columns[c]] = value
            covariance[columns[c], columns[r]] = value
    return covariance, True


def fit_statistics(
    ev: Evaluation,
    n_points: int,
    n_theta: int,
    ic: InformationCriterion,
    fixed: NDArray[np.bool_] | None = None,
) -> Statistics:
    """chi2, reduced chi2 and information criterion as lmfit computes them."""
    fixed = np.zeros(n_theta, dtype=bool) if fixed is None else fixed
    n_params = n_theta - int(fixed.sum()) + ev.beta.size
    chi2 = max(ev.chi2, 1e-300)
    dof = max(n_points - n_params, 1)
    redchi = chi2 / dof
    value = information_criterion(chi2, n_points, n_params, ic)
    return Statistics(ev, n_theta, chi2, redchi, value, n_params, fixed)


def information_criterion(
    chi2: float, n_points: int, n_params: int, ic: InformationCriterion
) -> float:
    """Information criterion as lmfit defines it: n ln(chi2 / n) + k ln n, or + 2 k."""
    penalty = math.log(n_points) if ic == "bic" else 2.0
    return n_points * math.log(max(chi2, 1e-300) / n_points) + penalty * n_params


def stderr(stats: Statistics, row: int) -> float:
    """Standard error of covariance row `row` (NaN where not defined)."""
    value = float(stats.covariance[row, row])
    return math.sqrt(value) if value >= 0 and math.isfinite(value) else math.nan


def legendre_basis(
    q_per_nm: FloatArray, *, lo_per_nm: float, hi_per_nm: float, order: int
) -> FloatArray:
    """Legendre polynomials P_0 ... P_order of q scaled from [lo, hi] to [-1, 1].

    Parameters
    ----------
    q_per_nm : ndarray of shape (n,)
        Positions, in nm^-1.
    lo_per_nm, hi_per_nm : float
        The q range mapped to [-1, 1], in nm^-1 (lo < hi).
    order : int
        Highest order (>= 0).

    Returns
    -------
    ndarray of shape (n, order + 1)
        ``numpy.polynomial.legendre.legvander`` of the scaled q.
    """
    q = np.ascontiguousarray(q_per_nm, dtype=np.float64)
    # every frame of a run has the same q grid: the basis is built once (a copy is returned)
    return _cached_legendre_basis(q.tobytes(), float(lo_per_nm), float(hi_per_nm), order).copy()


@functools.lru_cache(maxsize=16)
def _cached_legendre_basis(q_bytes: bytes, lo: float, hi: float, order: int) -> FloatArray:
    q = np.frombuffer(q_bytes, dtype=np.float64)
    x = (2.0 * q - (lo + hi)) / (hi - lo)
    return np.ascontiguousarray(np.polynomial.legendre.legvander(x, order))


def bspline_basis(q_per_nm: FloatArray, knot_spacing_per_nm: float) -> FloatArray:
    """Cubic B-splines on uniform knots about `knot_spacing_per_nm` apart over the q range.

    Parameters
    ----------
    q_per_nm : ndarray of shape (n,)
        Ascending positions, in nm^-1.
    knot_spacing_per_nm : float
        Target distance between knots, in nm^-1 (> 0).

    Returns
    -------
    ndarray of shape (n, n_intervals + 3)
        The basis functions at `q_per_nm`; they sum to 1 at every point.
    """
    q = np.ascontiguousarray(q_per_nm, dtype=np.float64)
    # every frame of a run has the same q grid: the basis is built once (a copy is returned)
    return _cached_bspline_basis(q.tobytes(), float(knot_spacing_per_nm)).copy()


@functools.lru_cache(maxsize=8)
def _cached_bspline_basis(q_bytes: bytes, knot_spacing_per_nm: float) -> FloatArray:
    q_per_nm = np.frombuffer(q_bytes, dtype=np.float64)
    lo, hi = float(q_per_nm[0]), float(q_per_nm[-1])
    intervals = max(1, round((hi - lo) / knot_spacing_per_nm))
    inner = np.linspace(lo, hi, intervals + 1)
    knots = np.concatenate([[lo] * 3, inner, [hi] * 3])
    basis = BSpline.design_matrix(np.clip(q_per_nm, lo, hi), knots, 3).toarray()
    return np.ascontiguousarray(basis)


def prepare_profile(
    q_per_nm: FloatArray,
    intensity: FloatArray,
    sigma: FloatArray,
    q_range: tuple[float, float] | None,
    order: int,
    knot_spacing_per_nm: float | None = None,
) -> Profile | str:
    """Drop NaN bins, restrict to the range, sort; a message where nothing usable is left.

    The background basis (``Profile.legendre``) is the Legendre polynomials of the scaled
    q up to `order`, or, with `knot_spacing_per_nm`, cubic B-splines on uniform knots about
    that far apart over the profile (a smooth curve that follows form-factor minima but
    not peaks much narrower than the knot spacing).
    """
    q = np.asarray(q_per_nm, dtype=np.float64).ravel()
    y = np.asarray(intensity, dtype=np.float64).ravel()
    s = np.asarray(sigma, dtype=np.float64).ravel()
    if not q.size == y.size == s.size:
        return f"q_par, intensity and sigma differ in length ({q.size}, {y.size}, {s.size})"
    good = np.isfinite(q) & np.isfinite(y) & np.isfinite(s) & (q > 0)
    if q_range is not None:
        good &= (q >= q_range[0]) & (q <= q_range[1])
    where = "" if q_range is None else f" in {q_range[0]:g}-{q_range[1]:g} nm^-1"
    n_good = int(np.count_nonzero(good))
    if n_good == 0:
        return f"no valid bin{where}: every intensity is NaN (masked or outside the detector)"
    if n_good < MIN_POINTS:
        return f"only {n_good} valid bins{where}; the fit needs at least {MIN_POINTS}"
    q, y, s = q[good], y[good], s[good]
    if not y.any():
        return f"every intensity{where} is zero: check the mask, the band and the exposure"
    positive = s > 0
    if not positive.all():
        if not positive.any():
            return f"no bin{where} has a positive uncertainty: the cut has no counts"
        # a bin without counts has sigma 0: give it the smallest uncertainty of the profile
        s = np.where(positive, s, s[positive].min())
    if not (q[1:] > q[:-1]).all():  # a cut's bins are ascending already
        order_idx = np.argsort(q, kind="stable")
        q, y, s = q[order_idx], y[order_idx], s[order_idx]
    if q[-1] <= q[0]:
        return "all valid bins sit at the same q_par"
    if knot_spacing_per_nm is None:
        legendre = legendre_basis(q, lo_per_nm=q[0], hi_per_nm=q[-1], order=order)
    else:
        legendre = bspline_basis(q, knot_spacing_per_nm)
    return Profile(
        q=q,
        y=y,
        weight=1.0 / s,
        legendre=np.ascontiguousarray(legendre),
        log_q=np.log(q),
        envelope=np.ones_like(q),
        y_w=y / s,
    )
