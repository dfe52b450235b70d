"""Rod positions and nearest-neighbour spacings of 2D lattices."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.lattice import (
    HEXAGONAL_RATIOS,
    SQUARE_RATIOS,
    lattice_spacing_nm,
    rhombic_ratios,
    rod_positions,
)

q1s = st.floats(min_value=0.05, max_value=5.0)


def test_study_spacings():
    assert lattice_spacing_nm(0.80, "hexagonal") == pytest.approx(9.07, abs=5e-3)
    assert lattice_spacing_nm(0.83, "square") == pytest.approx(7.57, abs=5e-3)
    # the 17 % contraction of the study: 9.1 nm (hexagonal) to 7.6 nm (square)
    ratio = lattice_spacing_nm(0.83, "square") / lattice_spacing_nm(0.80, "hexagonal")
    assert ratio == pytest.approx(0.83, abs=0.01)


def test_q1_times_spacing_is_the_lattice_constant():
    assert 0.8 * lattice_spacing_nm(0.8, "square") == pytest.approx(2 * math.pi)
    assert 0.8 * lattice_spacing_nm(0.8, "hexagonal") == pytest.approx(7.255, abs=1e-3)


def test_ratio_constants():
    assert HEXAGONAL_RATIOS[:5] == pytest.approx([1, math.sqrt(3), 2, math.sqrt(7), 3])
    assert SQUARE_RATIOS[:4] == pytest.approx([1, math.sqrt(2), 2, math.sqrt(5)])


def test_rod_positions_of_the_study_lattice():
    positions = rod_positions(0.80, "hexagonal", q_max_per_nm=1.7)
    assert positions == pytest.approx([0.80, 1.386, 1.60], abs=1e-3)


def test_rhombic_rods():
    gamma = 75.0
    c = math.cos(math.radians(gamma))
    positions = rod_positions(1.0, "pseudo-hexagonal", gamma_deg=gamma, q_max_per_nm=2.05)
    expected = sorted([1.0, math.sqrt(2 - 2 * c), math.sqrt(2 + 2 * c), 2.0, math.sqrt(5 - 4 * c)])
    assert positions == pytest.approx(expected)


@given(q1=q1s)
def test_rhombic_limits_are_hexagonal_and_square(q1):
    q_max = 3.01 * q1
    hexagonal = rod_positions(q1, "pseudo-hexagonal", gamma_deg=60.0, q_max_per_nm=q_max)
    square = rod_positions(q1, "pseudo-hexagonal", gamma_deg=90.0, q_max_per_nm=q_max)
    assert hexagonal == pytest.approx(rod_positions(q1, "hexagonal", q_max_per_nm=q_max))
    assert square == pytest.approx(rod_positions(q1, "square", q_max_per_nm=q_max))
    for gamma, name in ((60.0, "hexagonal"), (90.0, "square")):
        assert lattice_spacing_nm(q1, "pseudo-hexagonal", gamma_deg=gamma) == pytest.approx(
            lattice_spacing_nm(q1, name)
        )


@given(q1=q1s, gamma=st.floats(min_value=60.0, max_value=90.0))
def test_rhombic_spacing_is_nearest_neighbour_distance(q1, gamma):
    # real-space vectors of length a at angle gamma; reciprocal b = 2 pi / (a sin gamma)
    a = lattice_spacing_nm(q1, "pseudo-hexagonal", gamma_deg=gamma)
    g = math.radians(gamma)
    real = np.array([[a, 0.0], [a * math.cos(g), a * math.sin(g)]])
    reciprocal = 2 * math.pi * np.linalg.inv(real).T
    assert np.linalg.norm(reciprocal, axis=1) == pytest.approx([q1, q1])
    shortest = min(a, np.linalg.norm(real[0] - real[1]))
    assert shortest == pytest.approx(a)  # for gamma >= 60 deg the sides are nearest


def test_first_rods_of_unknown_and_none():
    assert rod_positions(0.8, "unknown", q_max_per_nm=2.4) == pytest.approx([0.8])
    assert rod_positions(0.8, "none", q_max_per_nm=2.4).size == 0
    assert rhombic_ratios(60.0)[:4] == pytest.approx([1, 1, math.sqrt(3), 2])


@pytest.mark.parametrize("q1", [0.0, -0.8, math.nan, math.inf])
def test_bad_q1_raises(q1):
    with pytest.raises(ValueError, match="q1"):
        lattice_spacing_nm(q1, "hexagonal")
    with pytest.raises(ValueError, match="q1"):
        rod_positions(q1, "square", q_max_per_nm=2.0)


def test_symmetries_without_a_spacing_raise():
    with pytest.raises(ValueError, match="'hexagonal' and the 'square'"):
        lattice_spacing_nm(0.8, "unknown")
    with pytest.raises(ValueError, match="gamma_deg"):
        lattice_spacing_nm(0.8, "pseudo-hexagonal")
    with pytest.raises(ValueError, match="gamma"):
        lattice_spacing_nm(0.8, "pseudo-hexagonal", gamma_deg=180.0)
    with pytest.raises(ValueError, match="symmetry"):
        rod_positions(0.8, "oblique", q_max_per_nm=2.0)  # type: ignore[arg-type]
