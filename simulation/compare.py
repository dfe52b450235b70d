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

``match="profile"`` (the CLI's default) holds each measured q_par cut (`MeasuredCuts`,
``/entry/gisaxs_cuts``) against a run's whole S(q) instead of against a list of peaks
(`fit_profile`): the cut over ``window_q1`` (0.6-2.3 q1, which holds the first rod and
every order that tells the lattices apart: sqrt 2, sqrt 3, 2, sqrt 5) is modelled as

    I(q) = sum_m b_m q^-m + S(q d / c) sum_m a_m q^-m,   a_m, b_m >= 0,

a smooth, falling background plus the simulated S(q) under a smooth, falling envelope
(the particles' form factor), with the contact distance d (nm per contact length c of
the model) fitted. The measured cut is first smoothed by ``smoothing_q1`` (6 % of q1): its
rods are far sharper than the peaks of a small simulation box, and widths are not what is
compared. The scan of d is limited to where the run's first rod falls within
``q1_tolerance`` of the measured first rod, so the first rod is always held against the
first rod, never against a higher order. Each point is weighted by
1 / (sigma^2 + (relative_error I)^2): a weak rod between strong ones (the sqrt 2 of a
square lattice, the sqrt 3 of a hexagonal one) or its absence counts as much as the
first rod's height, and the misfit (the weighted rms residual) measures the profile,
positions and ratios together. A peak list needs the peaks to be found and paired
first; a brick-mosaic "hexagonal" S(q) with a smeared sqrt 3 rod then pairs its 1.9 q1
peak with the measured sqrt 3 rod and loses to a square run, while the profile sees the
square run's sqrt 2 peak where the measured cut has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar, nnls

from detectors.errors import SimulationError
from simulation.observables import SimulatedRun, StructureFactor

MEASURED_PHASES: tuple[str, ...] = ("hexagonal", "pseudo-hexagonal", "square")
Match = Literal["positions", "ratios", "profile"]
MATCHES: tuple[Match, ...] = ("positions", "ratios", "profile")


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
class MeasuredCuts:
    """The GISAXS q_par cuts of a reduced run, one row per frame.

    Attributes
    ----------
    time_s : ndarray, shape (n,)
        Frame time, in s (the rows of /entry/first_rod, in the same order).
    q_par_per_nm : ndarray, shape (m,)
        Bin positions, in nm^-1.
    intensity, intensity_errors : ndarray, shape (n, m)
        Cut intensity and its 1-sigma error (NaN where a bin is empty).
    source : str
        The file they came from.
    """

    time_s: NDArray[np.float64]
    q_par_per_nm: NDArray[np.float64]
    intensity: NDArray[np.float64]
    intensity_errors: NDArray[np.float64]
    source: str = ""


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """How a measured cut is held against a simulated S(q) (`fit_profile`).

    Attributes
    ----------
    window_q1 : tuple of float
        q window of the comparison, in units of the measured first rod q1.
    q1_tolerance : float
        The contact distance is searched where the run's first rod lands within this
        fraction of the measured q1.
    relative_error : float
        Model error as a fraction of the measured intensity, added in quadrature to the
        counting error in the weights.
    background_powers, envelope_powers : tuple of int
        Powers m of the q^-m terms of the background and of the envelope of S(q).
    smoothing_q1 : float
        The measured cut is smoothed with a Gaussian of this sigma (a fraction of q1)
        before the comparison: measured rods (domains of hundreds of nm) are much sharper
        than the peaks of a simulation box of a few hundred particles (FWHM ~15-20 % of
        q1 at N = 256), and rods of different widths should compare by position and
        weight, not by sharpness.
    sim_smoothing_q1 : float
        The same for the simulated S(q) (sigma as a fraction of its first rod).
    n_scan : int
        Contact distances tried before the refinement.
    """

    window_q1: tuple[float, float] = (0.6, 2.3)
    q1_tolerance: float = 0.15
    relative_error: float = 0.1
    smoothing_q1: float = 0.06
    sim_smoothing_q1: float = 0.0
    background_powers: tuple[int, ...] = (0, 1, 2, 3, 4)
    envelope_powers: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_scan: int = 41

    def __post_init__(self) -> None:
        lo, hi = self.window_q1
        if not (0 < lo < 1 < hi):
            msg = f"ProfileSettings.window_q1 must hold q1 (0 < lo < 1 < hi), got {self.window_q1}"
            raise SimulationError(msg)
        if not (0 < self.q1_tolerance < 0.3):
            msg = f"ProfileSettings.q1_tolerance must be in (0, 0.3), got {self.q1_tolerance}"
            raise SimulationError(msg)
        smoothing = min(self.smoothing_q1, self.sim_smoothing_q1)
        if not (self.relative_error >= 0 and smoothing >= 0 and self.n_scan >= 5):
            msg = "ProfileSettings needs relative_error, smoothings >= 0 and n_scan >= 5"
            raise SimulationError(msg)


