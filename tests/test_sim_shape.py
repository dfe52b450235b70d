"""Truncated squares and patches: geometry, exact overlaps, excluded area, patch bonds."""

import math

import numpy as np
import pytest

from detectors.errors import SimulationError
from simulation.shape import (
    Patches,
    TruncatedSquare,
    close_packed_fraction,
    overlaps,
    overlaps_many,
    patch_bonds,
    patch_bonds_many,
)

REGULAR = TruncatedSquare()


# ---------------------------------------------------------------- brute-force polygons


def _polygons(shape_vertices: np.ndarray, x, y, theta) -> np.ndarray:
    """(M, K, 2) vertices of M copies of a body-frame polygon (K, 2)."""
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    bx, by = shape_vertices[:, 0][None, :], shape_vertices[:, 1][None, :]
    return np.stack([x[:, None] + c * bx - s * by, y[:, None] + s * bx + c * by], axis=-1)


def _cross(o, a, b):
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (
        b[..., 0] - o[..., 0]
    )


def _inside(points, poly):
    """Points (M, P, 2) strictly inside counter-clockwise convex polygons (M, K, 2)."""
    a = poly[:, None, :, :]
    b = np.roll(poly, -1, axis=1)[:, None, :, :]
    return (_cross(a, b, points[:, :, None, :]) > 0).all(axis=2)


def _brute_intersect(p, q):
    """Interiors of convex CCW polygons p, q (M, K, 2) intersect: proper edge crossing or
    a vertex (or the centroid) of one strictly inside the other."""
    p1, p2 = p[:, :, None, :], np.roll(p, -1, axis=1)[:, :, None, :]
    q1, q2 = q[:, None, :, :], np.roll(q, -1, axis=1)[:, None, :, :]
    d1, d2 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    d3, d4 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    crossing = ((d1 * d2 < 0) & (d3 * d4 < 0)).any(axis=(1, 2))
    centre_p = p.mean(axis=1, keepdims=True)
    centre_q = q.mean(axis=1, keepdims=True)
    contained = (
        _inside(p, q).any(axis=1)
        | _inside(q, p).any(axis=1)
        | _inside(centre_p, q)[:, 0]
        | _inside(centre_q, p)[:, 0]
    )
    return crossing | contained


def _brute_overlaps(shape, dx, dy, t1, t2, chunk=10_000):
    body = shape.vertices()
    out = np.empty(dx.size, dtype=bool)
    for lo in range(0, dx.size, chunk):
        sl = slice(lo, lo + chunk)
        zero = np.zeros(dx[sl].size)
        out[sl] = _brute_intersect(
            _polygons(body, zero, zero, t1[sl]), _polygons(body, dx[sl], dy[sl], t2[sl])
        )
    return out


# ---------------------------------------------------------------- geometry


def test_regular_octagon_geometry():
    s = REGULAR
    assert s.facet_length == pytest.approx(math.sqrt(2) * s.corner_leg_c)
    assert s.area == pytest.approx(2 * (1 + math.sqrt(2)) * s.facet_length**2)
    assert s.perimeter == pytest.approx(8 * s.facet_length)
    assert s.apothem == pytest.approx(0.5)
    assert s.circumradius == pytest.approx(s.facet_length / (2 * math.sin(math.pi / 8)))
    assert s.excluded_area == pytest.approx(3.4045, abs=1e-4)
    assert s.second_virial == pytest.approx(s.area + s.perimeter**2 / (4 * math.pi))
    # the polygon's own area and perimeter agree with the formulas
    v = s.vertices()
    shoelace = 0.5 * np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1])
    assert shoelace == pytest.approx(s.area)
    assert np.linalg.norm(v - np.roll(v, -1, axis=0), axis=1).sum() == pytest.approx(s.perimeter)


