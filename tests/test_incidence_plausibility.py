"""An incidence angle that is no grazing angle is refused; one the frame contradicts is flagged."""

import functools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from calibration.geometry import GIGeometry, incidence_angle_problem
from calibration.incidence import (
    FLAG_INCIDENCE_MISMATCH,
    frame_incidence_flag,
    measure_frame_incidence,
    plan_frame_incidence,
)
from detectors.errors import ConfigError, GeometryError
from detectors.io import read_frame
from pipeline.config import DetectorSettings
from pipeline.io import expand_frames, load_config, load_plan
from pipeline.reduce import reduce_frame
from sample_data.synth import GISAXS_GEOMETRY, GIWAXS_GEOMETRY

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo" / "demo.toml"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0.005236, "0.005236 looks like 0.3 deg given in radians"),
        (0.00349, "looks like 0.2 deg given in radians"),
        (0.0175, "looks like 1 deg given in radians"),
        (0.0001, "is it in radians?"),
        (0.0, "give a positive angle in degrees"),
        (-0.3, "give a positive angle in degrees"),
        (math.nan, "give a positive angle in degrees"),
        (52.36, "looks like 3 deg given in mrad"),
    ],
)
def test_no_grazing_angle_is_named_with_its_likely_cause(value, words):
    problem = incidence_angle_problem(value)
    assert problem is not None
    assert words in problem


@pytest.mark.parametrize("value", [0.02, 0.05, 0.3, 1.0, 5.0])
def test_grazing_angles_pass(value):
    assert incidence_angle_problem(value) is None


def test_settings_and_geometry_refuse_radians():
    with pytest.raises(ConfigError, match=r"\[gisaxs\] incidence_angle_deg = 0.005236: .*radians"):
        DetectorSettings(
            kind="gisaxs", frames=("f.cbf",), poni=Path("g.poni"), incidence_angle_deg=0.005236
        )
    with pytest.raises(GeometryError, match=r"0\.3 deg given in radians"):
        GIGeometry(GISAXS_GEOMETRY, incidence_angle_deg=0.005236)


def test_angle_beyond_the_detectors_reach_is_refused():
    # the demo GISAXS detector reaches 2.86 deg above the direct beam
    assert GIGeometry.create(GISAXS_GEOMETRY, incidence_angle_deg=2.5).incidence_angle_deg == 2.5
    with pytest.raises(GeometryError, match="beyond the detector's reach") as info:
        GIGeometry.create(GISAXS_GEOMETRY, incidence_angle_deg=3.0)
    assert "2.86 deg above the direct beam" in str(info.value)
    with pytest.raises(GeometryError, match=r"5\.236 looks like 0\.3 deg given in mrad"):
        GIGeometry.create(GISAXS_GEOMETRY, incidence_angle_deg=5.236, sample_orientation=4)
    # the GIWAXS detector reaches much higher: 5 deg is unusual but on the detector
    assert GIGeometry.create(GIWAXS_GEOMETRY, incidence_angle_deg=5.0).sample_orientation


@functools.cache
def _demo_plans() -> dict:
    config = load_config(DEMO)
    return {s.kind: (s, load_plan(s, config)) for s in config.detectors}


@pytest.mark.parametrize("kind", ["gisaxs", "giwaxs"])
def test_demo_frames_measure_their_incidence_and_raise_no_flag(kind):
    settings, plan = _demo_plans()[kind]
    frames = [read_frame(ref).data for ref in expand_frames(settings)]
    measured = [measure_frame_incidence(data, plan.incidence) for data in frames]
    method = "specular" if kind == "gisaxs" else "yoneda"  # GIWAXS: beam off the detector
    assert all(m is not None and m[1] == method for m in measured)
    angles = np.array([m[0] for m in measured if m is not None])
    tolerance = 0.005 if kind == "gisaxs" else 0.015
    np.testing.assert_allclose(angles, 0.3, atol=tolerance)
    assert [frame_incidence_flag(data, plan.incidence) for data in frames] == [None] * len(frames)


