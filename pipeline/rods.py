"""The GISAXS rod model: superlattice rods of a 2D lattice on a form-factor background.

:func:`fit_rods` finds the first rod without a fixed guess, fits hexagonal, square and
rhombic lattice models with the separable engine (:mod:`pipeline.varpro`) and names the
lattice by an information criterion. The nonlinear parameters are named
(``exponent``, ``q1``, ``fwhm``, ``growth``, ``gamma``; :data:`ROD_PARAM_NAMES`); the
rod heights and background coefficients are the linear ones. Expected failures (no
data, a fit that does not converge, a rod at the edge of its window) never raise: they
give NaN values, ``ok=False`` and a message for the beamline user.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, replace
from typing import Literal

import numba
import numpy as np

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
    order_label,
    rhombic_ratios,
)
from pipeline.lineshapes import FOUR_LN2
from pipeline.varpro import (
    MODE_BACKGROUND,
    MODE_RODS,
    Evaluation,
    FloatArray,
    InformationCriterion,
    Profile,
    Refined,
    SeparableModel,
    Statistics,
    check_choice,
    check_nfev,
    check_order,
    check_positive,
    check_range,
    evaluate_kernel,
    fit_statistics,
    information_criterion,
    legendre_basis,
    levenberg_marquardt,
    model_args,
    prepare_profile,
    raise_nfev_fix,
    stderr,
)

RodModelName = Literal["hexagonal", "square", "rhombic"]

#: Range of the rhombic (pseudo-hexagonal) lattice angle, in degrees.
GAMMA_RANGE_DEG = (62.0, 88.0)

_GAMMA_GRID_DEG = np.arange(GAMMA_RANGE_DEG[0], GAMMA_RANGE_DEG[1] + 0.5, 1.0)
_STARTS_PER_LATTICE = 3  # starts refined per lattice model
_PEAKS_PER_WIDTH = 6  # first-rod candidates per matched-filter width
_WARM_GAMMAS_DEG = (66.0, 75.0, 84.0)  # rhombic starts at every first rod, cold or warm


# --------------------------------------------------------------------------------------
# settings and result
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
        (form-factor modulation, the liquid-like order of a disordered layer), not rods.
        0.12 allows domains down to 2 pi / 0.12 = 52 nm, six particles; a 0.145 nm^-1
        broad bump on a form-factor-only frame passed for a square lattice at 0.15.
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
        "flat": rods add to the background; "background" (default): each rod is
        multiplied by the background-only fit (scaled to 1 at its maximum), for
        I = P(q) S(q), where the falling form factor P pulls rods below the
        structure-factor peak (by ~0.5 % on 5.7 nm cubes if added instead).
    max_nfev : int
        Most model evaluations of one Levenberg-Marquardt refinement; a fit that stops
        there is not ``ok``.
    background_knot_spacing_per_nm : float or None
        With a value (default 0.2), the background is q^-p times cubic B-splines on knots
        about this far apart (it follows the cube form factor's minima, not rods of FWHM
        up to `max_width_per_nm`); None: the Legendre polynomial of `background_order`.
    min_first_rod_fraction : float
        The first rod's height must reach this fraction of the strongest rod's: a bump on
        a steep edge is not a first rod.
    max_redchi : float
        A rod fit whose reduced chi-square exceeds this does not describe the cut: its
        values are kept, flagged, and ``ok`` is False.
    model_spread : bool
        Refit the named lattice with the other line shapes and rod envelopes; where one
        fits about as well (within `delta_ic_shape`) and moves q1 by more than its
        statistical error, that spread is added to the error in quadrature.
    delta_ic_shape : float
        Criterion margin within which a line shape or envelope counts as "as good".
    """

    peak_shape: PeakShape = "gaussian"
    q1_window_per_nm: tuple[float, float] = (0.4, 1.4)
    fit_range_per_nm: tuple[float, float] | None = None
    ic: InformationCriterion = "bic"
    width_model: Literal["common", "linear"] = "common"
    background_order: int = 3
    background_knot_spacing_per_nm: float | None = 0.2
    max_width_per_nm: float = 0.12
    delta_ic_rod: float = 10.0
    delta_ic_symmetry: float = 10.0
    gamma_margin_deg: float = 3.0
    min_rod_snr: float = 3.0
    rod_envelope: Literal["flat", "background"] = "background"
    max_nfev: int = 60
    min_first_rod_fraction: float = 0.1
    max_redchi: float = 20.0
    model_spread: bool = True
    delta_ic_shape: float = 10.0

    def __post_init__(self) -> None:
        check_choice("peak_shape", self.peak_shape, PEAK_SHAPES)
        check_choice("rod_envelope", self.rod_envelope, ("flat", "background"))
        check_choice("ic", self.ic, ("bic", "aic"))
        check_choice("width_model", self.width_model, ("common", "linear"))
        check_range("q1_window_per_nm", self.q1_window_per_nm)
        if self.fit_range_per_nm is not None:
            check_range("fit_range_per_nm", self.fit_range_per_nm)
        check_order("background_order", self.background_order)
        if self.background_knot_spacing_per_nm is not None:
            check_positive("background_knot_spacing_per_nm", self.background_knot_spacing_per_nm)
        check_positive("max_width_per_nm", self.max_width_per_nm)
        check_positive("delta_ic_rod", self.delta_ic_rod, allow_zero=True)
        check_positive("delta_ic_symmetry", self.delta_ic_symmetry, allow_zero=True)
        if not 0 <= self.gamma_margin_deg < 15:
            msg = (
                f"[rod fit] gamma_margin_deg must be in [0, 15) deg, got {self.gamma_margin_deg!r}"
            )
            raise ConfigError(msg)
        check_positive("min_rod_snr", self.min_rod_snr, allow_zero=True)
        check_nfev(self.max_nfev)
        if not 0 <= self.min_first_rod_fraction <= 1:
            msg = (
                "[rod fit] min_first_rod_fraction must be in [0, 1], "
                f"got {self.min_first_rod_fraction!r}"
            )
            raise ConfigError(msg)
        check_positive("max_redchi", self.max_redchi)
        check_positive("delta_ic_shape", self.delta_ic_shape, allow_zero=True)


