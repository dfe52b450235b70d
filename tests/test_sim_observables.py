"""Order parameters, classification, S(q) and rods on lattices with known answers."""

from __future__ import annotations

import freud
import numpy as np
import pytest

from detectors.errors import SimulationError
from simulation.observables import (
    PARTICLE_LABELS,
    SQRT2,
    SQRT3,
    ClassificationSettings,
    ParticleOrder,
    RodSettings,
    StructureFactor,
    bond_order,
    classify,
    fit_rods,
    measure_state,
    rods_per_nm,
    structure_factor,
)
from tests.sim_lattices import (
    centred_rectangular_lattice,
    hexagonal_lattice,
    ideal_gas,
    square_lattice,
)


def test_square_lattice_has_psi4_one_and_psi6_zero():
    positions, _, box = square_lattice(12, 1.05)
    order = bond_order(positions, box)
    assert order.psi4_local == pytest.approx(1.0, abs=1e-6)
    assert order.psi4_global == pytest.approx(1.0, abs=1e-6)
    assert order.psi6_local == pytest.approx(0.0, abs=1e-6)
    assert set(order.n_neighbours.tolist()) == {4}
    assert classify(order).phase == "square"


def test_hexagonal_lattice_has_psi6_one_and_psi4_zero():
    positions, _, box = hexagonal_lattice(12, 14, 1.1)
    order = bond_order(positions, box)
    assert order.psi6_local == pytest.approx(1.0, abs=1e-6)
    assert order.psi6_global == pytest.approx(1.0, abs=1e-6)
    assert order.psi4_local == pytest.approx(0.0, abs=1e-6)
    assert set(order.n_neighbours.tolist()) == {6}
    assert classify(order).phase == "hexagonal"


def test_global_order_drops_when_the_crystal_is_rotated_in_halves():
    positions, _, box = square_lattice(16, 1.0)
    order_one = bond_order(positions, box)
    # rotate every bond of the left half by 45 deg: psi4 -> -psi4 there
    rotated = positions.copy()
    left = positions[:, 0] < 8
    angle = np.pi / 4
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rotated[left] = positions[left] @ rot.T
    order_two = bond_order(rotated, box * 3)
    assert order_one.psi4_global == pytest.approx(1.0, abs=1e-6)
    assert order_two.psi4_global < 0.3 < order_two.psi4_local


def test_noisy_lattices_keep_their_class():
    square = bond_order(*_drop_angles(square_lattice(20, 1.02, noise_L=0.05, rng=1)))
    hexagonal = bond_order(*_drop_angles(hexagonal_lattice(20, 22, 1.1, noise_L=0.05, rng=2)))
    assert classify(square).phase == "square"
    assert square.psi4_local > 0.8 > square.psi6_local
    assert classify(hexagonal).phase == "hexagonal"
    assert hexagonal.psi6_local > 0.8 > hexagonal.psi4_local


@pytest.mark.parametrize(
    ("angle_deg", "phase"),
    [(60, "hexagonal"), (70, "hexagonal"), (80, "pseudo-hexagonal"), (88, "square")],
)
def test_rhombic_lattices_go_from_hexagonal_to_square(angle_deg, phase):
    # rhombic lattice of side 1 L and angle theta = centred rectangular cell
    # 2 cos(theta/2) x 2 sin(theta/2)
    half = np.radians(angle_deg) / 2
    positions, _, box = centred_rectangular_lattice(
        12, 24, 2 * np.cos(half), row_height_L=np.sin(half)
    )
    order = bond_order(positions, box)
    assert classify(order).phase == phase
    if phase == "pseudo-hexagonal":
        assert 0.55 < order.psi6_local < 0.8


def test_dilute_gas_is_fluid_and_lone_particles_are_disordered():
    positions, _, box = ideal_gas(400, 40.0, rng=3)
    order = bond_order(positions, box)
    result = classify(order)
    assert result.phase == "fluid"
    assert result.fraction_disordered > 0.9
    lone = order.n_neighbours == 0
    assert lone.any()
    assert np.all(order.psi4[lone] == 0)
    assert set(order.labels[lone].tolist()) == {"disordered"}


def test_half_square_half_gas_is_square_with_coexistence_flag_off():
    square, _, _ = square_lattice(20, 1.0)
    gas, _, _ = ideal_gas(100, 10.0, rng=4)
    positions = np.vstack([square, gas + 25.0])
    result = classify(bond_order(positions, np.array([40.0, 40.0])))
    assert result.phase == "square"
    assert result.fraction_square == pytest.approx(400 / 500, abs=0.05)
    assert not result.coexistence


