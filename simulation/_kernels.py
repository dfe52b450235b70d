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
G_INV2PM = 13  # 1 / (2 G_PM)
G_PKOFF = 14  # a facet bonds only if the partner projects beyond r^2 G_INV2PM - G_PKOFF on it
G_RECT2 = 15  # (2 patch circumradius)^2, plus a rounding margin: no patch overlap beyond
G_SIZE = 16

_MARGIN = 1e-9  # slack, in L, that keeps the bond prefilters conservative under rounding

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
        # two patch rectangles overlap only if their centres are closer than 2 rr (rr: the
        # rectangle's circumradius); patch m of the partner lies at pm from its centre, so
        # |d - pm n_k| < pm + 2 rr, i.e. d . n_k > r^2 / (2 pm) - 2 rr - 2 rr^2 / pm
        rr = math.hypot(patch_length_L / 2.0, depth_delta_L / 2.0)
        pm = g[G_PM]
        g[G_INV2PM] = 0.5 / pm
        g[G_PKOFF] = 2.0 * rr + 2.0 * rr * rr / pm + _MARGIN
        g[G_RECT2] = (2.0 * rr + _MARGIN) ** 2
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
    # a facet is a candidate only if the partner's centre projects far enough on its normal
    thr = max(g[G_PCAND], r2 * g[G_INV2PM] - g[G_PKOFF])
    p0 = dx * c1 + dy * s1
    p2 = -dx * s1 + dy * c1
    if abs(p0) < thr and abs(p2) < thr:
        return 0
    q0 = -(dx * c2 + dy * s2)
    q2 = -(-dx * s2 + dy * c2)
    if abs(q0) < thr and abs(q2) < thr:
        return 0
    hp = g[G_HP]
    hd = g[G_HD]
    pm = g[G_PM]
    rect2 = g[G_RECT2]
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
            if ddx * ddx + ddy * ddy >= rect2:
                continue
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


# ---------------------------------------------------------------------------------------
# random numbers: counter-based SplitMix64 streams (reproducible on any number of threads)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0


@numba.njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def stream(seed: np.uint64, a: int, b: int, c: int) -> np.uint64:
    """Start of the random stream keyed on (seed, a, b, c)."""
    z = _mix(seed + _GOLDEN * np.uint64(a + 1))
    z = _mix(z ^ (_M1 * np.uint64(b + 1)))
    return _mix(z ^ (_M2 * np.uint64(c + 1)))


@numba.njit(cache=True, inline="always")
def uniform(st: np.uint64) -> tuple[np.uint64, float]:
    """Next state and a float in [0, 1)."""
    st = st + _GOLDEN
    return st, float(_mix(st) >> _S11) * _TO_UNIT


# ---------------------------------------------------------------------------------------
# cell grid (counting sort); the origin of the grid is shifted by (sx, sy)


@numba.njit(cache=True)
def grid_size(length: float, rcut: float, even: bool) -> int:
    """Cells per side: as many as fit with width >= rcut (even for the checkerboard)."""
    n = int(length / rcut)
    if even and n % 2 == 1 and n > 3:
        n -= 1
    return max(n, 1)


@numba.njit(cache=True, inline="always")
def cell_index(
    x: float, y: float, lx: float, ly: float, sx: float, sy: float, ncx: int, ncy: int
) -> int:
    u = x + sx
    if u >= lx:
        u -= lx
    v = y + sy
    if v >= ly:
        v -= ly
    cx = min(int(u * ncx / lx), ncx - 1)
    cy = min(int(v * ncy / ly), ncy - 1)
    return cy * ncx + cx


