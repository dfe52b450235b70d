"""Seeded synthetic GISAXS and GIWAXS frames of a self-assembling nanocube monolayer.

Pure functions: geometry, per-pixel q maps and a state in, an array of counts out. The
writer of the demo beamtime (:mod:`sample_data.io`) is the only caller that touches files.

The picture follows the study (SCIENCE.md): PbSe nanocubes (edge 5.7 +- 0.6 nm) on
ethylene glycol, 10 keV, incidence 0.3 deg.

GISAXS (:func:`gisaxs_expected`), Pilatus 300K-W at 0.578 m:

* every scattered photon leaves through the liquid surface with the Fresnel transmission
  ``|t(alpha_f)|^2`` (critical angle 0.13 deg): zero below the sample horizon, brightest in
  the Yoneda band at alpha_f = alpha_c, then 1;
* the form factor of a cube with a {100} facet up, free to turn about the surface normal,
  averaged over a Gaussian size distribution, plus a power-law diffuse background;
* rods of a 2D lattice (hexagonal, rhombic "pseudo-hexagonal" or square) at fixed
  ``|q_par|`` on both sides of the beam, Gaussian in q_par, modulated along q_perp by the
  cube's vertical form factor and the Yoneda enhancement;
* the specular spot at q_perp = 2 k sin(alpha_i), q_par = 0, and the direct beam (q = 0)
  attenuated by a semi-transparent beamstop that also darkens the scattering behind it.

GIWAXS (:func:`giwaxs_expected`), Pilatus 300K at 0.25 m: the {111}, {200} and {220}
reflections of rock-salt PbSe (a0 = 0.6124 nm) as powder rings that fade into in-plane
spots of cubes standing on a {100} facet (elongated along q_perp). The {200} line is the
exact size-broadened line of cube-shaped coherent domains with q along <100>
(:func:`line200_profile`): each cube of edge L gives L sinc^2(dq L / 2) (integral breadth
2 pi / L), averaged over a Gaussian number distribution of edges (relative spread
0.6 / 5.7) with each cube weighted by its volume L^3, as diffraction weights it, and
convolved with the Gaussian instrumental profile. Its integral breadth without the
instrument is 2 pi <L^3> / <L^4>, so the truth's ``domain_nm`` is the volume-weighted
mean edge <L^4> / <L^3>; ``fwhm200_nm-1`` is the FWHM of the drawn line (instrument
included). The {111} and {220} lines stay Gaussian with the {200}'s FWHM.

Calibrant frames (:func:`calibrant_expected`): transmission powder rings (LaB6 on the
GIWAXS detector, silver behenate on the GISAXS detector), each line a Gaussian in pyFAI's
``q_nm^-1`` with the instrumental width of that detector.

Counts are Poisson (:func:`detector_counts`, a seeded `numpy.random.Generator`), clipped at
the 20-bit Pilatus limit, with the module gaps of pyFAI's detector mask written as -1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from calibration.geometry import (
    ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG,
    DetectorGeometry,
    GIGeometry,
    QMaps,
)
from calibration.incidence import direct_beam_pixel
from calibration.resolution import calibrant_lines_per_nm

FloatArray = NDArray[np.float64]

Symmetry = Literal["none", "hexagonal", "pseudo-hexagonal", "square"]
Kind = Literal["gisaxs", "giwaxs"]
SYMMETRIES: tuple[Symmetry, ...] = ("none", "hexagonal", "pseudo-hexagonal", "square")

#: X-ray wavelength of the study (10.0 keV), in m.
WAVELENGTH_M = 0.12398e-9
#: Incidence angle alpha_i of the study, in degrees.
INCIDENCE_ANGLE_DEG = 0.3

#: Demo GISAXS detector: Pilatus 300K-W at 0.578 m, direct beam at row 168.1, column 736.7
#: (centre of the middle module, 27 rows above the bottom edge), so that q_perp reaches
#: 2.5 nm^-1 at the top row and the horizon, Yoneda band and specular spot lie at rows
#: 151, 143 and 133.
GISAXS_GEOMETRY = DetectorGeometry("Pilatus300kw", 0.578, 0.029, 0.1268, WAVELENGTH_M)
#: Demo GIWAXS detector: Pilatus 300K at 0.25 m, direct beam 43 mm to the left of column 0
#: and 2.6 rows above the bottom edge (row 616.3), so that the lowest q_perp band
#: (0-0.5 nm^-1) spans q_par 8.6-23.5 nm^-1 and holds the in-plane {111} and {200} lines.
GIWAXS_GEOMETRY = DetectorGeometry("Pilatus300k", 0.25, 0.106, -0.043, WAVELENGTH_M)

#: Instrumental FWHM of the GISAXS detector in |q| (calibrant lines), in nm^-1.
GISAXS_INSTRUMENT_FWHM_PER_NM = 0.02
#: Instrumental FWHM of the GIWAXS detector in |q| (calibrant lines, every peak), in nm^-1.
GIWAXS_INSTRUMENT_FWHM_PER_NM = 0.25
#: Scherrer constant of the truth: K = 1 on the integral breadth of a cube's h00 line.
SCHERRER_K = 1.0

#: Rock-salt PbSe lattice constant, in nm.
PBSE_A0_NM = 0.6124
#: Mean and standard deviation of the cube edge, in nm.
CUBE_EDGE_NM = 5.7
CUBE_EDGE_SD_NM = 0.6

#: Time between frames and exposure time of each frame, in s (the study's 10 s frames).
PERIOD_S = 10.0
EXPOSURE_S = 10.0
#: Sample positions visited back and forth between frames (21 steps over 4 mm).
N_POSITIONS = 21
#: Length of the study's run that the demo timeline compresses, in s (45 min).
STUDY_DURATION_S = 2700.0

#: Value Pilatus detectors write in module gaps.
GAP_VALUE = -1
#: Largest count of a 20-bit Pilatus counter.
PILATUS_MAX_COUNTS = 1_048_573

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

# Phase boundaries of the demo, in study time (s): form factor only, then hexagonal rods,
# then a rhombic (pseudo-hexagonal) lattice, then square.
_HEXAGONAL_FROM_S = 800.0
_PSEUDO_FROM_S = 1750.0
_SQUARE_FROM_S = 2300.0
# First rod through the phases, in nm^-1, and the rhombic angle, in degrees.
_HEX_Q1_PER_NM = (0.78, 0.80)
_PSEUDO_Q1_PER_NM = (0.805, 0.825)
_PSEUDO_GAMMA_DEG = (70.0, 80.0)
_SQUARE_Q1_PER_NM = 0.83
# Rod widths (FWHM in q_par, instrument included), in nm^-1: pseudo-hexagonal rods broaden.
ROD_FWHM_PER_NM: dict[Symmetry, float] = {
    "none": 0.04,
    "hexagonal": 0.04,
    "pseudo-hexagonal": 0.055,
    "square": 0.04,
}
# Number-mean edge of the cube-shaped coherent domains, nm, against study time (s): the
# cubes (5.7 nm) in dispersion, then the sizes the study reports after 31 and 40 min (9.0,
# 12.6 nm) as oriented attachment joins them; and the fraction of in-plane oriented cubes.
_EDGE_KNOTS_S = (0.0, _HEXAGONAL_FROM_S, 1860.0, 2400.0, 2700.0)
_EDGE_KNOTS_NM = (CUBE_EDGE_NM, CUBE_EDGE_NM, 9.0, 12.6, 13.1)
#: Relative spread of the edges (number distribution, Gaussian): the study's 0.6 / 5.7.
SIZE_SPREAD = CUBE_EDGE_SD_NM / CUBE_EDGE_NM
_IN_PLANE_KNOTS_S = (0.0, _HEXAGONAL_FROM_S, 2400.0, 2700.0)
_IN_PLANE_KNOTS = (0.0, 0.0, 1.0, 1.0)

# Intensity scales, in counts per 10 s frame.
_GISAXS_FORM_FACTOR_COUNTS = 3000.0  # cube form factor at q = 0
_GISAXS_ROD_COUNTS = 700.0  # first rod family, per reciprocal-lattice vector
_GISAXS_POWER_LAW_COUNTS = 0.02  # A in A / (q^2 + q0^2)^2, q in nm^-1
_GISAXS_POWER_LAW_Q0_PER_NM = 0.05
_GISAXS_FLOOR_COUNTS = 0.5
_SPECULAR_COUNTS = 2.0e5
_DIRECT_BEAM_COUNTS = 4.0e4
_BEAMSTOP_TRANSMISSION = 1.0e-3
_BEAMSTOP_HALF_SIZE_PX = (6, 10)  # rows, columns
_SPOT_SIGMA_PX = 0.8  # direct beam and specular spot
_ROD_DEBYE_WALLER_NM = 0.6  # r.m.s. displacement damping the higher rods
_GIWAXS_RING_COUNTS = 60.0  # {200} ring height at in-plane fraction 0
_GIWAXS_SPOT_COUNTS = 400.0  # {200} spot height at in-plane fraction 1 (before Yoneda gain)
_GIWAXS_BACKGROUND_COUNTS = 15.0
_GIWAXS_LIQUID_COUNTS = 15.0  # broad hump of the liquid around 10 nm^-1
_GIWAXS_LIQUID_Q_PER_NM = (10.0, 8.0)  # centre, sigma: nearly linear under {200}
# Relative heights of the PbSe reflections: (f_Pb -+ f_Se)^2 times multiplicity, roughly.
_PBSE_RING_HEIGHTS = {(1, 1, 1): 0.3, (2, 0, 0): 1.0, (2, 2, 0): 0.7}
_CALIBRANT_COUNTS = 1500.0
_CALIBRANT_BACKGROUND_COUNTS = 20.0
_YONEDA_SMEAR_DEG = 0.01  # beam divergence and footprint smearing the Yoneda cusp
_SUBPHASE_BETA_OVER_DELTA = 0.002


@dataclass(frozen=True, slots=True)
class GisaxsState:
    """What a GISAXS frame shows: the 2D lattice of the monolayer, if any.

    Attributes
    ----------
    symmetry : {"none", "hexagonal", "pseudo-hexagonal", "square"}
        Lattice; "none" gives form-factor scattering only.
    q1_per_nm : float or None
        First rod, in nm^-1 (the rhombic reciprocal length b for "pseudo-hexagonal");
        None for "none".
    gamma_deg : float or None
        Real-space angle of the rhombic lattice, in degrees: 60 for "hexagonal", 90 for
        "square", in (60, 90) for "pseudo-hexagonal"; None for "none".
    rod_fwhm_per_nm : float
        FWHM of every rod along q_par, in nm^-1 (instrument included).
    """

    symmetry: Symmetry
    q1_per_nm: float | None
    gamma_deg: float | None
    rod_fwhm_per_nm: float = 0.04

    def __post_init__(self) -> None:
        if self.symmetry not in SYMMETRIES:
            msg = f"symmetry must be one of {SYMMETRIES}, got {self.symmetry!r}"
            raise ValueError(msg)
        if self.symmetry == "none":
            if self.q1_per_nm is not None or self.gamma_deg is not None:
                msg = "a frame without rods (symmetry 'none') takes q1_per_nm=None, gamma_deg=None"
                raise ValueError(msg)
        else:
            if self.q1_per_nm is None or not (math.isfinite(self.q1_per_nm) and self.q1_per_nm > 0):
                msg = f"{self.symmetry} rods need q1_per_nm > 0, got {self.q1_per_nm!r}"
                raise ValueError(msg)
            expected = {"hexagonal": (60.0, 60.0), "square": (90.0, 90.0)}.get(
                self.symmetry, (60.0, 90.0)
            )
            gamma = self.gamma_deg
            if gamma is None or not expected[0] <= gamma <= expected[1]:
                msg = (
                    f"{self.symmetry} rods need gamma_deg in [{expected[0]:g}, "
                    f"{expected[1]:g}], got {gamma!r}"
                )
                raise ValueError(msg)
        if not (math.isfinite(self.rod_fwhm_per_nm) and self.rod_fwhm_per_nm > 0):
            msg = f"rod_fwhm_per_nm must be > 0, got {self.rod_fwhm_per_nm!r}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class GiwaxsState:
    """What a GIWAXS frame shows: PbSe reflections of a given domain size and texture.

    Attributes
    ----------
    symmetry : {"none", "hexagonal", "pseudo-hexagonal", "square"}
        Superlattice at the same time (GISAXS), recorded in the truth only.
    cube_edge_nm : float
        Number-mean edge of the cube-shaped coherent domains, in nm.
    in_plane_fraction : float
        Fraction of the scattering in in-plane spots (cubes with a <100> axis vertical),
        0 (powder rings) to 1 (spots only).
    size_spread : float
        Relative standard deviation of the edge (Gaussian number distribution), in [0, 0.3].
    instrument_fwhm_per_nm : float
        Gaussian instrumental FWHM, in nm^-1.
    """

    symmetry: Symmetry
    cube_edge_nm: float
    in_plane_fraction: float
    size_spread: float = SIZE_SPREAD
    instrument_fwhm_per_nm: float = GIWAXS_INSTRUMENT_FWHM_PER_NM

    def __post_init__(self) -> None:
        if self.symmetry not in SYMMETRIES:
            msg = f"symmetry must be one of {SYMMETRIES}, got {self.symmetry!r}"
            raise ValueError(msg)
        if not (math.isfinite(self.cube_edge_nm) and self.cube_edge_nm > 0):
            msg = f"cube_edge_nm must be > 0, got {self.cube_edge_nm!r}"
            raise ValueError(msg)
        if not 0.0 <= self.in_plane_fraction <= 1.0:
            msg = f"in_plane_fraction must be in [0, 1], got {self.in_plane_fraction!r}"
            raise ValueError(msg)
        if not (math.isfinite(self.size_spread) and 0.0 <= self.size_spread <= 0.3):
            msg = f"size_spread must be in [0, 0.3], got {self.size_spread!r}"
            raise ValueError(msg)
        if not (math.isfinite(self.instrument_fwhm_per_nm) and self.instrument_fwhm_per_nm >= 0):
            msg = f"instrument_fwhm_per_nm must be >= 0, got {self.instrument_fwhm_per_nm!r}"
            raise ValueError(msg)

    @property
    def domain_nm(self) -> float:
        """Volume-weighted mean edge <L^4> / <L^3>, in nm: 2 pi over the line's breadth."""
        edges, weights = _edge_distribution(self.cube_edge_nm, self.size_spread)
        return float(np.sum(weights * edges**4) / np.sum(weights * edges**3))

    @property
    def fwhm200_per_nm(self) -> float:
        """FWHM of the drawn {200} line (instrument included), in nm^-1."""
        return _line200_table(self.cube_edge_nm, self.size_spread, self.instrument_fwhm_per_nm)[2]

    def line200(self, dq_per_nm: FloatArray) -> FloatArray:
        """The {200} line at distance `dq_per_nm` from its centre, height 1 at the centre."""
        grid, profile, _ = _line200_table(
            self.cube_edge_nm, self.size_spread, self.instrument_fwhm_per_nm
        )
        return np.interp(np.abs(dq_per_nm), grid, profile, right=0.0)


