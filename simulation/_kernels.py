"""Compiled (numba, ``cache=True``) inner loops of the Monte Carlo engine.

Private module: `simulation.shape` and `simulation.mc` wrap everything here. Geometry
and patch parameters travel as one float64 array built by `pack`; its slots are the
``G_*`` indices below. Lengths are in L, angles in rad, energies in kT.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

G_HL = 0  # L / 2
G_B = 1  # L / 2 - c: half-length of a {100} facet
G_AO = 2  # (L - c) / sqrt 2: distance from centre to a corner facet
G_FOUR_R2 = 3  # (2 circumradius)^2: no overlap beyond
G_FOUR_A2 = 4  # (2 apothem)^2: overlap within
G_HP = 5  # Px / 2: patch half-length along the facet
G_HD = 6  # delta / 2: patch half-depth
G_PM = 7  # L / 2 + delta / 2: centre of a patch from the particle centre
G_BOND2 = 8  # (2 R_patch)^2: no bond beyond
G_PCAND = 9  # a facet can bond only if the partner's centre projects beyond this on its normal
G_EPS = 10  # eps, in kT
G_HASP = 11  # 1.0 if the model has patches, else 0.0
G_RCUT = 12  # interaction range: max(2 circumradius, 2 R_patch)
G_SIZE = 13

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def pack(
    edge_L: float, corner_leg_c: float, patch_length_L: float, depth_delta_L: float, eps_kT: float
) -> NDArray[np.float64]:
    """Pack shape and patch parameters for the kernels (``patch_length_L = 0``: hard only).

    Parameters
    ----------
    edge_L, corner_leg_c : float
        Truncated square, in L.
    patch_length_L, depth_delta_L : float
        Patch rectangle length Px and depth delta, in L.
    eps_kT : float
        Well depth per bond, in kT.

    Returns
    -------
    ndarray, shape (G_SIZE,)
        The packed parameters.
    """
    g = np.zeros(G_SIZE, dtype=np.float64)
    hl = edge_L / 2.0
    circum = math.hypot(hl, hl - corner_leg_c)
    apothem = min(hl, (edge_L - corner_leg_c) * _INV_SQRT2)
    g[G_HL] = hl
    g[G_B] = hl - corner_leg_c
    g[G_AO] = (edge_L - corner_leg_c) * _INV_SQRT2
    g[G_FOUR_R2] = 4.0 * circum * circum
    g[G_FOUR_A2] = 4.0 * apothem * apothem
    g[G_RCUT] = 2.0 * circum
    if patch_length_L > 0.0:
        r_patch = math.hypot(hl + depth_delta_L, patch_length_L / 2.0)
        g[G_HP] = patch_length_L / 2.0
        g[G_HD] = depth_delta_L / 2.0
        g[G_PM] = hl + depth_delta_L / 2.0
        g[G_BOND2] = 4.0 * r_patch * r_patch
        g[G_PCAND] = hl - r_patch
        g[G_EPS] = eps_kT
        g[G_HASP] = 1.0
        g[G_RCUT] = max(2.0 * circum, 2.0 * r_patch)
    return g


@numba.njit(cache=True, inline="always")
def _support(g: NDArray[np.float64], ax: float, ay: float) -> float:
    """Support (half-width) of the octagon along a unit direction given in its body frame."""
    ax = abs(ax)
    ay = abs(ay)
    if ax >= ay:
        return g[G_HL] * ax + g[G_B] * ay
    return g[G_HL] * ay + g[G_B] * ax


@numba.njit(cache=True, inline="always")
def overlap(
    dx: float, dy: float, c1: float, s1: float, c2: float, s2: float, g: NDArray[np.float64]
) -> bool:
    """Exact octagon overlap: bounding circles, then separating axes (8 facet normals).

    ``(dx, dy)`` is centre 2 minus centre 1; ``(c, s)`` the cosine and sine of each angle.
    Interiors must intersect: touching is no overlap.
    """
    r2 = dx * dx + dy * dy
    if r2 >= g[G_FOUR_R2]:
        return False
    if r2 < g[G_FOUR_A2]:
        return True
    cr = c1 * c2 + s1 * s2  # cos(theta1 - theta2)
    sr = s1 * c2 - c1 * s2  # sin(theta1 - theta2)
    # every facet normal of one particle seen in the other's frame has |components| either
    # {|cr|, |sr|} (the {100} normals) or {|cr - sr|, |cr + sr|} / sqrt 2 (the corner normals)
    sum_even = g[G_HL] + _support(g, cr, sr)
    sum_odd = g[G_AO] + _support(g, (cr - sr) * _INV_SQRT2, (cr + sr) * _INV_SQRT2)
    p0 = dx * c1 + dy * s1
    p2 = -dx * s1 + dy * c1
    if abs(p0) >= sum_even or abs(p2) >= sum_even:
        return False
    if abs(p0 + p2) * _INV_SQRT2 >= sum_odd or abs(p2 - p0) * _INV_SQRT2 >= sum_odd:
        return False
    q0 = dx * c2 + dy * s2
    q2 = -dx * s2 + dy * c2
    if abs(q0) >= sum_even or abs(q2) >= sum_even:
        return False
    return not (abs(q0 + q2) * _INV_SQRT2 >= sum_odd or abs(q2 - q0) * _INV_SQRT2 >= sum_odd)


@numba.njit(cache=True, inline="always")
def _facet_normal(k: int, c: float, s: float) -> tuple[float, float]:
    if k == 0:
        return c, s
    if k == 1:
        return -s, c
    if k == 2:
        return -c, -s
    return s, -c


@numba.njit(cache=True)
def bonds(
    dx: float, dy: float, c1: float, s1: float, c2: float, s2: float, g: NDArray[np.float64]
) -> int:
    """Number of overlapping patch-rectangle pairs of two particles (0 if no patches)."""
    r2 = dx * dx + dy * dy
    if r2 >= g[G_BOND2]:
        return 0
    hp = g[G_HP]
    hd = g[G_HD]
    pm = g[G_PM]
    thr = g[G_PCAND]
    p0 = dx * c1 + dy * s1
    p2 = -dx * s1 + dy * c1
    q0 = -(dx * c2 + dy * s2)
    q2 = -(-dx * s2 + dy * c2)
    count = 0
    for k in range(4):
        pk = p0 if k == 0 else (p2 if k == 1 else (-p0 if k == 2 else -p2))
        if pk < thr:
            continue
        nkx, nky = _facet_normal(k, c1, s1)
        for m in range(4):
            qm = q0 if m == 0 else (q2 if m == 1 else (-q0 if m == 2 else -q2))
            if qm < thr:
                continue
            nmx, nmy = _facet_normal(m, c2, s2)
            ddx = dx + pm * (nmx - nkx)
            ddy = dy + pm * (nmy - nky)
            cnn = abs(nkx * nmx + nky * nmy)
            cnt = abs(-nkx * nmy + nky * nmx)  # |n_k . t_m| with t = (-n_y, n_x)
            reach_n = hd + hd * cnn + hp * cnt
            reach_t = hp + hd * cnt + hp * cnn
            if abs(ddx * nkx + ddy * nky) >= reach_n:
                continue
            if abs(-ddx * nky + ddy * nkx) >= reach_t:
                continue
            if abs(ddx * nmx + ddy * nmy) >= reach_n:
                continue
            if abs(-ddx * nmy + ddy * nmx) >= reach_t:
                continue
            count += 1
    return count


@numba.njit(cache=True)
def overlaps_array(
    dx: NDArray[np.float64],
    dy: NDArray[np.float64],
    t1: NDArray[np.float64],
    t2: NDArray[np.float64],
    g: NDArray[np.float64],
) -> NDArray[np.bool_]:
    """`overlap` over arrays of pairs."""
    out = np.empty(dx.size, dtype=np.bool_)
    for i in range(dx.size):
        out[i] = overlap(
            dx[i], dy[i], math.cos(t1[i]), math.sin(t1[i]), math.cos(t2[i]), math.sin(t2[i]), g
        )
    return out


@numba.njit(cache=True)
def bonds_array(
    dx: NDArray[np.float64],
    dy: NDArray[np.float64],
    t1: NDArray[np.float64],
    t2: NDArray[np.float64],
    g: NDArray[np.float64],
) -> NDArray[np.int64]:
    """`bonds` over arrays of pairs."""
    out = np.empty(dx.size, dtype=np.int64)
    for i in range(dx.size):
        out[i] = bonds(
            dx[i], dy[i], math.cos(t1[i]), math.sin(t1[i]), math.cos(t2[i]), math.sin(t2[i]), g
        )
    return out


@numba.njit(cache=True)
def count_pairs(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    th: NDArray[np.float64],
    box: NDArray[np.float64],
    g: NDArray[np.float64],
    count_bonds: bool,
) -> int:
    """Overlapping pairs (or bonds, if `count_bonds`) over all minimum-image pairs, O(N^2)."""
    n = x.size
    co = np.cos(th)
    si = np.sin(th)
    lx = box[0]
    ly = box[1]
    total = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = x[j] - x[i]
            dy = y[j] - y[i]
            dx -= lx * np.rint(dx / lx)
            dy -= ly * np.rint(dy / ly)
            if count_bonds:
                total += bonds(dx, dy, co[i], si[i], co[j], si[j], g)
            elif overlap(dx, dy, co[i], si[i], co[j], si[j], g):
                total += 1
    return total