@pytest.mark.parametrize(("kind", "given"), [("gisaxs", 0.25), ("gisaxs", 0.34), ("giwaxs", 0.25)])
def test_wrong_given_angle_is_flagged_on_the_frame(kind, given):
    settings, plan = _demo_plans()[kind]
    settings = replace(settings, incidence_angle_deg=given)
    config = load_config(DEMO)
    wrong = load_plan(settings, config)
    frame = read_frame(expand_frames(settings)[-1])
    result = reduce_frame(frame, wrong)
    feature = "specular spot" if kind == "gisaxs" else "Yoneda maximum"
    measured = "0.30" if kind == "gisaxs" else "0.29"
    expected = (
        f"{FLAG_INCIDENCE_MISMATCH}: measured {measured} deg vs given {given:.2f} deg ({feature})"
    )
    assert expected in result.flags
    assert result.read_ok  # a warning on the frame, not an unreadable frame
    # the right angle gives the same result without the flag
    assert not any(f.startswith(FLAG_INCIDENCE_MISMATCH) for f in reduce_frame(frame, plan).flags)


def _yoneda_frame(true_deg: float, *, specular: bool) -> tuple[NDArray[np.float64], NDArray]:
    """Yoneda band (and optionally the specular spot) at `true_deg`, beam blocked."""
    geometry = GIGeometry.create(GISAXS_GEOMETRY, incidence_angle_deg=true_deg)
    maps = geometry.q_maps()
    q_par, q_perp = maps.q_par_per_nm, maps.q_perp_per_nm
    sin_exit = q_perp / geometry.k_per_nm - math.sin(geometry.incidence_angle_rad)
    exit_deg = np.degrees(np.arcsin(np.clip(sin_exit, -1, 1)))
    expected = 2 + 500 * np.exp(-0.5 * ((exit_deg - 0.13) / 0.02) ** 2) / (1 + (q_par / 0.5) ** 2)
    if specular:
        width = 0.015
        expected += 1e5 * np.exp(
            -(q_par**2 + (q_perp - geometry.specular_q_perp_per_nm) ** 2) / (2 * width**2)
        )
    frame = np.random.default_rng(1).poisson(expected).astype(np.float64)
    gaps = GISAXS_GEOMETRY.gap_mask()
    frame[gaps] = -1
    return frame, gaps


@pytest.mark.parametrize(("true_deg", "flagged"), [(0.3, False), (0.25, True), (0.36, True)])
def test_yoneda_band_alone_checks_the_angle(true_deg, flagged):
    frame, gaps = _yoneda_frame(true_deg, specular=False)
    nominal = GIGeometry.create(GISAXS_GEOMETRY, incidence_angle_deg=0.3)
    plan = plan_frame_incidence(nominal, maps=nominal.q_maps(), static_mask=gaps)
    measured = measure_frame_incidence(frame, plan)
    assert measured is not None
    assert measured[1] == "yoneda"  # the band at the beam's columns is not a specular spot
    assert measured[0] == pytest.approx(true_deg, abs=0.015)
    flag = frame_incidence_flag(frame, plan)
    assert (flag is not None) == flagged
    if flagged:
        assert flag == (
            f"{FLAG_INCIDENCE_MISMATCH}: measured {measured[0]:.2f} deg vs given 0.30 deg "
            "(Yoneda maximum)"
        )


def test_specular_spot_wins_over_yoneda_and_blank_frame_says_nothing():
    frame, gaps = _yoneda_frame(0.27, specular=True)
    nominal = GIGeometry.create(GISAXS_GEOMETRY, incidence_angle_deg=0.3)
    plan = plan_frame_incidence(nominal, maps=nominal.q_maps(), static_mask=gaps)
    measured = measure_frame_incidence(frame, plan)
    assert measured is not None
    assert measured[1] == "specular"
    assert measured[0] == pytest.approx(0.27, abs=0.005)
    flat = np.where(gaps, -1.0, np.random.default_rng(2).poisson(20.0, frame.shape))
    assert measure_frame_incidence(flat, plan) is None
    assert frame_incidence_flag(flat, plan) is None


