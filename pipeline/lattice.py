"""2D superlattices from their rods: rod positions and nearest-neighbour spacings.

A 2D lattice of nanocrystals lying flat, with domains randomly rotated about the surface
normal, gives vertical rods at the lengths |h b1 + k b2| of its reciprocal lattice
vectors. The symmetry labels are shared with :mod:`pipeline.fits` and the sample-data
generator:

- ``"hexagonal"``: rods at q1 x (1, sqrt 3, 2, sqrt 7, 3, ...), spacing a = 4 pi / (sqrt 3 q1);
- ``"square"``: rods at q1 x (1, sqrt 2, 2, sqrt 5, ...), spacing a = 2 pi / q1;
- ``"pseudo-hexagonal"``: a rhombic lattice with equal sides a and angle gamma
  (60 deg: hexagonal, 90 deg: square). Its reciprocal vectors have length
  b = 2 pi / (a sin gamma) at 180 deg - gamma, so the rods sit at
  b sqrt(h^2 + k^2 - 2 h k cos gamma): b (twice), b sqrt(2 - 2 cos gamma),
  b sqrt(2 + 2 cos gamma), 2 b, ...; q1 = b and a = 2 pi / (q1 sin gamma);
- ``"unknown"``: a first rod whose higher rods do not decide between hexagonal and
  square; both spacings are reported;
- ``"none"``: no rod (form-factor scattering only).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Symmetry = Literal["none", "hexagonal", "square", "pseudo-hexagonal", "unknown"]
#: Every symmetry label: no rod, undecided, then from hexagonal to square.
SYMMETRIES: tuple[Symmetry, ...] = ("none", "unknown", "hexagonal", "pseudo-hexagonal", "square")

#: Rod positions of a hexagonal lattice in units of q1: sqrt(h^2 + h k + k^2).
HEXAGONAL_RATIOS: tuple[float, ...] = tuple(
    math.sqrt(n) for n in (1, 3, 4, 7, 9, 12, 13, 16, 19, 21, 25)
)
#: Rod positions of a square lattice in units of q1: sqrt(h^2 + k^2).
SQUARE_RATIOS: tuple[float, ...] = tuple(
    math.sqrt(n) for n in (1, 2, 4, 5, 8, 9, 10, 13, 16, 17, 18, 20, 25)
)
#: Rod families (h^2 + k^2, h k) of a rhombic lattice: the rod sits at
#: q1 sqrt(h^2 + k^2 - 2 h k cos gamma). Families that coincide for every gamma are listed once.
RHOMBIC_FAMILIES: tuple[tuple[int, int], ...] = (
    (1, 0),
    (2, 1),
    (2, -1),
    (4, 0),
    (5, 2),
    (5, -2),
    (8, 4),
    (8, -4),
    (9, 0),
    (10, 3),
    (10, -3),
    (13, 6),
    (13, -6),
    (16, 0),
)
#: gamma of a rhombic lattice that is hexagonal (60) or square (90), in degrees.
GAMMA_HEXAGONAL_DEG = 60.0
GAMMA_SQUARE_DEG = 90.0


def rhombic_ratios(gamma_deg: float) -> NDArray[np.float64]:
    """Rod positions of a rhombic lattice in units of q1, one per family.

    Parameters
    ----------
    gamma_deg : float
        Real-space angle between the two equal lattice vectors, in degrees, in (0, 180).

    Returns
    -------
    ndarray of shape (len(RHOMBIC_FAMILIES),)
        sqrt(h^2 + k^2 - 2 h k cos gamma), in the order of :data:`RHOMBIC_FAMILIES`
        (not sorted: families cross as gamma changes).

    Raises
    ------
    ValueError
        If `gamma_deg` is not in (0, 180).

    Examples
    --------
    >>> np.round(rhombic_ratios(60.0)[:4], 3)
    array([1.   , 1.   , 1.732, 2.   ])
    """
    _check_gamma(gamma_deg)
    families = np.asarray(RHOMBIC_FAMILIES, dtype=np.float64)
    cos_gamma = math.cos(math.radians(gamma_deg))
    return np.sqrt(families[:, 0] - 2.0 * families[:, 1] * cos_gamma)


def rod_positions(
    q1_per_nm: float,
    symmetry: Symmetry,
    *,
    gamma_deg: float | None = None,
    q_max_per_nm: float,
) -> NDArray[np.float64]:
    """Positions of the rods of a 2D lattice up to `q_max_per_nm`.

    Parameters
    ----------
    q1_per_nm : float
        First rod, in nm^-1; must be > 0.
    symmetry : {"hexagonal", "square", "pseudo-hexagonal", "unknown", "none"}
        Lattice; "unknown" gives the first rod only and "none" no rod.
    gamma_deg : float, optional
        Lattice angle in degrees; required for "pseudo-hexagonal".
    q_max_per_nm : float
        Largest position returned, in nm^-1.

    Returns
    -------
    ndarray of shape (n_rods,)
        Distinct rod positions in nm^-1, ascending (coinciding families once).

    Raises
    ------
    ValueError
        If `q1_per_nm` is not a positive finite number, the symmetry is not one of the
        labels, or "pseudo-hexagonal" comes without a `gamma_deg` in (0, 180).

    Examples
    --------
    >>> np.round(rod_positions(0.80, "hexagonal", q_max_per_nm=2.0), 3)
    array([0.8  , 1.386, 1.6  ])
    >>> np.round(rod_positions(0.83, "square", q_max_per_nm=2.0), 3)
    array([0.83 , 1.174, 1.66 , 1.856])
    """
    _check_q1(q1_per_nm)
    if symmetry == "none":
        return np.empty(0)
    if symmetry == "unknown":
        ratios = np.array([1.0])
    elif symmetry == "hexagonal":
        ratios = np.asarray(HEXAGONAL_RATIOS)
    elif symmetry == "square":
        ratios = np.asarray(SQUARE_RATIOS)
    elif symmetry == "pseudo-hexagonal":
        if gamma_deg is None:
            msg = "rod_positions: 'pseudo-hexagonal' needs gamma_deg, the lattice angle in degrees"
            raise ValueError(msg)
        ratios = rhombic_ratios(gamma_deg)
    else:
        msg = f"rod_positions: symmetry must be one of {SYMMETRIES}, got {symmetry!r}"
        raise ValueError(msg)
    positions = np.sort(q1_per_nm * ratios)
    distinct = np.ones(positions.size, dtype=bool)
    distinct[1:] = np.diff(positions) > 1e-9 * q1_per_nm  # coinciding families once
    positions = positions[distinct]
    return positions[positions <= q_max_per_nm]


def lattice_spacing_nm(
    q1_per_nm: float, symmetry: Symmetry, *, gamma_deg: float | None = None
) -> float:
    """Nearest-neighbour spacing of a 2D lattice from its first rod.

    Parameters
    ----------
    q1_per_nm : float
        First superlattice rod along q_par, in nm^-1; must be > 0.
    symmetry : {"hexagonal", "square", "pseudo-hexagonal"}
        "hexagonal": a = 4 pi / (sqrt(3) q1); "square": a = 2 pi / q1;
        "pseudo-hexagonal": a = 2 pi / (q1 sin gamma).
    gamma_deg : float, optional
        Lattice angle in degrees, in (0, 180); required for "pseudo-hexagonal".

    Returns
    -------
    float
        Spacing a, in nm.

    Raises
    ------
    ValueError
        If `q1_per_nm` is not a positive finite number, if the symmetry does not fix a
        spacing ("unknown", "none": compute the hexagonal and square values instead) or
        if "pseudo-hexagonal" comes without a `gamma_deg` in (0, 180).

    Examples
    --------
    >>> hexagonal = lattice_spacing_nm(0.80, "hexagonal")
    >>> round(hexagonal, 2), round(lattice_spacing_nm(0.83, "square"), 2)
    (9.07, 7.57)
    >>> round(lattice_spacing_nm(0.80, "pseudo-hexagonal", gamma_deg=60.0), 2)
    9.07
    """
    _check_q1(q1_per_nm)
    if symmetry == "hexagonal":
        return 4.0 * math.pi / (math.sqrt(3.0) * q1_per_nm)
    if symmetry == "square":
        return 2.0 * math.pi / q1_per_nm
    if symmetry == "pseudo-hexagonal":
        if gamma_deg is None:
            msg = (
                "lattice_spacing_nm: 'pseudo-hexagonal' needs gamma_deg, "
                "the lattice angle in degrees"
            )
            raise ValueError(msg)
        _check_gamma(gamma_deg)
        return 2.0 * math.pi / (q1_per_nm * math.sin(math.radians(gamma_deg)))
    msg = (
        f"lattice_spacing_nm: symmetry {symmetry!r} does not fix a spacing; expected "
        "'hexagonal', 'square' or 'pseudo-hexagonal' (for 'unknown' report both the "
        "'hexagonal' and the 'square' value)"
    )
    raise ValueError(msg)


def order_label(ratio: float) -> str:
    """Name of a rod order from its position in units of q1: "1", "sqrt3", "2", "sqrt7"...

    Parameters
    ----------
    ratio : float
        q / q1 of the rod, > 0.

    Returns
    -------
    str
        "n" where ratio^2 is close to a perfect square n^2, "sqrtN" where it is close to
        the integer N, else the ratio to three decimals (a rhombic lattice's orders).

    Examples
    --------
    >>> [order_label(r) for r in (1.0, 1.41421, 1.7320508, 2.0, 2.2360679, 1.2175)]
    ['1', 'sqrt2', 'sqrt3', '2', 'sqrt5', '1.218']
    """
    square = ratio * ratio
    n = round(square)
    if n > 0 and abs(square - n) < 2e-3 * square:
        root = math.isqrt(n)
        return str(root) if root * root == n else f"sqrt{n}"
    return f"{ratio:.3f}"


def _check_q1(q1_per_nm: float) -> None:
    if not (math.isfinite(q1_per_nm) and q1_per_nm > 0):
        msg = f"q1 must be a positive finite number in nm^-1, got {q1_per_nm!r}"
        raise ValueError(msg)


def _check_gamma(gamma_deg: float) -> None:
    if not (math.isfinite(gamma_deg) and 0 < gamma_deg < 180):
        msg = f"lattice angle gamma must be in (0, 180) degrees, got {gamma_deg!r}"
        raise ValueError(msg)
