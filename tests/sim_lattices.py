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


def lattice_run(
    positions_L: NDArray[np.float64],
    angles_rad: NDArray[np.float64],
    box_L: NDArray[np.float64],
    *,
    patch_ratio: float,
    eps_kT: float,
    seed: int = 0,
):
    """A `SimulatedRun` whose one snapshot is the given configuration (no engine needed)."""
    from simulation.observables import SimulatedRun, fit_rods, measure_state, structure_factor

    observables, order = measure_state(
        positions_L,
        box_L,
        particle_area_L2=0.92,
        energy_kT=-eps_kT * len(positions_L),
        n_bonds=len(positions_L),
    )
    sq = structure_factor(positions_L, box_L, q_max_per_L=14.0, n_q=500)
    return SimulatedRun(
        settings={
            "patch_ratio": patch_ratio,
            "eps_kT": eps_kT,
            "edge_L": 1.0,
            "n_particles": len(positions_L),
            "ensemble": "NVT",
        },
        seed=seed,
        version="test",
        records={"sweep": np.arange(3), "energy_per_particle_kT": np.array([0.0, -1.0, -2.0])},
        snapshot_sweeps=np.array([2]),
        snapshot_positions_L=positions_L[None],
        snapshot_angles_rad=angles_rad[None],
        snapshot_box_L=box_L[None],
        snapshot_observables={
            "psi4_local": np.array([observables.psi4_local]),
            "phase": np.array([observables.classification.phase]),
        },
        final=observables,
        final_label_codes=order.label_codes,
        structure_factor=sq,
        rods=fit_rods(sq),
    )


def write_reduce_results(path, *, time_s, q1_per_nm, symmetry, rod_positions_per_nm, drop=()):
    """A small `gixs reduce`-like results file (/entry/first_rod) written with h5py."""
    import h5py

    with h5py.File(path, "w") as fh:
        group = fh.create_group("entry/first_rod")
        group.attrs["NX_class"] = "NXdata"
        columns = {
            "time": np.asarray(time_s, float),
            "q1": np.asarray(q1_per_nm, float),
            "q1_errors": np.full(len(time_s), 0.005),
            "spacing": 2 * np.pi / np.asarray(q1_per_nm, float),
            "rod_positions": np.asarray(rod_positions_per_nm, float),
        }
        for name, values in columns.items():
            if name not in drop:
                group[name] = values
        if "symmetry" not in drop:
            group["symmetry"] = np.array(symmetry, dtype=h5py.string_dtype())
        fh.create_group("entry/summary")
    return path