@pytest.mark.parametrize(
    "dtype", [np.int32, np.uint16, np.uint32, np.float32, ">u2", ">i4", ">f8", np.float16]
)
def test_the_check_reads_every_pixel_type_a_detector_writes(dtype):
    # the band profile is compiled per data type: the same frame stored as CBF (int32),
    # Eiger HDF5 (uint16, uint32; gaps at the type's largest value), TIFF/EDF (float32,
    # NaN in the gaps) or big-endian HDF5 gives the angle of the float64 frame; a type
    # the compiled loop does not take (float16) is converted, never an error
    frame, gaps = _yoneda_frame(0.25, specular=False)
    nominal = GIGeometry.create(GISAXS_GEOMETRY, incidence_angle_deg=0.3)
    plan = plan_frame_incidence(nominal, maps=nominal.q_maps(), static_mask=gaps)
    reference = measure_frame_incidence(frame, plan)
    assert reference is not None
    stored = np.where(gaps, 0, frame).astype(dtype)
    if stored.dtype.kind == "f":
        stored[gaps] = np.nan
    elif stored.dtype.kind == "u":
        stored[gaps] = np.iinfo(stored.dtype).max
    else:
        stored[gaps] = -1
    measured = measure_frame_incidence(stored, plan)
    assert measured is not None
    assert measured[1] == reference[1] == "yoneda"
    assert measured[0] == pytest.approx(reference[0], abs=1e-9)


@pytest.mark.parametrize("kind", ["gisaxs", "giwaxs"])
@pytest.mark.parametrize("bad", ["type_max", "saturated", "pixel_mask"])
def test_one_bad_pixel_in_the_band_does_not_move_the_measured_angle(kind, bad):
    # a single pixel that holds no count (a gap value at the type's largest value, a
    # saturated pixel, one the detector's own pixel_mask marks) in the band searched: it
    # passed for the specular spot (0.50 deg measured for 0.30) or the Yoneda maximum
    settings, plan = _demo_plans()[kind]
    frame = read_frame(expand_frames(settings)[-1])
    band = plan.incidence.specular if kind == "gisaxs" else plan.incidence.yoneda
    search = np.flatnonzero(band.search)
    row = band.row_start + int(search[len(search) // 5])  # far from the feature
    column = int(band.columns[0])
    data = frame.data.astype(np.uint32)
    pixel_mask = None
    if bad == "type_max":
        data[row, column] = np.iinfo(np.uint32).max
    elif bad == "saturated":
        data[row, column] = 1_048_574  # above the Pilatus 300K saturation
    else:
        data[row, column] = 4_000_000
        pixel_mask = np.zeros(data.shape, dtype=bool)
        pixel_mask[row, column] = True
    clean = measure_frame_incidence(frame.data, plan.incidence)
    measured = measure_frame_incidence(
        data, plan.incidence, saturation_counts=1_048_573, pixel_mask=pixel_mask
    )
    assert clean is not None
    assert measured is not None
    assert measured[1] == clean[1]
    assert measured[0] == pytest.approx(clean[0], abs=2e-3)
    # reduce_frame passes the frame's own saturation and pixel mask to the check
    result = reduce_frame(replace(frame, data=data, pixel_mask=pixel_mask), plan)
    assert not any(f.startswith(FLAG_INCIDENCE_MISMATCH) for f in result.flags)


def test_calibrate_incidence_ignores_a_pixel_at_the_types_largest_value(tmp_path):
    # `gixs calibrate incidence` on a uint32 HDF5 frame with one gap-value pixel in the
    # band through the beam: it advised "reduce with incidence angle 0.495 deg"
    import h5py

    from pipeline.calibrate import check_incidence

    settings, plan = _demo_plans()["gisaxs"]
    frame = read_frame(expand_frames(settings)[-1])
    band = plan.incidence.specular
    row = band.row_start + int(np.flatnonzero(band.search)[5])
    data = frame.data.astype(np.uint32)
    data[row, int(band.columns[len(band.columns) // 2])] = np.iinfo(np.uint32).max
    path = tmp_path / "frame.h5"
    with h5py.File(path, "w") as h5:
        h5["entry/data/data"] = data[None]
    poni = DEMO.parent / "gisaxs.poni"
    report = check_incidence(path, poni=poni, incidence_angle_deg=0.3)
    assert report.ok, report.summary()
    assert report.specular.incidence_angle_deg == pytest.approx(0.3, abs=0.01)