@dataclass(frozen=True, slots=True)
class RodFit:
    """The superlattice rods of one GISAXS q_par cut.

    Attributes
    ----------
    q1_per_nm, q1_err_per_nm : float
        First rod and its standard error, in nm^-1 (NaN without a rod); the error
        includes the model spread (see `q1_model_spread_per_nm`).
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
    orders_found : tuple of float
        Rods of the reported model whose height reaches `min_rod_snr` standard errors, as
        q / q1 (1, 1.414, 1.732, 2, 2.236, 2.646, 3, ...), ascending; orders that a
        form-factor minimum removes are absent.
    q1_stat_err_per_nm : float
        The statistical part of `q1_err_per_nm`, in nm^-1.
    q1_model_spread_per_nm : float
        How far q1 moves under another line shape or rod envelope that fits about as
        well, in nm^-1; added in quadrature to `q1_err_per_nm` where it exceeds the
        statistical error.
    nfev : int
        Model evaluations of the reported fit's refinement.
    rod_model : str
        Line shape and rod envelope of the reported fit ("gaussian/background", ...),
        chosen per frame by the information criterion.
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
    orders_found: tuple[float, ...] = ()
    q1_stat_err_per_nm: float = math.nan
    q1_model_spread_per_nm: float = 0.0
    nfev: int = 0
    rod_model: str = ""


# --------------------------------------------------------------------------------------
# the rod model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)  # one instance per key (_cached_rod_spec)
class _RodModelSpec:
    """Rods of one lattice model; theta = [p, q1, w, (s), (gamma)]."""

    name: RodModelName
    families: FloatArray  # rows (a, b): rod at q1 sqrt(a - 2 b cos gamma)
    linear_width: bool

    @property
    def rhombic(self) -> bool:
        return self.name == "rhombic"

    @property
    def param_names(self) -> tuple[str, ...]:
        """The nonlinear parameters: exponent, q1, fwhm, (growth), (gamma)."""
        return (
            ("exponent", "q1", "fwhm")
            + (("growth",) if self.linear_width else ())
            + (("gamma",) if self.rhombic else ())
        )

    @property
    def n_theta(self) -> int:
        return len(self.param_names)

    def ratios(self, gamma_deg: float) -> FloatArray:
        """Rod positions in units of q1."""
        if not self.rhombic:  # b = 0: no gamma dependence
            return _plain_ratios(self.name, self.families.shape[0])
        cos_g = math.cos(math.radians(gamma_deg))
        return np.sqrt(self.families[:, 0] - 2.0 * self.families[:, 1] * cos_g)

    def model(self, shape: PeakShape) -> SeparableModel:
        return _separable_model(self, shape)


@functools.lru_cache(maxsize=256)
def _separable_model(spec: _RodModelSpec, shape: PeakShape) -> SeparableModel:
    """The engine's model of a lattice's rods with one line shape (one per spec and shape)."""
    return SeparableModel(
        mode=MODE_RODS,
        shape=shape,
        power_law=True,
        param_names=spec.param_names,
        families=spec.families,
        linear_width=spec.linear_width,
        rhombic=spec.rhombic,
    )


def _rod_spec(
    name: RodModelName, q1_per_nm: float, q_max_per_nm: float, linear_width: bool
) -> _RodModelSpec:
    """The rods of a model that can fall inside the profile for a first rod near q1.

    With a margin: the refined q1 may end a few per cent below its start, and a rod
    centred just beyond the cut still shapes its end; a rod left out there would leave
    its whole profile in the residual (the answer would depend on the start).
    """
    reach = (q_max_per_nm + 0.15) / (0.95 * q1_per_nm)
    count = bisect.bisect_right(_SMALLEST_RATIOS[name], reach)
    return _cached_rod_spec(name, count, linear_width)


@functools.lru_cache(maxsize=64)
def _plain_ratios(name: RodModelName, count: int) -> FloatArray:
    """The first `count` rod positions of the hexagonal or square lattice, in units of q1."""
    ratios = HEXAGONAL_RATIOS if name == "hexagonal" else SQUARE_RATIOS
    out = np.asarray(ratios[:count], dtype=np.float64)
    out.flags.writeable = False
    return out


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
_SMALLEST_RATIOS: dict[str, tuple[float, ...]] = {
    "hexagonal": tuple(HEXAGONAL_RATIOS),
    "square": tuple(SQUARE_RATIOS),
    "rhombic": tuple(float(r) for r in np.sort(_SMALLEST_RATIOS_UNSORTED_RHOMBIC)),
}


@dataclass(frozen=True, slots=True)
class _RodCandidate:
    model: RodModelName
    score: float
    q1_per_nm: float
    width_per_nm: float
    gamma_deg: float


def _matched_filter_snr(
    profile: Profile, residual: FloatArray, widths_per_nm: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Signal-to-noise of a narrow peak of each FWHM at each q of a uniform grid.

    A zero-mean kernel (the peak minus a 3x broader peak of the same area) answers to
    narrow peaks on top of `residual` and not to slow modulations such as form-factor
    oscillations. The SNR is not rescaled by its spread: where rods fill the profile that
    spread is the rods' own, and would hide them. A misfit background that passes here is
    rejected by the exact fit (first-rod significance with the covariance scaled by the
    reduced chi-square, the information criterion, the reduced chi-square itself).

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
        narrow = np.exp(-FOUR_LN2 * (offsets / width) ** 2)
        broad = np.exp(-FOUR_LN2 * (offsets / (3.0 * width)) ** 2)
        kernel = narrow - broad * (narrow.sum() / broad.sum())
        numerator = np.convolve(signal, kernel, mode="same")
        denominator = np.convolve(weight, kernel * kernel, mode="same")
        snr[row] = numerator / np.sqrt(np.maximum(denominator, 1e-300))
    return grid, snr


def _model_scores(
    grid: FloatArray, snr: FloatArray, q1s: FloatArray, width: float, q_max: float
) -> list[_RodCandidate]:
    """Score each lattice with its first rod at each of `q1s` by the squared SNR at its rods.

    Each rod inside the profile scores max(SNR, 0)^2 - 1: a rod where the data show
    nothing costs a little (noise alone scores 0.5 on average), so that a lattice with a
    smaller q1, which puts rods everywhere, does not win on noise.
    """
    out = []
    for name in ("hexagonal", "square"):
        scores = _lattice_scores(q1s[:, None] * _SCORE_RATIOS[name], grid, snr, width, q_max)
        out += [
            _RodCandidate(name, float(sc), float(q1), width, math.nan)
            for sc, q1 in zip(scores, q1s, strict=True)
        ]
    rhombic = _RHOMBIC_GRID_RATIOS  # (gamma, family)
    positions = (q1s[:, None, None] * rhombic[None, :, :]).reshape(-1, rhombic.shape[1])
    scores = _lattice_scores(positions, grid, snr, width, q_max).reshape(q1s.size, -1)
    best_gamma = np.argmax(scores, axis=1)
    spread = [int(np.argmin(np.abs(_GAMMA_GRID_DEG - g))) for g in _WARM_GAMMAS_DEG]
    out += [
        _RodCandidate(
            "rhombic", float(scores[i, g]), float(q1s[i]), width, float(_GAMMA_GRID_DEG[g])
        )
        for i, best in enumerate(best_gamma)
        for g in dict.fromkeys((int(best), *spread))
    ]
    return out


#: Rod positions in units of q1 scored by :func:`_model_scores`, ascending: every listed
#: rod of the plain lattices, and of the rhombic one at each gamma of the search grid
#: (rows). Positions q1 x ratio keep this order for any q1 > 0.
_SCORE_RATIOS: dict[str, FloatArray] = {
    "hexagonal": np.sort(np.asarray(HEXAGONAL_RATIOS, dtype=np.float64)),
    "square": np.sort(np.asarray(SQUARE_RATIOS, dtype=np.float64)),
}
_RHOMBIC_GRID_RATIOS = np.sort(
    np.stack([rhombic_ratios(float(gamma)) for gamma in _GAMMA_GRID_DEG]), axis=1
)


@numba.njit(cache=True)
def _lattice_scores(
    positions: FloatArray, grid: FloatArray, snr: FloatArray, width: float, q_max: float
) -> FloatArray:
    """Sum over each row's rods of max(SNR, 0)^2 - 1 (see :func:`_model_scores`).

    Each row of `positions` is ascending. Rods closer than `width` to the previous one
    count once; rods beyond `q_max` not at all; the SNR is interpolated on the uniform
    `grid`. Returns shape (rows,).
    """
    n_rows, n_rods = positions.shape
    out = np.empty(n_rows)
    step = (grid[-1] - grid[0]) / (grid.size - 1)
    for r in range(n_rows):
        row = positions[r]
        total = 0.0
        for j in range(n_rods):
            x = row[j]
            if x <= q_max and (j == 0 or x - row[j - 1] > width):
                value = max(_interp_uniform(x, grid, snr, step), 0.0)
                total += value * value - 1.0
        out[r] = total
    return out


@numba.njit(cache=True)
def _interp_uniform(x: float, grid: FloatArray, values: FloatArray, step: float) -> float:
    """``np.interp(x, grid, values)`` on a uniform ascending grid, by its own formula."""
    n = grid.size
    if x <= grid[0]:
        return values[0]
    if x >= grid[n - 1]:
        return values[n - 1]
    j = min(int((x - grid[0]) / step), n - 2)
    while j > 0 and grid[j] > x:  # rounding of the uniform index
        j -= 1
    while j < n - 2 and grid[j + 1] <= x:
        j += 1
    if grid[j] == x:
        return values[j]
    slope = (values[j + 1] - values[j]) / (grid[j + 1] - grid[j])
    return slope * (x - grid[j]) + values[j]


def _search_widths(profile: Profile, settings: RodFitSettings) -> FloatArray:
    smallest = max(2.5 * profile.bin_per_nm, 0.02)
    largest = max(settings.max_width_per_nm, smallest)
    count = max(round(math.log(largest / smallest) / math.log(1.8)) + 1, 1)
    if count == 1:
        return np.array([smallest])
    ratio = (largest / smallest) ** (1.0 / (count - 1))
    return np.array([smallest * ratio**i for i in range(count - 1)] + [largest])


def _cold_candidates(
    profile: Profile, residual: FloatArray, settings: RodFitSettings
) -> tuple[dict[RodModelName, list[_RodCandidate]], str]:
    """Starts of each lattice model from a scan of the whole q1 window.

    The first rod must itself be a significant peak: for each filter width, the strongest
    local maxima of the matched-filter SNR inside the window that reach
    `settings.min_rod_snr` (at most :data:`_PEAKS_PER_WIDTH`) are first-rod starts of
    every lattice, the rhombic one at the gamma whose rods explain most of the excess and
    at each of :data:`_WARM_GAMMAS_DEG` (a warm start tries those: a cold search must too).
    The exact criterion then ranks them (:func:`_ranked_starts`) and the best few are
    refined (:func:`_refine_lattice`).

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
        # the first rod is itself a significant peak: every such peak is a first-rod
        # start of every lattice (the rhombic one at its best-scoring gamma and the spread)
        q1s = grid[cols[np.argsort(-snr[row, cols])[:_PEAKS_PER_WIDTH]]]
        for candidate in _model_scores(grid, snr[row], q1s, float(width), q_max):
            known = starts.setdefault(candidate.model, [])
            # the same first rod found at another width is one start
            if not any(_same_start(candidate, k) for k in known):
                known.append(candidate)
    return starts, message


