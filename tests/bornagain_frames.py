"""GISAXS frames from BornAgain, an independent DWBA forward model, for the rod tests.

Monolayers of PbSe truncated cubes (edge 5.7 nm, corners cut by 0.57 nm, a {100} facet up)
sitting on a liquid (ethylene-glycol-like, critical angle 0.13 deg) under vacuum, at
10 keV and 0.3 deg incidence, as BornAgain computes them in the distorted-wave Born
approximation, mapped onto the pixels of a Pilatus 300K-W frame given by a PONI file.
Nothing here uses the project's own geometry or scattering code: the pixel angles are
computed from the PONI numbers alone, the scattering is BornAgain's.

Lattices (:data:`LATTICES`): a square lattice (7.6 nm) and a hexagonal one (9.07 nm) with
finite domains (an infinite 2-D crystal whose lattice peaks have BornAgain's 2-D Cauchy
decay, the transform of an exponentially decaying positional correlation, i.e.
Lorentzian-like rods), and a hexagonal 2-D paracrystal (rods that broaden with order). The
lattices are averaged over their in-plane orientation (a 2-D powder, as on the liquid);
the cubes keep one orientation, their edges along the beam and across it, so that the
cube's form factor has its minima at q_par = 2 pi n / L: the square lattice's sqrt 2 rod
(1.17 nm^-1) lies close to the first one (1.10 nm^-1).

Cost. BornAgain's orientation average of a lattice costs ~15 ms a detector bin, far too
much for a frame. The layer is monodisperse, so BornAgain's intensity factorises exactly
(its decoupling approximation): I(alpha_f, phi_f) = I_dilute(alpha_f, phi_f) S(q_par),
with I_dilute the same particles at the same area density without interference (which
keeps BornAgain's average-layer refraction the same) and S the interference function,
a function of q_par alone. So BornAgain computes S on one row of exit angle (the Yoneda
band) finely in phi_f, I_dilute on a 2-D (alpha_f, phi_f) grid, and each pixel gets
I_dilute interpolated at its angles times S at its q_par.
:func:`factorisation_error` checks the factorisation against a full BornAgain run on
another row. Results are cached in the system temporary folder, keyed by every input.

Requires the ``independent`` extra (``bornagain``).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import CubicSpline, RegularGridInterpolator

FloatArray = NDArray[np.float64]

WAVELENGTH_NM = 0.12398
K_PER_NM = 2.0 * math.pi / WAVELENGTH_NM
INCIDENCE_ANGLE_DEG = 0.3
#: Refractive-index decrement and absorption of the subphase: delta from the critical
#: angle 0.13 deg (delta = alpha_c^2 / 2), beta of an organic liquid at 10 keV.
LIQUID_DELTA = 0.5 * math.radians(0.13) ** 2
LIQUID_BETA = 5.0e-9
#: PbSe at 10 keV (8.1 g/cm^3).
PBSE_DELTA = 1.37e-5
PBSE_BETA = 1.0e-6
CUBE_EDGE_NM = 5.7
CUBE_TRUNCATION_NM = 0.57
#: Exit-angle row on which the interference function is computed (the Yoneda band).
S_ROW_ALPHA_DEG = 0.13
#: q_par range and step of the interference function, in nm^-1.
S_Q_RANGE_PER_NM = (0.2, 2.6)
S_Q_STEP_PER_NM = 0.005
#: Exit-angle range and steps of the dilute (form factor) map, in degrees.
DILUTE_ALPHA_RANGE_DEG = (-0.05, 2.7)
DILUTE_ALPHA_STEP_DEG = 0.005
DILUTE_PHI_STEP_DEG = 0.02
#: Flat background added to every pixel, in counts (detector and diffuse scattering).
FLOOR_COUNTS = 0.5
GAP_VALUE = -1


@dataclass(frozen=True, slots=True)
class BALattice:
    """One BornAgain monolayer.

    Attributes
    ----------
    name : str
        Short name, used in file names and test ids.
    symmetry : {"hexagonal", "square"}
        Lattice symmetry.
    spacing_nm : float
        Nearest-neighbour distance (BornAgain's lattice length), in nm.
    structure : {"crystal", "paracrystal"}
        "crystal": BornAgain ``Crystal2D`` with a 2-D Cauchy peak decay of length
        `domain_nm`; "paracrystal": ``Paracrystal2D`` with Cauchy spacing disorder of width
        `disorder_nm` along both lattice vectors.
    domain_nm : float
        Decay length of the crystal's lattice peaks, or the paracrystal's domain size, nm.
    disorder_nm : float
        Paracrystal spacing disorder (Cauchy width), in nm; unused for a crystal.
    damping_nm : float
        Paracrystal damping length (BornAgain's regularisation), in nm.
    """

    name: str
    symmetry: Literal["hexagonal", "square"]
    spacing_nm: float
    structure: Literal["crystal", "paracrystal"] = "crystal"
    domain_nm: float = 40.0
    disorder_nm: float = 0.0
    damping_nm: float = 1000.0

    @property
    def area_density_per_nm2(self) -> float:
        """Particles per nm^2."""
        if self.symmetry == "square":
            return 1.0 / self.spacing_nm**2
        return 2.0 / (math.sqrt(3.0) * self.spacing_nm**2)

    @property
    def q1_per_nm(self) -> float:
        """True first rod, in nm^-1: 4 pi / (sqrt 3 a) or 2 pi / a."""
        return self.rods_per_nm(10.0)[0]

    def rods_per_nm(self, q_max_per_nm: float) -> list[float]:
        """True rod positions up to `q_max_per_nm`, ascending, in nm^-1.

        Square: (2 pi / a) sqrt(h^2 + k^2); hexagonal: (4 pi / (sqrt 3 a)) sqrt(h^2 + hk + k^2).
        """
        orders: set[float] = set()
        for h in range(0, 12):
            for k in range(0, 12):
                if self.symmetry == "square":
                    n2 = h * h + k * k
                    q = 2.0 * math.pi / self.spacing_nm * math.sqrt(n2)
                else:
                    n2 = h * h + h * k + k * k
                    q = 4.0 * math.pi / (math.sqrt(3.0) * self.spacing_nm) * math.sqrt(n2)
                if 0 < q <= q_max_per_nm:
                    orders.add(round(q, 12))
        return sorted(orders)


LATTICES: dict[str, BALattice] = {
    lat.name: lat
    for lat in (
        BALattice("square_domains", "square", 7.6, "crystal", domain_nm=40.0),
        BALattice("hexagonal_domains", "hexagonal", 9.07, "crystal", domain_nm=40.0),
        BALattice(
            "hexagonal_paracrystal",
            "hexagonal",
            9.07,
            "paracrystal",
            domain_nm=500.0,
            disorder_nm=0.3,
        ),
    )
}


# ---------------------------------------------------------------- geometry (PONI only)


@dataclass(frozen=True, slots=True)
class PoniGeometry:
    """The numbers of a PONI file that place the pixels (no rotations allowed)."""

    shape: tuple[int, int]
    pixel1_m: float
    pixel2_m: float
    distance_m: float
    poni1_m: float
    poni2_m: float
    wavelength_m: float
    gap_mask: NDArray[np.bool_]

    @classmethod
    def from_file(cls, path: Path) -> PoniGeometry:
        """Read a PONI with pyFAI (parsing only); rotations must be zero."""
        import pyFAI

        ai = pyFAI.load(str(path))
        if any(abs(r) > 1e-12 for r in (ai.rot1, ai.rot2, ai.rot3)):
            msg = f"{path}: bornagain_frames handles unrotated detectors only"
            raise ValueError(msg)
        det = ai.detector
        mask = det.mask if det.mask is not None else np.zeros(det.shape, dtype=bool)
        return cls(
            shape=(int(det.shape[0]), int(det.shape[1])),
            pixel1_m=float(det.pixel1),
            pixel2_m=float(det.pixel2),
            distance_m=float(ai.dist),
            poni1_m=float(ai.poni1),
            poni2_m=float(ai.poni2),
            wavelength_m=float(ai.wavelength),
            gap_mask=np.asarray(mask, dtype=bool),
        )

    def lab_vectors_m(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Pixel centres in the lab: (horizontal right, vertical up, along the beam), in m.

        Row 0 is the top of the stored frame, column 0 its left; the direct beam hits the
        PONI point (poni1 down from the top edge, poni2 right of the left edge).
        """
        rows, cols = self.shape
        d1 = (np.arange(rows) + 0.5) * self.pixel1_m
        d2 = (np.arange(cols) + 0.5) * self.pixel2_m
        up = np.broadcast_to((self.poni1_m - d1)[:, None], self.shape)
        right = np.broadcast_to((d2 - self.poni2_m)[None, :], self.shape)
        along = np.full(self.shape, self.distance_m)
        return right, up, along


def exit_angles_rad(
    geometry: PoniGeometry, *, incidence_angle_deg: float = INCIDENCE_ANGLE_DEG
) -> tuple[FloatArray, FloatArray]:
    """(alpha_f, phi_f) of every pixel, in rad, for a horizontal sample surface.

    The sample surface is tilted up by alpha_i against the beam (the beam comes in at
    grazing angle alpha_i), so the direct beam sits at alpha_f = -alpha_i and the specular
    at alpha_f = +alpha_i. phi_f is the in-plane angle from the beam's in-plane direction,
    positive to the right.
    """
    x, y, z = geometry.lab_vectors_m()
    norm = np.sqrt(x * x + y * y + z * z)
    ai = math.radians(incidence_angle_deg)
    normal = (0.0, math.cos(ai), -math.sin(ai))
    forward = (0.0, math.sin(ai), math.cos(ai))
    sin_af = (y * normal[1] + z * normal[2]) / norm
    along = (y * forward[1] + z * forward[2]) / norm
    return np.arcsin(sin_af), np.arctan2(x / norm, along)


def q_par_per_nm(
    alpha_f_rad: FloatArray | float,
    phi_f_rad: FloatArray | float,
    *,
    incidence_angle_deg: float = INCIDENCE_ANGLE_DEG,
) -> FloatArray:
    """q_par = k sqrt((cos af cos phi - cos ai)^2 + (cos af sin phi)^2), in nm^-1."""
    ai = math.radians(incidence_angle_deg)
    qx = np.cos(alpha_f_rad) * np.cos(phi_f_rad) - math.cos(ai)
    qy = np.cos(alpha_f_rad) * np.sin(phi_f_rad)
    return np.asarray(K_PER_NM * np.hypot(qx, qy), dtype=np.float64)


def phi_at_q_par_rad(q_per_nm: FloatArray, alpha_f_rad: float) -> FloatArray:
    """In-plane angle phi_f at which a row alpha_f reaches `q_per_nm` (inverse of q_par)."""
    ai = math.radians(INCIDENCE_ANGLE_DEG)
    caf = math.cos(alpha_f_rad)
    # |q/k|^2 = caf^2 + cai^2 - 2 caf cai cos(phi)
    cos_phi = (caf**2 + math.cos(ai) ** 2 - (np.asarray(q_per_nm) / K_PER_NM) ** 2) / (
        2.0 * caf * math.cos(ai)
    )
    return np.asarray(np.arccos(np.clip(cos_phi, -1.0, 1.0)), dtype=np.float64)


# ---------------------------------------------------------------- BornAgain


def _sample(lattice: BALattice, *, interference: bool):  # type: ignore[no-untyped-def]
    import bornagain as ba

    liquid = ba.RefractiveMaterial("ethylene_glycol", (0.2, 0.4, 0.8), LIQUID_DELTA, LIQUID_BETA)
    pbse = ba.RefractiveMaterial("PbSe", (0.3, 0.3, 0.3), PBSE_DELTA, PBSE_BETA)
    particle = ba.Particle(pbse, ba.TruncatedCube(CUBE_EDGE_NM, CUBE_TRUNCATION_NM))
    if not interference:
        structure = ba.Dilute2D(lattice.area_density_per_nm2, particle)
    else:
        if lattice.symmetry == "square":
            base = ba.SquareLattice2D(lattice.spacing_nm, 0.0)
        else:
            base = ba.HexagonalLattice2D(lattice.spacing_nm, 0.0)
        if lattice.structure == "crystal":
            structure = ba.Crystal2D(particle, base)
            structure.setDecayFunction(
                ba.Profile2DCauchy(lattice.domain_nm, lattice.domain_nm, 0.0)
            )
        else:
            structure = ba.Paracrystal2D(
                particle, base, lattice.damping_nm, lattice.domain_nm, lattice.domain_nm
            )
            pdf = ba.Profile2DCauchy(lattice.disorder_nm, lattice.disorder_nm, 0.0)
            structure.setProbabilityDistributions(pdf, pdf)
        structure.setIntegrationOverXi(True)
    top = ba.Layer(ba.Vacuum())
    top.deposit2D(structure)
    sample = ba.Sample()
    sample.addLayer(top)
    sample.addLayer(ba.Layer(liquid))
    return sample


def simulate_grid(
    lattice: BALattice,
    *,
    interference: bool,
    phi_range_deg: tuple[float, float],
    n_phi: int,
    alpha_range_deg: tuple[float, float],
    n_alpha: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """BornAgain on an equidistant (alpha_f, phi_f) grid.

    Returns
    -------
    phi_rad : ndarray of shape (n_phi,)
    alpha_rad : ndarray of shape (n_alpha,)
    intensity : ndarray of shape (n_alpha, n_phi)
    """
    import bornagain as ba

    deg = math.pi / 180.0
    detector = ba.SphericalDetector(
        n_phi,
        phi_range_deg[0] * deg,
        phi_range_deg[1] * deg,
        n_alpha,
        alpha_range_deg[0] * deg,
        alpha_range_deg[1] * deg,
    )
    beam = ba.Beam(1.0e8, WAVELENGTH_NM, INCIDENCE_ANGLE_DEG * deg)
    result = ba.ScatteringSimulation(
        beam, _sample(lattice, interference=interference), detector
    ).simulate()
    phi = np.asarray(result.xCenters(), dtype=np.float64)
    values = np.asarray(result.flatVector(), dtype=np.float64)
    if n_alpha == 1:
        return phi, np.array([0.5 * (alpha_range_deg[0] + alpha_range_deg[1]) * deg]), values[None]
    alpha = np.asarray(result.yCenters(), dtype=np.float64)
    return phi, alpha, values.reshape(n_alpha, n_phi)


def interference_line(lattice: BALattice) -> tuple[FloatArray, FloatArray]:
    """BornAgain's interference function S against q_par on the Yoneda row.

    S = I_lattice / I_dilute at alpha_f = :data:`S_ROW_ALPHA_DEG` (the same particles,
    same density), sampled every :data:`S_Q_STEP_PER_NM` over :data:`S_Q_RANGE_PER_NM`.

    Returns
    -------
    q_par_per_nm, s : ndarray of shape (n,)
    """
    alpha = math.radians(S_ROW_ALPHA_DEG)
    q_lo, q_hi = S_Q_RANGE_PER_NM
    phi_lo, phi_hi = (float(phi_at_q_par_rad(np.array(q), alpha)) for q in (q_lo, q_hi))
    n_phi = round((q_hi - q_lo) / S_Q_STEP_PER_NM)
    half_bin = 0.5 * (phi_hi - phi_lo) / n_phi
    # bin edges set so that the bin centres run from phi_lo to phi_hi
    phi_range = (math.degrees(phi_lo - half_bin), math.degrees(phi_hi + half_bin))
    alpha_range = (S_ROW_ALPHA_DEG - 1e-4, S_ROW_ALPHA_DEG + 1e-4)
    phi, _, lat = simulate_grid(
        lattice,
        interference=True,
        phi_range_deg=phi_range,
        n_phi=n_phi + 1,
        alpha_range_deg=alpha_range,
        n_alpha=1,
    )
    _, _, dil = simulate_grid(
        lattice,
        interference=False,
        phi_range_deg=phi_range,
        n_phi=n_phi + 1,
        alpha_range_deg=alpha_range,
        n_alpha=1,
    )
    q = q_par_per_nm(alpha, phi)
    return q, lat[0] / dil[0]


def dilute_map(lattice: BALattice, phi_max_deg: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """BornAgain's dilute intensity on the (alpha_f, phi_f >= 0) grid used for frames."""
    a_lo, a_hi = DILUTE_ALPHA_RANGE_DEG
    n_alpha = round((a_hi - a_lo) / DILUTE_ALPHA_STEP_DEG)
    n_phi = round(phi_max_deg / DILUTE_PHI_STEP_DEG)
    return simulate_grid(
        lattice,
        interference=False,
        phi_range_deg=(0.0, phi_max_deg),
        n_phi=n_phi,
        alpha_range_deg=(a_lo, a_hi),
        n_alpha=n_alpha,
    )


def factorisation_error(lattice: BALattice, *, alpha_deg: float = 0.25) -> float:
    """Largest relative difference, away from rod peaks, between the factorised model and a
    full BornAgain run on another exit-angle row (q_par 0.45-1.05 nm^-1)."""
    alpha = math.radians(alpha_deg)
    phi_lo, phi_hi = (float(phi_at_q_par_rad(np.array(q), alpha)) for q in (0.45, 1.05))
    kw = {
        "phi_range_deg": (math.degrees(phi_lo), math.degrees(phi_hi)),
        "n_phi": 40,
        "alpha_range_deg": (alpha_deg - 1e-4, alpha_deg + 1e-4),
        "n_alpha": 1,
    }
    phi, _, full = simulate_grid(lattice, interference=True, **kw)  # type: ignore[arg-type]
    _, _, dil = simulate_grid(lattice, interference=False, **kw)  # type: ignore[arg-type]
    q_s, s = cached_interference_line(lattice)
    model = dil[0] * np.exp(CubicSpline(q_s, np.log(s))(q_par_per_nm(alpha, phi)))
    return float(np.max(np.abs(model / full[0] - 1.0)))


# ---------------------------------------------------------------- cache


def _cache_path(kind: str, lattice: BALattice, extra: dict[str, object]) -> Path:
    import bornagain as ba

    key = json.dumps(
        {
            "kind": kind,
            "lattice": asdict(lattice),
            "extra": extra,
            "bornagain": str(getattr(ba, "version_str", "?")),
            "constants": [
                WAVELENGTH_NM,
                INCIDENCE_ANGLE_DEG,
                LIQUID_DELTA,
                LIQUID_BETA,
                PBSE_DELTA,
                PBSE_BETA,
                CUBE_EDGE_NM,
                CUBE_TRUNCATION_NM,
                S_ROW_ALPHA_DEG,
                S_Q_RANGE_PER_NM,
                S_Q_STEP_PER_NM,
                DILUTE_ALPHA_RANGE_DEG,
                DILUTE_ALPHA_STEP_DEG,
                DILUTE_PHI_STEP_DEG,
            ],
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "insitu-gixs-bornagain"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{kind}_{lattice.name}_{digest}.npz"


def cached_interference_line(lattice: BALattice) -> tuple[FloatArray, FloatArray]:
    """:func:`interference_line`, computed once and kept in the temporary folder."""
    path = _cache_path("s", lattice, {})
    if path.exists():
        with np.load(path) as data:
            return data["q"], data["s"]
    q, s = interference_line(lattice)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, q=q, s=s)
    tmp.replace(path)
    return q, s


def cached_dilute_map(
    lattice: BALattice, phi_max_deg: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`dilute_map`, computed once and kept in the temporary folder."""
    path = _cache_path("dilute", lattice, {"phi_max_deg": phi_max_deg})
    if path.exists():
        with np.load(path) as data:
            return data["phi"], data["alpha"], data["intensity"]
    phi, alpha, intensity = dilute_map(lattice, phi_max_deg)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, phi=phi, alpha=alpha, intensity=intensity)
    tmp.replace(path)
    return phi, alpha, intensity


# ---------------------------------------------------------------- frames


def expected_frame(
    lattice: BALattice,
    geometry: PoniGeometry,
    *,
    rod_peak_counts: float = 2000.0,
    q_window_per_nm: tuple[float, float] = (0.4, 1.4),
) -> FloatArray:
    """Noise-free counts of a frame of `lattice` on the detector of `geometry`.

    Pixels whose q_par lies beyond the interference function's range, or whose exit angle
    lies beyond the dilute grid, get the flat background only (they are outside the rod
    cut). Counts are scaled so that the brightest pixel with q_par in `q_window_per_nm`
    (the first rod in the Yoneda band) holds `rod_peak_counts` above the background.

    Returns
    -------
    ndarray of shape geometry.shape
    """
    alpha, phi = exit_angles_rad(geometry)
    q = q_par_per_nm(alpha, phi)
    q_s, s = cached_interference_line(lattice)
    phi_max_deg = math.degrees(float(phi_at_q_par_rad(np.array(q_s[-1]), 0.0))) + 0.05
    phi_g, alpha_g, dil = cached_dilute_map(lattice, round(phi_max_deg, 2))
    inside = (
        (q >= q_s[0])
        & (q <= q_s[-1])
        & (alpha >= alpha_g[0])
        & (alpha <= alpha_g[-1])
        & (np.abs(phi) <= phi_g[-1])
    )
    interp = RegularGridInterpolator((alpha_g, phi_g), dil, bounds_error=False, fill_value=0.0)
    intensity = np.zeros(geometry.shape)
    points = np.column_stack([alpha[inside], np.abs(phi[inside])])
    s_pixel = np.exp(CubicSpline(q_s, np.log(s))(q[inside]))
    intensity[inside] = np.maximum(interp(points), 0.0) * s_pixel
    window = inside & (q >= q_window_per_nm[0]) & (q <= q_window_per_nm[1])
    scale = rod_peak_counts / float(intensity[window].max())
    return intensity * scale + FLOOR_COUNTS


def noisy_frame(expected: FloatArray, geometry: PoniGeometry, *, seed: int) -> NDArray[np.int32]:
    """Poisson counts of `expected` (fixed seed), module gaps written as -1."""
    counts = np.random.default_rng(seed).poisson(expected).astype(np.int32)
    counts[geometry.gap_mask] = GAP_VALUE
    return counts


def write_frame(path: Path, counts: NDArray[np.int32]) -> Path:
    """Write `counts` as a Pilatus CBF with the project's writer; returns `path`."""
    from datetime import datetime

    from detectors.io import write_cbf

    write_cbf(
        path,
        counts,
        timestamp=datetime(2026, 11, 30, tzinfo=UTC),
        exposure_s=10.0,
        period_s=10.0,
        position=0,
    )
    return path
