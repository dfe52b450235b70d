"""Observables of a monolayer configuration: bond order, phase, S(q) and its rods.

Everything here takes plain arrays (positions in particle edge units L, angles in rad,
a rectangular periodic box) and returns frozen dataclasses, so it runs on engine output,
on lattices built by hand and on loaded snapshots alike.

Neighbours
    A particle's neighbours are all particles whose centres lie within ``r_max_L`` of it
    (a freud ``AABBQuery`` ball query). The default 1.3 L lies between the first shell of
    the octagons (at most twice the circumradius, 1.17 L) and the diagonal of a square
    lattice (at least sqrt(2) L), so it counts 4 neighbours in a square lattice and 6 in a
    hexagonal one.

Bond order
    psi_k(i) = (1/n_i) sum_j exp(i k phi_ij) (``freud.order.Hexatic`` with k = 4 and 6).
    The *local* value is the mean over particles of ``|psi_k(i)|``; the *global* value is
    ``|mean_i psi_k(i)|`` and is near 1 only for one single-orientation crystal.

Classification (thresholds in `ClassificationSettings`)
    A neighbour j is *coherent* in k-fold order with particle i when the phases of their
    psi_k agree: ``Re(psi_k(i) psi_k(j)*) >= 0.7 |psi_k(i)| |psi_k(j)|`` (the crystal-
    particle test of ten Wolde, Ruiz-Montero and Frenkel, J. Chem. Phys. 104, 9932 (1996),
    in 2-D): in a crystal neighbours share the orientation of their bond star, in a dense
    fluid they do not, though there each |psi6(i)| is ~0.65 too. A particle with at least
    3 coherent neighbours in 4-fold order is labelled "square" if psi4 >= 0.7 and
    psi4 >= psi6; one with at least 3 coherent neighbours in 6-fold order is "hexagonal" if
    psi6 >= 0.8 and psi6 > psi4, "pseudo-hexagonal" if 0.55 <= psi6 < 0.8 and psi6 > psi4;
    every other particle is "disordered". The configuration is "fluid" when fewer than
    30 % of its particles carry an ordered label, else it takes the most frequent ordered
    label.
    In an ordered configuration, a second ordered label held by at least 25 % of the
    ordered particles marks coexistence (a fluid's few ordered particles split at random).

Structure factor
    The in-plane powder average S(q) = 1 + (1/N) sum_{i != j} J0(q r_ij), which is what a
    q_parallel cut through randomly rotated 2-D domains measures (the formula of freud's
    ``StaticStructureFactorDebye`` with a 2-D box, evaluated faster). It is reported only
    above 4 pi / L_box (freud's ``min_valid_k``), where the finite periodic box does not
    bias it.
    Its peaks ("rods") are fitted with lmfit; q * L converts to nm^-1 with the centre-to-
    centre contact distance of the real nanocrystals (`rods_per_nm`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import freud
import lmfit
import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from scipy.special import j0

from detectors.errors import SimulationError

Phase = Literal["fluid", "hexagonal", "pseudo-hexagonal", "square"]
ParticleLabel = Literal["disordered", "hexagonal", "pseudo-hexagonal", "square"]

#: Per-particle labels, in the order of the integer codes of `ParticleOrder.label_codes`.
PARTICLE_LABELS: tuple[ParticleLabel, ...] = (
    "disordered",
    "square",
    "hexagonal",
    "pseudo-hexagonal",
)
PHASES: tuple[Phase, ...] = ("fluid", "square", "hexagonal", "pseudo-hexagonal")

_PHASE_OF: dict[ParticleLabel, Phase] = {
    "square": "square",
    "hexagonal": "hexagonal",
    "pseudo-hexagonal": "pseudo-hexagonal",
}

SQRT2 = float(np.sqrt(2.0))
SQRT3 = float(np.sqrt(3.0))


def _as_points(
    positions_L: NDArray[np.float64], box_L: NDArray[np.float64]
) -> tuple[freud.box.Box, NDArray[np.float32]]:
    """Check a configuration and wrap it into a 2-D freud box (points as (x, y, 0))."""
    positions = np.asarray(positions_L, dtype=np.float64)
    box_arr = np.asarray(box_L, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or positions.shape[0] < 2:
        msg = f"positions_L must have shape (N, 2) with N >= 2, got {positions.shape}"
        raise SimulationError(msg)
    if box_arr.shape != (2,) or not np.all(np.isfinite(box_arr)) or np.any(box_arr <= 0):
        msg = f"box_L must be two positive side lengths (Lx, Ly), got {box_arr!r}"
        raise SimulationError(msg)
    if not np.all(np.isfinite(positions)):
        msg = "positions_L contains NaN or inf"
        raise SimulationError(msg)
    box = freud.box.Box.from_box([float(box_arr[0]), float(box_arr[1])])
    points = np.zeros((positions.shape[0], 3), dtype=np.float32)
    points[:, :2] = positions
    return box, box.wrap(points)


@dataclass(frozen=True, slots=True)
class ClassificationSettings:
    """Thresholds of the particle labels and of the phase (see the module docstring).

    Parameters
    ----------
    r_max_L : float
        Neighbour cut-off distance, in particle edge lengths L.
    min_neighbours : int
        Fewest coherent neighbours (see the module docstring) for a particle to carry an
        ordered label.
    coherence : float
        Smallest ``Re(psi_k(i) psi_k(j)*) / (|psi_k(i)| |psi_k(j)|)`` of a coherent
        neighbour j of i.
    square_psi4 : float
        Smallest |psi4| of a "square" particle.
    hexagonal_psi6 : float
        Smallest |psi6| of a "hexagonal" particle.
    pseudo_hexagonal_psi6 : float
        Smallest |psi6| of a "pseudo-hexagonal" particle.
    min_ordered_fraction : float
        Below this fraction of ordered particles the configuration is "fluid".
    coexistence_fraction : float
        A second ordered label held by at least this fraction of the ordered particles
        marks coexistence.
    """

    r_max_L: float = 1.3
    min_neighbours: int = 3
    coherence: float = 0.7
    square_psi4: float = 0.7
    hexagonal_psi6: float = 0.8
    pseudo_hexagonal_psi6: float = 0.55
    min_ordered_fraction: float = 0.3
    coexistence_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not self.r_max_L > 0:
            msg = f"r_max_L must be > 0, got {self.r_max_L!r}"
            raise SimulationError(msg)
        if self.min_neighbours < 1:
            msg = f"min_neighbours must be >= 1, got {self.min_neighbours!r}"
            raise SimulationError(msg)
        if not 0 < self.pseudo_hexagonal_psi6 <= self.hexagonal_psi6 <= 1:
            msg = (
                "need 0 < pseudo_hexagonal_psi6 <= hexagonal_psi6 <= 1, got "
                f"{self.pseudo_hexagonal_psi6!r} and {self.hexagonal_psi6!r}"
            )
            raise SimulationError(msg)
        if not -1 <= self.coherence <= 1:
            msg = f"coherence must be in [-1, 1], got {self.coherence!r}"
            raise SimulationError(msg)
        for name in ("square_psi4", "min_ordered_fraction", "coexistence_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                msg = f"{name} must be in (0, 1], got {value!r}"
                raise SimulationError(msg)


@dataclass(frozen=True, slots=True)
class ParticleOrder:
    """Bond order of every particle and its means.

    Attributes
    ----------
    psi4 : ndarray of complex128, shape (N,)
        psi_4(i); 0 for a particle without neighbours.
    psi6 : ndarray of complex128, shape (N,)
        psi_6(i); 0 for a particle without neighbours.
    n_neighbours : ndarray of int64, shape (N,)
        Number of neighbours within ``r_max_L``.
    label_codes : ndarray of int8, shape (N,)
        Index into `PARTICLE_LABELS` of each particle's label.
    r_max_L : float
        Neighbour cut-off used, in L.
    """

    psi4: NDArray[np.complex128]
    psi6: NDArray[np.complex128]
    n_neighbours: NDArray[np.int64]
    label_codes: NDArray[np.int8]
    r_max_L: float

    @property
    def psi4_local(self) -> float:
        """Mean over particles of |psi4(i)|."""
        return float(np.mean(np.abs(self.psi4)))

    @property
    def psi6_local(self) -> float:
        """Mean over particles of |psi6(i)|."""
        return float(np.mean(np.abs(self.psi6)))

    @property
    def psi4_global(self) -> float:
        """|mean over particles of psi4(i)|."""
        return float(np.abs(np.mean(self.psi4)))

    @property
    def psi6_global(self) -> float:
        """|mean over particles of psi6(i)|."""
        return float(np.abs(np.mean(self.psi6)))

    @property
    def labels(self) -> NDArray[np.str_]:
        """Label of each particle, one of `PARTICLE_LABELS`; shape (N,)."""
        return np.asarray(PARTICLE_LABELS)[self.label_codes]


def bond_order(
    positions_L: NDArray[np.float64],
    box_L: NDArray[np.float64],
    *,
    settings: ClassificationSettings | None = None,
) -> ParticleOrder:
    """Bond-orientational order psi4 and psi6 of every particle, and its label.

    Parameters
    ----------
    positions_L : ndarray, shape (N, 2)
        Particle centres, in L; any periodic image.
    box_L : ndarray, shape (2,)
        Side lengths (Lx, Ly) of the rectangular periodic box, in L.
    settings : ClassificationSettings, optional
        Neighbour cut-off and label thresholds; the defaults when None.

    Returns
    -------
    ParticleOrder

    Raises
    ------
    SimulationError
        If the shapes are wrong, a value is not finite or the box is not positive.

    Examples
    --------
    >>> grid = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0)), -1).reshape(-1, 2)
    >>> order = bond_order(grid * 1.05, np.array([8.4, 8.4]))
    >>> round(order.psi4_local, 3), round(order.psi6_local, 3), str(order.labels[0])
    (1.0, 0.0, 'square')
    """
    cfg = settings or ClassificationSettings()
    box, points = _as_points(positions_L, box_L)
    query = freud.locality.AABBQuery(box, points)
    nlist = query.query(
        points, {"mode": "ball", "r_max": cfg.r_max_L, "exclude_ii": True}
    ).toNeighborList()
    n_neighbours = np.bincount(nlist.query_point_indices, minlength=len(points)).astype(np.int64)
    i, j = nlist.query_point_indices, nlist.point_indices
    psi: dict[int, NDArray[np.complex128]] = {}
    coherent: dict[int, NDArray[np.int64]] = {}
    for k in (4, 6):
        hexatic = freud.order.Hexatic(k=k)
        hexatic.compute((box, points), neighbors=nlist)
        values = np.asarray(hexatic.particle_order, dtype=np.complex128)
        psi[k] = np.where(n_neighbours > 0, np.nan_to_num(values), 0.0)
        agree = np.real(psi[k][i] * np.conj(psi[k][j]))
        norms = np.abs(psi[k][i]) * np.abs(psi[k][j])
        hits = (norms > 0) & (agree >= cfg.coherence * norms)
        coherent[k] = np.bincount(i, weights=hits, minlength=len(points)).astype(np.int64)
    return ParticleOrder(
        psi4=psi[4],
        psi6=psi[6],
        n_neighbours=n_neighbours,
        label_codes=_label_particles(np.abs(psi[4]), np.abs(psi[6]), coherent, cfg),
        r_max_L=cfg.r_max_L,
    )


def _label_particles(
    psi4_abs: NDArray[np.float64],
    psi6_abs: NDArray[np.float64],
    coherent: dict[int, NDArray[np.int64]],
    cfg: ClassificationSettings,
) -> NDArray[np.int8]:
    """Integer label codes (see `PARTICLE_LABELS`) from the thresholds."""
    codes = np.zeros(psi4_abs.shape, dtype=np.int8)
    square = (
        (coherent[4] >= cfg.min_neighbours) & (psi4_abs >= cfg.square_psi4) & (psi4_abs >= psi6_abs)
    )
    six_fold = (coherent[6] >= cfg.min_neighbours) & (psi6_abs > psi4_abs)
    hexagonal = six_fold & (psi6_abs >= cfg.hexagonal_psi6)
    pseudo = six_fold & ~hexagonal & (psi6_abs >= cfg.pseudo_hexagonal_psi6)
    codes[square] = PARTICLE_LABELS.index("square")
    codes[hexagonal] = PARTICLE_LABELS.index("hexagonal")
    codes[pseudo] = PARTICLE_LABELS.index("pseudo-hexagonal")
    return codes


@dataclass(frozen=True, slots=True)
class Classification:
    """Phase of a configuration from its particle labels.

    Attributes
    ----------
    phase : {"fluid", "hexagonal", "pseudo-hexagonal", "square"}
        The phase (see the module docstring).
    fraction_square, fraction_hexagonal, fraction_pseudo_hexagonal, fraction_disordered : float
        Fraction of all particles carrying each label.
    coexistence : bool
        True when the phase is not "fluid" and a second ordered label is held by at least
        ``coexistence_fraction`` of the ordered particles.
    """

    phase: Phase
    fraction_square: float
    fraction_hexagonal: float
    fraction_pseudo_hexagonal: float
    fraction_disordered: float
    coexistence: bool


def classify(
    order: ParticleOrder, *, settings: ClassificationSettings | None = None
) -> Classification:
    """Phase of a configuration: fluid, square, hexagonal or pseudo-hexagonal.

    Parameters
    ----------
    order : ParticleOrder
        From `bond_order` (its labels already used ``settings``' particle thresholds).
    settings : ClassificationSettings, optional
        ``min_ordered_fraction`` and ``coexistence_fraction`` are used here.

    Returns
    -------
    Classification

    Examples
    --------
    >>> grid = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0)), -1).reshape(-1, 2)
    >>> classify(bond_order(grid, np.array([8.0, 8.0]))).phase
    'square'
    """
    cfg = settings or ClassificationSettings()
    counts = np.bincount(order.label_codes, minlength=len(PARTICLE_LABELS)).astype(np.float64)
    fractions = dict(zip(PARTICLE_LABELS, counts / max(1, order.label_codes.size), strict=True))
    ordered = {label: fractions[label] for label in _PHASE_OF}
    ordered_total = sum(ordered.values())
    ranked = sorted(ordered, key=lambda label: ordered[label], reverse=True)
    phase: Phase = "fluid" if ordered_total < cfg.min_ordered_fraction else _PHASE_OF[ranked[0]]
    coexistence = (
        phase != "fluid" and ordered[ranked[1]] >= cfg.coexistence_fraction * ordered_total
    )
    return Classification(
        phase=phase,
        fraction_square=fractions["square"],
        fraction_hexagonal=fractions["hexagonal"],
        fraction_pseudo_hexagonal=fractions["pseudo-hexagonal"],
        fraction_disordered=fractions["disordered"],
        coexistence=bool(coexistence),
    )


@dataclass(frozen=True, slots=True)
class StructureFactor:
    """In-plane powder-averaged structure factor on its valid q range.

    Attributes
    ----------
    q_per_L : ndarray, shape (n_q,)
        Scattering vector magnitude, in 1/L, all >= ``q_min_valid_per_L``.
    s : ndarray, shape (n_q,)
        S(q), dimensionless (1 for an ideal gas).
    q_min_valid_per_L : float
        4 pi / min(Lx, Ly): the smallest q reported.
    n_configurations : int
        Number of configurations averaged.
    """

    q_per_L: NDArray[np.float64]
    s: NDArray[np.float64]
    q_min_valid_per_L: float
    n_configurations: int = 1


def structure_factor(
    positions_L: NDArray[np.float64] | list[NDArray[np.float64]],
    box_L: NDArray[np.float64],
    *,
    q_max_per_L: float = 20.0,
    n_q: int = 600,
    bin_width_L: float = 1e-3,
) -> StructureFactor:
    """In-plane powder-averaged S(q) of one configuration or the mean of several.

    S(q) = 1 + (2/N) sum_{i<j} J0(q r_ij) over minimum-image pair distances: the
    average over domains rotated about the surface normal, which is what a q_parallel
    cut measures. This is the formula of freud's ``StaticStructureFactorDebye`` with a
    2-D box (a 3-D box would give the sinc average of a 3-D powder of flakes, with peaks
    shifted to higher q). freud evaluates J0 once per pair and q, which takes minutes for
    N = 1024; here the pair distances are histogrammed first (each bin at the mean distance
    of its pairs), which agrees with freud to ~1e-4 (checked in the tests) in well under a
    second.

    Parameters
    ----------
    positions_L : ndarray, shape (N, 2), or list of them
        Particle centres, in L. Several configurations (same box) are averaged.
    box_L : ndarray, shape (2,)
        Side lengths (Lx, Ly) of the periodic box, in L.
    q_max_per_L : float, optional
        Largest q, in 1/L.
    n_q : int, optional
        Number of evenly spaced q points from 4 pi / min(Lx, Ly) to ``q_max_per_L``
        (the grid of freud's ``k_values``).
    bin_width_L : float, optional
        Width of the pair-distance histogram bins, in L.

    Returns
    -------
    StructureFactor

    Raises
    ------
    SimulationError
        If the box is too small for any valid q below ``q_max_per_L``, or a configuration
        is malformed.

    Examples
    --------
    >>> grid = np.stack(np.meshgrid(np.arange(16.0), np.arange(16.0)), -1).reshape(-1, 2)
    >>> sq = structure_factor(grid, np.array([16.0, 16.0]), q_max_per_L=8.0, n_q=400)
    >>> round(float(sq.q_per_L[np.argmax(sq.s)] / (2 * np.pi)), 2)
    1.0
    """
    configurations = positions_L if isinstance(positions_L, list) else [positions_L]
    if not configurations:
        msg = "structure_factor needs at least one configuration"
        raise SimulationError(msg)
    box_arr = np.asarray(box_L, dtype=np.float64)
    q_min = 4.0 * np.pi / float(np.min(box_arr)) if box_arr.shape == (2,) else np.nan
    if not (n_q >= 10 and q_max_per_L > q_min and bin_width_L > 0):
        msg = (
            f"need n_q >= 10 and q_max_per_L > 4 pi / min(box) = {q_min:.3g} per L, "
            f"got n_q={n_q}, q_max_per_L={q_max_per_L}; enlarge the box or q_max_per_L"
        )
        raise SimulationError(msg)
    q = np.linspace(q_min, q_max_per_L, n_q)
    total = np.zeros(n_q, dtype=np.float64)
    for positions in configurations:
        _as_points(positions, box_arr)
        r_mean, counts = _pair_distance_histogram(
            np.asarray(positions, dtype=np.float64), box_arr, bin_width_L
        )
        n = len(positions)
        for chunk in np.array_split(np.arange(n_q), max(1, n_q // 50)):
            total[chunk] += 1.0 + (2.0 / n) * (j0(np.outer(q[chunk], r_mean)) @ counts)
    return StructureFactor(
        q_per_L=q,
        s=total / len(configurations),
        q_min_valid_per_L=float(q_min),
        n_configurations=len(configurations),
    )


def _pair_distance_histogram(
    positions_L: NDArray[np.float64], box_L: NDArray[np.float64], bin_width_L: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Minimum-image distances of all pairs i < j: (mean distance per bin, pair count)."""
    n_bins = int(np.ceil(0.5 * float(np.hypot(*box_L)) / bin_width_L)) + 1
    counts = np.zeros(n_bins, dtype=np.float64)
    sums = np.zeros(n_bins, dtype=np.float64)
    for i in range(len(positions_L) - 1):
        delta = positions_L[i + 1 :] - positions_L[i]
        delta -= box_L * np.round(delta / box_L)
        r = np.hypot(delta[:, 0], delta[:, 1])
        index = np.minimum((r / bin_width_L).astype(np.int64), n_bins - 1)
        counts += np.bincount(index, minlength=n_bins)
        sums += np.bincount(index, weights=r, minlength=n_bins)
    filled = counts > 0
    return sums[filled] / counts[filled], counts[filled]


@dataclass(frozen=True, slots=True)
class RodSettings:
    """How `fit_rods` finds and fits the peaks of S(q).

    Parameters
    ----------
    q_search_min_per_L : float
        Peaks are searched above this q, in 1/L (3.0: lattice spacings up to ~2 L; it keeps
        the low-q rise of clusters in a dilute box out).
    smoothing_fraction : float
        Peaks are searched in S(q) smoothed by a Gaussian of this fraction of
        4 pi / L_box: the ripples of period 4 pi / L_box that the finite periodic box adds
        around every peak then drop out. The fit uses the raw S(q).
    min_prominence : float
        Smallest prominence in S of the first rod: the wiggles of a fluid stay out.
    min_relative_prominence : float
        q2 and q3 count when their prominence is at least this fraction of the first
        rod's ...
    min_later_prominence : float
        ... and at least this absolute prominence in S. It is lower than
        ``min_prominence`` because the higher rods of a thermal crystal are weaker (the
        (11) rod of a square lattice of N = 256 reaches a prominence of only ~1), yet above
        the ~0.2 that noise reaches in one N = 256 ideal-gas S(q).
    window_fraction : float
        Each peak is fitted over +- this fraction of its position (clipped halfway to its
        neighbours).
    """

    q_search_min_per_L: float = 3.0
    smoothing_fraction: float = 0.5
    min_prominence: float = 1.0
    min_relative_prominence: float = 0.1
    min_later_prominence: float = 0.3
    window_fraction: float = 0.08

    def __post_init__(self) -> None:
        if not (
            self.q_search_min_per_L >= 0
            and self.smoothing_fraction >= 0
            and 0 < self.min_later_prominence <= self.min_prominence
            and 0 <= self.min_relative_prominence
            and 0 < self.window_fraction < 0.5
        ):
            msg = (
                "RodSettings needs q_search_min_per_L >= 0, smoothing_fraction >= 0, "
                "0 < min_later_prominence <= min_prominence, min_relative_prominence >= 0 "
                f"and 0 < window_fraction < 0.5; got {self!r}"
            )
            raise SimulationError(msg)


@dataclass(frozen=True, slots=True)
class Rods:
    """The first three peaks of S(q) ("rods" of a q_parallel cut).

    Attributes
    ----------
    q_per_L : ndarray, shape (3,)
        Fitted positions q1 < q2 < q3, in 1/L; NaN where fewer peaks were found.
    q_err_per_L : ndarray, shape (3,)
        Their 1-sigma fit errors, in 1/L (NaN where unknown).
    ok : bool
        True when at least q1 was fitted.
    message : str
        Why not ok, or which rods are missing.
    """

    q_per_L: NDArray[np.float64]
    q_err_per_L: NDArray[np.float64]
    ok: bool
    message: str = ""

    @property
    def ratio_q2_q1(self) -> float:
        """q2 / q1 (sqrt 2 square, sqrt 3 hexagonal); NaN if either is missing."""
        return float(self.q_per_L[1] / self.q_per_L[0])

    def per_nm(self, *, contact_nm: float, contact_L: float = 1.0) -> NDArray[np.float64]:
        """Rod positions in nm^-1; see `rods_per_nm`."""
        return rods_per_nm(self.q_per_L, contact_nm=contact_nm, contact_L=contact_L)


def rods_per_nm(
    q_per_L: NDArray[np.float64], *, contact_nm: float, contact_L: float = 1.0
) -> NDArray[np.float64]:
    """Convert q from 1/L to nm^-1 with the nanocrystals' contact distance.

    The hard core is an effective size: one length ``contact_L`` of the model (the
    face-to-face centre-to-centre distance, 1 L for a truncated square of edge L) is
    the measured centre-to-centre contact distance ``contact_nm`` of the nanocrystals.

    Parameters
    ----------
    q_per_L : ndarray
        q in 1/L.
    contact_nm : float
        Centre-to-centre contact distance of the nanocrystals, in nm (> 0).
    contact_L : float, optional
        The same distance in model units L.

    Returns
    -------
    ndarray
        q in nm^-1, same shape.

    Raises
    ------
    SimulationError
        If a distance is not positive.

    Examples
    --------
    >>> round(float(rods_per_nm(np.array([2 * np.pi]), contact_nm=7.6)[0]), 3)
    0.827
    """
    if not (np.isfinite(contact_nm) and contact_nm > 0 and contact_L > 0):
        msg = (
            f"contact distance must be > 0, got contact_nm={contact_nm!r}, contact_L={contact_L!r}"
        )
        raise SimulationError(msg)
    return np.asarray(q_per_L, dtype=np.float64) * (contact_L / contact_nm)


def fit_rods(sq: StructureFactor, *, settings: RodSettings | None = None) -> Rods:
    """Find and fit the first three peaks of S(q) with lmfit pseudo-Voigt profiles.

    q1 is the first peak (of the smoothed S(q)) above ``q_search_min_per_L`` with a
    prominence of at least ``min_prominence`` (not the highest: a strained crystal's (20)
    rod can outgrow its (10)); q2 and q3 are the next peaks above it whose prominence
    reaches ``min_relative_prominence`` of q1's and ``min_later_prominence``. Each is
    fitted alone with a pseudo-Voigt plus a line over a window of +- ``window_fraction``
    of its position.

    Parameters
    ----------
    sq : StructureFactor
        From `structure_factor`.
    settings : RodSettings, optional
        Search and fit settings; the defaults when None.

    Returns
    -------
    Rods
        ``ok`` False (with a message) when no peak was found; a fit that fails keeps the
        grid position of its peak with a NaN error.

    Examples
    --------
    >>> q = np.linspace(3, 12, 500)
    >>> s = 1 + 5 * np.exp(-((q - 6.3) ** 2) / 0.02) + 2 * np.exp(-((q - 8.9) ** 2) / 0.02)
    >>> rods = fit_rods(StructureFactor(q, s, q_min_valid_per_L=0.2))
    >>> np.round(rods.q_per_L, 2).tolist(), round(rods.ratio_q2_q1, 3)
    ([6.3, 8.9, nan], 1.413)
    """
    cfg = settings or RodSettings()
    q_all = np.asarray(sq.q_per_L, dtype=np.float64)
    s_all = np.asarray(sq.s, dtype=np.float64)
    inside = q_all >= max(cfg.q_search_min_per_L, sq.q_min_valid_per_L)
    q, s = q_all[inside], s_all[inside]
    nan3 = np.full(3, np.nan)
    if q.size < 5:
        return Rods(nan3, nan3.copy(), ok=False, message="no valid q above the search minimum")
    dq = float(q[1] - q[0])
    sigma_per_L = cfg.smoothing_fraction * sq.q_min_valid_per_L
    smooth = gaussian_filter1d(s, sigma_per_L / dq) if sigma_per_L > dq / 4 else s
    # candidates down to the weaker floor of the higher rods: a single find_peaks at
    # min_prominence dropped the (11) rod of thermal square crystals and took (20) as q2
    peaks, props = find_peaks(smooth, prominence=cfg.min_later_prominence)
    prominences = props["prominences"]
    strong = np.flatnonzero(prominences >= cfg.min_prominence)
    if strong.size == 0:
        msg = f"no peak of S(q) with prominence >= {cfg.min_prominence} above q = {q[0]:.2f}/L"
        return Rods(nan3, nan3.copy(), ok=False, message=msg)
    first = int(strong[0])
    floor = max(cfg.min_later_prominence, cfg.min_relative_prominence * prominences[first])
    keep = [first] + [i for i in range(first + 1, peaks.size) if prominences[i] >= floor]
    chosen = peaks[keep[:3]]
    centres = nan3.copy()
    errors = nan3.copy()
    for n, index in enumerate(chosen):
        left = q[chosen[n - 1]] if n > 0 else -np.inf
        right = q[chosen[n + 1]] if n + 1 < chosen.size else np.inf
        centres[n], errors[n] = _fit_peak(q, s, float(q[index]), left, right, cfg)
    message = "" if chosen.size == 3 else f"only {chosen.size} of 3 rods found"
    return Rods(centres, errors, ok=True, message=message)


def _fit_peak(
    q: NDArray[np.float64],
    s: NDArray[np.float64],
    q_peak: float,
    q_left: float,
    q_right: float,
    cfg: RodSettings,
) -> tuple[float, float]:
    """Pseudo-Voigt + line fit of one peak; (centre, stderr) in 1/L."""
    half = cfg.window_fraction * q_peak
    lo = max(q_peak - half, 0.5 * (q_peak + q_left))
    hi = min(q_peak + half, 0.5 * (q_peak + q_right))
    sel = (q >= lo) & (q <= hi)
    if np.count_nonzero(sel) < 6:
        return q_peak, np.nan
    x, y = q[sel], s[sel]
    model = lmfit.models.PseudoVoigtModel() + lmfit.models.LinearModel()
    base = float(min(y[0], y[-1]))
    width = max((hi - lo) / 6.0, float(x[1] - x[0]))
    params = model.make_params(
        center={"value": q_peak, "min": lo, "max": hi},
        sigma={"value": width, "min": float(x[1] - x[0]) / 2, "max": hi - lo},
        amplitude={"value": max(float(y.max()) - base, 1e-6) * width * 2.5, "min": 0},
        fraction={"value": 0.5, "min": 0, "max": 1},
        slope=0.0,
        intercept=base,
    )
    result = model.fit(y, params, x=x)
    centre = result.params["center"]
    if not result.success or centre.value is None:
        return q_peak, np.nan
    err = centre.stderr if centre.stderr is not None else np.nan
    return float(centre.value), float(err)


@dataclass(frozen=True, slots=True)
class StateObservables:
    """Scalar observables of one configuration (one row of a run's trajectory).

    Attributes
    ----------
    packing_fraction : float
        N * particle area / box area.
    energy_per_particle_kT : float
        Total patch energy / N, in kT.
    bonds_per_particle : float
        Patch bonds per particle (each bond shared by two particles counts for both:
        2 * n_bonds / N).
    psi4_local, psi6_local, psi4_global, psi6_global : float
        See `ParticleOrder`.
    classification : Classification
        Phase and label fractions.
    """

    packing_fraction: float
    energy_per_particle_kT: float
    bonds_per_particle: float
    psi4_local: float
    psi6_local: float
    psi4_global: float
    psi6_global: float
    classification: Classification = field(repr=False)


def measure_state(
    positions_L: NDArray[np.float64],
    box_L: NDArray[np.float64],
    *,
    particle_area_L2: float,
    energy_kT: float,
    n_bonds: int,
    settings: ClassificationSettings | None = None,
) -> tuple[StateObservables, ParticleOrder]:
    """All scalar observables of one configuration.

    Parameters
    ----------
    positions_L : ndarray, shape (N, 2)
        Particle centres, in L.
    box_L : ndarray, shape (2,)
        Box side lengths, in L.
    particle_area_L2 : float
        Area of one particle, in L^2.
    energy_kT : float
        Total potential energy, in kT (from the engine).
    n_bonds : int
        Number of bonded patch pairs (from the engine).
    settings : ClassificationSettings, optional
        Neighbour cut-off and thresholds.

    Returns
    -------
    tuple of (StateObservables, ParticleOrder)
        The scalars and the per-particle order they came from.
    """
    order = bond_order(positions_L, box_L, settings=settings)
    n = order.psi4.size
    area = float(np.prod(np.asarray(box_L, dtype=np.float64)))
    observables = StateObservables(
        packing_fraction=n * particle_area_L2 / area,
        energy_per_particle_kT=energy_kT / n,
        bonds_per_particle=2.0 * n_bonds / n,
        psi4_local=order.psi4_local,
        psi6_local=order.psi6_local,
        psi4_global=order.psi4_global,
        psi6_global=order.psi6_global,
        classification=classify(order, settings=settings),
    )
    return observables, order


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """Everything a state-point run records: settings, trajectory, snapshots, final state.

    Attributes
    ----------
    settings : dict of str to (float, int, str or bool)
        Flat model and Monte Carlo settings, e.g. ``patch_ratio``, ``eps_kT``,
        ``n_particles``, ``n_sweeps`` (written to the run file as they are).
    seed : int
        Seed of the run's random generator.
    version : str
        insitu-gixs version that made the run.
    records : dict of str to ndarray, each shape (n_records,)
        Per-sweep records of the engine (``sweep``, energy, acceptance, ...).
    snapshot_sweeps : ndarray of int64, shape (F,)
        Sweep index of each snapshot.
    snapshot_positions_L : ndarray, shape (F, N, 2)
        Particle centres, in L.
    snapshot_angles_rad : ndarray, shape (F, N)
        Particle orientations, in rad.
    snapshot_box_L : ndarray, shape (F, 2)
        Box side lengths, in L.
    snapshot_observables : dict of str to ndarray, each shape (F,)
        `StateObservables` fields of each snapshot (``phase`` as str).
    final : StateObservables
        Observables of the final configuration.
    final_label_codes : ndarray of int8, shape (N,)
        Particle labels of the final configuration (index into `PARTICLE_LABELS`).
    structure_factor : StructureFactor
        S(q) of the final configuration(s).
    rods : Rods
        Its fitted rods.
    """

    settings: dict[str, float | int | str | bool]
    seed: int
    version: str
    records: dict[str, NDArray[np.float64]]
    snapshot_sweeps: NDArray[np.int64]
    snapshot_positions_L: NDArray[np.float64]
    snapshot_angles_rad: NDArray[np.float64]
    snapshot_box_L: NDArray[np.float64]
    snapshot_observables: dict[str, NDArray[np.float64] | NDArray[np.str_]]
    final: StateObservables
    final_label_codes: NDArray[np.int8]
    structure_factor: StructureFactor
    rods: Rods

    @property
    def patch_ratio(self) -> float:
        """Px/Fx of the run."""
        return float(self.settings["patch_ratio"])

    @property
    def eps_kT(self) -> float:
        """Patch well depth of the run, in kT."""
        return float(self.settings["eps_kT"])

    @property
    def contact_L(self) -> float:
        """Face-to-face contact distance of two particles, in L (the edge length)."""
        return float(self.settings.get("edge_L", 1.0))

    @property
    def label(self) -> str:
        """Short name of the state point, e.g. ``Px/Fx=0.1 eps=6kT``."""
        return f"Px/Fx={self.patch_ratio:g} eps={self.eps_kT:g}kT"