@dataclass(frozen=True, slots=True)
class ProfileFit:
    """One measured cut against one simulated S(q).

    Attributes
    ----------
    contact_nm : float
        Fitted contact distance (nm per contact length of the model); NaN if no fit.
    misfit : float
        Weighted rms residual over the window (about 1 when the model is within
        ``relative_error`` of the data); NaN if no fit.
    q_per_nm : ndarray, shape (k,)
        The window's bins, in nm^-1.
    model : ndarray, shape (k,)
        The fitted profile there.
    message : str
        Why there is no fit ("" when there is one).
    """

    contact_nm: float
    misfit: float
    q_per_nm: NDArray[np.float64] = field(repr=False)
    model: NDArray[np.float64] = field(repr=False)
    message: str = ""


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
    contacts_nm : ndarray, shape (n_runs,)
        ``match="profile"``: each run's fitted contact distance (median over the frames),
        in nm; NaN otherwise.
    """

    phase: str
    n_frames: int
    time_range_s: tuple[float, float]
    measured_rods_per_nm: NDArray[np.float64]
    misfits: NDArray[np.float64]
    best: int
    best_label: str
    best_phase: str
    contacts_nm: NDArray[np.float64] = field(default_factory=lambda: np.full(0, np.nan))


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
        """Plain-text table: one line per measured phase with its best state point.

        With ``match="profile"`` each line also gives the fitted contact distance, and a
        second table the misfit of every run for every measured phase.
        """
        profile = self.match == "profile"
        head = (
            "matching the whole q_par profile against S(q), contact distance fitted "
            f"(given {self.contact_nm:g} nm)"
            if profile
            else f"contact distance {self.contact_nm:g} nm, matching rod {self.match}"
        )
        lines = [
            head,
            f"{'measured phase':<18}{'frames':>7}{'time / s':>16}  {'rods / nm^-1':<24}"
            f"{'best state point':<26}{'sim. phase':<18}{'misfit':>8}"
            + (f"{'contact / nm':>14}" if profile else ""),
        ]
        for match in self.phases:
            rods = " ".join(f"{q:.3f}" for q in match.measured_rods_per_nm if np.isfinite(q))
            t0, t1 = match.time_range_s
            misfit = match.misfits[match.best] if match.best >= 0 else np.nan
            line = (
                f"{match.phase:<18}{match.n_frames:>7}{f'{t0:.0f}-{t1:.0f}':>16}  {rods:<24}"
                f"{match.best_label or '-':<26}{match.best_phase or '-':<18}{misfit:>8.3f}"
            )
            if profile:
                contact = match.contacts_nm[match.best] if match.best >= 0 else np.nan
                line += f"{contact:>14.2f}"
            lines.append(line)
        if not self.phases:
            lines.append("no frame with a hexagonal, pseudo-hexagonal or square rod pattern")
        elif profile:
            lines.append("misfit of each state point (weighted rms residual; - for a fluid):")
            lines.append(
                f"{'state point':<26}{'sim. phase':<18}"
                + "".join(f"{m.phase:>18}" for m in self.phases)
            )
            for n, (label, phase) in enumerate(zip(self.run_labels, self.run_phases, strict=True)):
                cells = "".join(
                    f"{m.misfits[n]:>18.3f}" if np.isfinite(m.misfits[n]) else f"{'-':>18}"
                    for m in self.phases
                )
                lines.append(f"{label:<26}{phase:<18}{cells}")
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
    cuts: MeasuredCuts | None = None,
    profile_settings: ProfileSettings | None = None,
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
    match : {"positions", "ratios", "profile"}, optional
        "positions", "ratios": see `rod_misfit`; "profile": each frame's cut against each
        run's whole S(q) (`fit_profile`), the phase's misfit the rms over its frames.
    cuts : MeasuredCuts, optional
        The cuts of the same run (`simulation.io.read_measured_cuts`); needed for
        "profile".
    profile_settings : ProfileSettings, optional
        Settings of `fit_profile` (defaults when None).

    Returns
    -------
    Comparison

    Raises
    ------
    SimulationError
        If no run is given, ``contact_nm`` is not positive, ``match`` is unknown, or
        "profile" is asked without cuts or with cuts whose frames are not the rods' frames.
    """
    if not runs:
        msg = "compare_rods needs at least one simulated run"
        raise SimulationError(msg)
    if match not in MATCHES:
        msg = f"match must be one of {MATCHES}, got {match!r}"
        raise SimulationError(msg)
    if match == "profile":
        _check_cuts(measured, cuts)
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
        contacts = np.full(len(runs), np.nan)
        if match == "profile" and cuts is not None:
            misfits, contacts = _profile_misfits(
                cuts,
                np.flatnonzero(rows),
                measured.q1_per_nm,
                runs,
                profile_settings or ProfileSettings(),
            )
        else:
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
                contacts_nm=contacts,
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


