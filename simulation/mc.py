"""Metropolis Monte Carlo of patchy hard truncated squares in a periodic plane (NVT, NPT).

Moves
-----
* Single-particle translations and rotations about the vertical axis (half of each),
  Metropolis, over a cell list with checkerboard domain decomposition: each sweep the cell
  grid is shifted by a random vector, the cells are coloured 2 x 2, and the four colours are
  visited in a random order; within one colour every active cell makes as many trial moves
  as it holds particles, on its own random stream, and a move that would leave its cell is
  rejected. Active cells of one colour are a full cell apart, so they run in parallel
  (numba ``prange``) and the result does not depend on the number of threads.
* Cluster moves (``cluster_move_every``): a seed particle is picked at random and bonded
  neighbours are added with probability ``1 - exp(-eps n_ij)`` (``n_ij`` bonds of the pair),
  recursively; the cluster is translated, or rotated about its centre, rigidly. With this
  link probability the Boltzmann factor of the bonds made or broken at the cluster's
  boundary cancels the probability of (not) linking them, so the move is accepted whenever
  it creates no overlap and it obeys detailed balance exactly (the bonded-pair analogue of
  the Swendsen-Wang/Wolff construction). Rotations of a cluster that wraps the periodic
  box are rejected. Whole aggregates diffuse, meet and merge this way at eps ~ 6 kT, where
  single-particle moves freeze.
* NPT volume moves (every ``volume_move_every`` sweeps): a random-walk step in ``ln V``,
  isotropic or along one box axis (so a square or a rectangular cell of the crystal can
  fit), positions scaled affinely, accepted with
  ``min(1, exp(-P dV + (N + 1) ln(V'/V) - dU))``.

Step sizes are tuned towards ``target_acceptance`` during the first ``tune_sweeps``
sweeps and then frozen, so the production part is a proper Markov chain.

Random numbers come from counter-based SplitMix64 streams keyed on (seed, sweep, phase,
cell), so a run is fully reproduced by its seed on any number of threads.

Bookkeeping: the bond count (energy ``-eps * n_bonds``) is tracked incrementally; after
every run it is checked against a full recount (`total_energy`) and the final state
against `count_overlaps`, and a mismatch raises `SimulationError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from detectors.errors import SimulationError
from simulation.shape import Patches, TruncatedSquare, close_packed_fraction

__all__ = [
    "MCModel",
    "MCResult",
    "MCSettings",
    "MCState",
    "SweepRecords",
    "count_bonds",
    "count_overlaps",
    "fluid_start",
    "initial_state",
    "run_mc",
    "total_energy",
]

MIN_CELLS_PER_SIDE = 4  # 2 x 2 checkerboard with a full inactive cell between active ones


@dataclass(frozen=True, slots=True)
class MCModel:
    """The interaction model: hard truncated squares, optionally with patches.

    Parameters
    ----------
    shape : TruncatedSquare
        Particle shape (default: regular octagon of edge 1 L).
    patches : Patches or None
        Facet patches; None for hard particles.

    Examples
    --------
    >>> m = MCModel(patches=Patches(ratio=0.1, eps_kT=6.0))
    >>> round(m.interaction_range_L, 4)
    1.1008
    """

    shape: TruncatedSquare = field(default_factory=TruncatedSquare)
    patches: Patches | None = None

    @property
    def interaction_range_L(self) -> float:
        """Largest centre distance at which two particles interact (overlap or bond), in L."""
        from simulation import _kernels

        return float(self._geometry()[_kernels.G_RCUT])

    @property
    def eps_kT(self) -> float:
        """Well depth per bond, in kT (0 without patches)."""
        return 0.0 if self.patches is None else self.patches.eps_kT

    def _geometry(self) -> NDArray[np.float64]:
        return self.shape._geometry(self.patches)


@dataclass(frozen=True, slots=True)
class MCState:
    """A configuration in a periodic rectangular box with its origin at (0, 0).

    Parameters
    ----------
    positions_L : ndarray, shape (N, 2)
        Particle centres, in L, wrapped into ``[0, box_L)``.
    angles_rad : ndarray, shape (N,)
        Orientation of each particle (angle of its first facet normal from x), in rad.
    box_L : ndarray, shape (2,)
        Box side lengths, in L.

    Raises
    ------
    SimulationError
        If the shapes disagree, values are not finite or the box is not positive.
    """

    positions_L: NDArray[np.float64]
    angles_rad: NDArray[np.float64]
    box_L: NDArray[np.float64]

    def __post_init__(self) -> None:
        pos = np.asarray(self.positions_L, dtype=np.float64)
        ang = np.asarray(self.angles_rad, dtype=np.float64)
        box = np.asarray(self.box_L, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != 2 or ang.shape != (pos.shape[0],) or box.shape != (2,):
            msg = (
                "MCState: expected positions_L (N, 2), angles_rad (N,), box_L (2,); got "
                f"{pos.shape}, {ang.shape}, {box.shape}"
            )
            raise SimulationError(msg)
        if not (np.isfinite(pos).all() and np.isfinite(ang).all() and (box > 0).all()):
            msg = "MCState: positions and angles must be finite and box_L > 0"
            raise SimulationError(msg)
        object.__setattr__(self, "positions_L", pos)
        object.__setattr__(self, "angles_rad", ang)
        object.__setattr__(self, "box_L", box)

    @property
    def n_particles(self) -> int:
        """Number of particles N."""
        return int(self.positions_L.shape[0])

    def packing_fraction(self, shape: TruncatedSquare) -> float:
        """Area fraction ``N A / (Lx Ly)``."""
        return self.n_particles * shape.area / float(np.prod(self.box_L))


@dataclass(frozen=True, slots=True)
class MCSettings:
    """How to run: ensemble, pressure, move mix, step tuning.

    Parameters
    ----------
    ensemble : {"NVT", "NPT"}
        Fixed box, or fixed pressure with volume moves.
    pressure_kT_per_L2 : float or None
        Reduced pressure ``P L^2 / kT`` (required, > 0, for NPT).
    target_acceptance : float
        Acceptance that the step-size tuning aims at, in (0, 1).
    tune_sweeps : int
        Sweeps at the start of the run during which step sizes are adjusted (every 10
        sweeps); frozen afterwards.
    translation_step_L : float
        Initial maximal single-particle displacement per axis, in L.
    rotation_step_rad : float
        Initial maximal single-particle rotation, in rad.
    cluster_move_every : int
        Sweeps between rounds of cluster moves; 0 disables them (they are also skipped for
        hard particles, where every cluster is one particle).
    cluster_moves_per_particle : float
        Cluster moves per round, as a fraction of N (at least one).
    cluster_max_size : int or None
        Largest cluster that a cluster move may move (>= 1); a bigger one is rejected as it
        grows, which keeps detailed balance and bounds the cost of a move. None: no cap.
    cluster_drag : bool
        Move a cluster of s members with probability 1 / s (a cap drawn per move), so that
        big aggregates diffuse more slowly, as under a Stokes drag, and a move costs about
        ln s instead of s particle scans.
    cluster_translation_L, cluster_rotation_rad : float
        Initial maximal cluster displacement (L) and rotation (rad; divided by the
        cluster's radius of gyration in L when that is above 1).
    volume_move_every : int
        Sweeps between volume moves in NPT (>= 1).
    log_volume_step : float
        Initial maximal step in ``ln V`` (or ``ln Lx``/``ln Ly``) of a volume move.
    anisotropic_volume : bool
        Also try volume moves that change only one side of the box (half of them).

    Raises
    ------
    SimulationError
        If a value is out of range or NPT has no positive pressure.
    """

    ensemble: Literal["NVT", "NPT"] = "NVT"
    pressure_kT_per_L2: float | None = None
    target_acceptance: float = 0.3
    tune_sweeps: int = 500
    translation_step_L: float = 0.1
    rotation_step_rad: float = 0.1
    cluster_move_every: int = 1
    cluster_moves_per_particle: float = 1.0 / 16.0
    cluster_max_size: int | None = None
    cluster_drag: bool = True
    cluster_translation_L: float = 0.2
    cluster_rotation_rad: float = 0.1
    volume_move_every: int = 1
    log_volume_step: float = 0.01
    anisotropic_volume: bool = True

    def __post_init__(self) -> None:
        if self.ensemble not in ("NVT", "NPT"):
            msg = f"MCSettings: ensemble must be 'NVT' or 'NPT', got {self.ensemble!r}"
            raise SimulationError(msg)
        if self.ensemble == "NPT" and not (
            self.pressure_kT_per_L2 is not None
            and math.isfinite(self.pressure_kT_per_L2)
            and self.pressure_kT_per_L2 > 0
        ):
            msg = (
                "MCSettings: NPT needs pressure_kT_per_L2 > 0 (reduced pressure P L^2/kT), got "
                f"{self.pressure_kT_per_L2!r}"
            )
            raise SimulationError(msg)
        if not 0 < self.target_acceptance < 1:
            msg = f"MCSettings: target_acceptance must be in (0, 1), got {self.target_acceptance!r}"
            raise SimulationError(msg)
        for name in ("tune_sweeps", "cluster_move_every"):
            if getattr(self, name) < 0:
                msg = f"MCSettings: {name} must be >= 0, got {getattr(self, name)!r}"
                raise SimulationError(msg)
        if self.cluster_max_size is not None and self.cluster_max_size < 1:
            msg = (
                f"MCSettings: cluster_max_size must be >= 1 or None, got {self.cluster_max_size!r}"
            )
            raise SimulationError(msg)
        if self.volume_move_every < 1:
            msg = f"MCSettings: volume_move_every must be >= 1, got {self.volume_move_every!r}"
            raise SimulationError(msg)
        for name in (
            "translation_step_L",
            "rotation_step_rad",
            "cluster_moves_per_particle",
            "cluster_translation_L",
            "cluster_rotation_rad",
            "log_volume_step",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                msg = f"MCSettings: {name} must be a finite number > 0, got {value!r}"
                raise SimulationError(msg)


@dataclass(frozen=True, slots=True)
class SweepRecords:
    """Per-sweep observables, one entry per recorded sweep (every ``record_every``).

    Acceptances are the fraction of the moves of that kind accepted since the previous
    record (NaN where none was tried); step sizes are those in force at the record.

    Attributes
    ----------
    sweep : ndarray of int64, shape (R,)
        Sweep index (1-based: the state after that many sweeps).
    energy_per_particle_kT, bonds_per_particle, packing_fraction : ndarray, shape (R,)
        ``-eps n_bonds / N``, ``2 n_bonds / N`` and ``N A / V``.
    n_bonds : ndarray of int64, shape (R,)
        Number of bonds (overlapping patch-rectangle pairs).
    box_x_L, box_y_L : ndarray, shape (R,)
        Box sides, in L.
    acceptance_translation, acceptance_rotation : ndarray, shape (R,)
        Acceptance fractions of single-particle moves.
    acceptance_cluster, acceptance_volume : ndarray, shape (R,)
        Acceptance fractions of cluster and volume moves.
    translation_step_L, rotation_step_rad, log_volume_step : ndarray, shape (R,)
        Step sizes.
    mean_cluster_size : ndarray, shape (R,)
        Mean size of the clusters moved since the previous record (NaN where none).
    tuning : ndarray of bool, shape (R,)
        Whether the record lies in the step-tuning part of the run.
    """

    sweep: NDArray[np.int64]
    energy_per_particle_kT: NDArray[np.float64]
    bonds_per_particle: NDArray[np.float64]
    n_bonds: NDArray[np.int64]
    packing_fraction: NDArray[np.float64]
    box_x_L: NDArray[np.float64]
    box_y_L: NDArray[np.float64]
    acceptance_translation: NDArray[np.float64]
    acceptance_rotation: NDArray[np.float64]
    acceptance_cluster: NDArray[np.float64]
    acceptance_volume: NDArray[np.float64]
    translation_step_L: NDArray[np.float64]
    rotation_step_rad: NDArray[np.float64]
    log_volume_step: NDArray[np.float64]
    mean_cluster_size: NDArray[np.float64]
    tuning: NDArray[np.bool_]

    def as_dict(self) -> dict[str, NDArray[np.float64]]:
        """All columns as float64 arrays keyed by field name (for writing to files)."""
        return {
            name: np.asarray(getattr(self, name), dtype=np.float64)
            for name in self.__dataclass_fields__
        }

    def __len__(self) -> int:
        return int(self.sweep.size)


@dataclass(frozen=True, slots=True)
class MCResult:
    """The outcome of `run_mc`.

    Attributes
    ----------
    state : MCState
        Final configuration.
    records : SweepRecords
        Per-sweep observables.
    snapshots : tuple of (int, MCState)
        ``(sweep, state)`` every ``snapshot_every`` sweeps (the final state included).
    seed : int
        Seed of the run's random streams: ``run_mc(..., rng=result.seed)`` repeats the run.
    energy_kT : float
        Final potential energy, in kT (checked against a full recount).
    n_bonds : int
        Final number of bonds.
    acceptance : dict of str to float
        Acceptance of each move kind over the production (post-tuning) sweeps
        (``translation``, ``rotation``, ``cluster``, ``volume``; NaN if none tried).
    translation_step_L, rotation_step_rad : float
        Final (tuned) single-particle step sizes, in L and rad.
    cluster_translation_L, cluster_rotation_rad, log_volume_step : float
        Final (tuned) cluster and volume step sizes.
    n_sweeps : int
        Sweeps run.
    n_trial_moves : int
        Single-particle trial moves attempted (translations + rotations, rejected included).
    """

    state: MCState
    records: SweepRecords
    snapshots: tuple[tuple[int, MCState], ...]
    seed: int
    energy_kT: float
    n_bonds: int
    acceptance: dict[str, float]
    translation_step_L: float
    rotation_step_rad: float
    cluster_translation_L: float
    cluster_rotation_rad: float
    log_volume_step: float
    n_sweeps: int
    n_trial_moves: int


def initial_state(
    n: int,
    packing_fraction: float,
    model: MCModel,
    *,
    rng: np.random.Generator | int | None = None,
    aspect: float = 1.0,
) -> MCState:
    """A non-overlapping start: a square lattice with random orientations and small jitter.

    Parameters
    ----------
    n : int
        Number of particles.
    packing_fraction : float
        Area fraction ``N A / V``; must be below the close-packed limit. Above
        ``A / (2 R)^2`` (0.707 for the regular octagon) the particles are aligned.
    model : MCModel
        The model (its shape sets the area and the lattice spacing).
    rng : numpy.random.Generator or int or None
        Random source for orientations and jitter.
    aspect : float
        Box aspect ratio ``Lx / Ly``.

    Returns
    -------
    MCState
        The configuration, checked to have no overlap.

    Raises
    ------
    SimulationError
        If `packing_fraction` is not in (0, close-packed limit), or the box would be too
        small for the cell list (see `check_box`).

    Examples
    --------
    >>> s = initial_state(64, 0.3, MCModel(), rng=1)
    >>> s.positions_L.shape, round(s.packing_fraction(MCModel().shape), 3)
    ((64, 2), 0.3)
    """
    if n < 1:
        msg = f"initial_state: n must be >= 1, got {n!r}"
        raise SimulationError(msg)
    shape = model.shape
    limit = close_packed_fraction(shape)
    if not (math.isfinite(packing_fraction) and 0 < packing_fraction < limit):
        msg = (
            f"initial_state: packing_fraction must be in (0, {limit:.4f}) (close packing of "
            f"these truncated squares), got {packing_fraction!r}"
        )
        raise SimulationError(msg)
    if not (math.isfinite(aspect) and aspect > 0):
        msg = f"initial_state: aspect must be > 0, got {aspect!r}"
        raise SimulationError(msg)
    generator = np.random.default_rng(rng)
    area = n * shape.area / packing_fraction
    box = np.array([math.sqrt(area * aspect), math.sqrt(area / aspect)])
    check_box(box, model)
    n_x = max(1, math.ceil(math.sqrt(n * aspect)))
    n_y = math.ceil(n / n_x)
    spacing = box / np.array([n_x, n_y])
    free = spacing - 2.0 * shape.circumradius
    aligned = bool((free <= 0).any())
    if aligned and float(spacing.min()) <= shape.edge_L:
        msg = (
            f"initial_state: packing_fraction {packing_fraction} is too dense for a lattice start "
            f"of {n} particles in a box of aspect {aspect}; start lower and compress with NPT"
        )
        raise SimulationError(msg)
    sites = np.stack(np.meshgrid(np.arange(n_x), np.arange(n_y), indexing="xy"), -1).reshape(-1, 2)
    chosen = np.sort(generator.choice(sites.shape[0], size=n, replace=False))
    positions = (sites[chosen] + 0.5) * spacing
    if aligned:
        angles = np.zeros(n)
        jitter = 0.5 * (spacing - shape.edge_L)
    else:
        angles = generator.uniform(0.0, 2.0 * math.pi, n)
        jitter = 0.5 * free
    positions = positions + generator.uniform(-1.0, 1.0, (n, 2)) * 0.9 * jitter
    state = MCState(np.mod(positions, box), angles, box)
    if count_overlaps(state, model):
        msg = "initial_state: the lattice start overlaps (a bug); please report"
        raise SimulationError(msg)
    return state


def fluid_start(
    n: int,
    packing_fraction: float,
    shape: TruncatedSquare,
    *,
    rng: int,
    dilute_packing_fraction: float = 0.3,
    melt_sweeps: int = 1000,
    relax_sweeps: int = 20,
    max_rounds: int = 5000,
) -> MCState:
    """A hard-particle fluid at `packing_fraction`, made from a dilute start.

    As the evaporating solvent does in the experiment: `initial_state` at
    `dilute_packing_fraction`, melted by `melt_sweeps` NVT sweeps of hard particles, then
    compressed in rounds of `relax_sweeps` hard sweeps each followed by the largest
    shrink of the box (centres scaled with it) of up to 2 % in packing fraction that
    makes no overlap, halving the step until one does, until `packing_fraction` is
    reached. The lattice start leaves no memory, so the patches, switched on afterwards,
    choose the superlattice themselves.

    Parameters
    ----------
    n : int
        Number of particles.
    packing_fraction : float
        Target area fraction; at or below `dilute_packing_fraction` only the melt is run.
    shape : TruncatedSquare
        Particle shape.
    rng : int
        Seed (>= 0) of the lattice start and of the melt and compression runs.
    dilute_packing_fraction : float
        Packing fraction of the lattice start.
    melt_sweeps : int
        Hard-particle NVT sweeps at the dilute density (>= 1).
    relax_sweeps : int
        Hard-particle sweeps before each shrink of the box (>= 1).
    max_rounds : int
        Most rounds of relaxing and shrinking.

    Returns
    -------
    MCState
        Without overlaps, in a square box, at `packing_fraction`.

    Raises
    ------
    SimulationError
        If the densities cannot be packed, the box is too small for N, or the target is
        not reached in `max_rounds` rounds.

    Examples
    --------
    >>> shape = TruncatedSquare(corner_leg_c=0.1)
    >>> s = fluid_start(64, 0.5, shape, rng=1, melt_sweeps=50)
    >>> round(s.packing_fraction(shape), 9), count_overlaps(s, MCModel(shape))
    (0.5, 0)
    """
    if melt_sweeps < 1 or relax_sweeps < 1:
        msg = f"fluid_start: need melt_sweeps, relax_sweeps >= 1, got {melt_sweeps}, {relax_sweeps}"
        raise SimulationError(msg)
    hard = MCModel(shape)
    seeds = np.random.SeedSequence(rng).generate_state(3)
    dilute = min(packing_fraction, dilute_packing_fraction)
    state = initial_state(n, dilute, hard, rng=int(seeds[0]))
    state = run_mc(state, hard, melt_sweeps, rng=int(seeds[1]), record_every=melt_sweeps).state
    stream = np.random.default_rng(int(seeds[2]))
    for _ in range(max_rounds):
        now = state.packing_fraction(shape)
        if now >= packing_fraction:
            break
        state = run_mc(state, hard, relax_sweeps, rng=stream, record_every=relax_sweeps).state
        step = _MAX_SHRINK
        while step > _MIN_SHRINK:
            trial = _scaled(state, math.sqrt(now / min(packing_fraction, now * (1 + step))))
            if not count_overlaps(trial, hard):
                state = trial
                break
            step /= 2
    else:
        msg = (
            f"fluid_start: compression reached packing {state.packing_fraction(shape):.4f} < "
            f"{packing_fraction:g} in {max_rounds} rounds; start less dense"
        )
        raise SimulationError(msg)
    return state


_MAX_SHRINK = 0.02
_MIN_SHRINK = 1e-7


def _scaled(state: MCState, factor: float) -> MCState:
    """`state` with its box and centres scaled by `factor`."""
    return MCState(state.positions_L * factor, state.angles_rad, state.box_L * factor)


def check_box(box_L: NDArray[np.float64], model: MCModel) -> None:
    """Refuse a box too small for the checkerboard cell list.

    The box must hold at least `MIN_CELLS_PER_SIDE` cells of the interaction range per side.

    Parameters
    ----------
    box_L : ndarray, shape (2,)
        Box sides, in L.
    model : MCModel
        The model (sets the interaction range).

    Raises
    ------
    SimulationError
        If a side is shorter than ``MIN_CELLS_PER_SIDE * model.interaction_range_L``.
    """
    minimum = MIN_CELLS_PER_SIDE * model.interaction_range_L
    if float(np.min(box_L)) < minimum:
        msg = (
            f"box {np.round(box_L, 3).tolist()} L is too small for the cell list: each side must "
            f"be >= {MIN_CELLS_PER_SIDE} interaction ranges = {minimum:.3f} L; use more particles"
            " or a lower packing fraction"
        )
        raise SimulationError(msg)


def run_mc(
    state: MCState,
    model: MCModel,
    n_sweeps: int,
    *,
    settings: MCSettings | None = None,
    rng: np.random.Generator | int | None = None,
    record_every: int = 1,
    snapshot_every: int = 0,
    progress: Callable[[int], None] | None = None,
) -> MCResult:
    """Run Monte Carlo sweeps from `state` (one sweep = N single-particle trial moves).

    Parameters
    ----------
    state : MCState
        Start configuration; must have no overlap.
    model : MCModel
        Shape and patches.
    n_sweeps : int
        Number of sweeps (> 0); the first ``settings.tune_sweeps`` of them tune step sizes.
    settings : MCSettings, optional
        Ensemble and move settings (default NVT).
    rng : numpy.random.Generator or int or None
        An int is used as the seed; a Generator draws the seed; None draws fresh entropy.
        The seed used is in `MCResult.seed`.
    record_every : int
        Sweeps between `SweepRecords` rows (>= 1).
    snapshot_every : int
        Sweeps between snapshots (0: only the final state).
    progress : callable, optional
        Called with the number of sweeps done, every ``max(record_every, 100)`` sweeps or so.

    Returns
    -------
    MCResult
        Final state, records, snapshots, seed, acceptances and step sizes.

    Raises
    ------
    SimulationError
        If the settings or state cannot be run (overlapping start, box too small, density
        above close packing), or if the incremental energy disagrees with a recount at the
        end (a bug).

    Examples
    --------
    >>> model = MCModel(patches=Patches(ratio=0.5, eps_kT=2.0))
    >>> res = run_mc(initial_state(64, 0.3, model, rng=0), model, 20, rng=1)
    >>> count_overlaps(res.state, model), res.energy_kT == total_energy(res.state, model)
    (0, True)
    """
    from simulation import _kernels as k

    settings = MCSettings() if settings is None else settings
    if n_sweeps < 1 or record_every < 1 or snapshot_every < 0:
        msg = (
            f"run_mc: need n_sweeps >= 1, record_every >= 1, snapshot_every >= 0; got "
            f"{n_sweeps}, {record_every}, {snapshot_every}"
        )
        raise SimulationError(msg)
    shape = model.shape
    limit = close_packed_fraction(shape)
    if state.packing_fraction(shape) >= limit:
        msg = (
            f"run_mc: packing fraction {state.packing_fraction(shape):.4f} is at or above close "
            f"packing ({limit:.4f}) of these truncated squares"
        )
        raise SimulationError(msg)
    check_box(state.box_L, model)
    n_overlaps = count_overlaps(state, model)
    if n_overlaps:
        msg = (
            f"run_mc: the start state has {n_overlaps} overlapping pairs; start from initial_state"
        )
        raise SimulationError(msg)
    seed = _seed_from(rng)
    geometry = model._geometry()
    n = state.n_particles
    x, y, th, box = (a.copy() for a in _arrays(state))
    box = box.copy()
    x = np.mod(x, box[0])
    y = np.mod(y, box[1])
    th = np.mod(th, 2.0 * math.pi)
    co, si = np.cos(th), np.sin(th)
    n_bonds = np.array([count_bonds(state, model)], dtype=np.int64)
    prm = np.zeros(k.P_SIZE)
    prm[k.P_DT] = settings.translation_step_L
    prm[k.P_DR] = settings.rotation_step_rad
    prm[k.P_DCT] = settings.cluster_translation_L
    prm[k.P_DCR] = settings.cluster_rotation_rad
    prm[k.P_DLV] = settings.log_volume_step
    prm[k.P_PRESSURE] = settings.pressure_kT_per_L2 or 0.0
    prm[k.P_NPT] = 1.0 if settings.ensemble == "NPT" else 0.0
    prm[k.P_ANISO] = 1.0 if settings.anisotropic_volume else 0.0
    prm[k.P_CLUSTER_EVERY] = settings.cluster_move_every
    prm[k.P_N_CLUSTER] = max(1, math.ceil(settings.cluster_moves_per_particle * n))
    prm[k.P_CLUSTER_MAX] = n if settings.cluster_max_size is None else settings.cluster_max_size
    prm[k.P_CLUSTER_DRAG] = 1.0 if settings.cluster_drag else 0.0
    prm[k.P_VOLUME_EVERY] = settings.volume_move_every
    tune_until = min(settings.tune_sweeps, n_sweeps)
    progress_every = max(100, record_every)
    stops = {n_sweeps, *range(_TUNE_EVERY, tune_until + 1, _TUNE_EVERY)}
    stops |= set(range(progress_every, n_sweeps, progress_every) if progress else ())
    stops |= set(range(snapshot_every, n_sweeps, snapshot_every) if snapshot_every else ())
    stops |= set(range(_MAX_CHUNK, n_sweeps, _MAX_CHUNK))
    records = _RecordBuilder(record_every, n, shape.area, model.eps_kT, tune_until)
    snapshots: list[tuple[int, MCState]] = []
    production = np.zeros(k.S_SIZE)
    done = 0
    for stop in sorted(stops):
        stats = np.empty((stop - done, k.S_SIZE))
        k.run_sweeps(stop - done, done, np.uint64(seed), x, y, th, co, si, box, geometry, prm,
                     n_bonds, stats)  # fmt: skip
        records.add(done, stats, prm)
        if done >= tune_until:
            production += stats.sum(axis=0)
        done = stop
        if done <= tune_until and done % _TUNE_EVERY == 0:
            _tune(prm, stats, settings.target_acceptance, box, geometry)
        if snapshot_every and done % snapshot_every == 0 and done < n_sweeps:
            snapshots.append((done, MCState(np.column_stack([x, y]), th.copy(), box.copy())))
        if progress is not None:
            progress(done)
    final = MCState(np.column_stack([x, y]), th.copy(), box.copy())
    snapshots.append((n_sweeps, final))
    recount = count_bonds(final, model)
    overlaps_left = count_overlaps(final, model)
    if recount != int(n_bonds[0]) or overlaps_left:
        msg = (
            f"run_mc: bookkeeping failed (tracked {int(n_bonds[0])} bonds, recount {recount}, "
            f"{overlaps_left} overlaps); this is a bug, please report with seed {seed}"
        )
        raise SimulationError(msg)
    return MCResult(
        state=final,
        records=records.build(),
        snapshots=tuple(snapshots),
        seed=seed,
        energy_kT=-model.eps_kT * recount,
        n_bonds=recount,
        acceptance={
            "translation": _ratio(production[k.S_T_ACC], production[k.S_T_ATT]),
            "rotation": _ratio(production[k.S_R_ACC], production[k.S_R_ATT]),
            "cluster": _ratio(production[k.S_C_ACC], production[k.S_C_ATT]),
            "volume": _ratio(production[k.S_V_ACC], production[k.S_V_ATT]),
        },
        translation_step_L=float(prm[k.P_DT]),
        rotation_step_rad=float(prm[k.P_DR]),
        cluster_translation_L=float(prm[k.P_DCT]),
        cluster_rotation_rad=float(prm[k.P_DCR]),
        log_volume_step=float(prm[k.P_DLV]),
        n_sweeps=n_sweeps,
        n_trial_moves=n * n_sweeps,
    )


_TUNE_EVERY = 10
_MAX_CHUNK = 5000


def _seed_from(rng: np.random.Generator | int | None) -> int:
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            msg = f"run_mc: an int seed must be >= 0, got {rng}"
            raise SimulationError(msg)
        return int(rng) % 2**64
    return int(np.random.default_rng(rng).integers(0, 2**63))


def _ratio(accepted: float, attempted: float) -> float:
    return float(accepted / attempted) if attempted > 0 else math.nan


def _tune(
    prm: NDArray[np.float64],
    stats: NDArray[np.float64],
    target: float,
    box: NDArray[np.float64],
    geometry: NDArray[np.float64],
) -> None:
    """Scale each step by (acceptance / target), clipped to [0.7, 1.4], within bounds."""
    from simulation import _kernels as k

    tot = stats.sum(axis=0)
    width = float(np.min(box)) / k.grid_size(float(np.max(box)), geometry[k.G_RCUT], True)
    bounds = {
        k.P_DT: (k.S_T_ACC, k.S_T_ATT, 1e-4, 0.5 * width),
        k.P_DR: (k.S_R_ACC, k.S_R_ATT, 1e-4, math.pi / 4),
        k.P_DCT: (k.S_C_ACC, k.S_C_ATT, 1e-3, width),
        k.P_DCR: (k.S_C_ACC, k.S_C_ATT, 1e-3, math.pi / 4),
        k.P_DLV: (k.S_V_ACC, k.S_V_ATT, 1e-5, 0.1),
    }
    for slot, (i_acc, i_att, low, high) in bounds.items():
        if tot[i_att] > 0:
            factor = min(1.4, max(0.7, (tot[i_acc] / tot[i_att]) / target))
            prm[slot] = min(high, max(low, prm[slot] * factor))


class _RecordBuilder:
    """Aggregates per-sweep kernel statistics into `SweepRecords` rows."""

    def __init__(self, every: int, n: int, area: float, eps: float, tune_until: int) -> None:
        self.every = every
        self.n = n
        self.area = area
        self.eps = eps
        self.tune_until = tune_until
        self.pending: NDArray[np.float64] | None = None
        self.rows: list[NDArray[np.float64]] = []

    def add(self, done: int, stats: NDArray[np.float64], prm: NDArray[np.float64]) -> None:
        from simulation import _kernels as k

        sweeps = np.arange(done + 1, done + 1 + stats.shape[0])
        ends = np.flatnonzero(sweeps % self.every == 0)
        counts = np.cumsum(stats, axis=0)
        if self.pending is not None:
            counts += self.pending
        if ends.size:
            at_end = counts[ends]
            sums = np.diff(at_end, axis=0, prepend=np.zeros((1, k.S_SIZE)))
            sums[:, k.S_BONDS :] = stats[ends][:, k.S_BONDS :]
            steps = np.broadcast_to(prm[[k.P_DT, k.P_DR, k.P_DLV]], (ends.size, 3))
            self.rows.append(np.column_stack([sweeps[ends], sums, steps]))
            self.pending = counts[-1] - at_end[-1]
        else:
            self.pending = counts[-1]

    def build(self) -> SweepRecords:
        from simulation import _kernels as k

        if self.rows:
            table = np.concatenate(self.rows)
        else:
            table = np.zeros((0, k.S_SIZE + 4))
        col = table[:, 1:]
        sweep = table[:, 0].astype(np.int64)
        n_bonds = col[:, k.S_BONDS].astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return SweepRecords(
                sweep=sweep,
                energy_per_particle_kT=-self.eps * n_bonds / self.n,
                bonds_per_particle=2.0 * n_bonds / self.n,
                n_bonds=n_bonds,
                packing_fraction=self.n * self.area / (col[:, k.S_LX] * col[:, k.S_LY]),
                box_x_L=col[:, k.S_LX].copy(),
                box_y_L=col[:, k.S_LY].copy(),
                acceptance_translation=col[:, k.S_T_ACC] / col[:, k.S_T_ATT],
                acceptance_rotation=col[:, k.S_R_ACC] / col[:, k.S_R_ATT],
                acceptance_cluster=col[:, k.S_C_ACC] / col[:, k.S_C_ATT],
                acceptance_volume=col[:, k.S_V_ACC] / col[:, k.S_V_ATT],
                translation_step_L=table[:, -3].copy(),
                rotation_step_rad=table[:, -2].copy(),
                log_volume_step=table[:, -1].copy(),
                mean_cluster_size=col[:, k.S_C_SIZE] / col[:, k.S_C_ATT],
                tuning=sweep <= self.tune_until,
            )


def count_overlaps(state: MCState, model: MCModel) -> int:
    """Number of overlapping particle pairs (minimum image), by a full cell-list recount.

    Parameters
    ----------
    state : MCState
        Configuration.
    model : MCModel
        Shape.

    Returns
    -------
    int
        Overlapping pairs; 0 for a valid hard-particle configuration.
    """
    return _count(state, model, bonds=False)


def count_bonds(state: MCState, model: MCModel) -> int:
    """Number of bonds (overlapping patch-rectangle pairs of distinct particles), recounted.

    Parameters
    ----------
    state : MCState
        Configuration.
    model : MCModel
        Shape and patches (0 without patches).

    Returns
    -------
    int
        Bonds.
    """
    if model.patches is None:
        return 0
    return _count(state, model, bonds=True)


def _count(state: MCState, model: MCModel, *, bonds: bool) -> int:
    from simulation import _kernels

    x, y, th, box = _arrays(state)
    x, y = np.mod(x, box[0]), np.mod(y, box[1])
    g = model._geometry()
    if float(np.min(box)) >= 3.0 * g[_kernels.G_RCUT]:
        co, si = np.cos(th), np.sin(th)
        return int(_kernels.grid_count(x, y, co, si, box[0], box[1], g, bonds, False))
    return int(_kernels.count_pairs(x, y, th, box, g, bonds))


def _arrays(
    state: MCState,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    pos = np.ascontiguousarray(state.positions_L)
    return (
        np.ascontiguousarray(pos[:, 0]),
        np.ascontiguousarray(pos[:, 1]),
        np.ascontiguousarray(state.angles_rad),
        np.ascontiguousarray(state.box_L),
    )


def total_energy(state: MCState, model: MCModel) -> float:
    """Potential energy ``-eps * count_bonds``, in kT, by a full recount.

    Parameters
    ----------
    state : MCState
        Configuration (assumed free of overlaps; see `count_overlaps`).
    model : MCModel
        Shape and patches.

    Returns
    -------
    float
        Energy, in kT.
    """
    return -model.eps_kT * count_bonds(state, model)
