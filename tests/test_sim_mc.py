"""Monte Carlo engine: detailed balance, equation of state, fluid, bookkeeping, settings."""

import math

import numba
import numpy as np
import pytest
from scipy import optimize, spatial, stats

from detectors.errors import SimulationError
from simulation.mc import (
    MCModel,
    MCSettings,
    MCState,
    count_bonds,
    count_overlaps,
    fluid_start,
    initial_state,
    run_mc,
    total_energy,
)
from simulation.observables import bond_order, classify
from simulation.shape import Patches, TruncatedSquare, patch_bonds_many
from simulation.shape import overlaps_many as shape_overlaps


def _global_bond_order(state: MCState, fold: int, k: int) -> float:
    """|<exp(i fold phi)>| over each particle's k nearest neighbours (periodic)."""
    box = state.box_L
    tree = spatial.cKDTree(np.mod(state.positions_L, box), boxsize=box)
    _, idx = tree.query(np.mod(state.positions_L, box), k=k + 1)
    d = state.positions_L[idx[:, 1:]] - state.positions_L[:, None, :]
    d -= box * np.rint(d / box)
    psi = np.exp(1j * fold * np.arctan2(d[..., 1], d[..., 0])).mean(axis=1)
    return float(abs(psi.mean()))


def _block_mean_and_error(values: np.ndarray, n_blocks: int = 50) -> tuple[float, float]:
    blocks = values[: values.size // n_blocks * n_blocks].reshape(n_blocks, -1).mean(axis=1)
    return float(blocks.mean()), float(blocks.std(ddof=1) / math.sqrt(n_blocks))


# ---------------------------------------------------------------- detailed balance


def _two_particle_bond_probability(model: MCModel, box_L: float, eps_kT: float) -> float:
    """Exact P(bonded) of two particles in a periodic box, by integrating the configuration
    space: relative positions uniform within the interaction range, both angles uniform."""
    rng = np.random.default_rng(99)
    m = 4_000_000
    rc = model.interaction_range_L
    r = rc * np.sqrt(rng.uniform(0, 1, m))
    phi, t1, t2 = rng.uniform(0, 2 * np.pi, (3, m))
    dx, dy = r * np.cos(phi), r * np.sin(phi)
    hard = shape_overlaps(model.shape, dx, dy, t1, t2)
    assert model.patches is not None
    n = patch_bonds_many(model.shape, model.patches, dx, dy, t1, t2)[~hard]
    disk = math.pi * rc**2
    weight_bonded = disk * np.sum(np.exp(eps_kT * n[n > 0])) / m
    weight_free = box_L**2 - disk * (hard.sum() + (n > 0).sum()) / m
    return weight_bonded / (weight_bonded + weight_free)


@pytest.mark.parametrize("drag", [True, False])
def test_cluster_moves_keep_detailed_balance_on_two_particles(drag):
    # Cluster moves make or break bonds without a Boltzmann test (the link probability
    # 1 - exp(-eps) cancels it); a wrong link rule shifts P(bonded) far beyond the errors.
    eps, box = 4.0, 4.8
    model = MCModel(patches=Patches(ratio=0.8, eps_kT=eps))
    exact = _two_particle_bond_probability(model, box, eps)
    start = MCState(np.array([[1.0, 1.0], [3.0, 3.0]]), np.zeros(2), np.array([box, box]))
    settings = MCSettings(
        tune_sweeps=0,
        cluster_move_every=1,
        cluster_moves_per_particle=2.0,  # 4 cluster moves against 2 single moves a sweep
        cluster_translation_L=0.5,
        cluster_rotation_rad=0.6,
        translation_step_L=0.05,
        rotation_step_rad=0.05,
        cluster_drag=drag,  # with drag a bonded pair moves half of the times it is drawn
    )
    result = run_mc(start, model, 150_000, settings=settings, rng=5)
    assert result.acceptance["cluster"] > (0.3 if drag else 0.5)
    assert np.nanmean(result.records.mean_cluster_size) > 1.1  # bonded pairs move together
    bonded = (result.records.n_bonds > 0).astype(float)
    mean, err = _block_mean_and_error(bonded)
    chi2 = (mean - exact) ** 2 / (err**2 + 1e-6)  # 1e-6: variance of the integrated reference
    assert 0.2 < exact < 0.6
    assert chi2 < stats.chi2.ppf(0.999, df=1), (mean, err, exact)


@pytest.mark.parametrize(("cap", "moves"), [(1, False), (2, True)])
def test_a_cluster_above_its_size_cap_is_never_moved(cap, moves):
    # At eps = 30 kT the touching pair never breaks, so every cluster is the pair.
    model = MCModel(patches=Patches(ratio=0.5, eps_kT=30.0))
    start = MCState(np.array([[2.0, 2.0], [3.02, 2.0]]), np.zeros(2), np.array([6.0, 6.0]))
    assert count_bonds(start, model) == 1
    settings = MCSettings(
        tune_sweeps=0, cluster_max_size=cap, cluster_drag=False, translation_step_L=0.01
    )
    result = run_mc(start, model, 300, settings=settings, rng=3)
    assert (result.acceptance["cluster"] > 0.2) is moves
    assert result.n_bonds == 1


# ---------------------------------------------------------------- equation of state, fluid


def test_low_density_equation_of_state_follows_second_virial():
    # NPT at P = 0.1 kT/L^2 gives rho ~ 0.087; Z = 1 + B2 rho + ... with B2 = A + P^2/(4 pi).
    # The reference is scaled-particle theory for convex bodies, whose virial series starts
    # with exactly this B2; B2 off by 30 % moves Z by ~0.04, the tolerance is 0.02.
    model = MCModel()
    shape = model.shape
    pressure, n = 0.1, 200
    start = initial_state(n, 0.05, model, rng=1)
    settings = MCSettings(ensemble="NPT", pressure_kT_per_L2=pressure, tune_sweeps=1000)
    records = run_mc(start, model, 20_000, settings=settings, rng=2, record_every=10).records
    rho = n / (records.box_x_L * records.box_y_L)[records.sweep > 3000]
    rho_mean, rho_err = _block_mean_and_error(rho, 20)
    assert rho_err / rho_mean < 0.01
    z_measured = pressure / rho_mean
    asphericity = shape.perimeter**2 / (4 * math.pi * shape.area)

    def spt_pressure(density: float) -> float:
        eta = density * shape.area
        return density * (1 / (1 - eta) + asphericity * eta / (1 - eta) ** 2) - pressure

    z_spt = pressure / optimize.brentq(spt_pressure, 1e-6, 0.99 / shape.area)
    assert z_spt - 1 == pytest.approx(shape.second_virial * rho_mean, rel=0.15)
    assert z_measured == pytest.approx(z_spt, abs=0.02)
    # a B2 30 % off would be seen
    assert abs(z_measured - (1 + 1.3 * shape.second_virial * rho_mean)) > 0.03
    assert abs(z_measured - (1 + 0.7 * shape.second_virial * rho_mean)) > 0.03


def test_hard_octagons_at_packing_06_melt_from_a_square_lattice():
    model = MCModel()
    start = initial_state(256, 0.6, model, rng=3)
    assert _global_bond_order(start, 4, 4) > 0.9
    result = run_mc(start, model, 3000, rng=4, record_every=100)
    assert _global_bond_order(result.state, 4, 4) < 0.15
    assert _global_bond_order(result.state, 6, 6) < 0.15
    assert count_overlaps(result.state, model) == 0
    assert 0.15 < result.acceptance["translation"] < 0.5


# ---------------------------------------------------------------- bookkeeping, seeds


def test_npt_compression_of_patchy_particles_keeps_the_books():
    model = MCModel(patches=Patches(ratio=0.5, eps_kT=6.0))
    start = initial_state(64, 0.1, model, rng=5)
    settings = MCSettings(ensemble="NPT", pressure_kT_per_L2=2.0, tune_sweeps=200)
    result = run_mc(start, model, 1500, settings=settings, rng=6, record_every=50)
    assert result.records.packing_fraction[-1] > 0.3
    assert result.n_bonds > 50
    assert count_overlaps(result.state, model) == 0
    assert result.energy_kT == total_energy(result.state, model) == -6.0 * result.n_bonds
    assert result.records.n_bonds[-1] == count_bonds(result.state, model)


def test_same_seed_same_run_on_any_number_of_threads():
    model = MCModel(patches=Patches(ratio=0.8, eps_kT=6.0))
    start = initial_state(100, 0.4, model, rng=7)
    settings = MCSettings(tune_sweeps=50)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_mc(start, model, 100, settings=settings, rng=8)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = run_mc(start, model, 100, settings=settings, rng=8)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.state.positions_L, two.state.positions_L)
    np.testing.assert_array_equal(one.state.angles_rad, two.state.angles_rad)
    assert one.seed == 8
    other = run_mc(start, model, 100, settings=settings, rng=9)
    assert not np.array_equal(one.state.positions_L, other.state.positions_L)
    again = run_mc(start, model, 100, settings=settings, rng=np.random.default_rng(3))
    assert run_mc(start, model, 100, settings=settings, rng=again.seed).n_bonds == again.n_bonds