def fit_profile(
    q_per_nm: NDArray[np.float64],
    intensity: NDArray[np.float64],
    errors: NDArray[np.float64],
    sq: StructureFactor,
    *,
    q1_per_nm: float,
    q1_sim_per_L: float,
    contact_L: float = 1.0,
    settings: ProfileSettings | None = None,
) -> ProfileFit:
    """Hold one measured q_par cut against a simulated S(q), with the contact distance fitted.

    Over ``settings.window_q1`` times `q1_per_nm` the cut is modelled as
    ``sum_m b_m q^-m + S(q d / contact_L) sum_m a_m q^-m`` with all a_m, b_m >= 0 (solved
    by non-negative least squares at each d), weighted by
    ``1 / (errors^2 + (relative_error * intensity)^2)``. d is scanned where the simulated
    first rod ``q1_sim_per_L * contact_L / d`` lies within ``q1_tolerance`` of
    `q1_per_nm`, then refined around the best scan point.

    Parameters
    ----------
    q_per_nm, intensity, errors : ndarray, shape (m,)
        The cut: bin positions in nm^-1 (ascending), intensity and its 1-sigma error;
        NaN bins are left out.
    sq : StructureFactor
        The simulated S(q), q in 1/L.
    q1_per_nm : float
        Measured first rod, in nm^-1 (places the window and the scan).
    q1_sim_per_L : float
        The run's first rod, in 1/L (places the scan).
    contact_L : float, optional
        The model's contact length, in L.
    settings : ProfileSettings, optional
        Defaults when None.

    Returns
    -------
    ProfileFit
        With NaN misfit and a message when the window holds too few bins or S(q) does not
        reach it.

    Examples
    --------
    >>> q_L = np.linspace(1.0, 20.0, 800)
    >>> s = 1 + sum(np.exp(-0.5 * ((q_L - 2 * np.pi * r) / 0.15) ** 2) for r in (1, 2**0.5, 2))
    >>> q = np.linspace(0.3, 2.4, 200)
    >>> cut = 50 / q**2 + 300 * np.interp(q * 7.6, q_L, s) / q**2
    >>> same = ProfileSettings(smoothing_q1=0.03, sim_smoothing_q1=0.03)
    >>> fit = fit_profile(q, cut, np.sqrt(cut), StructureFactor(q_L, s, 1.0),
    ...                   q1_per_nm=0.83, q1_sim_per_L=2 * np.pi, settings=same)
    >>> bool(abs(fit.contact_nm - 7.6) < 0.02), bool(fit.misfit < 0.05)
    (True, True)
    """
    cfg = settings or ProfileSettings()
    q_all = np.asarray(q_per_nm, dtype=np.float64)
    y_all = np.asarray(intensity, dtype=np.float64)
    e_all = np.asarray(errors, dtype=np.float64)
    nothing = np.full(0, np.nan)
    if not (math.isfinite(q1_per_nm) and q1_per_nm > 0 and math.isfinite(q1_sim_per_L)):
        return ProfileFit(math.nan, math.nan, nothing, nothing, "no first rod to place the fit")
    # the run's first rod within q1_tolerance of the measured one
    d_lo = q1_sim_per_L * contact_L / (q1_per_nm * (1.0 + cfg.q1_tolerance))
    d_hi = q1_sim_per_L * contact_L / (q1_per_nm * (1.0 - cfg.q1_tolerance))
    sq_q = np.asarray(sq.q_per_L, dtype=np.float64)
    # S >= 0; the finite box's J0 sum can dip below near its smallest valid q
    sq_s = np.clip(np.asarray(sq.s, dtype=np.float64), 0.0, None)
    # the window, within what S(q) reaches over the whole scan
    lo = max(cfg.window_q1[0] * q1_per_nm, float(sq_q[0]) * contact_L / d_lo)
    hi = min(cfg.window_q1[1] * q1_per_nm, float(sq_q[-1]) * contact_L / d_hi)
    finite = np.isfinite(q_all) & np.isfinite(y_all) & np.isfinite(e_all) & (e_all >= 0)
    q_all, y_all, e_all = q_all[finite], y_all[finite], e_all[finite]
    y_all, e_all = _smooth_cut(q_all, y_all, e_all, cfg.smoothing_q1 * q1_per_nm)
    sq_s = _smooth_uniform(sq_q, sq_s, cfg.sim_smoothing_q1 * q1_sim_per_L)
    keep = (q_all >= lo) & (q_all <= hi)
    q, y, e = q_all[keep], y_all[keep], e_all[keep]
    n_params = len(cfg.background_powers) + len(cfg.envelope_powers)
    # the window must hold the first rod and the orders that tell the lattices apart
    if q.size < n_params + 5 or q.min() > 0.9 * q1_per_nm or q.max() < 1.5 * q1_per_nm:
        msg = (
            f"{q.size} bins in {lo:.3f}-{hi:.3f} nm^-1 do not hold 0.9-1.5 q1 (the cut and the "
            f"simulated S(q), {sq_q[0]:.2f}-{sq_q[-1]:.2f} /L, at contact distances "
            f"{d_lo:.2f}-{d_hi:.2f} nm)"
        )
        return ProfileFit(math.nan, math.nan, q, np.full(q.size, np.nan), msg)
    weight = 1.0 / np.sqrt(e**2 + (cfg.relative_error * y) ** 2 + 1e-300)
    q_rel = q / q1_per_nm
    background = np.column_stack([q_rel ** (-m) for m in cfg.background_powers])
    envelope = np.column_stack([q_rel ** (-m) for m in cfg.envelope_powers])

    def solve(d: float) -> tuple[float, NDArray[np.float64]]:
        s_here = np.interp(q * d / contact_L, sq_q, sq_s)
        # the rods' contrast is free of the baseline: S - 1 under the envelope
        design = np.column_stack([background, envelope * (s_here - 1.0)[:, None]])
        scale = np.abs(design).max(axis=0)
        scale[scale == 0] = 1.0
        coef, _ = nnls((design / scale) * weight[:, None], y * weight, maxiter=50 * n_params)
        model = (design / scale) @ coef
        return float(np.sum(((y - model) * weight) ** 2)), model

    scan = np.linspace(d_lo, d_hi, cfg.n_scan)
    costs = np.array([solve(float(d))[0] for d in scan])
    best = int(np.argmin(costs))
    step = float(scan[1] - scan[0])
    refined = minimize_scalar(
        lambda d: solve(float(d))[0],
        bounds=(max(d_lo, scan[best] - step), min(d_hi, scan[best] + step)),
        method="bounded",
        options={"xatol": 1e-5 * float(scan[best])},
    )
    d_best = float(refined.x) if refined.fun <= costs[best] else float(scan[best])
    cost, model = solve(d_best)
    return ProfileFit(d_best, math.sqrt(cost / q.size), q, model)