#: Rhombic starts closer in gamma than this (and in q1 than half their width) are one
#: start: 2 deg move the second rod family by about half a rod's width.
_SAME_START_GAMMA_DEG = 2.0


def _same_start(candidate: _RodCandidate, known: _RodCandidate) -> bool:
    """Whether `candidate` starts where `known` does: its first rod within half its width.

    Rhombic starts must also agree in gamma within :data:`_SAME_START_GAMMA_DEG`.
    """
    if abs(candidate.q1_per_nm - known.q1_per_nm) > 0.5 * candidate.width_per_nm:
        return False
    if candidate.model != "rhombic":
        return True
    return abs(candidate.gamma_deg - known.gamma_deg) <= _SAME_START_GAMMA_DEG


def _warm_candidates(
    profile: Profile, start: RodFit, settings: RodFitSettings
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


@dataclass(slots=True)
class _RodModelFit:
    spec: _RodModelSpec
    refined: Refined
    stats: Statistics
    profile: Profile  # what was fitted (its envelope multiplies the rods)
    _first_rod_snr: float | None = None
    _is_rod_fit: bool | None = None  # for the frame's one settings

    def value(self, name: str) -> float:
        """Value of the named nonlinear parameter."""
        return self.refined.value(name)

    def stderr(self, name: str) -> float:
        """Standard error of the named nonlinear parameter."""
        return stderr(self.stats, self.refined.index(name))

    def is_rod_fit(self, settings: RodFitSettings) -> bool:
        """Width below its bound and a first rod that is a peak of its own.

        The first rod must reach `min_rod_snr` standard errors (covariance scaled by the
        reduced chi-square, so a misfit background raises the bar) and
        `min_first_rod_fraction` of the strongest rod: a bump on a steep edge below a
        real lattice's rods may pass the first test, not the second.
        """
        if self._is_rod_fit is None:
            self._is_rod_fit = self._compute_is_rod_fit(settings)
        return self._is_rod_fit

    def _compute_is_rod_fit(self, settings: RodFitSettings) -> bool:
        refined = self.refined
        if not math.isfinite(self.stats.ic) or refined.at_upper[refined.index("fwhm")]:
            return False
        heights = self.heights()
        positions = self.value("q1") * self.spec.ratios(
            self.value("gamma") if self.spec.rhombic else GAMMA_HEXAGONAL_DEG
        )
        # a rod centred beyond the cut fits only its tail: its height means nothing
        inside = (positions >= self.profile.q[0]) & (positions <= self.profile.q[-1])
        top = float(heights[inside].max()) if inside.any() else 0.0
        # the cheap tests first: the signal-to-noise needs the covariance
        return (
            top > 0
            and heights[0] >= settings.min_first_rod_fraction * top
            and self.first_rod_snr() >= settings.min_rod_snr
        )

    def heights(self) -> FloatArray:
        """Height of each rod family on the cut (intensity units), in family order.

        The Gaussian plus Lorentzian part, times the rod envelope at the rod's position.
        """
        ev = self.refined.evaluation
        m = self.spec.families.shape[0]
        heights = ev.beta[ev.n_background : ev.n_background + m].copy()
        if ev.beta.size - ev.n_background == 2 * m:
            heights += ev.beta[ev.n_background + m :]
        positions = self.value("q1") * self.spec.ratios(
            self.value("gamma") if self.spec.rhombic else GAMMA_HEXAGONAL_DEG
        )
        profile = self.profile
        return heights * np.interp(positions, profile.q, profile.envelope)

    def rod_snrs(self) -> FloatArray:
        """Height over standard error of each rod family (0 where its height is 0)."""
        return np.array([self._rod_snr(j) for j in range(self.spec.families.shape[0])])

    def first_rod_snr(self) -> float:
        """Height of the first rod (family ratio 1) over its standard error."""
        if self._first_rod_snr is None:
            self._first_rod_snr = self._rod_snr(0)  # the first family is the first rod
        return self._first_rod_snr

    def _rod_snr(self, family: int) -> float:
        """Height over standard error of one rod family (its Gaussian and Lorentzian parts)."""
        ev = self.refined.evaluation
        m = self.spec.families.shape[0]
        per_col = 2 if ev.beta.size - ev.n_background == 2 * m else 1
        columns = [ev.n_background + family + k * m for k in range(per_col)]
        height = float(sum(ev.beta[c] for c in columns))
        variance = self.stats.sum_variance(columns)
        if height <= 0 or variance is None:
            return 0.0
        return height / math.sqrt(variance) if variance > 0 else math.inf


def _ranked_starts(
    profile: Profile, options: list[_RodCandidate], exponent: float, settings: RodFitSettings
) -> list[tuple[_RodCandidate, float]]:
    """The starts ordered by their information criterion before refinement."""
    scored = [(c, _start_ic(profile, c, exponent, settings)) for c in options]
    return sorted(scored, key=lambda item: item[1])


def _refine_lattice(
    profile: Profile,
    ranked: list[tuple[_RodCandidate, float]],
    exponent: float,
    settings: RodFitSettings,
) -> _RodModelFit:
    """Refine the best few starts of one lattice; the best fit with a real first rod.

    A start that puts the first rod on noise (a peak taken for the sqrt 2 rod whose q1
    holds nothing) may have the best criterion before refinement; the next starts are
    refined too, and a fit whose first rod is significant, whose width stays below its
    bound and that converged wins over one that is not.
    """
    fits: list[_RodModelFit] = []
    for candidate, value in ranked:
        if len(fits) >= _STARTS_PER_LATTICE or (fits and not math.isfinite(value)):
            break
        fit = _fit_rod_model(profile, candidate, exponent, settings)
        if any(abs(fit.value("q1") - f.value("q1")) < 1e-4 * fit.value("q1") for f in fits):
            continue
        fits.append(fit)
    # the best criterion among the rod fits (else among all): checked in criterion order,
    # so that only the fits up to the first rod fit need their covariance
    # (a fit without a finite criterion is never a rod fit)
    by_ic = sorted((f for f in fits if math.isfinite(f.stats.ic)), key=lambda f: f.stats.ic)
    good = next((f for f in by_ic if f.is_rod_fit(settings)), None)
    return good if good is not None else min(fits, key=lambda f: f.stats.ic)


def _start_ic(
    profile: Profile, candidate: _RodCandidate, exponent: float, settings: RodFitSettings
) -> float:
    """Information criterion of a lattice at its start (inf without a first rod there)."""
    spec, theta, low, high = _rod_problem(profile, candidate, exponent, settings)
    model = spec.model(settings.peak_shape)
    residual, beta, *_ = evaluate_kernel(theta, *model_args(model, profile), False)
    n_background = profile.legendre.shape[1] + 1
    first_rod = beta[n_background :: spec.families.shape[0]].sum()  # Gaussian + Lorentzian
    if not first_rod > 0:  # a lattice without its first rod is not this lattice
        return math.inf
    n_params = spec.n_theta - sum(1 for a, b in zip(low, high, strict=True) if a == b) + beta.size
    return information_criterion(float(residual @ residual), profile.n, n_params, settings.ic)


def _rod_problem(
    profile: Profile, candidate: _RodCandidate, exponent: float, settings: RodFitSettings
) -> tuple[_RodModelSpec, FloatArray, FloatArray, FloatArray]:
    """The model, start and bounds of one lattice from one start."""
    q_max = float(profile.q[-1])
    linear = settings.width_model == "linear"
    spec = _rod_spec(candidate.model, candidate.q1_per_nm, q_max, linear)
    lo, hi = settings.q1_window_per_nm
    w_min = min(profile.bin_per_nm, settings.max_width_per_nm / 2)
    theta0 = [exponent, candidate.q1_per_nm, candidate.width_per_nm]
    # with a polynomial factor the exponent is held (see _fit_rods); free only for order 0
    free_exponent = (
        settings.background_order == 0 and settings.background_knot_spacing_per_nm is None
    )
    p_lo, p_hi = (-1.0, 8.0) if free_exponent else (exponent, exponent)
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
    start = [min(max(t, lo_t), hi_t) for t, lo_t, hi_t in zip(theta0, lower, upper, strict=True)]
    return spec, np.array(start), np.array(lower), np.array(upper)


def _fit_rod_model(
    profile: Profile,
    candidate: _RodCandidate,
    exponent: float,
    settings: RodFitSettings,
) -> _RodModelFit:
    spec, theta0, lower, upper = _rod_problem(profile, candidate, exponent, settings)
    refined = levenberg_marquardt(
        spec.model(settings.peak_shape), profile, theta0, lower, upper, max_nfev=settings.max_nfev
    )
    stats = fit_statistics(refined.evaluation, profile.n, spec.n_theta, settings.ic, lower == upper)
    return _RodModelFit(spec=spec, refined=refined, stats=stats, profile=profile)


def _background_model() -> SeparableModel:
    return SeparableModel(
        mode=MODE_BACKGROUND,
        shape="gaussian",
        power_law=True,
        param_names=("exponent",),
        families=np.zeros((0, 2)),
    )


def _start_exponent(profile: Profile) -> float:
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

    The background is q^-p times cubic B-splines on ~0.2 nm^-1 knots plus a constant
    (it follows a cube form factor's minima; p held at the log-log slope of the data), or
    a low-order polynomial (`settings.background_knot_spacing_per_nm` None). Four models
    are fitted and compared by the information criterion: background only ("none"); a
    hexagonal lattice (rods at q1 x 1, sqrt 3, 2, sqrt 7, ...); a square one (1, sqrt 2,
    2, sqrt 5, ...); a rhombic one with free gamma in (62, 88) deg. Rods are tied to q1
    (and gamma), each has its own height >= 0 (an order that a form-factor minimum
    removes simply gets height 0), all share one width (or a width growing linearly with
    q), and by default they multiply the background (I = P S; `settings.rod_envelope`).

    The first rod is found without a fixed guess and must be a peak of its own: a
    zero-mean matched filter scans the data minus a smooth background at several widths,
    every significant peak in the q1 window starts every lattice, the best starts of each
    lattice by the exact criterion are refined, and a fit counts only if its first rod
    reaches `settings.min_rod_snr` standard errors and `settings.min_first_rod_fraction`
    of the strongest rod, and its width stays below `settings.max_width_per_nm`. A warm
    start adds the previous frame's lattice to the starts (where the search has no start
    there already) and never replaces the search, so a frame gets the same answer however
    it arrives. The named lattice is then refitted
    with Gaussian and Lorentzian rods, added and multiplied; the lowest criterion is
    reported (`RodFit.rod_model`), and the q1 spread of the variants within
    `settings.delta_ic_shape` enters the error where it exceeds the statistical one.
    A fit at its evaluation limit or with reduced chi-square above `settings.max_redchi`
    keeps its values but is not ``ok``. Naming:

    - "none": the best rod model beats the background by less than
      `settings.delta_ic_rod`, or no lattice has a first rod that is a peak of its own;
    - "pseudo-hexagonal": the rhombic model beats hexagonal and square by
      `delta_ic_symmetry` and its gamma is more than `gamma_margin_deg` from 60 and 90
      (closer, it is called hexagonal or square);
    - "hexagonal" / "square": the better of the two by `delta_ic_symmetry`, from all the
      orders present (`RodFit.orders_found`);
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
        The previous frame's result. Its q1, width (and gamma) join the starts of the
        search (they never replace it): a frame gets the same answer cold or warm.

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
    prepared = prepare_profile(
        q_per_nm,
        intensity,
        sigma,
        settings.fit_range_per_nm,
        settings.background_order,
        settings.background_knot_spacing_per_nm,
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


def _fit_rods(profile: Profile, settings: RodFitSettings, start: RodFit | None) -> RodFit:
    if settings.background_order == 0 and settings.background_knot_spacing_per_nm is None:
        exponent0 = _start_exponent(profile)
        p_lo, p_hi = -1.0, 8.0
    else:
        # a polynomial factor is nearly degenerate with the exponent: hold it at the
        # log-log slope of the data (the polynomial absorbs the rest)
        exponent0 = p_lo = p_hi = _start_exponent(profile)
    background = levenberg_marquardt(
        _background_model(),
        profile,
        np.array([exponent0]),
        np.array([p_lo]),
        np.array([p_hi]),
        max_nfev=settings.max_nfev,
    )
    bg_stats = fit_statistics(
        background.evaluation, profile.n, 1, settings.ic, np.array([p_lo == p_hi])
    )
    if not math.isfinite(bg_stats.ic):
        return _failed_rods("the background fit did not converge", settings, profile.n)
    residual = _search_residual(profile, background, settings)
    envelope = _background_envelope(background.evaluation, profile)
    if settings.rod_envelope == "background":
        profile = replace(profile, envelope=envelope)
    candidates, edge_message = _cold_candidates(profile, residual, settings)
    if edge_message:
        return _failed_rods(edge_message, settings, profile.n)
    lo, hi = settings.q1_window_per_nm
    warm = (
        start is not None
        and start.ok
        and math.isfinite(start.width_per_nm)
        and lo <= start.q1_per_nm <= hi
    )
    if warm and start is not None:
        # the previous frame's lattice joins the starts of the search; it never replaces
        # the search, so that a frame gets the same answer however it arrives. A warm
        # start that repeats a start of the search is left out: it would refine to the
        # same fit again (most frames of a run), and the run would cost more than the
        # frames alone
        for name, options in _warm_candidates(profile, start, settings).items():
            known = candidates.setdefault(name, [])
            known.extend(c for c in options if not any(_same_start(c, k) for k in known))
    context = _Context(profile, settings, background, bg_stats, warm=warm, envelope=envelope)
    return _decide(context, candidates)


def _search_residual(profile: Profile, background: Refined, settings: RodFitSettings) -> FloatArray:
    """The data minus a smooth background, for the first-rod search.

    A spline background follows rods in part and leaves a distorted residual; the search
    uses the stiffer power law times a cubic polynomial (the zero-mean matched filter
    ignores its slow misfit), while the fits use the spline.
    """
    if settings.background_knot_spacing_per_nm is None:
        return background.evaluation.residual / profile.weight
    q = profile.q
    stiff = replace(profile, legendre=legendre_basis(q, lo_per_nm=q[0], hi_per_nm=q[-1], order=3))
    exponent = background.value("exponent")
    refined = levenberg_marquardt(
        _background_model(),
        stiff,
        np.array([exponent]),
        np.array([exponent]),
        np.array([exponent]),
        max_nfev=settings.max_nfev,
    )
    return refined.evaluation.residual / profile.weight


@dataclass(frozen=True, slots=True)
class _Context:
    """What every rod model of one frame shares."""

    profile: Profile
    settings: RodFitSettings
    background: Refined
    bg_stats: Statistics
    warm: bool
    envelope: FloatArray  # the background-only fit scaled to 1 at its maximum

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
            background_exponent=self.background.value("exponent"),
            background_exponent_err=math.nan
            if self.bg_stats.fixed[0]
            else stderr(self.bg_stats, 0),
            redchi=self.bg_stats.redchi,
            ok=True,
        )


def rod_families(fit: RodFit, *, q_max_per_nm: float) -> FloatArray:
    """Rod families (a, b) of a reported rod fit's lattice, as the engine models them.

    Parameters
    ----------
    fit : RodFit
        A result with a first rod; for "unknown" the lattice with the lower criterion.
    q_max_per_nm : float
        End of the cut, in nm^-1.

    Returns
    -------
    ndarray of shape (n_rods, 2)
        Rod k sits at q1 sqrt(a_k - 2 b_k cos gamma).
    """
    name: RodModelName
    if fit.symmetry == "pseudo-hexagonal":
        name = "rhombic"
    elif fit.symmetry in ("hexagonal", "square"):
        name = fit.symmetry
    else:
        name = "hexagonal" if not fit.ic_square < fit.ic_hexagonal else "square"
    return _rod_spec(name, fit.q1_per_nm, q_max_per_nm, linear_width=fit.width_growth > 0).families


def rod_envelope(
    q_per_nm: FloatArray,
    intensity: FloatArray,
    sigma: FloatArray,
    exponent: float,
    basis: FloatArray,
) -> FloatArray:
    """The rod envelope: the background-only fit, scaled to 1 at its maximum.

    Parameters
    ----------
    q_per_nm, intensity, sigma : ndarray of shape (n,)
        The cut, in nm^-1 and intensity units.
    exponent : float
        Power-law exponent p of the background (held).
    basis : ndarray of shape (n, k)
        Background basis (B-splines or Legendre polynomials).

    Returns
    -------
    ndarray of shape (n,)
        q^-p basis @ c + const from a weighted linear fit, over its maximum, floored at 1e-6.
    """
    design = np.concatenate(
        [q_per_nm[:, None] ** -exponent * basis, np.ones((q_per_nm.size, 1))], 1
    )
    coef, *_ = np.linalg.lstsq(design / sigma[:, None], intensity / sigma, rcond=None)
    shape = design @ coef
    top = float(np.max(shape))
    if not (top > 0 and np.all(np.isfinite(shape))):
        return np.ones_like(q_per_nm)
    return np.asarray(np.maximum(shape / top, 1e-6), dtype=np.float64)


def _background_envelope(ev: Evaluation, profile: Profile) -> FloatArray:
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
    exponent = context.background.value("exponent")
    starts = {
        name: _ranked_starts(profile, options, exponent, settings)
        for name, options in candidates.items()
    }
    # every lattice is refined from its best starts: a shortcut that skips one on its
    # start's criterion would make the answer depend on how good the start was
    fits: dict[RodModelName, _RodModelFit] = {
        name: _refine_lattice(profile, starts[name], exponent, settings)
        for name in ("hexagonal", "square", "rhombic")
    }
    nan = math.nan
    ics = (
        context.bg_stats.ic,
        fits["hexagonal"].stats.ic,
        fits["square"].stats.ic,
        fits["rhombic"].stats.ic if "rhombic" in fits else nan,
    )
    # a model whose width ran to its bound fits a broad feature, not rods; one without a
    # first rod that is a peak of its own is not that lattice
    broad = {name for name, fit in fits.items() if fit.refined.at_upper[fit.refined.index("fwhm")]}
    fitted = {name: fit for name, fit in fits.items() if math.isfinite(fit.stats.ic)}
    snrs = {name: fit.first_rod_snr() for name, fit in fitted.items() if name not in broad}
    eligible = {name: fit for name, fit in fitted.items() if fit.is_rod_fit(settings)}
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
                f"(best: {snrs[top]:.1f} sigma at {fitted[top].value('q1'):.3f} nm^-1)"
            )
        limited = [name for name, fit in fits.items() if fit.refined.hit_max_nfev]
        if limited:  # "no rod" is not trusted when a lattice fit was cut short
            return replace(
                context.no_rod(message, ics),
                ok=False,
                message=f"{message}; but the {', '.join(limited)} fit stopped at its "
                f"evaluation limit (max_nfev = {settings.max_nfev}): {raise_nfev_fix('gisaxs')}",
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
    q1 = best.value("q1")
    if best.refined.at_bound("q1"):
        return _failed_rods(
            f"the first rod ({q1:.3f} nm^-1) sits at the edge of the q1 window {window}: "
            "widen q1_window_per_nm",
            settings,
            profile.n,
            ics,
            context.warm,
        )
    symmetry, chosen = _name_lattice(fits, eligible, best_name, settings)
    chosen, spread = _choose_rod_model(context, chosen)
    return _rod_result(chosen, symmetry, chosen.profile, settings, ics, context.warm, spread)


def _choose_rod_model(
    context: _Context, chosen: _RodModelFit
) -> tuple[_RodModelFit, tuple[float, str]]:
    """The line shape and rod envelope that fit the named lattice best, and their spread.

    The chosen lattice is refitted from its solution with each line shape (Gaussian,
    Lorentzian, and the configured one) and rod envelope (rods added to, or multiplied by,
    the background); the variant with the lowest criterion is reported. Among the
    variants within `delta_ic_shape` of it (differences divided by its reduced
    chi-square where that exceeds 1, as for a quasi-likelihood), the largest distance of
    q1 from the reported one is returned with its name (0 and "" with
    `settings.model_spread` False).
    """
    settings = context.settings
    if not settings.model_spread:
        return chosen, (0.0, "")
    variants: list[tuple[str, _RodModelFit]] = [
        (f"{settings.peak_shape}/{settings.rod_envelope}", chosen)
    ]
    shapes = dict.fromkeys((settings.peak_shape, "gaussian", "lorentzian"))
    for shape in shapes:
        for envelope in ("flat", "background"):
            if shape == settings.peak_shape and envelope == settings.rod_envelope:
                continue
            profile = replace(
                context.profile,
                envelope=context.envelope
                if envelope == "background"
                else np.ones_like(context.profile.q),
            )
            fit = _refit(profile, chosen, shape, settings)
            if fit is not None and fit.is_rod_fit(settings):
                variants.append((f"{shape}/{envelope}", fit))
    best = min(variants, key=lambda item: item[1].stats.ic)[1]
    q1 = best.value("q1")
    # a model that misses structure (reduced chi-square above 1) inflates every criterion
    # difference by about that factor: compare on the quasi-likelihood scale
    inflation = max(best.stats.redchi, 1.0)
    close = [
        (name, fit.value("q1"))
        for name, fit in variants
        if (fit.stats.ic - best.stats.ic) / inflation <= settings.delta_ic_shape
    ]
    name, q = max(close, key=lambda item: abs(item[1] - q1))
    return best, (abs(q - q1), name)


def _model_name(fit: _RodModelFit) -> str:
    """Line shape and rod envelope of a rod fit, as "shape/envelope"."""
    envelope = "flat" if np.all(fit.profile.envelope == 1.0) else "background"
    return f"{fit.refined.shape}/{envelope}"


def _refit(
    profile: Profile, fit: _RodModelFit, shape: PeakShape, settings: RodFitSettings
) -> _RodModelFit | None:
    """`fit`'s lattice refitted with another line shape on `profile`, from its solution."""
    spec = fit.spec
    theta0 = fit.refined.evaluation.theta
    lower = theta0.copy()
    upper = theta0.copy()
    q1_lo, q1_hi = settings.q1_window_per_nm
    w_min = min(profile.bin_per_nm, settings.max_width_per_nm / 2)
    bounds = {
        "q1": (q1_lo, q1_hi),
        "fwhm": (w_min, settings.max_width_per_nm),
        "growth": (0.0, 3.0),
        "gamma": GAMMA_RANGE_DEG,
    }
    for name, (lo, hi) in bounds.items():
        if name in spec.param_names:
            i = spec.param_names.index(name)
            lower[i], upper[i] = lo, hi
    refined = levenberg_marquardt(
        spec.model(shape), profile, theta0, lower, upper, max_nfev=settings.max_nfev
    )
    if refined.hit_max_nfev:
        return None
    stats = fit_statistics(refined.evaluation, profile.n, spec.n_theta, settings.ic, lower == upper)
    return _RodModelFit(spec=spec, refined=refined, stats=stats, profile=profile)


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
        gamma = rhombic.value("gamma")
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
    profile: Profile,
    settings: RodFitSettings,
    ics: tuple[float, float, float, float],
    warm: bool,
    spread: tuple[float, str] = (0.0, ""),
) -> RodFit:
    stats = fit.stats
    q1 = fit.value("q1")
    q1_stat_err = fit.stderr("q1")
    spread_per_nm, spread_model = spread
    # the model choice adds its spread where it exceeds the statistical error
    q1_err = math.hypot(q1_stat_err, spread_per_nm) if spread_per_nm > q1_stat_err else q1_stat_err
    spacing_hex = lattice_spacing_nm(q1, "hexagonal")
    spacing_square = lattice_spacing_nm(q1, "square")
    gamma = gamma_err = math.nan
    if symmetry == "pseudo-hexagonal":
        gamma = fit.value("gamma")
        gamma_err = fit.stderr("gamma")
        spacing = lattice_spacing_nm(q1, symmetry, gamma_deg=gamma)
        # d ln a = -d q1 / q1 - cot(gamma) d gamma
        grad = np.zeros(stats.covariance.shape[0])
        grad[fit.refined.index("q1")] = -1.0 / q1
        grad[fit.refined.index("gamma")] = -math.radians(1.0) / math.tan(math.radians(gamma))
        relative = math.sqrt(max(float(grad @ stats.covariance @ grad), 0.0))
        spacing_err = spacing * math.hypot(relative, (q1_err - q1_stat_err) / q1)
    elif symmetry in ("hexagonal", "square"):
        spacing = lattice_spacing_nm(q1, symmetry)
        spacing_err = spacing * q1_err / q1
    else:
        spacing = spacing_err = math.nan
    growth = fit.value("growth") if fit.spec.linear_width else 0.0
    ratios = fit.spec.ratios(fit.value("gamma") if fit.spec.rhombic else GAMMA_HEXAGONAL_DEG)
    heights = fit.heights()
    positions = q1 * ratios
    snrs = fit.rod_snrs()
    found = sorted(
        {
            round(float(r), 4)
            for r, p, z in zip(ratios, positions, snrs, strict=True)
            if p <= profile.q[-1] and z >= settings.min_rod_snr
        }
    )
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
    message += f"; orders found: {', '.join(order_label(r) for r in found)}"
    if q1_err > q1_stat_err:
        message += (
            f"; the {spread_model} rod model moves q1 by {spread_per_nm:.4f} nm^-1, "
            "added to its error"
        )
    ok = True
    if fit.refined.hit_max_nfev:
        ok = False
        message = (
            f"the rod fit stopped at its evaluation limit (max_nfev = {settings.max_nfev}) "
            f"before converging: {raise_nfev_fix('gisaxs')}; {message}"
        )
    if not stats.redchi <= settings.max_redchi:
        ok = False
        message = (
            f"the rod model does not describe the cut (reduced chi-square "
            f"{stats.redchi:.3g} > {settings.max_redchi:g}): check the background and the "
            f"q range; {message}"
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
        width_per_nm=fit.value("fwhm"),
        width_err_per_nm=fit.stderr("fwhm"),
        width_growth=growth,
        background_exponent=fit.value("exponent"),
        background_exponent_err=math.nan if stats.fixed[0] else fit.stderr("exponent"),
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
        ok=ok,
        message=message,
        orders_found=tuple(found),
        q1_stat_err_per_nm=q1_stat_err,
        q1_model_spread_per_nm=spread_per_nm,
        nfev=fit.refined.nfev,
        rod_model=_model_name(fit),
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