def line200_profile(
    dq_per_nm: FloatArray,
    *,
    cube_edge_nm: float,
    size_spread: float = SIZE_SPREAD,
    instrument_fwhm_per_nm: float = GIWAXS_INSTRUMENT_FWHM_PER_NM,
) -> FloatArray:
    """Size-broadened {h00} line of cube-shaped domains, convolved with the instrument.

    Direct quadrature in q: sum over edges L (Gaussian number distribution, mean
    `cube_edge_nm`, sd `size_spread` * mean, 41 nodes over +-4 sd) of n(L) L^3 (volume)
    times L sinc^2(dq L / 2) / (2 pi) (a line of unit area), on a 0.004 nm^-1 grid to
    +-24 nm^-1, convolved numerically with a Gaussian of FWHM `instrument_fwhm_per_nm`.

    Parameters
    ----------
    dq_per_nm : ndarray
        Distance from the line centre, in nm^-1.
    cube_edge_nm : float
        Number-mean edge, in nm.
    size_spread : float
        Relative standard deviation of the edge.
    instrument_fwhm_per_nm : float
        Gaussian instrumental FWHM, in nm^-1.

    Returns
    -------
    ndarray
        The line, height 1 at dq = 0 (0 beyond 24 nm^-1).

    Examples
    --------
    >>> float(line200_profile(np.array([0.0]), cube_edge_nm=5.7)[0])
    1.0
    """
    grid, profile, _ = _line200_table(cube_edge_nm, size_spread, instrument_fwhm_per_nm)
    return np.interp(np.abs(dq_per_nm), grid, profile, right=0.0)


