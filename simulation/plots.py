"""Figures of the simulator; each function returns a matplotlib Figure (save with io).

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot state), so they
work in worker processes and tests without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon, Rectangle
from numpy.typing import NDArray

from detectors.errors import SimulationError
from simulation.compare import Comparison, MeasuredRods
from simulation.observables import PARTICLE_LABELS, StructureFactor

#: Colour of each particle label / phase in every figure.
LABEL_COLOURS: dict[str, str] = {
    "disordered": "#c8c8c8",
    "fluid": "#c8c8c8",
    "square": "#1f77b4",
    "hexagonal": "#d62728",
    "pseudo-hexagonal": "#9467bd",
}
PHASE_MARKERS: dict[str, str] = {
    "fluid": "o",
    "square": "s",
    "hexagonal": "h",
    "pseudo-hexagonal": "D",
}


_LINE_STYLES: tuple[Literal["--", ":", "-.", "-"], ...] = ("--", ":", "-.", "-")


def truncated_square_outline(edge_L: float, corner_leg_c: float) -> NDArray[np.float64]:
    """Outline of a truncated square centred at the origin, facets along x and y.

    Parameters
    ----------
    edge_L : float
        Edge of the untruncated square, in L.
    corner_leg_c : float
        Length cut from each edge at each corner, in L (0 <= c < edge_L / 2).

    Returns
    -------
    ndarray, shape (8, 2)
        Vertices, counter-clockwise, in L.

    Examples
    --------
    >>> truncated_square_outline(1.0, 0.2)[:2].tolist()
    [[0.5, -0.3], [0.5, 0.3]]
    """
    if not 0 <= corner_leg_c < edge_L / 2:
        msg = f"need 0 <= corner_leg_c < edge_L / 2, got c={corner_leg_c}, L={edge_L}"
        raise SimulationError(msg)
    h, f = edge_L / 2, edge_L / 2 - corner_leg_c
    return np.array(
        [[h, -f], [h, f], [f, h], [-f, h], [-h, f], [-h, -f], [-f, -h], [f, -h]], dtype=float
    )


def _placed(
    outline_L: NDArray[np.float64],
    positions_L: NDArray[np.float64],
    angles_rad: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Outlines rotated by each angle and moved to each position: shape (N, V, 2)."""
    cos, sin = np.cos(angles_rad)[:, None], np.sin(angles_rad)[:, None]
    x, y = outline_L[None, :, 0], outline_L[None, :, 1]
    return np.stack(
        [positions_L[:, :1] + cos * x - sin * y, positions_L[:, 1:2] + sin * x + cos * y], axis=-1
    )


