r"""One state point or a grid of them: run, measure, write, and draw the state diagram.

A state point is (Px/Fx, eps/kT) plus the run settings of `RunSettings`. `run_state_point`
runs the Monte Carlo engine (NVT with cluster moves, from a dilute hard-particle fluid
compressed to the target density, see `simulation.mc.fluid_start`) and measures the result
(pure: no files); `run_and_write` also writes the run file and its snapshot PNG;
`run_sweep` does that for a grid in parallel processes, skipping state points whose run
file is already complete, so an interrupted sweep resumes where it stopped.

Reproducing the study (Fig. 5)
------------------------------
From the repository root (the seeds are fixed; 90 s on 2 cores)::

    gixs simulate sweep --patch 0.1 0.8 --eps 2 6 --n 1024 --sweeps 20000 --seed 1 \
        --jobs 2 --out sim/study

Expected: square at Px/Fx = 0.1, eps = 6 (psi4 high, q2/q1 near sqrt 2); hexagonal or
pseudo-hexagonal at Px/Fx = 0.8, eps = 6 (psi6 > psi4, q2/q1 near sqrt 3); fluid at
eps = 2. Measured (packing 0.6, c = 0.1 L):

============  ==========================  =====  =====  ==============  =====
Px/Fx, eps    phase                       psi4   psi6   bonds/particle  q2/q1
============  ==========================  =====  =====  ==============  =====
0.1, 6        square                      0.948  0.285  2.70            1.446
0.8, 6        hexagonal (coexistence)     0.448  0.642  5.45            1.945
0.1, 2        fluid                       0.665  0.618  0.39            1.991
0.8, 2        fluid                       0.585  0.611  2.71            2.037
============  ==========================  =====  =====  ==============  =====

Bonds count both partners (a square lattice has 4, the staggered brick lattice 6). At
Px/Fx = 0.8 the layer is a mosaic of staggered (brick) motifs: psi6 > psi4 and more bonds
than any square lattice, but its q2/q1 (1.92 after 10^5 sweeps) is that of the brick
lattice's split rods, not sqrt 3, and close to a fluid's. `tests/test_sim_findings.py`
runs the four state points at N = 256.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numba
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray
from tqdm import tqdm

from detectors.errors import SimulationError
from simulation import io
from simulation.mc import (
    MCModel,
    MCSettings,
    MCState,
    check_box,
    count_bonds,
    fluid_start,
    run_mc,
)
from simulation.observables import (
    ClassificationSettings,
    RodSettings,
    SimulatedRun,
    StateObservables,
    fit_rods,
    measure_state,
    structure_factor,
)
from simulation.plots import (
    StatePointResult,
    plot_snapshot,
    plot_state_diagram,
    truncated_square_outline,
)
from simulation.shape import Patches, TruncatedSquare, close_packed_fraction

STUDY_CORNER_LEG_C = 0.1  # corner cut of the study runs, in L (see RunSettings)


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything that defines one state-point run.

    Parameters
    ----------
    patch_ratio : float
        Px/Fx, patch length over facet length, in (0, 1].
    eps_kT : float
        Depth of the patch square well, in kT (>= 0).
    n_particles : int
        Number of particles N.
    packing_fraction : float
        Packing fraction of the run (below close packing), kept by NVT; the start is a
        hard-particle fluid compressed to it (see `start_state`).
    dilute_packing_fraction : float
        Packing fraction of the dilute lattice start that is melted and compressed.
    melt_sweeps : int
        Hard-particle sweeps that melt the dilute lattice start.
    n_sweeps : int
        Monte Carlo sweeps (N single-particle trial moves each, plus cluster moves).
    snapshot_every : int
        Sweeps between stored snapshots (the last sweep is always stored).
    record_every : int
        Sweeps between rows of the per-sweep records.
    ensemble : {"NVT", "NPT"}
        NVT (the study) or NPT at ``pressure_kT_per_L2``.
    pressure_kT_per_L2 : float or None
        Reduced pressure ``P L^2 / kT`` for NPT.
    corner_leg_c : float
        Leg of the corner cuts of the particle, in L. The default, `STUDY_CORNER_LEG_C`,
        is a slightly truncated cube (a {100} facet of 0.8 L) on which a patch longer than
        L / 2 (Px/Fx > 0.625) bonds two staggered neighbours; the regular octagon
        (``1 / (2 + sqrt 2)``, facets of 0.41 L) never lets a patch do so.
    depth_delta_L : float
        Patch depth delta, in L.
    seed : int
        Seed of the start and of the run's random streams (>= 0).
    n_sq_snapshots : int
        Number of last snapshots whose S(q) is averaged.
    q_max_per_L : float
        Largest q of S(q), in 1/L.
    n_q : int
        Number of q points of S(q).

    Raises
    ------
    SimulationError
        If a value is out of range (the message names the CLI option to change).
    """

    patch_ratio: float
    eps_kT: float
    n_particles: int = 1024
    packing_fraction: float = 0.6
    dilute_packing_fraction: float = 0.3
    melt_sweeps: int = 1000
    n_sweeps: int = 20000
    snapshot_every: int = 1000
    record_every: int = 10
    ensemble: Literal["NVT", "NPT"] = "NVT"
    pressure_kT_per_L2: float | None = None
    corner_leg_c: float = STUDY_CORNER_LEG_C
    depth_delta_L: float = 0.05
    seed: int = 0
    n_sq_snapshots: int = 3
    q_max_per_L: float = 20.0
    n_q: int = 600

    def __post_init__(self) -> None:
        if not (np.isfinite(self.patch_ratio) and 0 < self.patch_ratio <= 1):
            msg = f"patch ratio Px/Fx must be in (0, 1], got {self.patch_ratio:g} (--patch)"
            raise SimulationError(msg)
        if not (np.isfinite(self.eps_kT) and self.eps_kT >= 0):
            msg = f"eps/kT must be >= 0 (attraction), got {self.eps_kT:g} (--eps)"
            raise SimulationError(msg)
        if self.n_particles < 2:
            msg = f"N must be >= 2 particles, got {self.n_particles} (--n)"
            raise SimulationError(msg)
        if not 0 < self.packing_fraction < 1:
            msg = f"packing fraction must be in (0, 1), got {self.packing_fraction:g} (--packing)"
            raise SimulationError(msg)
        if not 0 < self.dilute_packing_fraction < 1 or self.melt_sweeps < 1:
            msg = (
                "dilute_packing_fraction must be in (0, 1) and melt_sweeps >= 1, got "
                f"{self.dilute_packing_fraction:g} and {self.melt_sweeps}"
            )
            raise SimulationError(msg)
        if self.n_sweeps < 1 or self.snapshot_every < 1 or self.record_every < 1:
            msg = (
                "n_sweeps, snapshot_every and record_every must be >= 1, got "
                f"{self.n_sweeps}, {self.snapshot_every} and {self.record_every}"
            )
            raise SimulationError(msg)
        if self.n_sq_snapshots < 1:
            msg = f"n_sq_snapshots must be >= 1, got {self.n_sq_snapshots}"
            raise SimulationError(msg)
        if self.seed < 0:
            msg = f"seed must be >= 0, got {self.seed} (--seed)"
            raise SimulationError(msg)
        if self.ensemble == "NPT" and self.pressure_kT_per_L2 is None:
            msg = "ensemble NPT needs pressure_kT_per_L2 (e.g. --pressure 2.0)"
            raise SimulationError(msg)

    @property
    def name(self) -> str:
        """File stem of the state point, e.g. ``p0.1_e6``."""
        return f"p{self.patch_ratio:g}_e{self.eps_kT:g}"

    def model(self) -> MCModel:
        """The engine model (shape + patches); raises SimulationError on bad values."""
        shape = TruncatedSquare(edge_L=1.0, corner_leg_c=self.corner_leg_c)
        patches = Patches(self.patch_ratio, self.eps_kT, depth_delta_L=self.depth_delta_L)
        return MCModel(shape, patches)

    def mc_settings(self) -> MCSettings:
        """The engine settings (cluster moves every sweep, the engine's default)."""
        if self.ensemble == "NPT":
            return MCSettings(ensemble="NPT", pressure_kT_per_L2=self.pressure_kT_per_L2)
        return MCSettings(ensemble="NVT")

    def check(self) -> None:
        """Refuse, before any sweep, a state point that cannot be started.

        Raises
        ------
        SimulationError
            If the packing fraction is at or above close packing of the particles, or the
            box at that packing is too small for N (fewer than 4 interaction ranges a side).
        """
        model = self.model()
        limit = close_packed_fraction(model.shape)
        if self.packing_fraction >= limit:
            msg = (
                f"packing fraction {self.packing_fraction:g} is at or above close packing "
                f"({limit:.3f}) of these particles; choose a lower --packing"
            )
            raise SimulationError(msg)
        side = math.sqrt(self.n_particles * model.shape.area / self.packing_fraction)
        check_box(np.array([side, side]), model)

    def start_state(self) -> MCState:
        """The start: a hard-particle fluid compressed from a dilute one, drawn from `seed`.

        See `simulation.mc.fluid_start`; the patches are switched on afterwards.

        Returns
        -------
        MCState

        Raises
        ------
        SimulationError
            As `check`.
        """
        self.check()
        return fluid_start(
            self.n_particles,
            self.packing_fraction,
            self.model().shape,
            rng=self.seed,
            dilute_packing_fraction=self.dilute_packing_fraction,
            melt_sweeps=self.melt_sweeps,
        )


