"""The exact {h00} line of cube-shaped domains and its fit to a cut (method "cube_profile").

For one cube of edge L with q along <100> the size-broadened line is sinc^2(dq L / 2),
its integral breadth exactly 2 pi / L (E. F. Bertaut, Acta Cryst. 3, 14 (1950); B. E.
Warren, X-ray Diffraction (1969), ch. 13; J. I. Langford & A. J. C. Wilson, J. Appl.
Cryst. 11, 102 (1978)). :func:`cube_line_profile` averages it over a Gaussian
distribution of edges, weighted by volume, with the instrument convolved in;
:func:`fit_cube_line` fits it to the {200} line of a cut. :mod:`pipeline.scherrer`
turns the fitted edge into the reported domain size.

The lines of one run are tabulated once over the edge bounds (:class:`_LineFamily`), and
the fit's loop (interpolation in the table, the linear solve of background and height,
a bounded Levenberg-Marquardt on centre and edge) is compiled with numba like the rod
and peak kernels of :mod:`pipeline.varpro`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from pipeline.lineshapes import FASTMATH, pseudo_voigt
from pipeline.scherrer import GAUSS_BREADTH_PER_FWHM, LORENTZ_BREADTH_PER_FWHM, SINC2_FWHM_K
from pipeline.varpro import cholesky_inverse, legendre_basis

FloatArray = NDArray[np.float64]


#: Nodes of the size average, in standard deviations of the number distribution.
_SIZE_NODES = np.linspace(-4.0, 4.0, 41)
#: Column-length steps up to the largest edge, and the zero padding (dq grid spacing
#: pi / (padding x largest edge)).
_COLUMN_STEPS = 128
_COLUMN_PADDING = 16


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
    dq_per_nm : float or ndarray
        Distance from the line's centre, in nm^-1 (any shape).
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
    ndarray of the shape of `dq_per_nm`
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
    step, padded = _profile_on_grid(
        edges, weights * edges**3, instrument_fwhm_per_nm, instrument_eta
    )
    dq = np.abs(np.asarray(dq_per_nm, dtype=np.float64))
    return _interp_even(dq.ravel(), step, padded).reshape(dq.shape)


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
    fixed = [legendre_basis(q, lo_per_nm=lo, hi_per_nm=hi, order=background_order)]
    fixed += [pseudo_voigt(q, centre, width, eta)[:, None] for centre, width, eta in neighbours]
    fixed_design = np.ascontiguousarray(np.concatenate(fixed, axis=1) / s[:, None])
    weighted_y = y / s
    # the fixed block is eliminated once (Schur complement): each residual then needs
    # only the line's products, not a new linear solve
    fixed_inverse, fixed_residual, solvable = _fixed_block(fixed_design, weighted_y)
    if not solvable:
        return _failed_cube_fit(
            "the cube-line fit failed numerically (the background and neighbour columns "
            "are degenerate in the window)"
        )

    family = _line_family(size_spread, round(instrument_fwhm_per_nm, 4), instrument_eta)
    bare = _line_family(size_spread, 0.0, 0.0)
    # start: K_w = 0.8859 on the FWHM with the instrument removed in quadrature
    sample_fwhm0 = math.sqrt(max(fwhm_per_nm**2 - instrument_fwhm_per_nm**2, 0.25 * fwhm_per_nm**2))
    edge0 = 2.0 * math.pi * SINC2_FWHM_K / sample_fwhm0
    lo_edge, hi_edge = _EDGE_BOUNDS_NM
    line_model = (
        q,
        1.0 / s,
        fixed_design,
        fixed_inverse,
        fixed_residual,
        family.log_edges,
        family.u_step,
        family.rows,
    )
    status, center, edge, cost = _cube_lm_kernel(
        line_model,
        center_per_nm,
        min(max(edge0, lo_edge * 1.2), hi_edge / 1.2),
        lo,
        hi,
        lo_edge,
        hi_edge,
        _MAX_ITERATIONS,
    )
    if status == _SINGULAR:
        return _failed_cube_fit(
            "the cube-line fit failed numerically (the line is zero in the window or a "
            "combination of the background columns)"
        )
    if status == _NOT_CONVERGED:
        return _failed_cube_fit(
            f"the cube-line fit did not converge in {_MAX_ITERATIONS} iterations"
        )
    dof = max(q.size - n_linear - 2, 1)
    redchi = float(cost / dof)
    # covariance of (centre, edge): the inverse of the 2 x 2 J^T J, scaled, with J by
    # central differences over half a cell of the table (linear between its edges: a
    # step of 1e-4 that straddled a node gave 100 times the slope, and an 80 nm edge
    # came out +- 0.2 nm while 8 nm off)
    h_cc, h_ce, h_ee = _cube_normal_matrix(line_model, center, edge, _EDGE_STEP * edge)
    det = h_cc * h_ee - h_ce * h_ce
    edge_var = h_cc / det * max(redchi, 1.0) if det > 0 else math.nan
    edge_err = math.sqrt(edge_var) if edge_var >= 0 else math.nan
    step = _EDGE_STEP * edge
    observed = family.widths(edge)
    observed_lo, observed_hi = family.widths(edge - step), family.widths(edge + step)
    sample = bare.widths(edge)

    def err(index: int) -> float:
        return abs(observed_hi[index] - observed_lo[index]) / (2.0 * step) * edge_err

    at_bound = edge <= lo_edge * 1.001 or edge >= hi_edge * 0.999
    return CubeLineFit(
        edge_nm=edge,
        edge_err_nm=edge_err,
        center_per_nm=center,
        fwhm_per_nm=observed[0],
        fwhm_err_per_nm=err(0),
        breadth_per_nm=observed[1],
        breadth_err_per_nm=err(1),
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
#: Most Levenberg-Marquardt iterations of the cube-line fit.
_MAX_ITERATIONS = 60
#: Relative edge step of the derivatives behind the errors: half a cell of the table.
_EDGE_STEP = 0.01
#: What the cube-line residual needs: q (nm^-1), 1 / sigma, the weighted fixed columns
#: (n, p), the inverse of their Gram matrix, the fixed fit's residual, and the line
#: family's log edges, u step and rows (:class:`_LineFamily`).
_LineModel = tuple[
    FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, float, FloatArray
]
#: Outcomes of :func:`_cube_lm_kernel`.
_CONVERGED, _NOT_CONVERGED, _SINGULAR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _LineFamily:
    """Cube lines for every edge, tabulated once per size spread and instrument.

    Without the instrument, P(dq; L) = L g(dq L); with it, g depends on L a little. Row i
    holds g at u_k = k * `u_step` for the edge exp(`log_edges[i]`) (the FFT grid scales as
    1 / L), padded as :func:`_profile_on_grid` pads it; a line at any edge is
    interpolated linearly in log(edge) between two rows (:func:`_table_value`).
    """

    log_edges: FloatArray
    u_step: float
    rows: FloatArray  # (n_edges, n_u + 3)

    def widths(self, edge_nm: float) -> tuple[float, float]:
        """(FWHM, integral breadth) of the line at `edge_nm`, in nm^-1."""
        fwhm, breadth = _line_widths(self.log_edges, self.u_step, self.rows, edge_nm)
        return float(fwhm), float(breadth)


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
    return _LineFamily(log_edges, float(u_step), np.ascontiguousarray(rows))


@numba.njit(cache=True, fastmath=FASTMATH)
def _table_row(log_edges: FloatArray, edge_nm: float) -> tuple[int, float]:
    """Row j and weight w of `edge_nm` between rows j and j + 1 (clipped to the table)."""
    position = (math.log(edge_nm) - log_edges[0]) / (log_edges[1] - log_edges[0])
    j = min(max(int(position), 0), log_edges.size - 2)
    return j, min(max(position - j, 0.0), 1.0)


@numba.njit(cache=True, fastmath=FASTMATH)
def _table_value(rows: FloatArray, j: int, w: float, edge_nm: float, k: int) -> float:
    """Padded entry k of the line at `edge_nm` (rows j, j + 1 with weight w)."""
    return edge_nm * ((1.0 - w) * rows[j, k] + w * rows[j + 1, k])


@numba.njit(cache=True, fastmath=FASTMATH)
def _interp_even(dq_per_nm: FloatArray, step: float, padded: FloatArray) -> FloatArray:
    """Cubic (4-point Lagrange) interpolation of an even line tabulated at k * `step`.

    `padded` holds the line at k * step from index 1 on, its mirror value at index 0 and
    two zeros at the end; `dq_per_nm` >= 0; the line is 0 beyond the table.
    """
    out = np.zeros(dq_per_nm.size)
    for i in range(dq_per_nm.size):
        x = dq_per_nm[i] / step
        index = int(x)
        if index >= padded.size - 4:
            continue
        t = x - index
        p0, p1, p2, p3 = padded[index], padded[index + 1], padded[index + 2], padded[index + 3]
        out[i] = (
            -t * (t - 1) * (t - 2) / 6 * p0
            + (t + 1) * (t - 1) * (t - 2) / 2 * p1
            - (t + 1) * t * (t - 2) / 2 * p2
            + (t + 1) * t * (t - 1) / 6 * p3
        )
    return out


@numba.njit(cache=True, fastmath=FASTMATH)
def _line_widths(
    log_edges: FloatArray, u_step: float, rows: FloatArray, edge_nm: float
) -> tuple[float, float]:
    """(FWHM, integral breadth) of the tabulated line at `edge_nm`, in nm^-1.

    The half-maximum crossing is found between the table points around it, on 201
    points of the cubic interpolation.
    """
    j, w = _table_row(log_edges, edge_nm)
    step = u_step / edge_nm
    padded = np.empty(rows.shape[1])
    for k in range(padded.size):
        padded[k] = _table_value(rows, j, w, edge_nm, k)
    height = padded[1]
    half = 0.5 * height
    below = 0
    for k in range(padded.size - 3):
        if padded[k + 1] < half:
            below = k
            break
    fine = np.linspace((below - 1) * step, below * step, 201)
    profile = _interp_even(fine, step, padded)
    crossing = fine[-1]
    if half >= profile[0]:
        crossing = fine[0]
    else:
        for k in range(fine.size - 1):
            if profile[k + 1] <= half:
                slope = (fine[k + 1] - fine[k]) / (profile[k] - profile[k + 1])
                crossing = fine[k] + (profile[k] - half) * slope
                break
    return 2.0 * crossing, 1.0 / height


@numba.njit(cache=True, fastmath=FASTMATH)
def _cube_residual(line_model: _LineModel, center: float, edge_nm: float, out: FloatArray) -> bool:
    """Weighted residual of the best [fixed | line] fit at (centre, edge), into `out`.

    The line is interpolated linearly in the table (fast; <= 5e-4 of its height at the
    table's spacing). The fixed block (background, neighbours) was eliminated once: the
    line's part orthogonal to it takes the line's coefficient, the fixed fit's residual
    the rest (a Schur complement). False where the line is zero or a combination of the
    fixed columns.
    """
    q, weight, fixed, fixed_inverse, fixed_residual, log_edges, u_step, rows = line_model
    j, w = _table_row(log_edges, edge_nm)
    step = u_step / edge_nm
    last = rows.shape[1] - 4  # the last tabulated point, in steps
    n, p = fixed.shape
    line = np.empty(n)
    for i in range(n):
        x = abs(q[i] - center) / step
        value = 0.0
        if x < last:
            k = int(x)
            f = x - k
            value = (1.0 - f) * _table_value(rows, j, w, edge_nm, k + 1) + f * _table_value(
                rows, j, w, edge_nm, k + 2
            )
        elif x == last:
            value = _table_value(rows, j, w, edge_nm, last + 1)
        line[i] = value * weight[i]
    projected = np.zeros(p)
    for a in range(p):
        for i in range(n):
            projected[a] += fixed[i, a] * line[i]
    coefficients = np.zeros(p)
    for a in range(p):
        for b in range(p):
            coefficients[a] += fixed_inverse[a, b] * projected[b]
    norm2 = 0.0
    along = 0.0
    for i in range(n):
        acc = line[i]
        for a in range(p):
            acc -= fixed[i, a] * coefficients[a]
        line[i] = acc  # now the part orthogonal to the fixed columns
        norm2 += acc * acc
        along += acc * fixed_residual[i]
    if not norm2 > 0.0:
        return False
    coef = -along / norm2
    for i in range(n):
        out[i] = fixed_residual[i] + coef * line[i]
    return True


@numba.njit(cache=True, fastmath=FASTMATH)
def _cube_normal_matrix(
    line_model: _LineModel, center: float, edge: float, edge_step: float
) -> tuple[float, float, float]:
    """J^T J of the residual by (centre, edge), J by central differences: (cc, ce, ee)."""
    n = line_model[0].size
    plus = np.empty(n)
    minus = np.empty(n)
    h_c = 1e-5 * max(abs(center), 1.0)
    nan = math.nan
    if not (
        _cube_residual(line_model, center + h_c, edge, plus)
        and _cube_residual(line_model, center - h_c, edge, minus)
    ):
        return nan, nan, nan
    d_center = (plus - minus) / (2.0 * h_c)
    if not (
        _cube_residual(line_model, center, edge + edge_step, plus)
        and _cube_residual(line_model, center, edge - edge_step, minus)
    ):
        return nan, nan, nan
    d_edge = (plus - minus) / (2.0 * edge_step)
    cc = ce = ee = 0.0
    for i in range(n):
        cc += d_center[i] * d_center[i]
        ce += d_center[i] * d_edge[i]
        ee += d_edge[i] * d_edge[i]
    return cc, ce, ee


@numba.njit(cache=True, fastmath=FASTMATH)
def _fixed_block(fixed: FloatArray, weighted_y: FloatArray) -> tuple[FloatArray, FloatArray, bool]:
    """(F^T F)^-1 and the residual F c - y of the least-squares fit of y by F alone.

    By Cholesky (numpy's general inverse of this 3 x 3 to 6 x 6 matrix cost more than the
    whole compiled fit); False where F^T F is not positive definite.
    """
    n, p = fixed.shape
    gram = np.zeros((p, p))
    moment = np.zeros(p)
    for i in range(n):
        for a in range(p):
            moment[a] += fixed[i, a] * weighted_y[i]
            for b in range(a + 1):
                gram[a, b] += fixed[i, a] * fixed[i, b]
    residual = np.empty(n)
    inverse, ok = cholesky_inverse(gram, 1e-12)
    if not ok:
        return inverse, residual, False
    coef = np.zeros(p)
    for a in range(p):
        for b in range(p):
            coef[a] += inverse[a, b] * moment[b]
    for i in range(n):
        acc = -weighted_y[i]
        for a in range(p):
            acc += fixed[i, a] * coef[a]
        residual[i] = acc
    return inverse, residual, True


@numba.njit(cache=True, fastmath=FASTMATH)
def _cube_lm_kernel(
    line_model: _LineModel,
    center0: float,
    edge0: float,
    center_lo: float,
    center_hi: float,
    edge_lo: float,
    edge_hi: float,
    max_iterations: int,
) -> tuple[int, float, float, float]:
    """Bounded Levenberg-Marquardt on (centre, edge) with forward-difference derivatives.

    Returns the outcome (:data:`_CONVERGED`, :data:`_NOT_CONVERGED` or :data:`_SINGULAR`),
    centre, edge and chi-square.
    """
    n = line_model[0].size
    center, edge = center0, edge0
    r = np.empty(n)
    jac = np.zeros((n, 2))
    if not _cube_residual(line_model, center, edge, r):
        return _SINGULAR, center, edge, math.nan
    cost = 0.0
    for i in range(n):
        cost += r[i] * r[i]
    damping = 1e-3
    shifted = np.empty(n)
    trial = np.empty(n)
    for _ in range(max_iterations):
        h_c = 1e-5 * max(abs(center), 1.0)
        h_e = 1e-4 * edge
        if not _cube_residual(line_model, center + h_c, edge, shifted):
            return _SINGULAR, center, edge, cost
        for i in range(n):
            jac[i, 0] = (shifted[i] - r[i]) / h_c
        if not _cube_residual(line_model, center, edge + h_e, shifted):
            return _SINGULAR, center, edge, cost
        for i in range(n):
            jac[i, 1] = (shifted[i] - r[i]) / h_e
        g0 = g1 = h00 = h01 = h11 = 0.0
        for i in range(n):
            g0 += jac[i, 0] * r[i]
            g1 += jac[i, 1] * r[i]
            h00 += jac[i, 0] * jac[i, 0]
            h01 += jac[i, 0] * jac[i, 1]
            h11 += jac[i, 1] * jac[i, 1]
        while True:
            a00 = h00 * (1.0 + damping)
            a11 = h11 * (1.0 + damping)
            det = a00 * a11 - h01 * h01
            if not (det != 0.0 and math.isfinite(det)):
                return _SINGULAR, center, edge, cost
            new_center = center + (-g0 * a11 + g1 * h01) / det
            new_edge = edge + (-g1 * a00 + g0 * h01) / det
            new_center = min(max(new_center, center_lo), center_hi)
            new_edge = min(max(new_edge, edge_lo), edge_hi)
            if not _cube_residual(line_model, new_center, new_edge, trial):
                return _SINGULAR, center, edge, cost
            new_cost = 0.0
            for i in range(n):
                new_cost += trial[i] * trial[i]
            if new_cost <= cost:
                moved_c, moved_e = abs(new_center - center), abs(new_edge - edge)
                center, edge, cost = new_center, new_edge, new_cost
                for i in range(n):
                    r[i] = trial[i]
                damping = max(damping / 10.0, 1e-9)
                break
            damping *= 10.0
            if damping > 1e10:  # no step lowers chi-square: at the minimum
                return _CONVERGED, center, edge, cost
        # converged well inside the statistical errors (edge ~0.3 %, centre ~1e-4 relative)
        if moved_e <= 1e-4 * edge and moved_c <= 1e-5 * max(abs(center), 1.0):
            return _CONVERGED, center, edge, cost
    return _NOT_CONVERGED, center, edge, cost


def _failed_cube_fit(message: str) -> CubeLineFit:
    nan = math.nan
    return CubeLineFit(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, False, message)


def compile_kernels() -> None:
    """Compile the cube-line kernels (or load them from numba's cache) on a tiny fit."""
    q = np.linspace(19.0, 22.0, 40)
    y = 10.0 + 1000.0 * cube_line_profile(q - 20.5, edge_nm=6.0)
    fit_cube_line(
        q,
        y,
        np.sqrt(y),
        center_per_nm=20.5,
        fwhm_per_nm=0.9,
        window_per_nm=(19.0, 22.0),
        size_spread=0.0,
        instrument_fwhm_per_nm=0.0,
        background_order=1,
    )