def plot_snapshot(
    positions_L: NDArray[np.float64],
    angles_rad: NDArray[np.float64],
    box_L: NDArray[np.float64],
    *,
    outline_L: NDArray[np.float64],
    label_codes: NDArray[np.int8],
    title: str = "",
    structure_factor: StructureFactor | None = None,
    rods_per_L: NDArray[np.float64] | None = None,
) -> Figure:
    """Particles drawn as their outlines, coloured by local order; optionally S(q) beside.

    Parameters
    ----------
    positions_L : ndarray, shape (N, 2)
        Centres, in L (wrapped into the box for drawing).
    angles_rad : ndarray, shape (N,)
        Orientations, in rad.
    box_L : ndarray, shape (2,)
        Box side lengths, in L.
    outline_L : ndarray, shape (V, 2)
        Particle outline at the origin with angle 0 (e.g. `truncated_square_outline`).
    label_codes : ndarray of int, shape (N,)
        Index into `PARTICLE_LABELS` of each particle (from `bond_order`).
    title : str, optional
        Figure title.
    structure_factor : StructureFactor, optional
        If given, S(q) is drawn in a second panel.
    rods_per_L : ndarray, optional
        Fitted rods to mark on the S(q) panel, in 1/L.

    Returns
    -------
    matplotlib.figure.Figure
    """
    box = np.asarray(box_L, dtype=float)
    wrapped = np.mod(np.asarray(positions_L, dtype=float), box)
    polygons = _placed(np.asarray(outline_L, dtype=float), wrapped, np.asarray(angles_rad))
    labels = np.asarray(PARTICLE_LABELS)[np.asarray(label_codes, dtype=int)]
    colours = [LABEL_COLOURS[str(label)] for label in labels]
    n_panels = 2 if structure_factor is not None else 1
    figure = Figure(figsize=(6.0 * n_panels, 6.0), layout="constrained")
    axes = figure.add_subplot(1, n_panels, 1)
    axes.add_collection(
        PolyCollection(list(polygons), facecolors=colours, edgecolors="k", linewidths=0.2)
    )
    axes.add_patch(Rectangle((0, 0), box[0], box[1], fill=False, lw=0.8, ls="--"))
    axes.set_xlim(-1, box[0] + 1)
    axes.set_ylim(-1, box[1] + 1)
    axes.set_aspect("equal")
    axes.set_xlabel("x / L")
    axes.set_ylabel("y / L")
    handles = [
        Line2D([], [], ls="", marker="s", color=LABEL_COLOURS[label], label=f"{label} ({n})")
        for label in PARTICLE_LABELS
        if (n := int(np.count_nonzero(labels == label)))
    ]
    axes.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    if title:
        axes.set_title(title)
    if structure_factor is not None:
        sq_axes = figure.add_subplot(1, 2, 2)
        sq_axes.plot(structure_factor.q_per_L, structure_factor.s, lw=1.0, color="k")
        for n, q in enumerate(np.asarray(rods_per_L if rods_per_L is not None else [])):
            if np.isfinite(q):
                sq_axes.axvline(q, color="C1", ls="--", lw=0.8)
                sq_axes.annotate(
                    f"q{n + 1}",
                    (q, 1.0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="bottom",
                    fontsize="small",
                )
        sq_axes.set_xlabel("q / L$^{-1}$")
        sq_axes.set_ylabel("S(q), in-plane powder average")
        sq_axes.set_xlim(structure_factor.q_min_valid_per_L, float(structure_factor.q_per_L[-1]))
    return figure


@dataclass(frozen=True, slots=True)
class StatePointResult:
    """One point of a state diagram.

    Attributes
    ----------
    patch_ratio : float
        Px/Fx.
    eps_kT : float
        Well depth, in kT.
    phase : str
        Phase of the final configuration.
    coexistence : bool
        Whether two ordered phases coexist.
    """

    patch_ratio: float
    eps_kT: float
    phase: str
    coexistence: bool = False


def plot_state_diagram(points: Sequence[StatePointResult], *, title: str = "") -> Figure:
    """State diagram: x = Px/Fx, y = eps/kT, marker and colour by phase.

    Coexistence points get a green ring (the study's Fig. 5c shades them green).

    Parameters
    ----------
    points : sequence of StatePointResult
        The state points.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure = Figure(figsize=(6.0, 4.8), layout="constrained")
    axes = figure.add_subplot()
    for phase, marker in PHASE_MARKERS.items():
        chosen = [p for p in points if p.phase == phase]
        if chosen:
            axes.scatter(
                [p.patch_ratio for p in chosen],
                [p.eps_kT for p in chosen],
                marker=marker,
                s=110,
                c=LABEL_COLOURS[phase],
                edgecolors="k",
                label=phase,
                zorder=3,
            )
    ringed = [p for p in points if p.coexistence]
    if ringed:
        axes.scatter(
            [p.patch_ratio for p in ringed],
            [p.eps_kT for p in ringed],
            s=330,
            facecolors="none",
            edgecolors="#2ca02c",
            linewidths=2.0,
            label="coexistence",
            zorder=2,
        )
    axes.set_xlabel("patch size $P_x/F_x$")
    axes.set_ylabel(r"attraction $\varepsilon/k_BT$")
    axes.set_xlim(0.0, 1.05)
    eps = [p.eps_kT for p in points] or [0.0, 1.0]
    axes.set_ylim(min(0.0, min(eps) - 0.5), max(eps) + 1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes.set_title(title or "state diagram (final configurations)")
    return figure


def plot_comparison(measured: MeasuredRods, comparison: Comparison) -> Figure:
    """Measured q1(t) and higher rods with the simulated rods of each state point.

    Parameters
    ----------
    measured : MeasuredRods
        The reduced run.
    comparison : Comparison
        From `compare_rods` on the same measured rods.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure = Figure(figsize=(8.0, 5.0), layout="constrained")
    axes = figure.add_subplot()
    t = measured.time_s
    for phase in ("none", "unknown", "hexagonal", "pseudo-hexagonal", "square"):
        rows = (measured.symmetry == phase) & np.isfinite(measured.q1_per_nm)
        if not rows.any():
            continue
        colour = LABEL_COLOURS.get(phase, "#7f7f7f")
        axes.errorbar(
            t[rows],
            measured.q1_per_nm[rows],
            yerr=np.nan_to_num(measured.q1_errors_per_nm[rows]),
            fmt="o",
            ms=4,
            color=colour,
            label=f"measured q1 ({phase})",
        )
        for column in range(1, measured.rod_positions_per_nm.shape[1]):
            axes.plot(
                t[rows],
                measured.rod_positions_per_nm[rows, column],
                ".",
                ms=3,
                color=colour,
                alpha=0.5,
            )
    span = (float(np.nanmin(t)), float(np.nanmax(t))) if t.size else (0.0, 1.0)
    for n, (label, phase, rods) in enumerate(
        zip(
            comparison.run_labels,
            comparison.run_phases,
            comparison.simulated_rods_per_nm,
            strict=True,
        )
    ):
        style: Literal["--", ":", "-.", "-"] = _LINE_STYLES[n % 4]
        for q in rods[np.isfinite(rods)]:
            axes.hlines(q, *span, colors=f"C{n % 10}", linestyles=style, lw=1.2)
        axes.plot([], [], color=f"C{n % 10}", ls=style, label=f"sim. {label} ({phase})")
    for match in comparison.phases:
        if match.best >= 0:
            t0, t1 = match.time_range_s
            axes.axvspan(t0, t1, color=LABEL_COLOURS[match.phase], alpha=0.08)
            axes.annotate(
                f"best: {match.best_label}",
                ((t0 + t1) / 2, 0.02),
                xycoords=("data", "axes fraction"),
                ha="center",
                fontsize="small",
            )
    axes.set_xlabel("time / s")
    axes.set_ylabel("rod position q$_\\parallel$ / nm$^{-1}$")
    axes.set_title(f"rods: measured vs simulated (contact {comparison.contact_nm:g} nm)")
    axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def plot_patch_rule(*, depth_L: float = 0.05, gap_L: float = 0.02) -> Figure:
    """README figure: the patch rule, and a long patch bonding two staggered neighbours.

    Each of the four facets of length Fx = L - 2c carries a patch rectangle of length
    Px = (Px/Fx) Fx along it, reaching ``depth_L`` outward. Two particles gain -eps for
    each pair of overlapping patch rectangles; the hard outlines may not overlap. Left: a
    short patch (Px/Fx = 0.1) on the study's particle (c = 0.1 L) bonds one neighbour
    face to face. Right: a long one (Px/Fx = 0.8, Px = 0.64 L > L / 2) bonds both
    neighbours of a staggered row, which a square lattice cannot offer (the regular
    octagon's facets, 0.41 L, are too short for this at any Px/Fx). The bond counts in
    the panel titles come from `simulation.shape.patch_bonds`.

    Parameters
    ----------
    depth_L : float, optional
        Patch depth delta, in L (drawn as given).
    gap_L : float, optional
        Gap between facing facets, in L (< 2 `depth_L`, so facing patches overlap).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from simulation.shape import Patches, TruncatedSquare, patch_bonds

    shape = TruncatedSquare(corner_leg_c=0.1)
    pitch = shape.edge_L + gap_L
    cases = (
        (0.1, np.array([[0.0, 0.0], [pitch, 0.0]]), "short patch: one neighbour"),
        (
            0.8,
            np.array([[0.0, 0.0], [-pitch / 2, pitch], [pitch / 2, pitch]]),
            "long patch: two staggered neighbours",
        ),
    )
    figure = Figure(figsize=(9.0, 4.2), layout="constrained")
    for column, (ratio, centres, title) in enumerate(cases):
        axes = figure.add_subplot(1, 2, column + 1)
        patches = Patches(ratio, 1.0, depth_delta_L=depth_L)
        bonds = [
            patch_bonds(shape, patches, float(dx), float(dy), 0.0, 0.0)
            for dx, dy in centres[1:] - centres[0]
        ]
        for centre in centres:
            axes.add_patch(
                Polygon(shape.vertices(*centre), closed=True, fc="#dddddd", ec="k", lw=1.2)
            )
            for rect in patches.rectangles(shape, *centre):
                axes.add_patch(Polygon(rect, closed=True, lw=0.8, ec="k", fc="#d62728"))
        facet, patch = shape.facet_length, patches.length_L(shape)
        x_arrow = -shape.edge_L / 2 - depth_L - 0.08
        axes.annotate(
            "", (x_arrow, patch / 2), (x_arrow, -patch / 2), arrowprops={"arrowstyle": "<->"}
        )
        axes.text(x_arrow - 0.03, 0.0, f"$P_x$ = {patch:.2f} L", ha="right", va="center")
        axes.text(
            0.0,
            -shape.edge_L / 2 - 0.15,
            f"$P_x/F_x$ = {ratio:g}, $F_x$ = {facet:.1f} L, c = {shape.corner_leg_c:g} L, "
            f"$\\delta$ = {depth_L:g} L",
            ha="center",
            va="top",
        )
        axes.set_title(f"{title}\nbonds of the lower particle: {sum(bonds)} x $-\\varepsilon$")
        axes.set_xlim(-1.6, 1.7)
        axes.set_ylim(-0.9, 1.7)
        axes.set_aspect("equal")
        axes.axis("off")
    figure.suptitle("patch rule: overlapping patch rectangles bond; hard cores may not overlap")
    return figure
