"""Frame times from every header that has one; invalid pixels by data type; frame order."""

from datetime import UTC, datetime
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest
from fabio.edfimage import EdfImage
from PIL import Image

from calibration.geometry import DetectorGeometry, GIGeometry
from detectors.errors import FrameReadError
from detectors.io import (
    FrameRef,
    iter_frames,
    list_frames,
    read_frame,
    read_mask_file,
    write_cbf,
)
from detectors.pilatus import (
    SATURATION_COUNTS,
    detector_saturation_counts,
    frame_mask,
    valid_counts,
)
from pipeline.config import config_from_dict
from pipeline.integrate import integrate_cut, plan_cut
from pipeline.io import expand_frames, load_config, load_plan

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC).timestamp()

# A camserver TIFF's ImageDescription: the Pilatus header lines, no ISO time stamp line.
CAMSERVER_DESCRIPTION = (
    "# Pixel_size 172e-6 m x 172e-6 m\r\n"
    "# Silicon sensor, thickness 0.000450 m\r\n"
    "# Exposure_time 0.9970000 s\r\n"
    "# Exposure_period 1.0000000 s\r\n"
    "# Tau = 0 s\r\n"
    "# Count_cutoff 1048500 counts\r\n"
)


def camserver_tiff(path, date_time, description=CAMSERVER_DESCRIPTION):
    data = np.arange(12, dtype=np.int32).reshape(3, 4)
    tags = {270: description, 305: "camserver", 306: date_time}
    Image.fromarray(data).save(path, tiffinfo=tags)
    return data


# --- time stamps ---------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 3, 59])
def test_camserver_tiff_datetime_tag_is_the_frame_time(tmp_path, seconds):
    path = tmp_path / f"img_{seconds:05d}.tif"
    data = camserver_tiff(path, f"2026:11:25 10:00:{seconds:02d}")
    frame = read_frame(path, shape=(3, 4))
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.epoch_s == T0 + seconds
    assert (frame.meta.exposure_s, frame.meta.period_s) == (0.997, 1.0)
    assert frame.meta.saturation_counts == 1048500


def test_tiff_description_time_stamp_wins_over_the_datetime_tag(tmp_path):
    # the header line carries milliseconds, the tag whole seconds
    path = tmp_path / "img.tif"
    camserver_tiff(path, "2026:11:25 10:00:03", "# 2026-11-25T10:00:03.250\r\n")
    assert read_frame(path).meta.epoch_s == T0 + 3.25


@pytest.mark.parametrize(
    ("time_of_day", "expected"),
    [
        (f"{T0 + 12.5:.6f}", T0 + 12.5),  # LIMA: s since 1970
        ("Wed Nov 25 10:00:12 2026", T0 + 12),  # ctime
        ("2026-11-25T10:00:12.5+00:00", T0 + 12.5),  # ISO 8601
        ("2026/11/25 10:00:12", T0 + 12),
    ],
)
def test_edf_time_of_day_in_each_form(tmp_path, time_of_day, expected):
    path = tmp_path / "frame.edf"
    EdfImage(data=np.zeros((3, 4), np.uint16), header={"time_of_day": time_of_day}).write(str(path))
    assert read_frame(path).meta.epoch_s == pytest.approx(expected, abs=1e-6)


def test_a_pause_shows_as_a_gap_in_edf_and_cbf_time_stamps(tmp_path):
    stamps = [T0, T0 + 10, T0 + 20, T0 + 620, T0 + 630]  # a 10 min pause
    edf = tmp_path / "stack.edf"
    image = EdfImage(data=np.zeros((3, 4)), header={"time_of_day": repr(stamps[0])})
    for stamp in stamps[1:]:
        image.append_frame(data=np.zeros((3, 4)), header={"time_of_day": repr(stamp)})
    image.write(str(edf))
    assert [f.meta.epoch_s for f in iter_frames(edf)] == stamps
    for i, stamp in enumerate(stamps):
        write_cbf(
            tmp_path / f"f_{i}.cbf",
            np.zeros((3, 4)),
            timestamp=datetime.fromtimestamp(stamp, UTC),
            exposure_s=9.0,
            period_s=10.0,
            position=None,
        )
    epochs = [read_frame(tmp_path / f"f_{i}.cbf").meta.epoch_s for i in range(5)]
    assert np.diff(epochs).tolist() == [10.0, 10.0, 600.0, 10.0]


def test_pilatus_count_cutoff_is_the_frame_saturation(tmp_path):
    path = tmp_path / "f.cbf"
    write_cbf(path, np.zeros((3, 4)), timestamp=None, exposure_s=1.0, period_s=None, position=None)
    assert read_frame(path).meta.saturation_counts is None
    tif = tmp_path / "f.tif"
    camserver_tiff(tif, "2026:11:25 10:00:00")
    assert read_frame(tif).meta.saturation_counts == 1048500


