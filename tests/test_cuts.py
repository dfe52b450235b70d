"""Band and range policies on the study's two detector set-ups."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.optimize import curve_fit

from calibration.geometry import DetectorGeometry, GIGeometry, QMaps
from detectors.errors import GeometryError
from pipeline.cuts import (
    PBSE_200_Q_PER_NM,
    frame_kind,
    lowest_band_per_nm,
    q_par_coverage_per_nm,
    yoneda_band_per_nm,
)
from pipeline.integrate import integrate_cut, plan_cut

WAVELENGTH_M = 0.12398e-9  # 10.0 keV
PIXEL_M = 172e-6
GISAXS = DetectorGeometry("Pilatus300kw", 0.578, 0.030, 0.1268, WAVELENGTH_M)
GIWAXS = DetectorGeometry("Pilatus300k", 0.25, 0.104, -0.045, WAVELENGTH_M)


def gaps(detector: DetectorGeometry) -> NDArray[np.bool_]:
    return np.asarray(detector.pyfai_detector().mask, dtype=bool)


@pytest.fixture(scope="module")
def gisaxs() -> tuple[GIGeometry, QMaps]:
    geometry = GIGeometry.create(GISAXS, incidence_angle_deg=0.3)
    return geometry, geometry.q_maps()


@pytest.fixture(scope="module")
def giwaxs() -> tuple[GIGeometry, QMaps]:
    geometry = GIGeometry.create(GIWAXS, incidence_angle_deg=0.3)
    return geometry, geometry.q_maps()


def test_gisaxs_geometry_has_the_direct_beam_near_the_bottom_middle(gisaxs):
    _, maps = gisaxs
    q = np.hypot(maps.q_par_per_nm, maps.q_perp_per_nm)
    row, col = np.unravel_index(np.argmin(q), q.shape)
    # poni1 = 0.030 m from row 0 (the top as stored) and poni2 = 0.1268 m: pixel (174, 737)
    assert (row, col) == (round(0.030 / PIXEL_M - 0.5), round(0.1268 / PIXEL_M - 0.5))


def test_yoneda_band_is_at_the_critical_exit_angle(gisaxs):
    geometry, maps = gisaxs
    lo, hi = yoneda_band_per_nm(geometry)
    assert (lo, hi) == pytest.approx((0.38 - 0.1, 0.38 + 0.1), abs=2e-3)
    # the exit angles of the band's pixels, from their heights on the detector alone
    column = round(0.1268 / PIXEL_M - 0.5)
    q_perp = maps.q_perp_per_nm[:, column]
    rows = np.flatnonzero((q_perp >= lo) & (q_perp <= hi))
    height_m = 0.030 - (rows + 0.5) * PIXEL_M
    exit_deg = np.degrees(np.arctan(height_m / 0.578)) - 0.3
    assert exit_deg.mean() == pytest.approx(0.13, abs=0.02)
    # above the horizon (alpha_f = 0) and below the specular spot (alpha_f = alpha_i)
    assert 0 < exit_deg.min()
    assert exit_deg.max() < 0.3
    assert hi < geometry.specular_q_perp_per_nm


def test_yoneda_band_follows_its_settings(gisaxs):
    geometry, _ = gisaxs
    lo, hi = yoneda_band_per_nm(geometry, critical_angle_deg=0.2, half_width_per_nm=0.05)
    centre = geometry.k_per_nm * (math.sin(math.radians(0.2)) + math.sin(math.radians(0.3)))
    assert (lo, hi) == pytest.approx((centre - 0.05, centre + 0.05))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"critical_angle_deg": -0.1}, "critical angle"),
        ({"critical_angle_deg": 13.0}, "degrees"),
        ({"half_width_per_nm": 0.0}, "half_width_per_nm"),
        ({"half_width_per_nm": math.inf}, "half_width_per_nm"),
    ],
)
def test_yoneda_band_rejects_bad_settings(gisaxs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        yoneda_band_per_nm(gisaxs[0], **kwargs)


def test_giwaxs_in_plane_band_reaches_pbse_200(giwaxs):
    _, maps = giwaxs
    # the direct beam lies beyond the left edge, its height near the bottom rows
    assert np.all(maps.q_par_per_nm > 5)
    assert maps.q_perp_per_nm[-1].max() < 0 < maps.q_perp_per_nm[-40].min()
    band = lowest_band_per_nm(maps, static_mask=gaps(GIWAXS))
    assert band == (0.0, 0.5)  # the detector reaches below q_perp = 0
    lo, hi = q_par_coverage_per_nm(maps, gaps(GIWAXS), band)
    assert lo < 17.0
    assert hi > 23.5
    assert frame_kind(maps, gaps(GIWAXS)) == "giwaxs"


def test_gisaxs_frame_is_small_angle(gisaxs):
    geometry, maps = gisaxs
    lo, hi = q_par_coverage_per_nm(maps, gaps(GISAXS), yoneda_band_per_nm(geometry))
    # the band crosses the column of the direct beam; 737.5 px of 0.578 m reach 10.9 nm^-1
    assert lo < 0.02
    assert hi == pytest.approx(10.9, abs=0.1)
    assert frame_kind(maps, gaps(GISAXS)) == "gisaxs"


def test_masked_pixels_do_not_count_as_reached(giwaxs):
    _, maps = giwaxs
    mask = gaps(GIWAXS) | (maps.q_par_per_nm > 20.0)
    band = lowest_band_per_nm(maps, static_mask=mask)
    assert q_par_coverage_per_nm(maps, mask, band)[1] < 20.0
    assert frame_kind(maps, mask) == "gisaxs"
    # a reflection the band still reaches makes it wide-angle again
    assert frame_kind(maps, mask, reflection_q_per_nm=17.77) == "giwaxs"


def test_lowest_band_starts_at_the_lowest_unmasked_pixel(giwaxs):
    _, maps = giwaxs
    mask = gaps(GIWAXS)
    mask[-60:] = True  # e.g. a beam stop over the bottom rows
    lo, hi = lowest_band_per_nm(maps, static_mask=mask, width_per_nm=0.2)
    assert lo == pytest.approx(maps.q_perp_per_nm[~mask].min())
    assert lo > 0
    assert hi == pytest.approx(lo + 0.2)


def test_lowest_band_rejects_bad_input(giwaxs):
    _, maps = giwaxs
    with pytest.raises(ValueError, match="width_per_nm"):
        lowest_band_per_nm(maps, static_mask=None, width_per_nm=-0.5)
    with pytest.raises(ValueError, match="static_mask has shape"):
        lowest_band_per_nm(maps, static_mask=np.zeros((195, 1475), dtype=bool))
    with pytest.raises(GeometryError, match="masked"):
        lowest_band_per_nm(maps, static_mask=np.ones(maps.q_par_per_nm.shape, dtype=bool))
    with pytest.raises(GeometryError, match="no unmasked pixel"):
        q_par_coverage_per_nm(maps, None, (40.0, 41.0))


def ring_peak_per_nm(geometry: GIGeometry, maps: QMaps, band: tuple[float, float]) -> float:
    """Fitted q_par centre of a PbSe {200} ring (Gaussian in |q|) cut through `band`."""
    q = np.hypot(maps.q_par_per_nm, maps.q_perp_per_nm)
    ring = np.exp(-0.5 * ((q - PBSE_200_Q_PER_NM) / 0.2) ** 2)
    plan = plan_cut(
        geometry,
        static_mask=gaps(GIWAXS),
        q_perp_band_per_nm=band,
        q_par_range_per_nm=(19.0, 22.0),
        n_bins=120,
        maps=maps,
    )
    cut = integrate_cut(plan, ring)
    ok = np.isfinite(cut.intensity)

    def gaussian(x: NDArray[np.float64], a: float, c: float, s: float) -> NDArray[np.float64]:
        return a * np.exp(-0.5 * ((x - c) / s) ** 2)

    params, _ = curve_fit(gaussian, cut.q_par_per_nm[ok], cut.intensity[ok], p0=(1, 20.5, 0.2))
    return float(params[1])


def test_narrow_in_plane_band_keeps_the_200_ring_in_place(giwaxs):
    geometry, maps = giwaxs
    narrow = ring_peak_per_nm(geometry, maps, lowest_band_per_nm(maps, static_mask=gaps(GIWAXS)))
    assert narrow == pytest.approx(PBSE_200_Q_PER_NM, rel=1e-4)
    # a wide band moves it by about -w^2 / (2 q)
    wide = ring_peak_per_nm(geometry, maps, (0.0, 2.0))
    assert PBSE_200_Q_PER_NM - wide > 5 * abs(PBSE_200_Q_PER_NM - narrow)
