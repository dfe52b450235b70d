"""Incidence angle and orientation self-test on frames drawn with real pyFAI geometries."""

import functools
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from calibration.geometry import DetectorGeometry, GIGeometry
from calibration.incidence import (
    check_incidence_angle,
    check_orientation,
    direct_beam_pixel,
    estimate_incidence_angle,
)
from detectors.errors import GeometryError

WAVELENGTH_M = 0.12398e-9
CRITICAL_ANGLE_DEG = 0.13
GISAXS = DetectorGeometry("Pilatus300kw", 0.578, 0.03, 0.12, WAVELENGTH_M)
# Detector orientation 2 and tilts: the same physics must come out.
GISAXS_TILTED = DetectorGeometry(
    "Pilatus300kw", 0.578, 0.03, 0.12, WAVELENGTH_M, rot1_rad=0.01, rot2_rad=-0.02, orientation=2
)
# GIWAXS: the direct beam lies 30 mm below the frame.
GIWAXS = DetectorGeometry("Pilatus300k", 0.25, 0.1365, 0.042, WAVELENGTH_M)


@functools.cache
def gi_frame(
    detector: DetectorGeometry, incidence_angle_deg: float, *, beam: bool = True, rng: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Direct beam at q = 0, specular spot at q_perp = 2 k sin(alpha_i), Yoneda band at
    exit angle alpha_c fading with |q_par|; Poisson noise; module gaps at -1.

    Cached and read-only: drawing a frame costs more than analysing it."""
    geometry = GIGeometry.create(detector, incidence_angle_deg=incidence_angle_deg)
    maps = geometry.q_maps()
    q_par, q_perp = maps.q_par_per_nm, maps.q_perp_per_nm
    width = 0.015  # nm^-1, about one pixel at 0.578 m
    expected = 2 + 1e5 * np.exp(
        -(q_par**2 + (q_perp - geometry.specular_q_perp_per_nm) ** 2) / (2 * width**2)
    )
    if beam:
        expected += 3e5 * np.exp(-(q_par**2 + q_perp**2) / (2 * width**2))
    sin_exit = q_perp / geometry.k_per_nm - math.sin(geometry.incidence_angle_rad)
    exit_angle_deg = np.degrees(np.arcsin(np.clip(sin_exit, -1, 1)))
    expected += (
        500
        * np.exp(-0.5 * ((exit_angle_deg - CRITICAL_ANGLE_DEG) / 0.02) ** 2)
        / (1 + (q_par / 0.5) ** 2)
    )
    frame = np.random.default_rng(rng).poisson(expected).astype(np.float64)
    mask = np.asarray(detector.pyfai_detector().mask, dtype=bool)
    frame[mask] = -1
    frame.flags.writeable = False
    mask.flags.writeable = False
    return frame, mask


@functools.cache
def nominal(detector: DetectorGeometry = GISAXS) -> GIGeometry:
    return GIGeometry.create(detector, incidence_angle_deg=0.3)


@pytest.mark.parametrize("method", ["specular", "yoneda"])
@pytest.mark.parametrize("true_deg", [0.3, 0.27])
def test_incidence_angle_is_recovered(method, true_deg: float) -> None:
    frame, mask = gi_frame(GISAXS, true_deg)
    estimate = estimate_incidence_angle(
        frame, nominal(), mask=mask, method=method, critical_angle_deg=CRITICAL_ANGLE_DEG
    )
    assert estimate.ok, estimate.message
    assert estimate.beam_found
    assert estimate.incidence_angle_deg == pytest.approx(true_deg, abs=0.01)
    check = check_incidence_angle(estimate, 0.3, tolerance_deg=0.02)
    assert check.ok is (true_deg == 0.3), check.message
    if not check.ok:
        assert f"{true_deg:.3f}" in check.message


def test_specular_sits_at_flat_detector_offset() -> None:
    """Untilted detector: the specular is d * tan(2 alpha_i) above the beam (no pyFAI)."""
    frame, mask = gi_frame(GISAXS, 0.3)
    estimate = estimate_incidence_angle(frame, nominal(), mask=mask)
    offset_px = GISAXS.distance_m * math.tan(math.radians(0.6)) / 172e-6
    assert estimate.beam_row_px - estimate.spot_row_px == pytest.approx(offset_px, abs=0.3)
    assert math.degrees(
        0.5 * math.atan((estimate.beam_row_px - estimate.spot_row_px) * 172e-6 / 0.578)
    ) == pytest.approx(estimate.incidence_angle_deg, abs=0.002)


@pytest.mark.parametrize("method", ["specular", "yoneda"])
def test_tilted_detector_of_other_orientation(method) -> None:
    frame, mask = gi_frame(GISAXS_TILTED, 0.32)
    estimate = estimate_incidence_angle(frame, nominal(GISAXS_TILTED), mask=mask, method=method)
    assert estimate.incidence_angle_deg == pytest.approx(0.32, abs=0.01)
    assert check_orientation(frame, nominal(GISAXS_TILTED), mask=mask).status == "pass"


@pytest.mark.parametrize("orientation", [1, 2, 3, 4])
def test_direct_beam_pixel_is_where_q_vanishes(orientation: int) -> None:
    detector = DetectorGeometry(
        "Pilatus300kw", 0.578, 0.02, 0.1, WAVELENGTH_M, 0.01, -0.02, orientation=orientation
    )
    geometry = nominal(detector)
    maps = geometry.q_maps()
    q = np.hypot(maps.q_par_per_nm, maps.q_perp_per_nm)
    row, col = direct_beam_pixel(geometry)
    assert np.unravel_index(np.argmin(q), q.shape) == (round(row), round(col))


def test_orientation_passes_on_right_frame_and_fails_flipped() -> None:
    frame, mask = gi_frame(GISAXS, 0.3)
    right = check_orientation(frame, nominal(), mask=mask)
    assert (right.status, right.ok) == ("pass", True), right.message
    assert (right.beam_q_par_per_nm, right.beam_q_perp_per_nm) == (
        pytest.approx(0, abs=0.015),
        pytest.approx(0, abs=0.015),
    )
    assert right.specular_q_perp_per_nm == pytest.approx(
        right.expected_specular_q_perp_per_nm, abs=0.015
    )
    flipped = check_orientation(np.flipud(frame), nominal(), mask=np.flipud(mask))
    assert (flipped.status, flipped.ok) == ("fail", False)
    assert "flipped" in flipped.message


def test_wrong_sample_orientation_puts_specular_below_and_fails() -> None:
    frame, mask = gi_frame(GISAXS, 0.3)
    wrong = GIGeometry(GISAXS, incidence_angle_deg=0.3, sample_orientation=1)
    result = check_orientation(frame, wrong, mask=mask)
    assert result.status == "fail"
    assert "BELOW" in result.message
    assert result.specular_q_perp_per_nm < 0


def test_masked_beamstop_uses_poni_beam() -> None:
    frame, mask = gi_frame(GISAXS, 0.3, beam=False)
    row, col = (round(v) for v in direct_beam_pixel(nominal()))
    beamstop = mask.copy()
    beamstop[row - 5 : row + 6, col - 8 : col + 9] = True
    estimate = estimate_incidence_angle(frame, nominal(), mask=beamstop)
    assert not estimate.beam_found
    assert estimate.incidence_angle_deg == pytest.approx(0.3, abs=0.01)
    assert check_orientation(frame, nominal(), mask=beamstop).status == "pass"
    # The same blocked beam left unmasked is a failure that says to mask it.
    unmasked = check_orientation(frame, nominal(), mask=mask)
    assert unmasked.status == "fail"
    assert "mask it" in unmasked.message


def test_beam_off_the_detector_is_untestable_not_failed() -> None:
    frame, mask = gi_frame(GIWAXS, 0.3)
    result = check_orientation(frame, nominal(GIWAXS), mask=mask)
    assert (result.status, result.ok) == ("untestable", True)
    assert "off the detector" in result.message
    estimate = estimate_incidence_angle(frame, nominal(GIWAXS), mask=mask)
    assert not estimate.ok
    assert math.isnan(estimate.incidence_angle_deg)
    assert "off the detector" in estimate.message
    assert not check_incidence_angle(estimate, 0.3).ok


def test_frame_of_another_detector_is_refused() -> None:
    with pytest.raises(GeometryError, match=r"\(619, 487\)"):
        estimate_incidence_angle(np.zeros((619, 487)), nominal())


def test_calibrate_incidence_reports_a_wrong_motor_value() -> None:
    from calibration.incidence import calibrate_incidence

    frame, mask = gi_frame(GISAXS, 0.27)
    report = calibrate_incidence(frame, nominal(), mask=mask)
    assert report.orientation.status == "pass"
    assert report.best.method == "specular"
    assert not report.ok
    assert "0.270" in report.summary().splitlines()[1]
    right_frame, right_mask = gi_frame(GISAXS, 0.3)
    good = calibrate_incidence(right_frame, nominal(), mask=right_mask)
    assert good.ok, good.summary()


def test_strongest_peak_is_scipys_most_prominent_peak() -> None:
    # the compiled search against its oracle, scipy.signal.find_peaks: noise, flat tops
    # (rounded values), gaps bridged by interpolation, and a window of allowed rows
    from scipy.signal import find_peaks

    from calibration.incidence import _strongest_peak

    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(3, 120))
        profile = rng.normal(size=n).cumsum() + 5 * np.exp(-(((np.arange(n) - n / 2) / 6) ** 2))
        if trial % 3 == 0:
            profile = np.round(profile)  # plateaus
        if trial % 4 == 0:
            profile[rng.random(n) < 0.1] = np.nan
        allowed = rng.random(n) < 0.7
        finite = np.isfinite(profile)
        if finite.sum() < 3:
            continue
        rows = np.arange(n)
        filled = np.interp(rows, rows[finite], profile[finite])
        peaks, properties = find_peaks(filled, prominence=0)
        inside = allowed[peaks] & finite[peaks]
        expected = (
            int(peaks[inside][np.argmax(properties["prominences"][inside])])
            if inside.any()
            else None
        )
        assert _strongest_peak(profile, allowed) == expected
