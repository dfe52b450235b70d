"""Hard truncated squares with attractive facet patches: the particle model.

A PbSe truncated nanocube lying on a {100} facet and free to turn about the vertical axis
is, in the plane, its middle slice: a square of edge ``L`` with its four corners cut by
right isosceles triangles of leg ``c`` (a truncated square, i.e. an octagon; regular at
``c = L / (2 + sqrt 2)``). ``L`` is the unit of length of the whole simulation and the
face-to-face contact distance of two aligned particles.

Patch rule
----------
Each of the four {100} side facets (length ``Fx = L - 2c``) carries one patch: a rectangle
of length ``Px = (Px/Fx) * Fx`` along the facet, centred on it, reaching a depth ``delta``
(default 0.05 L) outward from the facet. Every pair of patch rectangles of two different
particles that overlap (interiors intersect) contributes ``-eps`` to the energy, so two
particles whose facets face each other within ``delta`` and whose patches overlap
laterally form one bond. A long patch keeps its bond to a neighbour that slides along the
facet by up to ``Px`` (so rows can shear into a staggered, pseudo-hexagonal stacking and stay
bonded), and when ``Px > L/2`` (mildly truncated squares, e.g. ``c = 0.1 L``, ``Px/Fx = 0.8``)
it can bond two staggered neighbours that sit side by side against one facet at once. For the
regular octagon (``Fx = 0.414 L``) even ``Px/Fx = 1`` cannot reach two neighbours at once,
since they are at least 1 L apart. Short patches bond only face-to-face aligned neighbours,
which favours the square lattice.

The hard-core test (`overlaps`) is exact for any relative position and angle: bounding
circles first (no overlap beyond twice the circumradius, overlap within twice the
apothem), then the separating-axis test on the two octagons' eight facet normals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detectors.errors import SimulationError
from simulation import _kernels

__all__ = [
    "Patches",
    "TruncatedSquare",
    "close_packed_fraction",
    "overlaps",
    "overlaps_many",
    "patch_bonds",
    "patch_bonds_many",
]

_REGULAR_LEG = 1.0 / (2.0 + math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class TruncatedSquare:
    """A square of edge `edge_L` with its corners cut by right isosceles triangles.

    Parameters
    ----------
    edge_L : float
        Edge of the uncut square (face-to-face width), in L; 1 makes it the unit of length.
    corner_leg_c : float
        Leg of each corner cut, in L, in [0, edge_L / 2). The default gives the regular
        octagon, ``c = L / (2 + sqrt 2)``.

    Raises
    ------
    SimulationError
        If `edge_L` is not > 0 or `corner_leg_c` is outside [0, edge_L / 2).

    Examples
    --------
    >>> s = TruncatedSquare()
    >>> round(s.area, 4), round(s.perimeter, 4), round(s.apothem, 4), round(s.circumradius, 4)
    (0.8284, 3.3137, 0.5, 0.5412)
    >>> round(s.excluded_area, 4)
    3.4045
    """

    edge_L: float = 1.0
    corner_leg_c: float = _REGULAR_LEG

    def __post_init__(self) -> None:
        if not (math.isfinite(self.edge_L) and self.edge_L > 0):
            msg = f"TruncatedSquare: edge_L must be a finite number > 0, got {self.edge_L!r}"
            raise SimulationError(msg)
        if not (math.isfinite(self.corner_leg_c) and 0 <= self.corner_leg_c < self.edge_L / 2):
            msg = (
                "TruncatedSquare: corner_leg_c must be in [0, edge_L/2) = "
                f"[0, {self.edge_L / 2:g}), got {self.corner_leg_c!r}; "
                "the regular octagon has c = L/(2+sqrt 2)"
            )
            raise SimulationError(msg)

    @property
    def facet_length(self) -> float:
        """Length Fx of a {100} facet, ``L - 2c``, in L."""
        return self.edge_L - 2.0 * self.corner_leg_c

    @property
    def area(self) -> float:
        """Area ``L^2 - 2 c^2``, in L^2."""
        return self.edge_L**2 - 2.0 * self.corner_leg_c**2

    @property
    def perimeter(self) -> float:
        """Perimeter ``4 (L - 2c) + 4 sqrt(2) c``, in L."""
        return 4.0 * self.facet_length + 4.0 * math.sqrt(2.0) * self.corner_leg_c

    @property
    def apothem(self) -> float:
        """Inradius: distance from the centre to the nearest facet, in L."""
        return min(self.edge_L / 2, (self.edge_L - self.corner_leg_c) / math.sqrt(2.0))

    @property
    def circumradius(self) -> float:
        """Distance from the centre to a vertex, in L."""
        return math.hypot(self.edge_L / 2, self.edge_L / 2 - self.corner_leg_c)

    @property
    def excluded_area(self) -> float:
        """Orientation-averaged excluded area ``2A + P^2 / (2 pi)``, in L^2."""
        return 2.0 * self.area + self.perimeter**2 / (2.0 * math.pi)

    @property
    def second_virial(self) -> float:
        """Second virial coefficient ``B2 = A + P^2 / (4 pi)``, in L^2."""
        return self.area + self.perimeter**2 / (4.0 * math.pi)

    def vertices(
        self, x_L: float = 0.0, y_L: float = 0.0, theta_rad: float = 0.0
    ) -> NDArray[np.float64]:
        """Corners of the octagon, counter-clockwise.

        Parameters
        ----------
        x_L, y_L : float
            Centre, in L.
        theta_rad : float
            Orientation (angle of the first facet normal from the x axis), in rad.

        Returns
        -------
        ndarray, shape (8, 2)
            Vertices, in L, counter-clockwise, starting on the facet whose normal is at
            `theta_rad`.
        """
        h = self.edge_L / 2
        b = h - self.corner_leg_c
        body = np.array(
            [[h, -b], [h, b], [b, h], [-b, h], [-h, b], [-h, -b], [-b, -h], [b, -h]],
            dtype=np.float64,
        )
        return _place(body, x_L, y_L, theta_rad)

    def _geometry(self, patches: Patches | None = None) -> NDArray[np.float64]:
        """Packed parameters for the compiled kernels (see `simulation._kernels.pack`)."""
        if patches is None:
            return _kernels.pack(self.edge_L, self.corner_leg_c, 0.0, 0.0, 0.0)
        return _kernels.pack(
            self.edge_L,
            self.corner_leg_c,
            patches.ratio * self.facet_length,
            patches.depth_delta_L,
            patches.eps_kT,
        )


@dataclass(frozen=True, slots=True)
class Patches:
    """One rectangular patch centred on each {100} facet; overlapping patch pairs bond.

    Parameters
    ----------
    ratio : float
        Patch length over facet length, Px/Fx, in (0, 1].
    eps_kT : float
        Well depth per overlapping pair of patch rectangles, in kT; >= 0.
    depth_delta_L : float
        How far a patch reaches out from its facet, in L; > 0 (default 0.05).

    Raises
    ------
    SimulationError
        If `ratio` is outside (0, 1], `eps_kT` negative or not finite, or
        `depth_delta_L` not > 0.

    Examples
    --------
    >>> Patches(ratio=0.8, eps_kT=6.0).rectangles(TruncatedSquare()).shape
    (4, 4, 2)
    """

    ratio: float
    eps_kT: float
    depth_delta_L: float = 0.05

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ratio) and 0 < self.ratio <= 1):
            msg = f"Patches: ratio Px/Fx must be in (0, 1], got {self.ratio!r}"
            raise SimulationError(msg)
        if not (math.isfinite(self.eps_kT) and self.eps_kT >= 0):
            msg = (
                f"Patches: eps_kT must be a finite number >= 0 (attraction), got {self.eps_kT!r};"
                " a repulsive patch is not part of the model"
            )
            raise SimulationError(msg)
        if not (math.isfinite(self.depth_delta_L) and self.depth_delta_L > 0):
            msg = f"Patches: depth_delta_L must be > 0, got {self.depth_delta_L!r}"
            raise SimulationError(msg)

    def length_L(self, shape: TruncatedSquare) -> float:
        """Patch length Px along the facet, in L."""
        return self.ratio * shape.facet_length

    def rectangles(
        self, shape: TruncatedSquare, x_L: float = 0.0, y_L: float = 0.0, theta_rad: float = 0.0
    ) -> NDArray[np.float64]:
        """Corners of the four patch rectangles.

        Parameters
        ----------
        shape : TruncatedSquare
            The particle carrying the patches.
        x_L, y_L : float
            Particle centre, in L.
        theta_rad : float
            Particle orientation, in rad.

        Returns
        -------
        ndarray, shape (4, 4, 2)
            For each facet (normal at ``theta + k pi/2``), the rectangle's four corners, in L.
        """
        h = shape.edge_L / 2
        half = self.length_L(shape) / 2
        body = np.array(
            [
                [h, -half],
                [h + self.depth_delta_L, -half],
                [h + self.depth_delta_L, half],
                [h, half],
            ],
            dtype=np.float64,
        )
        return np.stack([_place(body, x_L, y_L, theta_rad + k * math.pi / 2) for k in range(4)])


def _place(body: NDArray[np.float64], x: float, y: float, theta: float) -> NDArray[np.float64]:
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    return body @ rot.T + np.array([x, y])


def close_packed_fraction(shape: TruncatedSquare) -> float:
    """Densest packing fraction of the truncated square, used to refuse impossible densities.

    The denser of the square lattice (aligned, face to face, area ``L^2`` per particle) and
    the staggered lattice in which each row sits in the corner cuts of the row below (area
    ``L (3L/2 - 2c)``). For the regular octagon this is the known optimum
    ``(4 + 4 sqrt 2) / (5 + 4 sqrt 2) = 0.9062``; for the square (c = 0) it is 1.

    Parameters
    ----------
    shape : TruncatedSquare
        The particle.

    Returns
    -------
    float
        Packing fraction in (0, 1].

    Examples
    --------
    >>> round(close_packed_fraction(TruncatedSquare()), 4)
    0.9062
    """
    L, c = shape.edge_L, shape.corner_leg_c
    return shape.area / min(L * L, L * (1.5 * L - 2.0 * c))


def overlaps(
    shape: TruncatedSquare, dx_L: float, dy_L: float, theta1_rad: float, theta2_rad: float
) -> bool:
    """Whether two particles overlap (interiors intersect; touching is no overlap).

    Parameters
    ----------
    shape : TruncatedSquare
        The particle shape (both particles).
    dx_L, dy_L : float
        Centre of particle 2 minus centre of particle 1, in L.
    theta1_rad, theta2_rad : float
        Orientations, in rad.

    Returns
    -------
    bool
        True if the octagons overlap.

    Examples
    --------
    >>> s = TruncatedSquare()
    >>> overlaps(s, 0.999, 0.0, 0.0, 0.0), overlaps(s, 1.001, 0.0, 0.0, 0.0)
    (True, False)
    """
    return bool(
        overlaps_many(
            shape,
            np.array([dx_L]),
            np.array([dy_L]),
            np.array([theta1_rad]),
            np.array([theta2_rad]),
        )[0]
    )


def overlaps_many(
    shape: TruncatedSquare,
    dx_L: NDArray[np.float64],
    dy_L: NDArray[np.float64],
    theta1_rad: NDArray[np.float64],
    theta2_rad: NDArray[np.float64],
) -> NDArray[np.bool_]:
    """Vectorised `overlaps` over arrays of pairs (compiled loop).

    Parameters
    ----------
    shape : TruncatedSquare
        The particle shape.
    dx_L, dy_L, theta1_rad, theta2_rad : ndarray, shape (M,)
        Separations (in L) and orientations (in rad) of M pairs.

    Returns
    -------
    ndarray of bool, shape (M,)
        Overlap of each pair.
    """
    pairs = _pair_arrays("overlaps_many", dx_L, dy_L, theta1_rad, theta2_rad)
    return _kernels.overlaps_array(*pairs, shape._geometry())


def patch_bonds(
    shape: TruncatedSquare,
    patches: Patches,
    dx_L: float,
    dy_L: float,
    theta1_rad: float,
    theta2_rad: float,
) -> int:
    """Number of overlapping pairs of patch rectangles of two particles (bonds).

    The pair energy is ``-eps_kT * patch_bonds(...)`` when the particles do not overlap.

    Parameters
    ----------
    shape : TruncatedSquare
        The particle shape.
    patches : Patches
        The patch model.
    dx_L, dy_L : float
        Centre of particle 2 minus centre of particle 1, in L.
    theta1_rad, theta2_rad : float
        Orientations, in rad.

    Returns
    -------
    int
        Bonds, 0 to 16 (in practice 0, 1 or 2).

    Examples
    --------
    >>> s, p = TruncatedSquare(), Patches(ratio=0.5, eps_kT=6.0)
    >>> patch_bonds(s, p, 1.02, 0.0, 0.0, 0.0), patch_bonds(s, p, 1.2, 0.0, 0.0, 0.0)
    (1, 0)
    """
    return int(
        patch_bonds_many(
            shape,
            patches,
            np.array([dx_L]),
            np.array([dy_L]),
            np.array([theta1_rad]),
            np.array([theta2_rad]),
        )[0]
    )


def patch_bonds_many(
    shape: TruncatedSquare,
    patches: Patches,
    dx_L: NDArray[np.float64],
    dy_L: NDArray[np.float64],
    theta1_rad: NDArray[np.float64],
    theta2_rad: NDArray[np.float64],
) -> NDArray[np.int64]:
    """Vectorised `patch_bonds` over arrays of pairs (compiled loop).

    Parameters
    ----------
    shape : TruncatedSquare
        The particle shape.
    patches : Patches
        The patch model.
    dx_L, dy_L, theta1_rad, theta2_rad : ndarray, shape (M,)
        Separations (in L) and orientations (in rad) of M pairs.

    Returns
    -------
    ndarray of int64, shape (M,)
        Bonds of each pair.
    """
    pairs = _pair_arrays("patch_bonds_many", dx_L, dy_L, theta1_rad, theta2_rad)
    return _kernels.bonds_array(*pairs, shape._geometry(patches))


def _pair_arrays(
    caller: str, *arrays: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The four pair arrays (dx, dy, theta1, theta2) as flat float64, checked for one length."""
    flat = [np.ascontiguousarray(a, dtype=np.float64).ravel() for a in arrays]
    if len({a.size for a in flat}) != 1:
        msg = f"{caller}: the four arrays must have one length, got {[a.size for a in flat]}"
        raise SimulationError(msg)
    dx, dy, t1, t2 = flat
    return dx, dy, t1, t2
