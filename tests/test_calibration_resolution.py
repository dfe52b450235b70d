"""Instrumental resolution: known Gaussian ring widths drawn on real pyFAI geometries."""

import numpy as np
import pytest
from numpy.typing import NDArray
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from calibration.geometry import DetectorGeometry
from calibration.resolution import (
    calibrant_lines_per_nm,
    measure_resolution,
    radial_profile,
)
from detectors.errors import ConfigError, GeometryError

WAVELENGTH_M = 0.12398e-9
FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))
# GIWAXS: Pilatus 300K at 0.25 m, direct beam 30 mm below the bottom edge of the frame.
GIWAXS = DetectorGeometry("Pilatus300k", 0.25, 0.1365, 0.042, WAVELENGTH_M)
# GISAXS: Pilatus 300K-W at 0.578 m, direct beam near the bottom of the frame.
GISAXS = DetectorGeometry("Pilatus300kw", 0.578, 0.03, 0.12, WAVELENGTH_M)


def _q_map_per_nm(geometry: DetectorGeometry) -> NDArray[np.float64]:
    integrator = AzimuthalIntegrator(
        dist=geometry.distance_m,
        poni1=geometry.poni1_m,
        poni2=geometry.poni2_m,
        detector=geometry.pyfai_detector(),
        wavelength=geometry.wavelength_m,
    )
    return np.asarray(integrator.center_array(unit="q_nm^-1"), dtype=np.float64)


@pytest.fixture(scope="module")
def giwaxs_q() -> NDArray[np.float64]:
    return _q_map_per_nm(GIWAXS)


@pytest.fixture(scope="module")
def gisaxs_q() -> NDArray[np.float64]:
    return _q_map_per_nm(GISAXS)