def test_records_and_snapshots():
    model = MCModel(patches=Patches(ratio=0.1, eps_kT=6.0))
    start = initial_state(64, 0.3, model, rng=1)
    result = run_mc(start, model, 250, rng=2, record_every=10, snapshot_every=100)
    assert result.records.sweep.tolist() == list(range(10, 251, 10))
    assert [sweep for sweep, _ in result.snapshots] == [100, 200, 250]
    assert result.snapshots[-1][1] is result.state
    assert result.n_trial_moves == 64 * 250
    assert set(result.records.as_dict()) >= {"sweep", "energy_per_particle_kT", "tuning"}


def test_count_overlaps_sees_an_overlap():
    model = MCModel()
    state = MCState(np.array([[1.0, 1.0], [1.9, 1.0], [3.0, 3.0]]), np.zeros(3), np.full(2, 5.0))
    assert count_overlaps(state, model) == 1
    with pytest.raises(SimulationError, match="overlapping"):
        run_mc(state, model, 1)


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: initial_state(100, 0.95, MCModel()), "close packing"),
        (lambda: initial_state(100, 1.0, MCModel()), "close packing"),
        (lambda: initial_state(4, 0.3, MCModel()), "too small for the cell list"),
        (lambda: MCSettings(ensemble="NPT"), "pressure"),
        (lambda: MCSettings(target_acceptance=1.5), "target_acceptance"),
        (lambda: MCModel(patches=Patches(ratio=0.5, eps_kT=-2.0)), "eps_kT"),
        (lambda: MCModel(patches=Patches(ratio=1.5, eps_kT=2.0)), "ratio"),
    ],
)
def test_bad_settings_are_refused_before_running(call, match):
    with pytest.raises(SimulationError, match=match):
        call()


