"""Which simulated state point fits the measured rods of each phase best.

The measured side is the output of ``gixs reduce`` (`MeasuredRods`, read by
`simulation.io.read_measured_rods`): per frame the time, the fitted first rod q1, its
symmetry label and up to four fitted rod positions in nm^-1. The simulated side is a list of
`SimulatedRun` (each with rods q1 < q2 < q3 in 1/L), put on the same scale with the
nanocrystals' centre-to-centre contact distance (`rods_per_nm`).

For each measured phase (frames labelled "hexagonal", "pseudo-hexagonal" or "square") the
median rod positions over its frames are compared with each run's rods, rod by rod in
order (measured rod k with simulated rod k, for the rods both sides have). The misfit is the
root-mean-square relative difference; ``match="ratios"`` compares q_k / q1 instead, which
does not depend on the contact distance. Runs that ended as a fluid are no candidates
(their misfit is NaN): the peaks of a liquid's S(q) are not superlattice rods, though they
can sit near them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from detectors.errors import SimulationError
from simulation.observables import SimulatedRun

MEASURED_PHASES: tuple[str, ...] = ("hexagonal", "pseudo-hexagonal", "square")
Match = Literal["positions", "ratios"]


@dataclass(frozen=True, slots=True)
class MeasuredRods:
    """Rods of a reduced in-situ run, one row per frame.

    Attributes
    ----------
    time_s : ndarray, shape (n,)
        Frame time, in s.
    q1_per_nm, q1_errors_per_nm : ndarray, shape (n,)
        First rod and its error, in nm^-1 (NaN where no rod).
    symmetry : ndarray of str, shape (n,)
        "none", "hexagonal", "pseudo-hexagonal", "square" or "unknown" ("" read as "none").
    spacing_nm : ndarray, shape (n,)
        Nearest-neighbour spacing, in nm.
    rod_positions_per_nm : ndarray, shape (n, 4)
        Fitted rod positions, in nm^-1, NaN-padded.
    source : str
        The file they came from.
    """

    time_s: NDArray[np.float64]
    q1_per_nm: NDArray[np.float64]
    q1_errors_per_nm: NDArray[np.float64]
    symmetry: NDArray[np.str_]
    spacing_nm: NDArray[np.float64]
    rod_positions_per_nm: NDArray[np.float64]
    source: str = ""


@dataclass(frozen=True, slots=True)
class PhaseMatch:
    """Best state point for one measured phase.

    Attributes
    ----------
    phase : str
        The measured phase.
    n_frames : int
        Frames with this label (and a rod).
    time_range_s : tuple of float
        First and last of those frames, in s.
    measured_rods_per_nm : ndarray, shape (4,)
        Median rod positions of those frames, in nm^-1 (NaN-padded).
    misfits : ndarray, shape (n_runs,)
        RMS relative misfit of each run (NaN for a fluid run, or where nothing could be
        compared).
    best : int
        Index of the best run, or -1 if none could be compared.
    best_label : str
        That run's state point (``""`` when none).
    best_phase : str
        The simulated phase of that run (``""`` when none).
    """

    phase: str
    n_frames: int
    time_range_s: tuple[float, float]
    measured_rods_per_nm: NDArray[np.float64]
    misfits: NDArray[np.float64]
    best: int
    best_label: str
    best_phase: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """Simulated rods on the measured scale and the best state point per phase.

    Attributes
    ----------
    contact_nm : float
        Centre-to-centre contact distance used, in nm.
    match : {"positions", "ratios"}
        What was compared.
    run_labels : tuple of str
        State point of each run.
    run_phases : tuple of str
        Simulated phase of each run.
    simulated_rods_per_nm : ndarray, shape (n_runs, 3)
        Each run's rods q1, q2, q3, in nm^-1 (NaN-padded).
    phases : tuple of PhaseMatch
        One per measured phase that has frames.
    """

    contact_nm: float
    match: Match
    run_labels: tuple[str, ...]
    run_phases: tuple[str, ...]
    simulated_rods_per_nm: NDArray[np.float64]
    phases: tuple[PhaseMatch, ...]

    def report(self) -> str:
        """Plain-text table: one line per measured phase with its best state point."""
        lines = [
            f"contact distance {self.contact_nm:g} nm, matching rod {self.match}",
            f"{'measured phase':<18}{'frames':>7}{'time / s':>16}  {'rods / nm^-1':<24}"
            f"{'best state point':<26}{'sim. phase':<18}{'misfit':>8}",
        ]
        for match in self.phases:
            rods = " ".join(f"{q:.3f}" for q in match.measured_rods_per_nm if np.isfinite(q))
            t0, t1 = match.time_range_s
            misfit = match.misfits[match.best] if match.best >= 0 else np.nan
            lines.append(
                f"{match.phase:<18}{match.n_frames:>7}{f'{t0:.0f}-{t1:.0f}':>16}  {rods:<24}"
                f"{match.best_label or '-':<26}{match.best_phase or '-':<18}{misfit:>8.3f}"
            )
        if not self.phases:
            lines.append("no frame with a hexagonal, pseudo-hexagonal or square rod pattern")
        return "\n".join(lines)


def rod_misfit(
    measured_per_nm: NDArray[np.float64],
    simulated_per_nm: NDArray[np.float64],
    *,
    match: Match = "positions",
) -> float:
    """RMS relative misfit between measured and simulated rods, compared in order.

    Parameters
    ----------
    measured_per_nm : ndarray, shape (m,)
        Measured rods, ascending, NaN-padded, in nm^-1.
    simulated_per_nm : ndarray, shape (k,)
        Simulated rods, ascending, NaN-padded, in nm^-1.
    match : {"positions", "ratios"}, optional
        Compare positions, or ratios q_k / q1 (then at least two rods are needed).

    Returns
    -------
    float
        sqrt(mean(((q_sim - q_meas) / q_meas)^2)) over the rods both have; NaN if none.

    Examples
    --------
    >>> sq = np.array([0.83, 0.83 * 2**0.5, np.nan])
    >>> round(rod_misfit(sq, np.array([0.80, 0.80 * 2**0.5, 1.6])), 4)
    0.0361
    >>> rod_misfit(sq, np.array([0.80, 0.80 * 2**0.5, 1.6]), match="ratios")
    0.0
    """
    measured = np.asarray(measured_per_nm, dtype=np.float64)
    simulated = np.asarray(simulated_per_nm, dtype=np.float64)
    measured = measured[np.isfinite(measured)]
    simulated = simulated[np.isfinite(simulated)]
    n = min(measured.size, simulated.size)
    if match == "ratios":
        if n < 2:
            return float("nan")
        measured, simulated = measured[1:n] / measured[0], simulated[1:n] / simulated[0]
    else:
        measured, simulated = measured[:n], simulated[:n]
    if measured.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean(((simulated - measured) / measured) ** 2)))


def compare_rods(
    measured: MeasuredRods,
    runs: Sequence[SimulatedRun],
    *,
    contact_nm: float,
    match: Match = "positions",
) -> Comparison:
    """Put simulated rods on the measured scale and pick the best run per measured phase.

    Parameters
    ----------
    measured : MeasuredRods
        From `simulation.io.read_measured_rods`.
    runs : sequence of SimulatedRun
        One or more state points.
    contact_nm : float
        Centre-to-centre contact distance of the nanocrystals, in nm: one particle edge
        L of the model (face-to-face contact) is this many nm.
    match : {"positions", "ratios"}, optional
        See `rod_misfit`.

    Returns
    -------
    Comparison

    Raises
    ------
    SimulationError
        If no run is given, ``contact_nm`` is not positive or ``match`` is unknown.
    """
    if not runs:
        msg = "compare_rods needs at least one simulated run"
        raise SimulationError(msg)
    if match not in ("positions", "ratios"):
        msg = f"match must be 'positions' or 'ratios', got {match!r}"
        raise SimulationError(msg)
    simulated = np.array(
        [run.rods.per_nm(contact_nm=contact_nm, contact_L=run.contact_L) for run in runs]
    )
    labels = tuple(run.label for run in runs)
    sim_phases = tuple(run.final.classification.phase for run in runs)
    symmetry = np.asarray(measured.symmetry).astype(str)
    phases = []
    for phase in MEASURED_PHASES:
        rows = (symmetry == phase) & np.isfinite(measured.q1_per_nm)
        if not rows.any():
            continue
        rods = _median_rods(measured.rod_positions_per_nm[rows], measured.q1_per_nm[rows])
        misfits = np.array(
            [
                rod_misfit(rods, sim, match=match) if sim_phase != "fluid" else np.nan
                for sim, sim_phase in zip(simulated, sim_phases, strict=True)
            ]
        )
        best = int(np.nanargmin(misfits)) if np.isfinite(misfits).any() else -1
        times = measured.time_s[rows]
        phases.append(
            PhaseMatch(
                phase=phase,
                n_frames=int(rows.sum()),
                time_range_s=(float(times.min()), float(times.max())),
                measured_rods_per_nm=rods,
                misfits=misfits,
                best=best,
                best_label=labels[best] if best >= 0 else "",
                best_phase=sim_phases[best] if best >= 0 else "",
            )
        )
    return Comparison(
        contact_nm=float(contact_nm),
        match=match,
        run_labels=labels,
        run_phases=sim_phases,
        simulated_rods_per_nm=simulated,
        phases=tuple(phases),
    )


def _median_rods(
    rod_positions_per_nm: NDArray[np.float64], q1_per_nm: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Median of each rod column over frames (q1 from the q1 column), NaN-padded, sorted."""
    positions = np.array(rod_positions_per_nm, dtype=np.float64, copy=True)
    positions[:, 0] = np.where(np.isfinite(positions[:, 0]), positions[:, 0], q1_per_nm)
    finite = np.isfinite(positions).any(axis=0)
    medians = np.full(positions.shape[1], np.nan)
    medians[finite] = np.nanmedian(positions[:, finite], axis=0)
    return np.sort(medians)