@numba.njit(cache=True)
def build_grid(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    lx: float,
    ly: float,
    sx: float,
    sy: float,
    ncx: int,
    ncy: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Counting sort into cells: (cell_start (ncell + 1,), members (N,), cell_of (N,))."""
    n = x.size
    ncell = ncx * ncy
    cell_of = np.empty(n, dtype=np.int64)
    start = np.zeros(ncell + 1, dtype=np.int64)
    for i in range(n):
        c = cell_index(x[i], y[i], lx, ly, sx, sy, ncx, ncy)
        cell_of[i] = c
        start[c + 1] += 1
    for c in range(ncell):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    members = np.empty(n, dtype=np.int64)
    for i in range(n):
        c = cell_of[i]
        members[fill[c]] = i
        fill[c] += 1
    return start, members, cell_of


@numba.njit(cache=True, inline="always")
def _wrap(d: float, length: float) -> float:
    half = 0.5 * length
    if d > half:
        return d - length
    if d < -half:
        return d + length
    return d


@numba.njit(cache=True)
def grid_count(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    lx: float,
    ly: float,
    g: NDArray[np.float64],
    count_bonds: bool,
    stop_at_first: bool,
) -> int:
    """Overlapping pairs (or bonds) over all pairs with a cell grid (box >= 3 rcut per side)."""
    ncx = grid_size(lx, g[G_RCUT], False)
    ncy = grid_size(ly, g[G_RCUT], False)
    start, members, cell_of = build_grid(x, y, lx, ly, 0.0, 0.0, ncx, ncy)
    total = 0
    for i in range(x.size):
        c = cell_of[i]
        cx = c % ncx
        cy = c // ncx
        for oy in range(-1, 2):
            ny = (cy + oy) % ncy
            for ox in range(-1, 2):
                nc = ny * ncx + (cx + ox) % ncx
                for k in range(start[nc], start[nc + 1]):
                    j = members[k]
                    if j <= i:
                        continue
                    dx = _wrap(x[j] - x[i], lx)
                    dy = _wrap(y[j] - y[i], ly)
                    if count_bonds:
                        total += bonds(dx, dy, co[i], si[i], co[j], si[j], g)
                    elif overlap(dx, dy, co[i], si[i], co[j], si[j], g):
                        total += 1
                        if stop_at_first:
                            return total
    return total


# ---------------------------------------------------------------------------------------
# single-particle moves: one checkerboard colour, active cells in parallel

P_DT = 0  # translation step, L
P_DR = 1  # rotation step, rad
P_DCT = 2  # cluster translation step, L
P_DCR = 3  # cluster rotation step, rad
P_DLV = 4  # ln V step
P_PRESSURE = 5  # kT / L^2
P_NPT = 6  # 1.0 for NPT
P_ANISO = 7  # 1.0 for anisotropic volume moves too
P_CLUSTER_EVERY = 8  # sweeps between cluster rounds (0: none)
P_N_CLUSTER = 9  # cluster moves per round
P_VOLUME_EVERY = 10  # sweeps between volume moves
P_CLUSTER_MAX = 11  # largest cluster moved; a bigger one is rejected while it grows
P_CLUSTER_DRAG = 12  # 1.0: a cluster of s members moves with probability 1 / s
P_SIZE = 13

# per-sweep statistics columns
S_T_ATT = 0
S_T_ACC = 1
S_R_ATT = 2
S_R_ACC = 3
S_C_ATT = 4
S_C_ACC = 5
S_C_SIZE = 6
S_V_ATT = 7
S_V_ACC = 8
S_BONDS = 9
S_LX = 10
S_LY = 11
S_SIZE = 12

MIN_CELLS = 4
_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True, inline="always")
def _row_span(start: NDArray[np.int64], row: int, cx: int, ncx: int) -> tuple[int, int, int, int]:
    """Member slots of cells cx - 1 .. cx + 1 of the grid row starting at cell `row`.

    The counting sort keeps neighbouring cells contiguous, so the three cells are the slots
    ``lo .. hi - 1`` (one loop, not three), where the slots from `mid` on are shifted by
    `shift` when the row wraps around (``ncx >= 3``).
    """
    if cx == 0:
        mid = start[row + ncx]
        return start[row + ncx - 1], mid + start[row + 2] - start[row], mid, start[row] - mid
    if cx == ncx - 1:
        mid = start[row + ncx]
        return start[row + cx - 1], mid + start[row + 1] - start[row], mid, start[row] - mid
    hi = start[row + cx + 2]
    return start[row + cx - 1], hi, hi, 0


@numba.njit(cache=True, inline="always")
def _scan_grid(
    i: int,
    xi: float,
    yi: float,
    ci: float,
    si_: float,
    c: int,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    lx: float,
    ly: float,
    ncx: int,
    ncy: int,
    start: NDArray[np.int64],
    members: NDArray[np.int64],
    g: NDArray[np.float64],
    check_overlap: bool,
    patchy: bool,
) -> tuple[bool, int]:
    """(overlap found, bonds) of particle i at (xi, yi, angle) against cell c's 3 x 3 block."""
    cx = c % ncx
    cy = c // ncx
    nb = 0
    for oy in range(-1, 2):
        ny = cy + oy
        if ny < 0:
            ny += ncy
        elif ny >= ncy:
            ny -= ncy
        lo, hi, mid, shift = _row_span(start, ny * ncx, cx, ncx)
        for k in range(lo, hi):
            j = members[k if k < mid else k + shift]
            if j == i:
                continue
            dx = _wrap(x[j] - xi, lx)
            dy = _wrap(y[j] - yi, ly)
            if check_overlap and overlap(dx, dy, ci, si_, co[j], si[j], g):
                return True, nb
            if patchy:
                nb += bonds(dx, dy, ci, si_, co[j], si[j], g)
    return False, nb


@numba.njit(cache=True, inline="always")
def _scan_change(
    i: int,
    xi: float,
    yi: float,
    ci: float,
    si_: float,
    c: int,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    lx: float,
    ly: float,
    ncx: int,
    ncy: int,
    start: NDArray[np.int64],
    members: NDArray[np.int64],
    g: NDArray[np.float64],
) -> tuple[bool, int]:
    """(overlap at the new place, bonds new - old) of particle i moved within cell c."""
    cx = c % ncx
    cy = c // ncx
    xo = x[i]
    yo = y[i]
    co_i = co[i]
    so_i = si[i]
    bond2 = g[G_BOND2]
    d = 0
    for oy in range(-1, 2):
        ny = cy + oy
        if ny < 0:
            ny += ncy
        elif ny >= ncy:
            ny -= ncy
        lo, hi, mid, shift = _row_span(start, ny * ncx, cx, ncx)
        for k in range(lo, hi):
            j = members[k if k < mid else k + shift]
            if j == i:
                continue
            xj = x[j]
            yj = y[j]
            cj = co[j]
            sj = si[j]
            dx = _wrap(xj - xi, lx)
            dy = _wrap(yj - yi, ly)
            if overlap(dx, dy, ci, si_, cj, sj, g):
                return True, d
            if dx * dx + dy * dy < bond2:
                d += bonds(dx, dy, ci, si_, cj, sj, g)
            dx = _wrap(xj - xo, lx)
            dy = _wrap(yj - yo, ly)
            if dx * dx + dy * dy < bond2:
                d -= bonds(dx, dy, co_i, so_i, cj, sj, g)
    return False, d


@numba.njit(cache=True, parallel=True)
def _colour_phase(
    a: int,
    b: int,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    th: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    lx: float,
    ly: float,
    sx: float,
    sy: float,
    ncx: int,
    ncy: int,
    start: NDArray[np.int64],
    members: NDArray[np.int64],
    g: NDArray[np.float64],
    dt: float,
    dr: float,
    seed: np.uint64,
    sweep: int,
    phase: int,
    out: NDArray[np.int64],
) -> None:
    """Trial moves in the active cells (cx % 2 == a, cy % 2 == b); counts into out (nact, 5)."""
    hx = ncx // 2
    nact = hx * (ncy // 2)
    patchy = g[G_HASP] > 0.0
    eps = g[G_EPS]
    for k in numba.prange(nact):
        c = (2 * (k // hx) + b) * ncx + 2 * (k % hx) + a
        n_in = start[c + 1] - start[c]
        t_att = 0
        t_acc = 0
        r_att = 0
        r_acc = 0
        dbonds = 0
        st = stream(seed, sweep, phase, c)
        for _ in range(n_in):
            st, u = uniform(st)
            i = members[start[c] + int(u * n_in)]
            st, u = uniform(st)
            st, u1 = uniform(st)
            translate = u < 0.5
            xn = x[i]
            yn = y[i]
            thn = th[i]
            cn = co[i]
            sn = si[i]
            if translate:
                t_att += 1
                st, u2 = uniform(st)
                xn += (2.0 * u1 - 1.0) * dt
                yn += (2.0 * u2 - 1.0) * dt
                if xn < 0.0:
                    xn += lx
                elif xn >= lx:
                    xn -= lx
                if yn < 0.0:
                    yn += ly
                elif yn >= ly:
                    yn -= ly
                if cell_index(xn, yn, lx, ly, sx, sy, ncx, ncy) != c:
                    continue
            else:
                r_att += 1
                thn += (2.0 * u1 - 1.0) * dr
                if thn < 0.0:
                    thn += _TWO_PI
                elif thn >= _TWO_PI:
                    thn -= _TWO_PI
                cn = math.cos(thn)
                sn = math.sin(thn)
            if patchy:
                # the move stays in cell c, so the old and new neighbours are one 3 x 3 block
                hit, d = _scan_change(
                    i, xn, yn, cn, sn, c, x, y, co, si, lx, ly, ncx, ncy, start, members, g
                )
            else:
                hit, d = _scan_grid(
                    i, xn, yn, cn, sn, c, x, y, co, si, lx, ly, ncx, ncy, start, members, g,
                    True, False,
                )  # fmt: skip
            if hit:
                continue
            if patchy:
                if d < 0:
                    st, u = uniform(st)
                    if u >= math.exp(eps * d):
                        continue
                dbonds += d
            x[i] = xn
            y[i] = yn
            th[i] = thn
            co[i] = cn
            si[i] = sn
            if translate:
                t_acc += 1
            else:
                r_acc += 1
        out[k, 0] = t_att
        out[k, 1] = t_acc
        out[k, 2] = r_att
        out[k, 3] = r_acc
        out[k, 4] = dbonds


# ---------------------------------------------------------------------------------------
# cluster moves (serial): linked-list cells that follow the moved particles


@numba.njit(cache=True, inline="always")
def _scan_list(
    xi: float,
    yi: float,
    ci: float,
    si_: float,
    c: int,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    lx: float,
    ly: float,
    ncx: int,
    ncy: int,
    head: NDArray[np.int64],
    nxt: NDArray[np.int64],
    mark: NDArray[np.int64],
    stamp: int,
    g: NDArray[np.float64],
    check_overlap: bool,
) -> tuple[bool, int]:
    """(overlap, bonds) of a particle at (xi, yi, angle) with the particles not marked `stamp`."""
    cx = c % ncx
    cy = c // ncx
    nb = 0
    for oy in range(-1, 2):
        ny = (cy + oy) % ncy
        for ox in range(-1, 2):
            j = head[ny * ncx + (cx + ox) % ncx]
            while j >= 0:
                if mark[j] != stamp:
                    dx = _wrap(x[j] - xi, lx)
                    dy = _wrap(y[j] - yi, ly)
                    if check_overlap and overlap(dx, dy, ci, si_, co[j], si[j], g):
                        return True, nb
                    nb += bonds(dx, dy, ci, si_, co[j], si[j], g)
                j = nxt[j]
    return False, nb


@numba.njit(cache=True)
def _cluster_phase(
    n_moves: int,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    th: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    lx: float,
    ly: float,
    sx: float,
    sy: float,
    ncx: int,
    ncy: int,
    cell_of: NDArray[np.int64],
    g: NDArray[np.float64],
    dct: float,
    dcr: float,
    max_size: int,
    drag: bool,
    st: np.uint64,
    out: NDArray[np.int64],
) -> None:
    """Bond-linked rigid cluster moves; out = (attempted, accepted, size sum, bond change).

    A cluster that grows beyond its cap is rejected at once. The cap is `max_size`, or with
    `drag` the smaller of it and ``floor(1 / u)`` for u uniform in (0, 1), drawn per move, so
    that a cluster of s members moves with probability 1 / s, like a Stokes drag (Whitelam
    and Geissler, J. Chem. Phys. 127, 154101 (2007)). The reverse move builds the same
    cluster, so the cap keeps detailed balance; it also bounds the cost of a move.
    """
    n = x.size
    eps = g[G_EPS]
    ncell = ncx * ncy
    head = np.full(ncell, -1, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    prv = np.full(n, -1, dtype=np.int64)
    cell = cell_of.copy()
    for i in range(n):
        c = cell[i]
        nxt[i] = head[c]
        if head[c] >= 0:
            prv[head[c]] = i
        head[c] = i
    mark = np.zeros(n, dtype=np.int64)
    members = np.empty(n, dtype=np.int64)
    ux = np.empty(n)
    uy = np.empty(n)
    nx_ = np.empty(n)
    ny_ = np.empty(n)
    nth = np.empty(n)
    for m in range(n_moves):
        stamp = m + 1
        out[0] += 1
        st, u = uniform(st)
        i0 = min(int(u * n), n - 1)
        mark[i0] = stamp
        members[0] = i0
        ux[i0] = x[i0]
        uy[i0] = y[i0]
        cap = max_size
        if drag:
            st, u = uniform(st)
            if u * max_size > 1.0:
                cap = int(1.0 / u)
        size = 1
        top = 0
        while top < size and size <= cap:
            i = members[top]
            top += 1
            c = cell[i]
            cx = c % ncx
            cy = c // ncx
            for oy in range(-1, 2):
                nyc = (cy + oy) % ncy
                for ox in range(-1, 2):
                    j = head[nyc * ncx + (cx + ox) % ncx]
                    while j >= 0:
                        if mark[j] != stamp:
                            dx = _wrap(x[j] - x[i], lx)
                            dy = _wrap(y[j] - y[i], ly)
                            nij = bonds(dx, dy, co[i], si[i], co[j], si[j], g)
                            if nij > 0:
                                st, u = uniform(st)
                                if u < 1.0 - math.exp(-eps * nij):
                                    mark[j] = stamp
                                    ux[j] = ux[i] + dx
                                    uy[j] = uy[i] + dy
                                    members[size] = j
                                    size += 1
                        j = nxt[j]
        out[2] += size
        if size > cap:
            continue
        nb_old = 0
        for k in range(size):
            i = members[k]
            _, nb = _scan_list(
                x[i], y[i], co[i], si[i], cell[i], x, y, co, si, lx, ly, ncx, ncy, head, nxt,
                mark, stamp, g, False,
            )  # fmt: skip
            nb_old += nb
        st, u = uniform(st)
        st, u1 = uniform(st)
        st, u2 = uniform(st)
        if u < 0.5:
            dx = (2.0 * u1 - 1.0) * dct
            dy = (2.0 * u2 - 1.0) * dct
            for k in range(size):
                i = members[k]
                nx_[k] = x[i] + dx
                ny_[k] = y[i] + dy
                nth[k] = th[i]
        else:
            xc = 0.0
            yc = 0.0
            for k in range(size):
                xc += ux[members[k]]
                yc += uy[members[k]]
            xc /= size
            yc /= size
            r2max = 0.0
            r2sum = 0.0
            for k in range(size):
                r2 = (ux[members[k]] - xc) ** 2 + (uy[members[k]] - yc) ** 2
                r2sum += r2
                r2max = max(r2max, r2)
            # a cluster that wraps (or could wrap) the box is only translated: then every
            # pair of members within reach has its minimum image equal to its unwrapped vector
            if math.sqrt(r2max) >= 0.25 * min(lx, ly):
                continue
            alpha = (2.0 * u1 - 1.0) * dcr / max(1.0, math.sqrt(r2sum / size))
            ca = math.cos(alpha)
            sa = math.sin(alpha)
            for k in range(size):
                i = members[k]
                rx = ux[i] - xc
                ry = uy[i] - yc
                nx_[k] = xc + ca * rx - sa * ry
                ny_[k] = yc + sa * rx + ca * ry
                t = th[i] + alpha
                nth[k] = t - _TWO_PI * math.floor(t / _TWO_PI)
        hit = False
        nb_new = 0
        for k in range(size):
            xk = nx_[k] - lx * math.floor(nx_[k] / lx)
            yk = ny_[k] - ly * math.floor(ny_[k] / ly)
            if xk >= lx:
                xk -= lx
            if yk >= ly:
                yk -= ly
            nx_[k] = xk
            ny_[k] = yk
            ck = cell_index(xk, yk, lx, ly, sx, sy, ncx, ncy)
            hit, nb = _scan_list(
                xk, yk, math.cos(nth[k]), math.sin(nth[k]), ck, x, y, co, si, lx, ly, ncx, ncy,
                head, nxt, mark, stamp, g, True,
            )  # fmt: skip
            if hit:
                break
            nb_new += nb
        if hit:
            continue
        out[1] += 1
        out[3] += nb_new - nb_old
        for k in range(size):
            i = members[k]
            x[i] = nx_[k]
            y[i] = ny_[k]
            th[i] = nth[k]
            co[i] = math.cos(nth[k])
            si[i] = math.sin(nth[k])
            cnew = cell_index(x[i], y[i], lx, ly, sx, sy, ncx, ncy)
            cold = cell[i]
            if cnew != cold:
                if prv[i] >= 0:
                    nxt[prv[i]] = nxt[i]
                else:
                    head[cold] = nxt[i]
                if nxt[i] >= 0:
                    prv[nxt[i]] = prv[i]
                prv[i] = -1
                nxt[i] = head[cnew]
                if head[cnew] >= 0:
                    prv[head[cnew]] = i
                head[cnew] = i
                cell[i] = cnew


# ---------------------------------------------------------------------------------------
# volume moves (NPT)


@numba.njit(cache=True)
def _bond_clusters(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    lx: float,
    ly: float,
    g: NDArray[np.float64],
    st: np.uint64,
) -> tuple[np.uint64, NDArray[np.int64], int, NDArray[np.float64], NDArray[np.float64], bool]:
    """Split all particles into bond-linked clusters (link probability 1 - exp(-eps n_ij)).

    Returns the stream state, each particle's cluster label, the number of clusters,
    unwrapped coordinates (each cluster continuous from its first particle) and whether a
    cluster wraps the box (two members within reach whose minimum image is not their
    unwrapped separation).
    """
    n = x.size
    eps = g[G_EPS]
    ncx = grid_size(lx, g[G_RCUT], False)
    ncy = grid_size(ly, g[G_RCUT], False)
    start, members, cell_of = build_grid(x, y, lx, ly, 0.0, 0.0, ncx, ncy)
    label = np.full(n, -1, dtype=np.int64)
    ux = np.empty(n)
    uy = np.empty(n)
    stack = np.empty(n, dtype=np.int64)
    n_clusters = 0
    wraps = False
    for i0 in range(n):
        if label[i0] >= 0:
            continue
        label[i0] = n_clusters
        ux[i0] = x[i0]
        uy[i0] = y[i0]
        stack[0] = i0
        top = 1
        while top > 0:
            top -= 1
            i = stack[top]
            c = cell_of[i]
            cx = c % ncx
            cy = c // ncx
            for oy in range(-1, 2):
                nyc = (cy + oy) % ncy
                for ox in range(-1, 2):
                    nc = nyc * ncx + (cx + ox) % ncx
                    for k in range(start[nc], start[nc + 1]):
                        j = members[k]
                        if j == i or (label[j] >= 0 and label[j] < n_clusters):
                            continue
                        dx = _wrap(x[j] - x[i], lx)
                        dy = _wrap(y[j] - y[i], ly)
                        if label[j] == n_clusters:
                            # a member met again: the cluster wraps the box if its two
                            # unwrapped images disagree
                            if abs(ux[i] + dx - ux[j]) + abs(uy[i] + dy - uy[j]) > 1e-9:
                                wraps = True
                            continue
                        nij = bonds(dx, dy, co[i], si[i], co[j], si[j], g)
                        if nij > 0:
                            st, u = uniform(st)
                            if u < 1.0 - math.exp(-eps * nij):
                                label[j] = n_clusters
                                ux[j] = ux[i] + dx
                                uy[j] = uy[i] + dy
                                stack[top] = j
                                top += 1
        n_clusters += 1
    return st, label, n_clusters, ux, uy, wraps


@numba.njit(cache=True)
def _wraps_after(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    lx: float,
    ly: float,
    g: NDArray[np.float64],
    label: NDArray[np.int64],
    ux: NDArray[np.float64],
    uy: NDArray[np.float64],
) -> bool:
    """Whether two members of one cluster within reach are not at their unwrapped separation."""
    ncx = grid_size(lx, g[G_RCUT], False)
    ncy = grid_size(ly, g[G_RCUT], False)
    start, members, cell_of = build_grid(x, y, lx, ly, 0.0, 0.0, ncx, ncy)
    rc2 = g[G_RCUT] * g[G_RCUT]
    for i in range(x.size):
        c = cell_of[i]
        cx = c % ncx
        cy = c // ncx
        for oy in range(-1, 2):
            nyc = (cy + oy) % ncy
            for ox in range(-1, 2):
                nc = nyc * ncx + (cx + ox) % ncx
                for k in range(start[nc], start[nc + 1]):
                    j = members[k]
                    if j <= i or label[j] != label[i]:
                        continue
                    dx = _wrap(x[j] - x[i], lx)
                    dy = _wrap(y[j] - y[i], ly)
                    if dx * dx + dy * dy >= rc2:
                        continue
                    if abs(ux[j] - ux[i] - dx) + abs(uy[j] - uy[i] - dy) > 1e-9:
                        return True
    return False


@numba.njit(cache=True)
def _volume_move(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    box: NDArray[np.float64],
    g: NDArray[np.float64],
    dlv: float,
    pressure: float,
    aniso: bool,
    n_bonds: int,
    st: np.uint64,
) -> tuple[bool, int]:
    """One ln V random-walk move (isotropic, or one axis); returns (accepted, bonds).

    Hard particles: positions scaled affinely. With patches, half of the moves are affine
    (bond changes in the Metropolis factor) and in the other half the centres of
    bond-linked clusters are scaled and the clusters moved rigidly (bonds inside a cluster
    are kept), accepted with
    ``min(1, exp(-P dV + (N_clusters + 1) ln(V'/V)))``: the Boltzmann factor of bonds made
    or broken between clusters cancels against the link probability, as in cluster moves.
    A move is rejected if a cluster wraps the box before or after it (see `_bond_clusters`).
    """
    n = x.size
    lx = box[0]
    ly = box[1]
    st, u = uniform(st)
    d = (2.0 * u - 1.0) * dlv
    st, u = uniform(st)
    fx = math.exp(0.5 * d)
    fy = fx
    if aniso and u < 0.5:
        st, u = uniform(st)
        if u < 0.5:
            fx = math.exp(d)
            fy = 1.0
        else:
            fx = 1.0
            fy = math.exp(d)
    lx2 = lx * fx
    ly2 = ly * fy
    if min(lx2, ly2) < MIN_CELLS * g[G_RCUT]:
        return False, n_bonds
    v = lx * ly
    v2 = lx2 * ly2
    st, u = uniform(st)
    lnu = math.log(u) if u > 0.0 else -np.inf
    patchy = g[G_HASP] > 0.0 and g[G_EPS] > 0.0
    st, u = uniform(st)
    affine = not patchy or u < 0.5
    if affine:
        if not patchy and lnu >= -pressure * (v2 - v) + (n + 1) * math.log(v2 / v):
            return False, n_bonds
        xs = x * fx
        ys = y * fy
    else:
        st, label, n_clusters, ux, uy, wraps = _bond_clusters(x, y, co, si, lx, ly, g, st)
        if wraps or lnu >= -pressure * (v2 - v) + (n_clusters + 1) * math.log(v2 / v):
            return False, n_bonds
        cx = np.zeros(n_clusters)
        cy = np.zeros(n_clusters)
        size = np.zeros(n_clusters)
        for i in range(n):
            cx[label[i]] += ux[i]
            cy[label[i]] += uy[i]
            size[label[i]] += 1.0
        cx /= size
        cy /= size
        xs = np.empty(n)
        ys = np.empty(n)
        for i in range(n):
            c = label[i]
            xs[i] = ux[i] + cx[c] * (fx - 1.0)
            ys[i] = uy[i] + cy[c] * (fy - 1.0)
        xs -= lx2 * np.floor(xs / lx2)
        ys -= ly2 * np.floor(ys / ly2)
        for i in range(n):
            if xs[i] >= lx2:
                xs[i] -= lx2
            if ys[i] >= ly2:
                ys[i] -= ly2
        if _wraps_after(xs, ys, lx2, ly2, g, label, ux, uy):
            return False, n_bonds
    if grid_count(xs, ys, co, si, lx2, ly2, g, False, True) > 0:
        return False, n_bonds
    nb2 = n_bonds
    if g[G_HASP] > 0.0:
        nb2 = grid_count(xs, ys, co, si, lx2, ly2, g, True, False)
        arg = -pressure * (v2 - v) + (n + 1) * math.log(v2 / v) + g[G_EPS] * (nb2 - n_bonds)
        if affine and patchy and lnu >= arg:
            return False, n_bonds
    x[:] = xs
    y[:] = ys
    box[0] = lx2
    box[1] = ly2
    return True, nb2


# ---------------------------------------------------------------------------------------
# the driver


@numba.njit(cache=True)
def run_sweeps(
    n_sweeps: int,
    sweep0: int,
    seed: np.uint64,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    th: NDArray[np.float64],
    co: NDArray[np.float64],
    si: NDArray[np.float64],
    box: NDArray[np.float64],
    g: NDArray[np.float64],
    prm: NDArray[np.float64],
    n_bonds: NDArray[np.int64],
    stats: NDArray[np.float64],
) -> None:
    """Run sweeps ``sweep0 .. sweep0 + n_sweeps - 1`` in place; per-sweep stats (n, S_SIZE)."""
    rcut = g[G_RCUT]
    patchy = g[G_HASP] > 0.0 and g[G_EPS] > 0.0
    cluster_every = int(prm[P_CLUSTER_EVERY])
    volume_every = int(prm[P_VOLUME_EVERY])
    order = np.arange(4)
    for k in range(n_sweeps):
        s = sweep0 + k
        lx = box[0]
        ly = box[1]
        st = stream(seed, s, 0, 0)
        st, u = uniform(st)
        sx = u * lx
        st, u = uniform(st)
        sy = u * ly
        for p in range(3, 0, -1):
            st, u = uniform(st)
            q = int(u * (p + 1))
            order[p], order[q] = order[q], order[p]
        ncx = grid_size(lx, rcut, True)
        ncy = grid_size(ly, rcut, True)
        start, members, cell_of = build_grid(x, y, lx, ly, sx, sy, ncx, ncy)
        acc = np.zeros(((ncx // 2) * (ncy // 2), 5), dtype=np.int64)
        row = stats[k]
        row[:] = 0.0
        for p in range(4):
            colour = order[p]
            _colour_phase(
                colour % 2, colour // 2, x, y, th, co, si, lx, ly, sx, sy, ncx, ncy, start,
                members, g, prm[P_DT], prm[P_DR], seed, s, p + 1, acc,
            )  # fmt: skip
            tot = acc.sum(axis=0)
            row[S_T_ATT] += tot[0]
            row[S_T_ACC] += tot[1]
            row[S_R_ATT] += tot[2]
            row[S_R_ACC] += tot[3]
            n_bonds[0] += tot[4]
        if patchy and cluster_every > 0 and (s + 1) % cluster_every == 0:
            cout = np.zeros(4, dtype=np.int64)
            _cluster_phase(
                int(prm[P_N_CLUSTER]), x, y, th, co, si, lx, ly, sx, sy, ncx, ncy, cell_of, g,
                prm[P_DCT], prm[P_DCR], int(prm[P_CLUSTER_MAX]), prm[P_CLUSTER_DRAG] > 0.0,
                stream(seed, s, 5, 0), cout,
            )  # fmt: skip
            row[S_C_ATT] = cout[0]
            row[S_C_ACC] = cout[1]
            row[S_C_SIZE] = cout[2]
            n_bonds[0] += cout[3]
        if prm[P_NPT] > 0.0 and (s + 1) % volume_every == 0:
            row[S_V_ATT] = 1.0
            ok, nb = _volume_move(
                x, y, co, si, box, g, prm[P_DLV], prm[P_PRESSURE], prm[P_ANISO] > 0.0,
                n_bonds[0], stream(seed, s, 6, 0),
            )  # fmt: skip
            if ok:
                row[S_V_ACC] = 1.0
                n_bonds[0] = nb
        row[S_BONDS] = n_bonds[0]
        row[S_LX] = box[0]
        row[S_LY] = box[1]