def test_run_refuses_a_too_dense_or_too_small_state():
    model = MCModel()
    dense = MCState(np.zeros((100, 2)), np.zeros(100), np.full(2, 8.0))  # packing 1.29
    with pytest.raises(SimulationError, match="close"):
        run_mc(dense, model, 10)
    small = MCState(np.array([[0.5, 0.5]]), np.zeros(1), np.full(2, 3.0))
    with pytest.raises(SimulationError, match="cell list"):
        run_mc(small, model, 10)


# ---------------------------------------------------------------- dilute start


def test_fluid_start_compresses_a_dilute_fluid_to_the_target_without_a_lattice():
    shape = TruncatedSquare(corner_leg_c=0.1)
    state = fluid_start(256, 0.6, shape, rng=3, melt_sweeps=300)
    again = fluid_start(256, 0.6, shape, rng=3, melt_sweeps=300)
    assert state.packing_fraction(shape) == pytest.approx(0.6, rel=1e-12)
    assert count_overlaps(state, MCModel(shape)) == 0
    assert state.box_L[0] == pytest.approx(state.box_L[1])
    np.testing.assert_array_equal(state.positions_L, again.positions_L)
    order = bond_order(state.positions_L, state.box_L)
    assert order.psi4_global < 0.2  # the square lattice start is forgotten
    assert classify(order).phase == "fluid"


def test_fluid_start_says_when_the_compression_falls_short():
    with pytest.raises(SimulationError, match="compression reached packing"):
        fluid_start(64, 0.6, TruncatedSquare(), rng=1, melt_sweeps=10, max_rounds=2)