# --- invalid pixels by data type ----------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "invalid"),
    [
        (np.uint16, 2**16 - 1),
        (np.uint32, 2**32 - 1),
        (np.int32, -1),
        (np.int32, -2),
        (np.int32, 2**31 - 1),
        (np.float32, np.nan),
        (np.float64, np.inf),
        (np.float64, -3.0),
    ],
)
def test_invalid_values_by_data_type(dtype, invalid):
    values = np.array([0, 1, 7, 60000, invalid], dtype=dtype)
    assert valid_counts(values).tolist() == [True, True, True, True, False]


def test_unsigned_counts_just_below_the_type_limit_are_kept():
    assert valid_counts(np.array([65534], np.uint16)).all()
    assert valid_counts(np.array([2**32 - 2, 2**21], np.uint32)).all()  # beyond 20 bits: an Eiger
    assert not valid_counts(np.array([2**21], np.uint32), saturation_counts=SATURATION_COUNTS)[0]


def test_saturation_is_known_for_pilatus_models_only():
    assert detector_saturation_counts("Pilatus300kw") == SATURATION_COUNTS
    assert detector_saturation_counts("pilatus 1M") == SATURATION_COUNTS
    for name in ("Eiger2_1M", "Lambda750k", "RayonixMx225"):
        assert detector_saturation_counts(name) is None


def test_frame_mask_follows_the_type_and_the_pixel_mask():
    data = np.array([[1, 65535], [7, 9]], np.uint16)
    pixel_mask = np.array([[False, False], [False, True]])
    mask = frame_mask(data, np.zeros((2, 2), bool), saturation_counts=None, pixel_mask=pixel_mask)
    assert mask.tolist() == [[False, True], [False, True]]


@pytest.fixture(scope="module")
def cut_plan():
    det = DetectorGeometry("Pilatus300kw", 0.578, 0.030, 0.1268, 0.12398e-9)
    geometry = GIGeometry.create(det, incidence_angle_deg=0.3)
    return plan_cut(
        geometry,
        static_mask=None,
        q_perp_band_per_nm=(0.28, 0.48),
        q_par_range_per_nm=(0.3, 2.4),
        n_bins=140,
    )