def _edge_distribution(mean_nm: float, size_spread: float) -> tuple[FloatArray, FloatArray]:
    """Edges and number weights of the Gaussian size distribution (positive edges only)."""
    if size_spread == 0.0:
        return np.array([mean_nm]), np.array([1.0])
    t = np.linspace(-4.0, 4.0, 41)
    edges = mean_nm * (1.0 + size_spread * t)
    keep = edges > 0
    return edges[keep], np.exp(-0.5 * t[keep] ** 2)


@functools.lru_cache(maxsize=64)
def _line200_table(
    cube_edge_nm: float, size_spread: float, instrument_fwhm_per_nm: float
) -> tuple[FloatArray, FloatArray, float]:
    """(dq >= 0 grid, line of height 1, FWHM) of :func:`line200_profile`."""
    step = 0.004
    dq = np.arange(-6000, 6001, dtype=np.float64) * step
    edges, numbers = _edge_distribution(cube_edge_nm, size_spread)
    volume = numbers * edges**3
    lines = edges[:, None] * np.sinc(np.outer(edges, dq) / (2.0 * math.pi)) ** 2 / (2.0 * math.pi)
    line = volume @ lines / volume.sum()
    if instrument_fwhm_per_nm > 0:
        sigma = instrument_fwhm_per_nm / FWHM_PER_SIGMA
        offsets = np.arange(-int(6 * sigma / step) - 1, int(6 * sigma / step) + 2) * step
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        line = np.convolve(line, kernel / kernel.sum(), mode="same")
    half = line[6000:] / line[6000]
    grid = dq[6000:]
    below = int(np.argmax(half < 0.5))
    crossing = grid[below - 1] + (half[below - 1] - 0.5) * step / (half[below - 1] - half[below])
    return grid, half, float(2.0 * crossing)