def test_square_limit_and_close_packing():
    square = TruncatedSquare(corner_leg_c=0.0)
    assert (square.area, square.perimeter, square.apothem) == (1.0, 4.0, 0.5)
    assert close_packed_fraction(square) == 1.0
    assert close_packed_fraction(REGULAR) == pytest.approx(
        (4 + 4 * math.sqrt(2)) / (5 + 4 * math.sqrt(2))
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 0.0, "eps_kT": 6.0}, "ratio"),
        ({"ratio": 1.2, "eps_kT": 6.0}, "ratio"),
        ({"ratio": 0.5, "eps_kT": -1.0}, "eps_kT"),
        ({"ratio": 0.5, "eps_kT": math.nan}, "eps_kT"),
        ({"ratio": 0.5, "eps_kT": 6.0, "depth_delta_L": 0.0}, "depth_delta_L"),
    ],
)
def test_bad_patches_are_refused(kwargs, match):
    with pytest.raises(SimulationError, match=match):
        Patches(**kwargs)


def test_bad_shape_is_refused():
    with pytest.raises(SimulationError, match="corner_leg_c"):
        TruncatedSquare(corner_leg_c=0.5)


# ---------------------------------------------------------------- overlaps


@pytest.mark.parametrize("shape", [REGULAR, TruncatedSquare(corner_leg_c=0.1)])
def test_overlap_matches_brute_force_on_random_and_touching_pairs(shape):
    rng = np.random.default_rng(2024)
    m = 100_000
    r = rng.uniform(2 * shape.apothem - 0.1, 2 * shape.circumradius + 0.05, m)
    phi = rng.uniform(0, 2 * np.pi, m)
    t1, t2 = rng.uniform(0, 2 * np.pi, (2, m))
    dx, dy = r * np.cos(phi), r * np.sin(phi)
    fast = overlaps_many(shape, dx, dy, t1, t2)
    brute = _brute_overlaps(shape, dx, dy, t1, t2)
    np.testing.assert_array_equal(fast, brute)
    assert 0.2 < fast.mean() < 0.9

    # touching pairs: bisect the contact distance with the brute force, then step 1e-9 in/out
    k = 10_000
    phi = rng.uniform(0, 2 * np.pi, k)
    t1, t2 = rng.uniform(0, 2 * np.pi, (2, k))
    # include aligned and 45-degree pairs, where facets touch flat
    t2[: k // 4] = t1[: k // 4] + rng.integers(0, 8, k // 4) * np.pi / 4
    lo, hi = np.full(k, 2 * shape.apothem - 1e-6), np.full(k, 2 * shape.circumradius + 1e-6)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        hit = _brute_overlaps(shape, mid * np.cos(phi), mid * np.sin(phi), t1, t2)
        lo, hi = np.where(hit, mid, lo), np.where(hit, hi, mid)
    for factor, expected in ((1 - 1e-9, True), (1 + 1e-9, False)):
        rc = hi * factor
        got = overlaps_many(shape, rc * np.cos(phi), rc * np.sin(phi), t1, t2)
        assert (got == expected).all()


def test_overlap_boundaries():
    # face to face, corner facet to corner facet, and the bounding circles
    assert overlaps(REGULAR, 0.999999, 0.0, 0.0, 0.0)
    assert not overlaps(REGULAR, 1.000001, 0.0, 0.0, 0.0)
    diagonal = 1.0 / math.sqrt(2)
    assert overlaps(REGULAR, 0.999999 * diagonal, 0.999999 * diagonal, 0.0, 0.0)
    assert not overlaps(REGULAR, 1.000001 * diagonal, 1.000001 * diagonal, 0.0, 0.0)
    assert not overlaps(REGULAR, 2 * REGULAR.circumradius, 0.0, 0.3, 1.1)


@pytest.mark.parametrize("shape", [REGULAR, TruncatedSquare(corner_leg_c=0.15)])
def test_excluded_area_matches_convex_formula(shape):
    # every pair closer than twice the apothem overlaps; sample the annulus beyond it
    rng = np.random.default_rng(7)
    m = 2_000_000
    r_in, r_out = 2 * shape.apothem, 2 * shape.circumradius
    r = np.sqrt(rng.uniform(r_in**2, r_out**2, m))
    phi, t1, t2 = rng.uniform(0, 2 * np.pi, (3, m))
    hit = overlaps_many(shape, r * np.cos(phi), r * np.sin(phi), t1, t2)
    estimate = np.pi * r_in**2 + np.pi * (r_out**2 - r_in**2) * hit.mean()
    assert estimate == pytest.approx(shape.excluded_area, rel=2e-3)


# ---------------------------------------------------------------- patches


def _brute_bonds(shape, patches, dx, dy, t1, t2):
    """Overlapping patch-rectangle pairs, by brute-force polygon intersection."""
    body = patches.rectangles(shape)  # (4, 4, 2), counter-clockwise
    total = np.zeros(dx.size, dtype=np.int64)
    zero = np.zeros(dx.size)
    for a in range(4):
        pa = _polygons(body[a], zero, zero, t1)
        for b in range(4):
            pb = _polygons(body[b], dx, dy, t2)
            total += _brute_intersect(pa, pb)
    return total


def test_patch_rectangles_sit_on_the_facets():
    p = Patches(ratio=0.5, eps_kT=6.0, depth_delta_L=0.05)
    rect = p.rectangles(REGULAR)
    assert rect[0, :, 0].min() == pytest.approx(0.5)
    assert rect[0, :, 0].max() == pytest.approx(0.55)
    assert np.ptp(rect[0, :, 1]) == pytest.approx(0.5 * REGULAR.facet_length)


@pytest.mark.parametrize("ratio", [0.1, 0.8, 1.0])
def test_patch_bonds_match_brute_force(ratio):
    p = Patches(ratio=ratio, eps_kT=6.0)
    rng = np.random.default_rng(11)
    m = 20_000
    # contacting pairs: non-overlapping, within reach of the patches
    dx, dy = rng.uniform(-1.2, 1.2, (2, m))
    t1 = rng.uniform(0, 2 * np.pi, m)
    t2 = t1 + rng.normal(0, 0.1, m) + rng.integers(0, 4, m) * np.pi / 2
    keep = ~overlaps_many(REGULAR, dx, dy, t1, t2)
    dx, dy, t1, t2 = dx[keep], dy[keep], t1[keep], t2[keep]
    fast = patch_bonds_many(REGULAR, p, dx, dy, t1, t2)
    np.testing.assert_array_equal(fast, _brute_bonds(REGULAR, p, dx, dy, t1, t2))
    assert fast.sum() > 100


def test_facing_patches_bond_within_delta_and_overlap_laterally():
    short, long = Patches(ratio=0.1, eps_kT=6.0), Patches(ratio=0.8, eps_kT=6.0)
    px_long = 0.8 * REGULAR.facet_length
    assert patch_bonds(REGULAR, short, 1.09, 0.0, 0.0, 0.0) == 1
    assert patch_bonds(REGULAR, short, 1.11, 0.0, 0.0, 0.0) == 0
    # sliding sideways: the short patch lets go long before the long one
    assert patch_bonds(REGULAR, short, 1.02, 0.05, 0.0, 0.0) == 0
    assert patch_bonds(REGULAR, long, 1.02, 0.99 * px_long, 0.0, 0.0) == 1
    assert patch_bonds(REGULAR, long, 1.02, 1.01 * px_long, 0.0, 0.0) == 0


def test_long_patch_bonds_two_staggered_neighbours_when_longer_than_half_an_edge():
    # two aligned neighbours side by side (centres 1 L apart) against one facet, staggered by
    # +-L/2: a patch reaches both only if Px > L/2, e.g. mildly truncated squares (c = 0.1 L,
    # Fx = 0.8 L) with Px/Fx = 0.8; short patches, and the regular octagon's Fx = 0.414 L, cannot
    cube = TruncatedSquare(corner_leg_c=0.1)
    long, short = Patches(ratio=0.8, eps_kT=6.0), Patches(ratio=0.1, eps_kT=6.0)
    for dy in (-0.5, 0.5):
        assert not overlaps(cube, 1.02, dy, 0.0, 0.0)
    assert not overlaps(cube, 0.0, 1.0, 0.0, 0.0)
    assert [patch_bonds(cube, long, 1.02, dy, 0.0, 0.0) for dy in (-0.5, 0.5)] == [1, 1]
    assert [patch_bonds(cube, short, 1.02, dy, 0.0, 0.0) for dy in (-0.5, 0.5)] == [0, 0]
    assert [patch_bonds(REGULAR, long, 1.02, dy, 0.0, 0.0) for dy in (-0.5, 0.5)] == [0, 0]