def seed_for(base_seed: int, patch_ratio: float, eps_kT: float) -> int:
    """A seed for one state point of a sweep, independent of the order of the grid.

    Parameters
    ----------
    base_seed : int
        Seed of the sweep.
    patch_ratio, eps_kT : float
        The state point.

    Returns
    -------
    int
        A 32-bit seed.

    Examples
    --------
    >>> seed_for(1, 0.1, 6.0) == seed_for(1, 0.1, 6.0) != seed_for(1, 0.8, 6.0)
    True
    """
    key = [base_seed, round(patch_ratio * 10_000), round(eps_kT * 10_000)]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def run_state_point(
    settings: RunSettings,
    *,
    progress: bool = False,
    classification: ClassificationSettings | None = None,
    rods: RodSettings | None = None,
) -> SimulatedRun:
    """Run the Monte Carlo of one state point and measure it (pure: writes no file).

    Parameters
    ----------
    settings : RunSettings
        The state point and run settings.
    progress : bool, optional
        Show a progress bar over sweeps.
    classification : ClassificationSettings, optional
        Neighbour cut-off and phase thresholds.
    rods : RodSettings, optional
        Peak search and fit of S(q).

    Returns
    -------
    SimulatedRun

    Raises
    ------
    SimulationError
        Before any sweep, for settings that cannot be run (negative eps, patch ratio
        outside (0, 1], a density that cannot be packed, N too small for the box).
    """
    model = settings.model()
    start = settings.start_state()
    bar = tqdm(total=settings.n_sweeps, desc=settings.name, unit="sweep", disable=not progress)
    try:
        result = run_mc(
            start,
            model,
            settings.n_sweeps,
            settings=settings.mc_settings(),
            rng=settings.seed,
            record_every=settings.record_every,
            snapshot_every=settings.snapshot_every,
            progress=lambda done: bar.update(done - bar.n),
        )
    finally:
        bar.close()
    area = float(model.shape.area)
    rows: list[StateObservables] = []
    labels = np.zeros(settings.n_particles, dtype=np.int8)
    for _, state in result.snapshots:
        n_bonds = count_bonds(state, model)
        observables, order = measure_state(
            state.positions_L,
            state.box_L,
            particle_area_L2=area,
            energy_kT=-settings.eps_kT * n_bonds,
            n_bonds=n_bonds,
            settings=classification,
        )
        rows.append(observables)
        labels = order.label_codes
    final_box = result.state.box_L
    last = [s for _, s in result.snapshots[-settings.n_sq_snapshots :]]
    sq = structure_factor(
        [s.positions_L for s in last if np.allclose(s.box_L, final_box)],
        final_box,
        q_max_per_L=settings.q_max_per_L,
        n_q=settings.n_q,
    )
    snapshots = [s for _, s in result.snapshots]
    return SimulatedRun(
        settings=_flat_settings(settings, model),
        seed=result.seed,
        version=io.package_version(),
        records=result.records.as_dict(),
        snapshot_sweeps=np.array([sweep for sweep, _ in result.snapshots], dtype=np.int64),
        snapshot_positions_L=np.array([s.positions_L for s in snapshots], dtype=np.float64),
        snapshot_angles_rad=np.array([s.angles_rad for s in snapshots], dtype=np.float64),
        snapshot_box_L=np.array([s.box_L for s in snapshots], dtype=np.float64),
        snapshot_observables=_snapshot_table(rows),
        final=rows[-1],
        final_label_codes=labels,
        structure_factor=sq,
        rods=fit_rods(sq, settings=rods),
    )