@dataclass(frozen=True, slots=True)
class DemoFrame:
    """One frame of the demo beamtime and its truth.

    Attributes
    ----------
    kind : {"gisaxs", "giwaxs"}
        Detector.
    frame : int
        Frame index on that detector, from 0.
    time_s : float
        Start of the exposure after the start of the run, in s.
    position : int
        Sample position index (0-20, back and forth).
    state : GisaxsState or GiwaxsState
        What the frame shows.
    """

    kind: Kind
    frame: int
    time_s: float
    position: int
    state: GisaxsState | GiwaxsState

    def truth(self, file: str) -> dict[str, object]:
        """The truth record of this frame, `file` relative to the demo folder.

        GISAXS: file, frame, time_s, symmetry, ``q1_nm-1`` (None without rods),
        ``gamma_deg`` (60 hexagonal, 90 square, None without rods). GIWAXS: file, frame,
        time_s, symmetry, ``fwhm200_nm-1`` (FWHM of the drawn {200} line, instrument
        included), ``domain_nm`` (volume-weighted mean cube edge <L^4> / <L^3>).
        """
        record: dict[str, object] = {
            "file": file,
            # the frame's index within its file, as summary.csv counts it (one frame a CBF)
            "frame": 0,
            "time_s": self.time_s,
            "symmetry": self.state.symmetry,
        }
        if isinstance(self.state, GisaxsState):
            record["q1_nm-1"] = _rounded(self.state.q1_per_nm)
            record["gamma_deg"] = _rounded(self.state.gamma_deg)
        else:
            record["fwhm200_nm-1"] = _rounded(self.state.fwhm200_per_nm)
            record["domain_nm"] = _rounded(self.state.domain_nm)
        return record


def position_index(frame: int, *, n_positions: int = N_POSITIONS) -> int:
    """Sample position of a frame, moving back and forth: 0, 1, ..., 20, 19, ..., 1, 0, 1, ...

    Examples
    --------
    >>> [position_index(i) for i in (0, 1, 20, 21, 39, 40, 41)]
    [0, 1, 20, 19, 1, 0, 1]
    """
    if frame < 0 or n_positions < 2:
        msg = f"need frame >= 0 and n_positions >= 2, got {frame!r}, {n_positions!r}"
        raise ValueError(msg)
    last = n_positions - 1
    return last - abs(last - frame % (2 * last))


def gisaxs_state_at(study_time_s: float) -> GisaxsState:
    """The monolayer's lattice at a time of the study (s after injection).

    Form factor only before 800 s; hexagonal with q1 rising 0.78 -> 0.80 nm^-1 until
    1750 s; pseudo-hexagonal (rhombic, b 0.805 -> 0.825 nm^-1, gamma 70 -> 80 deg) until
    2300 s; square with q1 = 0.83 nm^-1 after.

    Examples
    --------
    >>> [gisaxs_state_at(t).symmetry for t in (0, 1000, 2000, 2700)]
    ['none', 'hexagonal', 'pseudo-hexagonal', 'square']
    """
    if study_time_s < _HEXAGONAL_FROM_S:
        return GisaxsState("none", None, None, ROD_FWHM_PER_NM["none"])
    if study_time_s < _PSEUDO_FROM_S:
        u = (study_time_s - _HEXAGONAL_FROM_S) / (_PSEUDO_FROM_S - _HEXAGONAL_FROM_S)
        q1 = _HEX_Q1_PER_NM[0] + u * (_HEX_Q1_PER_NM[1] - _HEX_Q1_PER_NM[0])
        return GisaxsState("hexagonal", q1, 60.0, ROD_FWHM_PER_NM["hexagonal"])
    if study_time_s < _SQUARE_FROM_S:
        u = (study_time_s - _PSEUDO_FROM_S) / (_SQUARE_FROM_S - _PSEUDO_FROM_S)
        q1 = _PSEUDO_Q1_PER_NM[0] + u * (_PSEUDO_Q1_PER_NM[1] - _PSEUDO_Q1_PER_NM[0])
        gamma = _PSEUDO_GAMMA_DEG[0] + u * (_PSEUDO_GAMMA_DEG[1] - _PSEUDO_GAMMA_DEG[0])
        return GisaxsState("pseudo-hexagonal", q1, gamma, ROD_FWHM_PER_NM["pseudo-hexagonal"])
    return GisaxsState("square", _SQUARE_Q1_PER_NM, 90.0, ROD_FWHM_PER_NM["square"])


def giwaxs_state_at(study_time_s: float) -> GiwaxsState:
    """The PbSe reflections at a time of the study (s after injection).

    The cube-shaped domains have the study's 5.7 +- 0.6 nm in dispersion and grow to the
    sizes it reports after 31 and 40 min (9.0, 12.6 nm, number means, same relative
    spread); rings fade into in-plane spots from 800 s to 2400 s.

    Examples
    --------
    >>> state = giwaxs_state_at(2400.0)
    >>> state.cube_edge_nm, round(state.domain_nm, 2), state.in_plane_fraction, state.symmetry
    (12.6, 13.01, 1.0, 'square')
    """
    edge = float(np.interp(study_time_s, _EDGE_KNOTS_S, _EDGE_KNOTS_NM))
    fraction = float(np.interp(study_time_s, _IN_PLANE_KNOTS_S, _IN_PLANE_KNOTS))
    symmetry = gisaxs_state_at(study_time_s).symmetry
    return GiwaxsState(symmetry, edge, fraction)


