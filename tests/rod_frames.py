"""Seeded q_par cuts of superlattice rods on a cube form factor, for the rod-fit tests.

Independent of ``sample_data``: the intensity is the decoupling approximation
I(q) = scale P(q) S(q) + a q^-2 + c, with P the in-plane orientation and size average of
a cube lying on a face, and S(q) = 1 + sum of rods of a chosen line shape at the lattice's
rod positions, each order's height falling with q. Rods multiply the form factor, as in a
DWBA model of a monolayer, so that a steep P under a rod pulls a naive fit's position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
FOUR_LN2 = 4 * math.log(2)


def gaussian(q: FloatArray, center: float, fwhm: float) -> FloatArray:
    """Unit-height Gaussian (written here again, independently of pipeline.lineshapes)."""
    return np.exp(-FOUR_LN2 * ((q - center) / fwhm) ** 2)


def lorentzian(q: FloatArray, center: float, fwhm: float) -> FloatArray:
    """Unit-height Lorentzian."""
    return 1 / (1 + 4 * ((q - center) / fwhm) ** 2)


def pseudo_voigt(eta: float) -> Callable[[FloatArray, float, float], FloatArray]:
    """Unit-height pseudo-Voigt of Lorentzian fraction `eta`."""

    def shape(q: FloatArray, center: float, fwhm: float) -> FloatArray:
        return (1 - eta) * gaussian(q, center, fwhm) + eta * lorentzian(q, center, fwhm)

    return shape


SHAPES: dict[str, Callable[[FloatArray, float, float], FloatArray]] = {
    "gaussian": gaussian,
    "lorentzian": lorentzian,
    "pseudo_voigt": pseudo_voigt(0.5),
}

HEX_RATIOS = tuple(math.sqrt(n) for n in (1, 3, 4, 7, 9, 12, 13))
SQUARE_RATIOS = tuple(math.sqrt(n) for n in (1, 2, 4, 5, 8, 9, 10, 13))


def cube_form_factor(q: FloatArray, edge_nm: float = 5.7, spread: float = 0.1) -> FloatArray:
    """In-plane orientation and size average of |F|^2 of a cube lying on a face (P(0) = 1)."""
    phi = np.linspace(0, np.pi / 4, 48)
    z = np.linspace(-2, 2, 17)
    edges = edge_nm * (1 + spread * z)
    weights = np.exp(-0.5 * z**2) * edges**6
    qx = q[:, None, None] * np.cos(phi)[None, :, None]
    qy = q[:, None, None] * np.sin(phi)[None, :, None]
    half = edges[None, None, :] / 2
    f2 = (np.sinc(qx * half / np.pi) * np.sinc(qy * half / np.pi)) ** 2
    return (f2 * weights).sum(axis=2).mean(axis=1) / weights.sum()


def rod_cut(
    q1_per_nm: float,
    ratios: Sequence[float],
    *,
    shape: str = "gaussian",
    fwhm_per_nm: float = 0.06,
    height: float = 3.0,
    decay: float = 0.7,
    scale: float = 3e3,
    q_per_nm: FloatArray | None = None,
    edge_nm: float = 5.7,
    missing: Sequence[float] = (),
    rng: np.random.Generator | int | None = 0,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One Poisson-noisy cut: q (nm^-1), intensity and its standard error.

    Rod k (ratio r_k) has height ``height * decay**k`` in S(q); ratios listed in `missing`
    are left out (as a form-factor minimum removes them).
    """
    rng = np.random.default_rng(rng)
    q = np.linspace(0.3, 2.4, 140) if q_per_nm is None else q_per_nm
    line = SHAPES[shape]
    structure = np.ones_like(q)
    for k, ratio in enumerate(ratios):
        if any(abs(ratio - m) < 1e-9 for m in missing):
            continue
        structure = structure + height * decay**k * line(q, q1_per_nm * ratio, fwhm_per_nm)
    expected = scale * cube_form_factor(q, edge_nm) * structure + 0.002 * scale * q**-2 + 5
    counts = rng.poisson(expected).astype(float)
    return q, counts, np.sqrt(np.maximum(counts, 1.0))