def _smooth_cut(
    q: NDArray[np.float64], y: NDArray[np.float64], e: NDArray[np.float64], sigma: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gaussian-weighted mean of a cut on its own (near-uniform) bins, and its error."""
    if sigma <= 0 or q.size < 2:
        return y, e
    kernel = np.exp(-0.5 * ((q[:, None] - q[None, :]) / sigma) ** 2)
    kernel[kernel < 1e-6] = 0.0
    kernel /= kernel.sum(axis=1, keepdims=True)
    return kernel @ y, np.sqrt((kernel**2) @ (e**2))


def _smooth_uniform(
    q: NDArray[np.float64], s: NDArray[np.float64], sigma: float
) -> NDArray[np.float64]:
    """Gaussian smoothing of S on its uniform grid (the ends are kept by reflection)."""
    if sigma <= 0 or q.size < 2 or not math.isfinite(sigma):
        return s
    from scipy.ndimage import gaussian_filter1d

    return np.asarray(gaussian_filter1d(s, sigma / float(q[1] - q[0]), mode="nearest"))


def first_rod_per_L(run: SimulatedRun) -> float:
    """The run's first rod in 1/L: its fitted q1, else the highest S(q) past the box limit."""
    q1 = float(run.rods.q_per_L[0])
    if math.isfinite(q1):
        return q1
    sq = run.structure_factor
    if sq.s.size == 0:
        return math.nan
    return float(sq.q_per_L[int(np.argmax(sq.s))])


def _check_cuts(measured: MeasuredRods, cuts: MeasuredCuts | None) -> None:
    """The cuts must be there and belong, row for row, to the measured rods."""
    if cuts is None:
        msg = (
            f"{measured.source or 'results'}: matching profiles needs the q_par cuts "
            "(/entry/gisaxs_cuts of `gixs reduce`); use --match positions without them"
        )
        raise SimulationError(msg)
    same = cuts.time_s.shape == measured.time_s.shape and np.allclose(
        cuts.time_s, measured.time_s, equal_nan=True
    )
    if not same or cuts.intensity.shape != (cuts.time_s.size, cuts.q_par_per_nm.size):
        msg = (
            f"{cuts.source or 'results'}: /entry/gisaxs_cuts ({cuts.intensity.shape}, "
            f"{cuts.time_s.size} times) does not match /entry/first_rod "
            f"({measured.time_s.size} frames); the file is damaged, reduce again"
        )
        raise SimulationError(msg)


def _profile_misfits(
    cuts: MeasuredCuts,
    frames: NDArray[np.int64],
    q1_per_nm: NDArray[np.float64],
    runs: Sequence[SimulatedRun],
    settings: ProfileSettings,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per run: rms over `frames` of the profile misfit, and the median fitted contact."""
    misfits = np.full(len(runs), np.nan)
    contacts = np.full(len(runs), np.nan)
    for n, run in enumerate(runs):
        if run.final.classification.phase == "fluid":
            continue
        q1_sim = first_rod_per_L(run)
        fits = [
            fit_profile(
                cuts.q_par_per_nm,
                cuts.intensity[f],
                cuts.intensity_errors[f],
                run.structure_factor,
                q1_per_nm=float(q1_per_nm[f]),
                q1_sim_per_L=q1_sim,
                contact_L=run.contact_L,
                settings=settings,
            )
            for f in frames
        ]
        values = np.array([fit.misfit for fit in fits])
        if np.isfinite(values).any():
            misfits[n] = float(np.sqrt(np.nanmean(values**2)))
            contacts[n] = float(np.nanmedian([fit.contact_nm for fit in fits]))
    return misfits, contacts