def demo_timeline(n_gisaxs: int, n_giwaxs: int, *, period_s: float = PERIOD_S) -> list[DemoFrame]:
    """Every frame of the demo run with its truth, in time order (GISAXS first at a tie).

    Both detectors record frame i at ``i * period_s``. The run compresses the study's
    45 min: the frame at the end of the longer series stands for 2700 s after injection,
    so each phase keeps its share of the run whatever the number of frames.

    Parameters
    ----------
    n_gisaxs, n_giwaxs : int
        Number of frames of each detector (>= 0, together >= 2).
    period_s : float
        Time between frames, in s.

    Returns
    -------
    list of DemoFrame

    Raises
    ------
    ValueError
        If the counts are negative, give fewer than 2 time points, or the period is not > 0.

    Examples
    --------
    >>> frames = demo_timeline(40, 40)
    >>> len(frames), frames[1].kind, frames[-1].time_s, frames[-1].position
    (80, 'giwaxs', 390.0, 1)
    """
    if n_gisaxs < 0 or n_giwaxs < 0 or max(n_gisaxs, n_giwaxs) < 2:
        msg = f"need n_gisaxs, n_giwaxs >= 0 and one of them >= 2, got {n_gisaxs}, {n_giwaxs}"
        raise ValueError(msg)
    if not (math.isfinite(period_s) and period_s > 0):
        msg = f"period_s must be > 0, got {period_s!r}"
        raise ValueError(msg)
    last = max(n_gisaxs, n_giwaxs) - 1
    frames: list[DemoFrame] = []
    for index in range(last + 1):
        study_s = STUDY_DURATION_S * index / last
        time_s = index * period_s
        position = position_index(index)
        if index < n_gisaxs:
            frames.append(DemoFrame("gisaxs", index, time_s, position, gisaxs_state_at(study_s)))
        if index < n_giwaxs:
            frames.append(DemoFrame("giwaxs", index, time_s, position, giwaxs_state_at(study_s)))
    return frames


def rod_positions_per_nm(
    q1_per_nm: float, gamma_deg: float, *, q_max_per_nm: float
) -> tuple[FloatArray, FloatArray]:
    """Rods of a rhombic 2D lattice (equal sides, angle gamma) up to `q_max_per_nm`.

    The reciprocal vectors h b1 + k b2 (|b1| = |b2| = q1, at 180 - gamma deg) have length
    ``q1 sqrt(h^2 + k^2 - 2 h k cos gamma)``; gamma = 60 deg is hexagonal, 90 deg square.

    Parameters
    ----------
    q1_per_nm : float
        Reciprocal lattice length b (the first rod), in nm^-1.
    gamma_deg : float
        Real-space angle between the lattice vectors, in degrees, in [60, 90].
    q_max_per_nm : float
        Largest rod position kept, in nm^-1.

    Returns
    -------
    positions : ndarray of shape (n,)
        Distinct rod positions, in nm^-1, ascending.
    multiplicity : ndarray of shape (n,)
        Number of reciprocal-lattice vectors of each length.

    Examples
    --------
    >>> q, m = rod_positions_per_nm(0.8, 60.0, q_max_per_nm=1.7)
    >>> (q / 0.8).round(4).tolist(), m.tolist()
    ([1.0, 1.7321, 2.0], [6.0, 6.0, 6.0])
    >>> q, m = rod_positions_per_nm(0.83, 90.0, q_max_per_nm=1.7)
    >>> (q / 0.83).round(4).tolist(), m.tolist()
    ([1.0, 1.4142, 2.0], [4.0, 4.0, 4.0])
    """
    cos_g = math.cos(math.radians(gamma_deg))
    n_max = math.ceil(q_max_per_nm / (q1_per_nm * math.sin(math.radians(gamma_deg)))) + 1
    h, k = np.meshgrid(np.arange(-n_max, n_max + 1), np.arange(-n_max, n_max + 1))
    length = q1_per_nm * np.sqrt(h**2 + k**2 - 2.0 * h * k * cos_g)
    length = length[(length > 0) & (length <= q_max_per_nm)]
    positions, counts = np.unique(np.round(length, 9), return_counts=True)
    return positions.astype(np.float64), counts.astype(np.float64)


def yoneda_transmission(
    exit_angle_deg: FloatArray,
    *,
    critical_angle_deg: float = ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG,
    smear_deg: float = _YONEDA_SMEAR_DEG,
) -> FloatArray:
    """Fresnel transmission |t(alpha_f)|^2 of the liquid surface, smeared by `smear_deg`.

    Zero below the horizon (alpha_f <= 0), about 3 at alpha_f = alpha_c (the Yoneda band),
    tending to 1 well above it.

    Parameters
    ----------
    exit_angle_deg : ndarray
        Exit angles alpha_f, in degrees.
    critical_angle_deg : float
        Critical angle of the subphase, in degrees.
    smear_deg : float
        Gaussian sigma of the angular smearing, in degrees (> 0).

    Returns
    -------
    ndarray
        |t|^2 at each exit angle, same shape.

    Examples
    --------
    >>> t = yoneda_transmission(np.array([-0.1, 0.13, 2.0]))
    >>> bool(t[0] == 0.0), bool(t[1] > 2.5), bool(abs(t[2] - 1.0) < 0.01)
    (True, True, True)
    """
    step_deg = smear_deg / 5.0
    grid_deg = np.arange(-8 * smear_deg, 3.0 + step_deg, step_deg)
    sin_f = np.sin(np.radians(np.maximum(grid_deg, 0.0)))
    sin_c2 = math.sin(math.radians(critical_angle_deg)) ** 2
    # refractive index 1 - delta + i beta with 2 delta = sin^2(alpha_c)
    kz_inside = np.sqrt(sin_f**2 - sin_c2 * (1.0 - 2j * _SUBPHASE_BETA_OVER_DELTA))
    with np.errstate(invalid="ignore", divide="ignore"):
        t2 = np.abs(2.0 * sin_f / (sin_f + kz_inside)) ** 2
    t2 = np.where(grid_deg > 0, np.nan_to_num(t2), 0.0)
    kernel_x = np.arange(-4 * smear_deg, 4 * smear_deg + step_deg / 2, step_deg)
    kernel = np.exp(-0.5 * (kernel_x / smear_deg) ** 2)
    smeared = np.convolve(t2, kernel / kernel.sum(), mode="same")
    smeared[grid_deg < -4 * smear_deg] = 0.0
    return np.interp(exit_angle_deg, grid_deg, smeared, left=0.0, right=1.0)