def _ring_frame(
    q_map: NDArray[np.float64],
    geometry: DetectorGeometry,
    lines_per_nm: NDArray[np.float64],
    fwhm_per_nm,
    *,
    height: float,
    background: float,
    rng: int,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Rings of Gaussian profile in q at each line, Poisson noise, gaps at -1."""
    expected = np.full_like(q_map, background)
    for q_line in lines_per_nm:
        sigma = fwhm_per_nm(q_line) / FWHM_PER_SIGMA
        expected += height * np.exp(-0.5 * ((q_map - q_line) / sigma) ** 2)
    frame = np.random.default_rng(rng).poisson(expected).astype(np.float64)
    mask = np.asarray(geometry.pyfai_detector().mask, dtype=bool)
    frame[mask] = -1
    return frame, mask


@pytest.mark.parametrize(
    ("calibrant", "fwhm_per_nm"), [("LaB6", 0.3), ("LaB6", 0.15), ("CeO2", 0.1)]
)
def test_giwaxs_calibrant_width_is_recovered(giwaxs_q, calibrant: str, fwhm_per_nm: float) -> None:
    lines = calibrant_lines_per_nm(calibrant, wavelength_m=WAVELENGTH_M)
    frame, mask = _ring_frame(
        giwaxs_q, GIWAXS, lines, lambda q: fwhm_per_nm, height=800, background=20, rng=1
    )
    q, intensity, sigma = radial_profile(frame, GIWAXS, mask=mask)
    res = measure_resolution(
        q, intensity, sigma=sigma, calibrant=calibrant, wavelength_m=WAVELENGTH_M
    )
    on_detector = lines[(lines > giwaxs_q.min() + 0.5) & (lines < giwaxs_q.max() - 0.5)]
    assert len(res.line_q_per_nm) == len(on_detector) == 2
    assert res.line_q_per_nm == pytest.approx(on_detector, abs=0.005)
    assert res.line_fwhm_per_nm == pytest.approx([fwhm_per_nm] * 2, rel=0.03)
    assert res.fwhm_per_nm(18.0) == pytest.approx(fwhm_per_nm, rel=0.03)
    assert max(res.line_fwhm_err_per_nm) < 0.01 * fwhm_per_nm


def test_agbh_width_growing_with_q_is_modelled(gisaxs_q) -> None:
    def true_fwhm(q):
        return np.hypot(0.08, 0.02 * q)

    lines = calibrant_lines_per_nm("AgBh", wavelength_m=WAVELENGTH_M)
    frame, mask = _ring_frame(gisaxs_q, GISAXS, lines, true_fwhm, height=300, background=5, rng=2)
    q, intensity, sigma = radial_profile(frame, GISAXS, mask=mask, q_range_per_nm=(0.5, 6.0))
    res = measure_resolution(
        q,
        intensity,
        sigma=sigma,
        calibrant="agbh",
        wavelength_m=WAVELENGTH_M,
        detector=GISAXS.detector,
    )
    assert (res.calibrant, res.model, res.detector) == ("AgBh", "quadrature", "Pilatus300kw")
    assert len(res.line_q_per_nm) == 5  # orders 1-5 at 1.076 nm^-1 spacing
    assert res.line_fwhm_per_nm == pytest.approx(true_fwhm(np.array(res.line_q_per_nm)), rel=0.03)
    q_check = np.array([1.0, 3.0, 5.5])
    assert res.fwhm_per_nm(q_check) == pytest.approx(true_fwhm(q_check), rel=0.03)


def test_missing_line_is_skipped_and_said(giwaxs_q) -> None:
    lab6 = calibrant_lines_per_nm("LaB6", wavelength_m=WAVELENGTH_M)
    frame, mask = _ring_frame(
        giwaxs_q, GIWAXS, lab6[:1], lambda q: 0.2, height=500, background=20, rng=3
    )
    q, intensity, sigma = radial_profile(frame, GIWAXS, mask=mask)
    res = measure_resolution(q, intensity, sigma=sigma, calibrant="LaB6", wavelength_m=WAVELENGTH_M)
    assert res.model == "constant"
    assert res.line_q_per_nm == pytest.approx([15.115], abs=0.01)
    assert res.fwhm_per_nm(25.0) == pytest.approx(0.2, rel=0.03)
    assert len(res.skipped_lines) == 1
    assert "21.376" in res.skipped_lines[0]


def test_no_line_in_range_names_calibrant_and_range(giwaxs_q) -> None:
    frame, mask = _ring_frame(
        giwaxs_q, GIWAXS, np.array([]), lambda q: 0.2, height=0, background=20, rng=4
    )
    q, intensity, sigma = radial_profile(frame, GIWAXS, mask=mask, q_range_per_nm=(16.0, 20.0))
    with pytest.raises(GeometryError, match=r"no LaB6 line could be fitted in q = 16\.0"):
        measure_resolution(q, intensity, sigma=sigma, calibrant="LaB6", wavelength_m=WAVELENGTH_M)


def test_unknown_calibrant_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="LaB6, CeO2, AgBh"):
        calibrant_lines_per_nm("Si", wavelength_m=WAVELENGTH_M)


def test_frame_of_another_detector_is_refused() -> None:
    with pytest.raises(GeometryError, match=r"\(195, 1475\)"):
        radial_profile(np.zeros((619, 487)), GISAXS)


def test_resolution_from_frame_is_profile_then_fit(giwaxs_q) -> None:
    from calibration.resolution import resolution_from_frame

    lines = calibrant_lines_per_nm("CeO2", wavelength_m=WAVELENGTH_M)
    frame, mask = _ring_frame(
        giwaxs_q, GIWAXS, lines, lambda q: 0.2, height=800, background=20, rng=5
    )
    res = resolution_from_frame(frame, GIWAXS, calibrant="ceo2", mask=mask)
    assert (res.calibrant, res.detector, res.wavelength_m) == ("CeO2", "Pilatus300k", WAVELENGTH_M)
    assert res.fwhm_per_nm(21.0) == pytest.approx(0.2, rel=0.03)