def test_a_fluid_with_a_few_ordered_particles_of_two_kinds_is_not_coexistence():
    # 15 % square and 10 % hexagonal particles: too few ordered ones for a phase, and the
    # split between their labels must not flag coexistence (it did before)
    codes = np.repeat(np.array([0, 1, 2], dtype=np.int8), [75, 15, 10])
    labels = ("disordered", "square", "hexagonal")
    assert [PARTICLE_LABELS[c] for c in (0, 1, 2)] == list(labels)
    zeros = np.zeros(100, dtype=np.complex128)
    order = ParticleOrder(zeros, zeros, np.full(100, 4, dtype=np.int64), codes, r_max_L=1.3)
    result = classify(order)
    assert result.phase == "fluid"
    assert result.fraction_square == pytest.approx(0.15)
    assert not result.coexistence


def test_square_and_hexagonal_domains_side_by_side_are_coexistence():
    square, _, _ = square_lattice(14, 1.0)
    hexagonal, _, _ = hexagonal_lattice(14, 16, 1.0)
    positions = np.vstack([square + 2.0, hexagonal + np.array([22.0, 2.0])])
    result = classify(bond_order(positions, np.array([40.0, 40.0])))
    assert result.coexistence
    assert result.phase in {"square", "hexagonal"}


def test_psi_thresholds_are_validated():
    with pytest.raises(SimulationError, match="r_max_L"):
        ClassificationSettings(r_max_L=0.0)
    with pytest.raises(SimulationError, match="pseudo_hexagonal_psi6"):
        ClassificationSettings(pseudo_hexagonal_psi6=0.9, hexagonal_psi6=0.8)
    with pytest.raises(SimulationError, match=r"shape \(N, 2\)"):
        bond_order(np.zeros((5, 3)), np.array([4.0, 4.0]))
    with pytest.raises(SimulationError, match="box_L"):
        bond_order(np.zeros((5, 2)), np.array([4.0, -4.0]))


@pytest.mark.parametrize(
    ("lattice", "q1_times_a", "ratio"),
    [("square", 2 * np.pi, SQRT2), ("hexagonal", 4 * np.pi / SQRT3, SQRT3)],
)
def test_debye_sq_with_2d_box_peaks_at_the_rod_positions(lattice, q1_times_a, ratio):
    spacing = 1.07
    if lattice == "square":
        positions, _, box = square_lattice(30, spacing, noise_L=0.02, rng=5)
    else:
        positions, _, box = hexagonal_lattice(30, 34, spacing, noise_L=0.02, rng=6)
    sq = structure_factor(positions, box, q_max_per_L=16.0, n_q=1200)
    assert sq.q_per_L[0] == pytest.approx(4 * np.pi / box.min(), rel=1e-3)
    rods = fit_rods(sq)
    assert rods.ok
    assert rods.q_per_L[0] * spacing == pytest.approx(q1_times_a, rel=3e-3)
    assert rods.ratio_q2_q1 == pytest.approx(ratio, rel=5e-3)
    assert np.all(rods.q_err_per_L[:2] < 0.02)


def _freud_debye(positions, box, *, q_max_per_L, n_q, three_d=False):
    fbox = (
        freud.box.Box(Lx=box[0], Ly=box[1], Lz=100.0)
        if three_d
        else freud.box.Box.from_box([box[0], box[1]])
    )
    points = np.zeros((positions.shape[0], 3), dtype=np.float32)
    points[:, :2] = positions
    debye = freud.diffraction.StaticStructureFactorDebye(
        num_k_values=n_q, k_max=q_max_per_L, k_min=4 * np.pi / min(box)
    )
    debye.compute((fbox, fbox.wrap(points)))
    assert debye.min_valid_k == pytest.approx(4 * np.pi / min(box), rel=1e-6)
    return StructureFactor(
        np.asarray(debye.k_values, float), np.asarray(debye.S_k, float), debye.min_valid_k
    )


@pytest.mark.parametrize(
    ("lattice", "q1_times_a"), [("square", 2 * np.pi), ("hexagonal", 4 * np.pi / SQRT3)]
)
def test_freud_debye_with_2d_box_peaks_at_rods_and_matches_ours(lattice, q1_times_a):
    spacing = 1.1
    if lattice == "square":
        positions, _, box = square_lattice(10, spacing, noise_L=0.02, rng=9)
    else:
        positions, _, box = hexagonal_lattice(10, 12, spacing, noise_L=0.02, rng=10)
    theirs = _freud_debye(positions, box, q_max_per_L=9.0, n_q=120)
    ours = structure_factor(positions, box, q_max_per_L=9.0, n_q=120)
    np.testing.assert_allclose(ours.q_per_L, theirs.q_per_L, rtol=1e-5)
    np.testing.assert_allclose(ours.s, theirs.s, atol=2e-3 * theirs.s.max())
    bin_width = theirs.q_per_L[1] - theirs.q_per_L[0]
    assert theirs.q_per_L[np.argmax(theirs.s)] * spacing == pytest.approx(
        q1_times_a, abs=bin_width * spacing
    )


