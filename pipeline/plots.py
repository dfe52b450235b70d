"""Figures of a run: rods and spacing, {200} width and domain size, waterfalls of the cuts.

Each function builds a matplotlib `Figure` (no pyplot state, nothing written);
:func:`pipeline.io.save_figure` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.checks import is_input_problem
from pipeline.config import Kind
from pipeline.reduce import FrameResult, ReductionPlan
from pipeline.timeseries import SeriesRow

SYMMETRY_COLOURS = {
    "none": "0.6",
    "unknown": "tab:purple",
    "hexagonal": "tab:blue",
    "pseudo-hexagonal": "tab:orange",
    "square": "tab:red",
}


def rods_figure(rows: Sequence[SeriesRow]) -> Figure:
    """First rod q1 and the lattice spacing against time, coloured by symmetry."""
    fig = Figure(figsize=(7.0, 6.0), layout="constrained")
    ax_q, ax_a = fig.subplots(2, 1, sharex=True)
    gisaxs = [r for r in rows if r.detector == "gisaxs"]
    for symmetry, colour in SYMMETRY_COLOURS.items():
        sel = [r for r in gisaxs if r.symmetry == symmetry and math.isfinite(r.q1_per_nm)]
        if not sel:
            continue
        t = [r.time_s for r in sel]
        ax_q.errorbar(
            t, [r.q1_per_nm for r in sel], yerr=[r.q1_err_per_nm for r in sel],
            fmt="o", ms=4, color=colour, label=symmetry,
        )  # fmt: skip
        ax_a.plot(t, [r.spacing_nm for r in sel], "o", ms=4, color=colour)
    no_rod = [r.time_s for r in gisaxs if r.symmetry == "none"]
    if no_rod:
        ax_q.plot(no_rod, np.zeros(len(no_rod)), "|", color="0.5", label="no rod")
    _mark_input_problems(ax_q, gisaxs)
    ax_q.set_ylabel("first rod q1 (nm$^{-1}$)")
    ax_a.set_ylabel("nearest-neighbour spacing (nm)")
    ax_a.set_xlabel("time (s)")
    ax_q.legend(fontsize="small")
    ax_q.set_title("GISAXS: first superlattice rod")
    return fig


def peak200_figure(rows: Sequence[SeriesRow]) -> Figure:
    """{200} FWHM (fitted and corrected) and Scherrer domain size against time (Fig. 2 a/b)."""
    fig = Figure(figsize=(7.0, 6.0), layout="constrained")
    ax_w, ax_d = fig.subplots(2, 1, sharex=True)
    giwaxs = [r for r in rows if r.detector == "giwaxs"]
    t = [r.time_s for r in giwaxs]
    ax_w.errorbar(
        t, [r.fwhm200_per_nm for r in giwaxs], yerr=[r.fwhm200_err_per_nm for r in giwaxs],
        fmt="o", ms=4, label="fitted on detector",
    )  # fmt: skip
    ax_w.plot(t, [r.fwhm200_corr_per_nm for r in giwaxs], "s", ms=4, label="instrument removed")
    ax_d.errorbar(
        t, [r.domain_nm for r in giwaxs], yerr=[r.domain_err_nm for r in giwaxs],
        fmt="o", ms=4, color="tab:green",
    )  # fmt: skip
    _mark_input_problems(ax_w, giwaxs)
    ax_w.set_ylabel("{200} FWHM along q$_\\parallel$ (nm$^{-1}$)")
    ax_d.set_ylabel("Scherrer domain size (nm)")
    ax_d.set_xlabel("time (s)")
    ax_w.legend(fontsize="small")
    ax_w.set_title("GIWAXS: PbSe {200} reflection")
    return fig


def _mark_input_problems(ax: Axes, rows: Sequence[SeriesRow]) -> None:
    """Mark frames with bad input (unreadable, all zero, NaN, dead, saturated) at y = 0.

    They are drawn apart from real "no rod" / "no peak" frames: a red cross, not a tick.
    """
    bad = [r.time_s for r in rows if is_input_problem(r.flags)]
    if bad:
        ax.plot(bad, np.zeros(len(bad)), "x", color="tab:red", ms=7, label="bad input (see flags)")


def waterfall_figure(
    q_par_per_nm: np.ndarray, times_s: Sequence[float], intensity: np.ndarray, *, kind: Kind
) -> Figure:
    """The stacked q_par cuts of one detector as an image, time upwards.

    Parameters
    ----------
    q_par_per_nm : ndarray of shape (n_q,)
        Cut q grid, in nm^-1.
    times_s : sequence of float
        Frame times, in s.
    intensity : ndarray of shape (n_frames, n_q)
        Stacked cuts.
    kind : {"gisaxs", "giwaxs"}
        Which detector (for the title and the log scale).
    """
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.subplots()
    data = np.asarray(intensity, dtype=float)
    positive = data[np.isfinite(data) & (data > 0)]
    floor = float(np.percentile(positive, 1)) if positive.size else 1.0
    shown = np.log10(np.clip(data, floor, None))  # an all-zero (bad) frame's row at the floor
    t = np.asarray(times_s, dtype=float)
    extent = None
    if t.size > 1 and np.all(np.isfinite(t)):
        extent = (float(q_par_per_nm[0]), float(q_par_per_nm[-1]), float(t[0]), float(t[-1]))
    image = ax.imshow(shown, aspect="auto", origin="lower", extent=extent, cmap="viridis")
    fig.colorbar(image, ax=ax, label="log$_{10}$ intensity (a.u.)")
    ax.set_xlabel("q$_\\parallel$ (nm$^{-1}$)")
    ax.set_ylabel("time (s)" if extent else "frame")
    ax.set_title(f"{kind.upper()}: q$_\\parallel$ cuts over time")
    return fig


def run_figures(
    rows: Sequence[SeriesRow],
    results: Mapping[Kind, Sequence[FrameResult]],
    plans: Mapping[Kind, ReductionPlan],
) -> Iterator[tuple[str, Figure]]:
    """Every figure of a run, as (file stem, figure) pairs."""
    if "gisaxs" in results:
        yield "rods_vs_time", rods_figure(rows)
    if "giwaxs" in results:
        yield "fwhm200_vs_time", peak200_figure(rows)
    for kind, kind_results in results.items():
        times = [r.time_s for r in rows if r.detector == kind]
        stack = np.array([r.intensity for r in kind_results])
        yield (
            f"waterfall_{kind}",
            waterfall_figure(plans[kind].q_par_per_nm, times, stack, kind=kind),
        )
