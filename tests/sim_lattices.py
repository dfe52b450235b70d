"""Perfect and noisy 2-D lattices in periodic rectangular boxes, for the simulation tests."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def square_lattice(
    n: int, spacing_L: float, *, noise_L: float = 0.0, rng: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(positions_L (n*n, 2), angles_rad (n*n,), box_L (2,)) of an n x n square lattice."""
    gen = np.random.default_rng(rng)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    positions = np.column_stack([i.ravel(), j.ravel()]).astype(np.float64) * spacing_L
    positions += gen.normal(0.0, noise_L, positions.shape) if noise_L else 0.0
    angles = gen.normal(0.0, 0.05, n * n) if noise_L else np.zeros(n * n)
    return positions, angles, np.array([n * spacing_L, n * spacing_L])


def centred_rectangular_lattice(
    n_x: int,
    n_rows: int,
    spacing_L: float,
    *,
    row_height_L: float,
    noise_L: float = 0.0,
    rng: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Rows of spacing `spacing_L`, every other row shifted by half a spacing.

    ``row_height_L = sqrt(3)/2 * spacing_L`` is the hexagonal lattice; other heights give a
    pseudo-hexagonal (centred rectangular) one. ``n_rows`` must be even.
    """
    gen = np.random.default_rng(rng)
    i, j = np.meshgrid(np.arange(n_x), np.arange(n_rows), indexing="ij")
    x = (i + 0.5 * (j % 2)) * spacing_L
    y = j * row_height_L
    positions = np.column_stack([x.ravel(), y.ravel()]).astype(np.float64)
    positions += gen.normal(0.0, noise_L, positions.shape) if noise_L else 0.0
    angles = gen.uniform(-np.pi / 4, np.pi / 4, positions.shape[0])
    return positions, angles, np.array([n_x * spacing_L, n_rows * row_height_L])


def hexagonal_lattice(
    n_x: int, n_rows: int, spacing_L: float, *, noise_L: float = 0.0, rng: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Hexagonal lattice of nearest-neighbour distance `spacing_L`; ``n_rows`` even."""
    return centred_rectangular_lattice(
        n_x, n_rows, spacing_L, row_height_L=np.sqrt(3) / 2 * spacing_L, noise_L=noise_L, rng=rng
    )


def ideal_gas(
    n: int, box_side_L: float, *, rng: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Uniformly random positions and angles in a square box."""
    gen = np.random.default_rng(rng)
    positions = gen.uniform(0.0, box_side_L, (n, 2))
    return positions, gen.uniform(-np.pi, np.pi, n), np.array([box_side_L, box_side_L])