def _flat_settings(settings: RunSettings, model: MCModel) -> dict[str, float | int | str | bool]:
    flat: dict[str, float | int | str | bool] = {
        key: value for key, value in asdict(settings).items() if value is not None
    }
    flat["edge_L"] = float(model.shape.edge_L)
    flat["corner_leg_c"] = float(model.shape.corner_leg_c)
    flat["particle_area_L2"] = float(model.shape.area)
    flat["interaction_range_L"] = model.interaction_range_L
    return flat


def _snapshot_table(
    rows: Sequence[StateObservables],
) -> dict[str, NDArray[np.float64] | NDArray[np.str_]]:
    table: dict[str, NDArray[np.float64] | NDArray[np.str_]] = {
        key: np.array([getattr(row, key) for row in rows], dtype=np.float64)
        for key in (
            "packing_fraction",
            "energy_per_particle_kT",
            "bonds_per_particle",
            "psi4_local",
            "psi6_local",
            "psi4_global",
            "psi6_global",
        )
    }
    table["phase"] = np.array([row.classification.phase for row in rows])
    return table


def snapshot_figure_of(run: SimulatedRun, *, contact_nm: float | None = None) -> Figure:
    """The run's snapshot PNG figure: final particles by local order, and S(q)."""
    outline = truncated_square_outline(
        float(run.settings.get("edge_L", 1.0)), float(run.settings["corner_leg_c"])
    )
    final = run.final
    rods = run.rods
    ratio = rods.ratio_q2_q1
    title = (
        f"{run.label}: {final.classification.phase}, psi4 {final.psi4_local:.2f}, "
        f"psi6 {final.psi6_local:.2f}, q2/q1 {ratio:.3f}"
    )
    if contact_nm is not None:
        title += f", q1 {rods.per_nm(contact_nm=contact_nm)[0]:.3f} nm^-1"
    return plot_snapshot(
        run.snapshot_positions_L[-1],
        run.snapshot_angles_rad[-1],
        run.snapshot_box_L[-1],
        outline_L=outline,
        label_codes=run.final_label_codes,
        title=title,
        structure_factor=run.structure_factor,
        rods_per_L=rods.q_per_L,
    )