def exit_angle_deg(geometry: GIGeometry, maps: QMaps) -> FloatArray:
    """Exit angle alpha_f of every pixel, in degrees, from q_perp = k (sin a_f + sin a_i)."""
    sin_f = maps.q_perp_per_nm / geometry.k_per_nm - math.sin(geometry.incidence_angle_rad)
    return np.degrees(np.arcsin(np.clip(sin_f, -1.0, 1.0)))


def cube_form_factor(
    q_par_per_nm: FloatArray,
    q_perp_per_nm: FloatArray,
    *,
    edge_nm: float = CUBE_EDGE_NM,
    edge_sd_nm: float = CUBE_EDGE_SD_NM,
) -> FloatArray:
    """|F(q)|^2 of cubes lying on a facet, turned at random about the normal, size-averaged.

    ``sinc^2(q_x L/2) sinc^2(q_y L/2) sinc^2(q_z L/2)`` averaged over the in-plane angle
    and over a Gaussian distribution of the edge L (weighted by L^6, the squared volume),
    normalised to 1 at q = 0.

    Parameters
    ----------
    q_par_per_nm, q_perp_per_nm : ndarray
        In-plane and vertical q, in nm^-1 (same shape).
    edge_nm, edge_sd_nm : float
        Mean and standard deviation of the cube edge, in nm.

    Returns
    -------
    ndarray
        Form factor, same shape, in [0, 1].

    Examples
    --------
    >>> f = cube_form_factor(np.array([0.0, 0.5, 1.0]), np.zeros(3))
    >>> f.round(3).tolist()
    [1.0, 0.444, 0.02]
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(9)
    edges = edge_nm + edge_sd_nm * nodes
    keep = edges > 0
    edges, weights = edges[keep], weights[keep] * edges[keep] ** 6
    weights = weights / weights.sum()
    x_max = float(np.max(np.abs(q_par_per_nm))) * float(edges.max()) / 2.0 + 1.0
    x_grid, p_grid = _in_plane_square_average(x_max)
    q_par = np.abs(q_par_per_nm)
    total = np.zeros(np.shape(q_par_per_nm))
    for edge, weight in zip(edges, weights, strict=True):
        p_par = np.interp(q_par * (edge / 2.0), x_grid, p_grid)
        total += weight * p_par * np.sinc(q_perp_per_nm * edge / (2.0 * math.pi)) ** 2
    return total


def gisaxs_expected(geometry: GIGeometry, maps: QMaps, state: GisaxsState) -> FloatArray:
    """Noise-free GISAXS counts of one frame, in counts per pixel.

    Parameters
    ----------
    geometry : GIGeometry
        Grazing-incidence geometry of the frame.
    maps : QMaps
        ``geometry.q_maps()``.
    state : GisaxsState
        Lattice to draw.

    Returns
    -------
    ndarray of shape (rows, cols)
        Expected counts (gaps not marked; see :func:`detector_counts`).
    """
    q_par, q_perp = maps.q_par_per_nm, maps.q_perp_per_nm
    q_total = np.hypot(q_par, q_perp)
    transmission = yoneda_transmission(exit_angle_deg(geometry, maps))
    # rods are modulated along q_perp by the cubes' vertical form factor
    # (a function of q_perp alone: tabulated on a fine grid, then interpolated)
    q_perp_grid = np.linspace(float(q_perp.min()), float(q_perp.max()), 4001)
    vertical = np.interp(
        q_perp, q_perp_grid, cube_form_factor(np.zeros_like(q_perp_grid), q_perp_grid)
    )
    scattering = (
        _GISAXS_FORM_FACTOR_COUNTS * cube_form_factor(q_par, q_perp)
        + _rod_profile(q_par, state) * vertical
        + _GISAXS_POWER_LAW_COUNTS / (q_total**2 + _GISAXS_POWER_LAW_Q0_PER_NM**2) ** 2
    )
    expected = transmission * scattering + _GISAXS_FLOOR_COUNTS
    pixel_q = _pixel_q_step_per_nm(maps)
    sigma_q = _SPOT_SIGMA_PX * pixel_q
    expected += _SPECULAR_COUNTS * np.exp(
        -0.5 * (q_par**2 + (q_perp - geometry.specular_q_perp_per_nm) ** 2) / sigma_q**2
    )
    stop = _beamstop(geometry, expected.shape)
    expected[stop] *= _BEAMSTOP_TRANSMISSION
    expected += _DIRECT_BEAM_COUNTS * np.exp(-0.5 * q_total**2 / sigma_q**2)
    return expected


def giwaxs_expected(geometry: GIGeometry, maps: QMaps, state: GiwaxsState) -> FloatArray:
    """Noise-free GIWAXS counts of one frame, in counts per pixel.

    Rings are lines in |q| = sqrt(q_par^2 + q_perp^2); in-plane spots are lines in |q_par|
    times a Gaussian in q_perp (width: the cube height 2 pi / 5.7 nm, instrument added).
    The {200} line is :meth:`GiwaxsState.line200` (the exact cube line); {111} and {220}
    are Gaussians of the same FWHM. Both carry the surface transmission, so the spots
    hug the horizon and are brightest in the Yoneda band.

    Parameters
    ----------
    geometry : GIGeometry
        Grazing-incidence geometry of the frame.
    maps : QMaps
        ``geometry.q_maps()``.
    state : GiwaxsState
        Domain size and texture to draw.

    Returns
    -------
    ndarray of shape (rows, cols)
        Expected counts (gaps not marked; see :func:`detector_counts`).
    """
    q_par, q_perp = np.abs(maps.q_par_per_nm), maps.q_perp_per_nm
    q_total = np.hypot(q_par, q_perp)
    sigma = state.fwhm200_per_nm / FWHM_PER_SIGMA
    sigma_perp = math.hypot(2.0 * math.pi / CUBE_EDGE_NM, state.instrument_fwhm_per_nm) / (
        FWHM_PER_SIGMA
    )
    centre, width = _GIWAXS_LIQUID_Q_PER_NM
    scattering = _GIWAXS_BACKGROUND_COUNTS + _GIWAXS_LIQUID_COUNTS * np.exp(
        -0.5 * ((q_total - centre) / width) ** 2
    )
    unit_per_nm = 2.0 * math.pi / PBSE_A0_NM
    ring_scale = _GIWAXS_RING_COUNTS * (1.0 - state.in_plane_fraction)
    spot_scale = _GIWAXS_SPOT_COUNTS * state.in_plane_fraction
    for (h, k, ell), height in _PBSE_RING_HEIGHTS.items():
        q_hkl = unit_per_nm * math.sqrt(h * h + k * k + ell * ell)

        def line(dq: FloatArray, hkl: tuple[int, int, int] = (h, k, ell)) -> FloatArray:
            if hkl == (2, 0, 0):  # the exact cube line; the others Gaussian, same FWHM
                return state.line200(dq)
            return np.exp(-0.5 * (dq / sigma) ** 2)

        if ring_scale > 0:
            scattering += ring_scale * height * line(q_total - q_hkl)
        if spot_scale > 0:
            for spot_par, spot_perp in _in_plane_spots(h, k, ell):
                scattering += (
                    spot_scale
                    * height
                    * line(q_par - unit_per_nm * spot_par)
                    * np.exp(-0.5 * ((q_perp - unit_per_nm * spot_perp) / sigma_perp) ** 2)
                )
    return yoneda_transmission(exit_angle_deg(geometry, maps)) * scattering


def total_q_map_per_nm(geometry: DetectorGeometry) -> FloatArray:
    """Total |q| at every pixel centre of a transmission geometry (pyFAI ``q_nm^-1``), in nm^-1."""
    integrator = AzimuthalIntegrator(
        dist=geometry.distance_m,
        poni1=geometry.poni1_m,
        poni2=geometry.poni2_m,
        rot1=geometry.rot1_rad,
        rot2=geometry.rot2_rad,
        rot3=geometry.rot3_rad,
        detector=geometry.pyfai_detector(),
        wavelength=geometry.wavelength_m,
    )
    return np.asarray(integrator.center_array(unit="q_nm^-1"), dtype=np.float64)


def calibrant_expected(
    geometry: DetectorGeometry,
    q_map_per_nm: FloatArray,
    *,
    calibrant: str,
    fwhm_per_nm: float,
    line_decay: float = 0.0,
) -> FloatArray:
    """Noise-free powder rings of a calibrant, each a Gaussian of FWHM `fwhm_per_nm` in |q|.

    Parameters
    ----------
    geometry : DetectorGeometry
        Geometry of the calibrant frame (its wavelength picks the lines).
    q_map_per_nm : ndarray of shape (rows, cols)
        ``total_q_map_per_nm(geometry)``.
    calibrant : str
        ``"LaB6"``, ``"CeO2"`` or ``"AgBh"``.
    fwhm_per_nm : float
        Instrumental FWHM of every line, in nm^-1 (> 0).
    line_decay : float
        Line n (from 0, in q order) has height ``exp(-line_decay * n)``.

    Returns
    -------
    ndarray of shape (rows, cols)
        Expected counts; the direct beam is blocked.

    Raises
    ------
    ValueError
        If `fwhm_per_nm` is not > 0.
    """
    if not (math.isfinite(fwhm_per_nm) and fwhm_per_nm > 0):
        msg = f"fwhm_per_nm must be > 0, got {fwhm_per_nm!r}"
        raise ValueError(msg)
    q_lo, q_hi = float(np.min(q_map_per_nm)), float(np.max(q_map_per_nm))
    lines = calibrant_lines_per_nm(
        calibrant,
        wavelength_m=geometry.wavelength_m,
        q_range_per_nm=(q_lo - 3 * fwhm_per_nm, q_hi + 3 * fwhm_per_nm),
    )
    sigma = fwhm_per_nm / FWHM_PER_SIGMA
    expected = np.full(q_map_per_nm.shape, _CALIBRANT_BACKGROUND_COUNTS)
    for n, q_line in enumerate(lines):
        expected += (
            _CALIBRANT_COUNTS
            * math.exp(-line_decay * n)
            * np.exp(-0.5 * ((q_map_per_nm - q_line) / sigma) ** 2)
        )
    return expected


def detector_counts(
    expected: FloatArray, gaps: NDArray[np.bool_], *, rng: np.random.Generator | int | None
) -> NDArray[np.int32]:
    """Poisson counts of a Pilatus frame: clipped at 20 bits, module gaps set to -1.

    Parameters
    ----------
    expected : ndarray of shape (rows, cols)
        Expected counts per pixel (>= 0).
    gaps : ndarray of bool, shape (rows, cols)
        True in module gaps (pyFAI's detector mask).
    rng : numpy.random.Generator, int or None
        Random generator or seed.

    Returns
    -------
    ndarray of int32, shape (rows, cols)

    Examples
    --------
    >>> frame = detector_counts(np.full((2, 3), 5.0), np.eye(2, 3, dtype=bool), rng=0)
    >>> frame.dtype.name, int(frame[0, 0]), int(frame[1, 1])
    ('int32', -1, -1)
    """
    generator = np.random.default_rng(rng)
    counts = generator.poisson(np.maximum(expected, 0.0))
    frame = np.minimum(counts, PILATUS_MAX_COUNTS).astype(np.int32)
    frame[gaps] = GAP_VALUE
    return frame


def gap_mask(geometry: DetectorGeometry) -> NDArray[np.bool_]:
    """Module gaps of the detector: pyFAI's detector mask, as bool of shape (rows, cols)."""
    mask = geometry.pyfai_detector().mask
    if mask is None:
        return np.zeros(geometry.shape, dtype=bool)
    return np.asarray(mask, dtype=bool)


def gisaxs_frame(
    geometry: GIGeometry,
    maps: QMaps,
    state: GisaxsState,
    *,
    rng: np.random.Generator | int | None,
) -> NDArray[np.int32]:
    """A GISAXS frame in counts (int32, gaps -1): :func:`gisaxs_expected` with Poisson noise.

    Examples
    --------
    >>> geo = GIGeometry.create(GISAXS_GEOMETRY, incidence_angle_deg=INCIDENCE_ANGLE_DEG)
    >>> frame = gisaxs_frame(geo, geo.q_maps(), GisaxsState("hexagonal", 0.8, 60.0), rng=0)
    >>> frame.shape, frame.dtype.name, int(frame.min())
    ((195, 1475), 'int32', -1)
    """
    expected = gisaxs_expected(geometry, maps, state)
    return detector_counts(expected, gap_mask(geometry.detector), rng=rng)


def giwaxs_frame(
    geometry: GIGeometry,
    maps: QMaps,
    state: GiwaxsState,
    *,
    rng: np.random.Generator | int | None,
) -> NDArray[np.int32]:
    """A GIWAXS frame in counts (int32, gaps -1): :func:`giwaxs_expected` with Poisson noise."""
    expected = giwaxs_expected(geometry, maps, state)
    return detector_counts(expected, gap_mask(geometry.detector), rng=rng)


def calibrant_frame(
    geometry: DetectorGeometry,
    *,
    calibrant: str,
    fwhm_per_nm: float,
    rng: np.random.Generator | int | None,
    line_decay: float = 0.0,
) -> NDArray[np.int32]:
    """A calibrant frame in counts (int32, gaps -1): :func:`calibrant_expected` with noise."""
    expected = calibrant_expected(
        geometry,
        total_q_map_per_nm(geometry),
        calibrant=calibrant,
        fwhm_per_nm=fwhm_per_nm,
        line_decay=line_decay,
    )
    return detector_counts(expected, gap_mask(geometry), rng=rng)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _in_plane_square_average(x_max: float) -> tuple[FloatArray, FloatArray]:
    """<sinc^2(x cos phi) sinc^2(x sin phi)> over phi, tabulated for x in [0, x_max]."""
    x = np.linspace(0.0, x_max, max(2, int(x_max / 0.005) + 1))
    phi = (np.arange(64) + 0.5) * (math.pi / 4.0) / 64  # the square's symmetry: [0, pi/4]
    arg_c = np.outer(x, np.cos(phi)) / math.pi
    arg_s = np.outer(x, np.sin(phi)) / math.pi
    return x, np.mean(np.sinc(arg_c) ** 2 * np.sinc(arg_s) ** 2, axis=1)


def _rod_profile(q_par_per_nm: FloatArray, state: GisaxsState) -> FloatArray:
    """Rod counts against signed q_par (before the vertical modulation)."""
    if state.q1_per_nm is None or state.gamma_deg is None:
        return np.zeros(np.shape(q_par_per_nm))
    q_abs = np.abs(q_par_per_nm)
    sigma = state.rod_fwhm_per_nm / FWHM_PER_SIGMA
    # rods damped below 1e-4 of the first one by the Debye-Waller factor are left out
    q_visible_per_nm = math.sqrt(math.log(1e4)) / _ROD_DEBYE_WALLER_NM
    positions, multiplicity = rod_positions_per_nm(
        state.q1_per_nm,
        state.gamma_deg,
        q_max_per_nm=min(float(q_abs.max()) + 5 * sigma, q_visible_per_nm),
    )
    # 2D powder: 1/q Lorentz factor; Debye-Waller damping of the higher rods
    heights = (
        _GISAXS_ROD_COUNTS
        * multiplicity
        * (state.q1_per_nm / positions)
        * np.exp(-((_ROD_DEBYE_WALLER_NM * positions) ** 2))
    )
    profile = np.zeros(np.shape(q_par_per_nm))
    for position, height in zip(positions, heights, strict=True):
        near = np.abs(q_abs - position) < 6 * sigma
        profile[near] += height * np.exp(-0.5 * ((q_abs[near] - position) / sigma) ** 2)
    return profile


def _in_plane_spots(h: int, k: int, ell: int) -> list[tuple[float, float]]:
    """Distinct (q_par, q_perp) of a {hkl} family for cubes with <001> vertical, in 2pi/a0.

    Spots on the surface normal (q_par = 0) are left out: they never reach the detector.
    """
    members: set[tuple[float, float]] = set()
    for a, b, c in {(h, k, ell), (k, ell, h), (ell, h, k), (h, ell, k), (ell, k, h), (k, h, ell)}:
        q_par = math.hypot(a, b)
        if q_par > 0:
            members.add((round(q_par, 9), float(abs(c))))
    return sorted(members)


def _pixel_q_step_per_nm(maps: QMaps) -> float:
    """Median q step between neighbouring columns, in nm^-1."""
    return float(np.median(np.abs(np.diff(maps.q_par_per_nm, axis=1))))


def _beamstop(geometry: GIGeometry, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """Pixels behind the semi-transparent beamstop, a rectangle around the direct beam."""
    row, col = direct_beam_pixel(geometry)
    rows = np.arange(shape[0])[:, None]
    cols = np.arange(shape[1])[None, :]
    half_rows, half_cols = _BEAMSTOP_HALF_SIZE_PX
    return (np.abs(rows - row) <= half_rows) & (np.abs(cols - col) <= half_cols)