@pytest.mark.parametrize(
    ("dtype", "bad"),
    [(np.uint16, 2**16 - 1), (np.uint32, 2**32 - 1), (np.float32, np.nan), (np.int32, -2)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bad_pixels_leave_the_cut_as_if_masked(cut_plan, dtype, bad, seed):
    rng = np.random.default_rng(seed)
    clean = rng.poisson(50.0, size=cut_plan.frame_shape).astype(dtype)
    band = rng.choice(cut_plan.pixel_index, 100, replace=False)
    dirty = clean.copy()
    dirty.reshape(-1)[band] = bad
    masked = np.zeros(cut_plan.frame_shape, bool)
    masked.reshape(-1)[band] = True
    got = integrate_cut(cut_plan, dirty)
    want = integrate_cut(cut_plan, clean, dynamic_mask=masked)
    np.testing.assert_array_equal(got.n_pixels, want.n_pixels)
    np.testing.assert_allclose(got.intensity, want.intensity, rtol=1e-12)
    assert np.nanmax(got.intensity) < 60  # no 65535 leaked into a bin


# --- frame order and h5_dataset in the config ----------------------------------------


def settings(tmp_path, frames, **extra):
    table = {"frames": frames, "poni": "x.poni", "incidence_angle_deg": 0.3, **extra}
    return config_from_dict(
        {"schema_version": 1, "gisaxs": table}, base_dir=tmp_path, source="run.toml"
    ).detectors[0]


def test_files_come_in_number_order_and_overlapping_globs_list_a_frame_once(tmp_path):
    for i in (10, 2, 1, 100, 9):
        write_cbf(
            tmp_path / f"scan_{i}.cbf",
            np.zeros((3, 4)),
            timestamp=None,
            exposure_s=1.0,
            period_s=None,
            position=None,
        )
    refs = expand_frames(settings(tmp_path, ["scan_*.cbf", "scan_1*.cbf", "scan_2.cbf"]))
    assert [r.path.name for r in refs] == [f"scan_{i}.cbf" for i in (1, 2, 9, 10, 100)]


def test_h5_dataset_setting_takes_a_path_a_list_or_a_pattern(tmp_path):
    assert settings(tmp_path, ["a.h5"]).h5_dataset is None
    assert settings(tmp_path, ["a.h5"], h5_dataset="/1.1/measurement/p").h5_dataset == (
        "/1.1/measurement/p"
    )
    listed = settings(tmp_path, ["a.h5"], h5_dataset=["/1.1/m/p", "/2.1/m/p"])
    assert listed.h5_dataset == ("/1.1/m/p", "/2.1/m/p")
    assert settings(tmp_path, ["a.h5"], h5_dataset="/*.1/m/p").h5_dataset == "/*.1/m/p"
    with pytest.raises(ValueError, match=r"\[gisaxs\] h5_dataset must be"):
        settings(tmp_path, ["a.h5"], h5_dataset=[1, 2])


def test_refs_name_their_dataset(tmp_path):
    path = tmp_path / "f.cbf"
    write_cbf(path, np.zeros((3, 4)), timestamp=None, exposure_s=1.0, period_s=None, position=None)
    assert list_frames(path)[0].dataset is None
    assert FrameRef(path, 0, "/1.1/measurement/p").dataset == "/1.1/measurement/p"
    assert FrameRef(path, 0, "/*.1/measurement/p").dataset is None
    assert FrameRef(path, 0, ("/1.1/a", "/2.1/a")).dataset is None


def test_hdf5_user_mask_named_mask_is_read(tmp_path):
    # a 2-D dataset called "mask" is never a frame, but it is a mask file's content
    path = tmp_path / "mask.h5"
    mask = np.zeros((3, 4), np.uint8)
    mask[1, 2] = 1
    with h5py.File(path, "w") as fh:
        fh["entry/mask"] = mask
    np.testing.assert_array_equal(read_mask_file(path, shape=(3, 4)), mask != 0)
    with h5py.File(path, "a") as fh:
        fh["entry/image"] = np.ones((3, 4))  # a frame beside it: the mask still wins
    np.testing.assert_array_equal(read_mask_file(path, shape=(3, 4)), mask != 0)
    with h5py.File(path, "a") as fh:
        fh["entry/mask_2"] = mask
    with pytest.raises(FrameReadError, match=r"mask\.h5: no single 2-D mask dataset"):
        read_mask_file(path, shape=(3, 4))
    with pytest.raises(FrameReadError, match=r"no single 2-D mask dataset of shape \(5, 4\)"):
        read_mask_file(path, shape=(5, 4))


@pytest.mark.parametrize(
    ("dtype", "special"),
    [
        (np.uint16, [0, 2**16 - 1, 2**16 - 1]),
        (np.int32, [-1, -2, 2**31 - 1]),  # Pilatus gaps, and the type's largest value
        (np.float32, [np.nan, -1.0, np.inf]),
    ],
)
def test_the_frame_check_counts_valid_pixels_as_the_cut_does(cut_plan, dtype, special):
    # one rule for a valid count: the check of a frame's data and the cut agree on it
    from pipeline.checks import band_pixels

    rng = np.random.default_rng(3)
    data = rng.poisson(20.0, cut_plan.frame_shape).astype(dtype)
    picked = rng.choice(cut_plan.pixel_index, size=(len(special), 300), replace=False)
    for value, where in zip(special, picked, strict=True):
        data.flat[where] = value
    px = band_pixels(cut_plan, data, saturation_counts=None)
    assert px.n_valid == int(integrate_cut(cut_plan, data).n_pixels.sum())
    assert px.n_nan + px.n_negative + px.n_saturated + px.n_valid == px.n_pixels
    # and on the detector's own pixel mask
    pixel_mask = rng.random(cut_plan.frame_shape) < 0.2
    masked = band_pixels(cut_plan, data, saturation_counts=None, pixel_mask=pixel_mask)
    cut = integrate_cut(cut_plan, data, dynamic_mask=pixel_mask)
    assert masked.n_valid == int(cut.n_pixels.sum()) < px.n_valid
    assert masked.n_valid + masked.n_masked == px.n_valid


@pytest.mark.parametrize("percentile", [99.5, 98.0])
def test_saturated_rods_are_flagged_with_their_share_of_the_band(tmp_path, percentile):
    # the demo's square frame with its brightest pixels at the Pilatus cutoff, as a
    # detector in saturation writes them: 41 % of the band saturated gave a
    # pseudo-hexagonal lattice at 1.175 nm^-1 with no flag
    from pipeline.checks import band_pixels, band_saturation_flag
    from pipeline.inspect import inspect_frame

    demo = Path(__file__).resolve().parents[1] / "sample_data" / "demo"
    image = fabio.open(str(demo / "gisaxs" / "gisaxs_00033.cbf"))
    clean = inspect_frame(demo / "gisaxs" / "gisaxs_00033.cbf", poni=demo / "gisaxs.poni",
                          incidence_angle_deg=0.3)  # fmt: skip
    assert "band_saturated" not in clean.flags
    data = image.data.astype(np.int32)
    data[data > np.percentile(data[data >= 0], percentile)] = SATURATION_COUNTS
    fabio.cbfimage.CbfImage(data=data, header=image.header).write(str(tmp_path / "sat.cbf"))
    row = inspect_frame(tmp_path / "sat.cbf", poni=demo / "gisaxs.poni", incidence_angle_deg=0.3)
    (flag,) = [f for f in row.flags.split("; ") if f.startswith("band_saturated: ")]
    assert "% of the cut band) are saturated and left out of the cut" in flag
    # pixels that the detector's own mask marks are known, not saturated by the sample
    config = load_config(demo / "demo.toml")
    plan = load_plan(config.settings("gisaxs"), config)
    saturated = data >= SATURATION_COUNTS
    px = band_pixels(plan.cut, data, saturation_counts=SATURATION_COUNTS, pixel_mask=saturated)
    assert px.n_saturated > 0
    assert band_saturation_flag(px) is None