def run_and_write(
    settings: RunSettings, out_dir: str | os.PathLike[str], *, progress: bool = False
) -> Path:
    """Run one state point and write ``<out_dir>/<name>.h5`` and ``<name>.png``.

    Parameters
    ----------
    settings : RunSettings
        The state point.
    out_dir : path-like
        Output folder.
    progress : bool, optional
        Show the engine's progress bar.

    Returns
    -------
    Path
        The run file.
    """
    run = run_state_point(settings, progress=progress)
    path = io.write_run(Path(out_dir) / f"{settings.name}.h5", run)
    io.save_figure(snapshot_figure_of(run), path.with_suffix(".png"))
    return path


def sweep_settings(
    patch_ratios: Sequence[float], eps_values_kT: Sequence[float], base: RunSettings
) -> list[RunSettings]:
    """The grid of state points, each with its own seed (`seed_for` the base seed).

    Parameters
    ----------
    patch_ratios : sequence of float
        Px/Fx values.
    eps_values_kT : sequence of float
        eps/kT values.
    base : RunSettings
        Settings shared by all points (its patch_ratio/eps_kT are replaced).

    Returns
    -------
    list of RunSettings
    """
    return [
        replace(base, patch_ratio=p, eps_kT=e, seed=seed_for(base.seed, p, e))
        for e in eps_values_kT
        for p in patch_ratios
    ]


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What a sweep produced.

    Attributes
    ----------
    paths : tuple of Path
        Run file of every state point, in grid order.
    n_run : int
        State points run now.
    n_skipped : int
        State points whose complete run file already existed.
    points : tuple of StatePointResult
        Phase of every state point.
    """

    paths: tuple[Path, ...]
    n_run: int
    n_skipped: int
    points: tuple[StatePointResult, ...]


def run_sweep(
    grid: Sequence[RunSettings],
    out_dir: str | os.PathLike[str],
    *,
    jobs: int = 1,
    progress: bool = True,
    on_done: Callable[[Path], None] | None = None,
) -> SweepResult:
    """Run a grid of state points in parallel processes, resuming a previous sweep.

    A state point whose ``<name>.h5`` in ``out_dir`` is complete is skipped. The state
    diagram is drawn to ``<out_dir>/state_diagram.png`` at the end.

    Parameters
    ----------
    grid : sequence of RunSettings
        The state points (see `sweep_settings`); names must differ.
    out_dir : path-like
        Output folder.
    jobs : int, optional
        Worker processes (1: run in this process).
    progress : bool, optional
        Show a tqdm bar over state points.
    on_done : callable, optional
        Called with each run file as it is finished.

    Returns
    -------
    SweepResult

    Raises
    ------
    SimulationError
        If two grid points share a name, ``jobs`` < 1, or a state point's settings cannot
        be run (checked for every point before any run starts).

    Notes
    -----
    Workers are spawned (not forked: numba's thread pool is not fork-safe) and share the
    cores, each running ``NUMBA_NUM_THREADS // jobs`` threads.
    """
    if jobs < 1:
        msg = f"jobs must be >= 1, got {jobs}"
        raise SimulationError(msg)
    names = [s.name for s in grid]
    if len(set(names)) != len(names):
        msg = f"state points must differ, got duplicates in {names}"
        raise SimulationError(msg)
    for point in grid:
        point.check()
    folder = Path(out_dir)
    paths = tuple(folder / f"{name}.h5" for name in names)
    todo = [s for s, p in zip(grid, paths, strict=True) if not io.is_complete_run(p)]
    bar = tqdm(total=len(todo), desc="state points", unit="pt", disable=not progress)
    try:
        if jobs == 1 or len(todo) <= 1:
            for point in todo:
                path = run_and_write(point, folder)
                bar.update()
                if on_done:
                    on_done(path)
        else:
            threads = max(1, numba.get_num_threads() // jobs)
            with ProcessPoolExecutor(
                max_workers=jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=numba.set_num_threads,
                initargs=(threads,),
            ) as pool:
                futures = [pool.submit(run_and_write, point, folder) for point in todo]
                for future in as_completed(futures):
                    path = future.result()
                    bar.update()
                    if on_done:
                        on_done(path)
    finally:
        bar.close()
    points = tuple(state_point_of(io.read_run(p)) for p in paths)
    io.save_figure(plot_state_diagram(points), folder / "state_diagram.png")
    return SweepResult(paths=paths, n_run=len(todo), n_skipped=len(grid) - len(todo), points=points)


def state_point_of(run: SimulatedRun) -> StatePointResult:
    """The state-diagram entry of a run."""
    classification = run.final.classification
    return StatePointResult(
        patch_ratio=run.patch_ratio,
        eps_kT=run.eps_kT,
        phase=classification.phase,
        coexistence=classification.coexistence,
    )