def test_3d_box_moves_the_peak_to_higher_q_which_is_why_we_use_2d():
    positions, _, box = square_lattice(20, 1.0)
    sq_2d = structure_factor(positions, box, q_max_per_L=9.0, n_q=900)
    sq_3d = _freud_debye(positions, box, q_max_per_L=9.0, n_q=900, three_d=True)
    q1_2d = fit_rods(sq_2d).q_per_L[0]
    q1_3d = sq_3d.q_per_L[np.argmax(np.where(sq_3d.q_per_L > 3, sq_3d.s, 0))]
    assert q1_2d == pytest.approx(2 * np.pi, rel=2e-3)
    assert q1_3d > 1.005 * 2 * np.pi


def test_averaging_configurations_and_fluid_has_no_sharp_rods():
    positions, _, box = ideal_gas(300, 30.0, rng=7)
    gas_2, _, _ = ideal_gas(300, 30.0, rng=8)
    sq = structure_factor([positions, gas_2], box, q_max_per_L=12.0, n_q=300)
    assert sq.n_configurations == 2
    assert np.mean(sq.s) == pytest.approx(1.0, abs=0.1)
    rods = fit_rods(sq)
    assert not rods.ok
    assert "no peak" in rods.message
    assert np.all(np.isnan(rods.q_per_L))


def test_structure_factor_refuses_a_box_too_small_for_valid_q():
    with pytest.raises(SimulationError, match="enlarge the box"):
        structure_factor(np.zeros((4, 2)), np.array([1.0, 1.0]), q_max_per_L=10.0)


def test_rods_convert_to_per_nm_with_the_contact_distance():
    q_per_nm = rods_per_nm(np.array([2 * np.pi, np.nan]), contact_nm=7.6)
    assert q_per_nm[0] == pytest.approx(0.8267, rel=1e-3)
    assert np.isnan(q_per_nm[1])
    with pytest.raises(SimulationError, match="contact"):
        rods_per_nm(np.array([1.0]), contact_nm=-1.0)


def test_measure_state_scalars():
    positions, _, box = square_lattice(10, 1.0)
    observables, order = measure_state(
        positions, box, particle_area_L2=0.92, energy_kT=-1200.0, n_bonds=200
    )
    assert observables.packing_fraction == pytest.approx(0.92)
    assert observables.energy_per_particle_kT == pytest.approx(-12.0)
    assert observables.bonds_per_particle == pytest.approx(4.0)
    assert observables.classification.phase == "square"
    assert order.psi4.shape == (100,)


def _drop_angles(lattice):
    positions, _, box = lattice
    return positions, box


@pytest.mark.parametrize(
    ("lattice", "ratio"), [("square", SQRT2), ("hexagonal", SQRT3)], ids=["square", "hexagonal"]
)
@pytest.mark.parametrize("rng", [1, 2])
def test_second_rod_of_a_thermal_crystal_of_256_is_found(lattice, ratio, rng):
    # N = 256 with 0.12 L of thermal noise, as an engine run at eps = 6 kT: the second rod
    # is then weaker than the first rod's absolute prominence floor (1 in S), and dropping
    # it made q2 the third rod (the hexagonal case gave no q2 at all)
    if lattice == "square":
        positions, _, box = square_lattice(16, 1.11, noise_L=0.12, rng=rng)
    else:
        positions, _, box = hexagonal_lattice(16, 16, 1.15, noise_L=0.12, rng=rng)
    rods = fit_rods(structure_factor(positions, box))
    assert rods.ok
    assert rods.ratio_q2_q1 == pytest.approx(ratio, rel=0.03)


def test_q1_is_the_first_strong_peak_not_the_highest():
    q = np.linspace(3, 14, 600)
    s = 1 + 2 * np.exp(-((q - 5.2) ** 2) / 0.02) + 3 * np.exp(-((q - 11.6) ** 2) / 0.02)
    rods = fit_rods(StructureFactor(q, s, q_min_valid_per_L=0.2))
    assert rods.q_per_L[0] == pytest.approx(5.2, abs=0.01)
    assert rods.q_per_L[1] == pytest.approx(11.6, abs=0.01)


def test_rod_settings_are_validated():
    with pytest.raises(SimulationError, match="min_later_prominence"):
        RodSettings(min_later_prominence=2.0)
