"""Frame readers and writers on real files written by fabio and h5py."""

import pickle
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
from fabio.cbfimage import CbfImage
from fabio.edfimage import EdfImage
from fabio.tifimage import TifImage
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from detectors.errors import FrameReadError
from detectors.io import (
    Frame,
    FrameMeta,
    FrameRef,
    iter_frames,
    list_frames,
    read_frame,
    read_mask_file,
    write_cbf,
)
from detectors.pilatus import SATURATION_COUNTS, frame_mask, static_mask

SHAPE_300K = (619, 487)
SHAPE_300KW = (195, 1475)
START = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
START_EPOCH_S = START.timestamp()


def counts(shape, seed=0, dtype=np.int32):
    data = np.random.default_rng(seed).poisson(20.0, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.signedinteger):
        data[0, :3] = [-1, -2, SATURATION_COUNTS]
    return data


def study_cbf(path, data=None, *, shape=SHAPE_300KW, time=START, position=7):
    data = counts(shape) if data is None else data
    write_cbf(
        path,
        data,
        timestamp=time,
        exposure_s=9.99,
        period_s=10.0,
        position=position,
        detector_label="PILATUS 300K-W",
    )
    return data


# --- CBF -------------------------------------------------------------------------


def test_cbf_round_trip_keeps_counts_and_header(tmp_path):
    path = tmp_path / "f0001.cbf"
    data = study_cbf(path)
    frame = read_frame(FrameRef(path, 0), shape=SHAPE_300KW)
    assert frame.data.dtype == np.int32
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta == FrameMeta(
        path=path, frame_index=0, epoch_s=START_EPOCH_S, exposure_s=9.99, period_s=10.0, position=7
    )


def test_write_cbf_writes_the_pilatus_header_lines(tmp_path):
    path = tmp_path / "f0001.cbf"
    study_cbf(path, time=START + timedelta(milliseconds=125))
    lines = path.read_bytes().split(b"_array_data.data")[0].decode("ascii").splitlines()
    for line in [
        "# Detector: PILATUS 300K-W",
        "# 2026-11-25T10:00:00.125",
        "# Exposure_time 9.99 s",
        "# Exposure_period 10.0 s",
        "# Position_index 7",
    ]:
        assert line in lines
    assert "data_f0001" in lines  # the CIF block is named after the file
    assert [p.name for p in tmp_path.iterdir()] == ["f0001.cbf"]  # no temporary left behind


def test_write_cbf_converts_zoned_times_to_utc_and_replaces_files(tmp_path):
    path = tmp_path / "f.cbf"
    study_cbf(path, data=np.ones(SHAPE_300K, dtype=np.int64))
    paris = timezone(timedelta(hours=1))
    write_cbf(
        path,
        np.zeros(SHAPE_300K),
        timestamp=datetime(2026, 11, 25, 11, 0, 0, tzinfo=paris),
        exposure_s=None,
        period_s=None,
        position=None,
    )
    frame = read_frame(path)
    assert not frame.data.any()
    assert frame.meta.epoch_s == START_EPOCH_S
    assert (frame.meta.exposure_s, frame.meta.period_s, frame.meta.position) == (None,) * 3


def test_cbf_without_timestamp_has_no_epoch(tmp_path):
    path = tmp_path / "f.cbf"
    write_cbf(path, np.zeros((4, 5)), timestamp=None, exposure_s=1.0, period_s=2.0, position=0)
    meta = read_frame(str(path)).meta
    assert (meta.epoch_s, meta.exposure_s, meta.period_s, meta.position) == (None, 1.0, 2.0, 0)


def test_write_cbf_refuses_what_is_not_a_frame_of_counts(tmp_path):
    kwargs = {"timestamp": None, "exposure_s": None, "period_s": None, "position": None}
    with pytest.raises(ValueError, match="2-D"):
        write_cbf(tmp_path / "a.cbf", np.zeros((2, 3, 4)), **kwargs)
    with pytest.raises(ValueError, match="non-integer"):
        write_cbf(tmp_path / "b.cbf", np.full((3, 3), 0.5), **kwargs)
    with pytest.raises(ValueError, match="overflow"):
        write_cbf(tmp_path / "c.cbf", np.full((3, 3), 2**31), **kwargs)
    with pytest.raises(ValueError, match="overflow"):  # fabio would write it as 0
        write_cbf(tmp_path / "d.cbf", np.full((3, 3), -(2**31), dtype=np.int32), **kwargs)
    assert not list(tmp_path.iterdir())


def test_detector_written_cbf_header_is_read(tmp_path):
    # A header as a Pilatus camserver writes it, with fabio's own writer.
    header_lines = [
        "# Detector: PILATUS 300K, 3-0101",
        "# 2026-11-25T10:00:10.500",
        "# Pixel_size 172e-6 m x 172e-6 m",
        "# Silicon sensor, thickness 0.000450 m",
        "# Exposure_time 9.9990000 s",
        "# Exposure_period 10.0000000 s",
        "# Tau = 383.8e-09 s",
        "# Count_cutoff 1048573 counts",
    ]
    header = {
        "_array_data.header_convention": "PILATUS_1.2",
        "_array_data.header_contents": "\r\n".join(header_lines),
    }
    path = tmp_path / "pil_00001.cbf"
    data = counts(SHAPE_300K)
    CbfImage(data=data, header=header).write(str(path))
    frame = read_frame(path, shape=SHAPE_300K)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.epoch_s == START_EPOCH_S + 10.5
    assert (frame.meta.exposure_s, frame.meta.period_s) == (9.999, 10.0)
    assert frame.meta.position is None


def test_old_camserver_timestamp_is_read(tmp_path):
    header = {"_array_data.header_contents": "# Detector: PILATUS\r\n# 2026/Nov/25 10:00:01.250"}
    path = tmp_path / "old.cbf"
    CbfImage(data=np.zeros((3, 4), dtype=np.int32), header=header).write(str(path))
    assert read_frame(path).meta.epoch_s == START_EPOCH_S + 1.25


@settings(max_examples=25, deadline=None)
@given(
    data=arrays(
        np.int32,
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        elements=st.integers(-(2**31) + 1, 2**31 - 1),
    ),
    stamp=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    exposure_s=st.floats(1e-6, 1e4),
    period_s=st.none() | st.floats(1e-6, 1e4),
    position=st.none() | st.integers(0, 10_000),
)
def test_cbf_round_trip_property(data, stamp, exposure_s, period_s, position):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.cbf"
        write_cbf(
            path, data, timestamp=stamp, exposure_s=exposure_s, period_s=period_s, position=position
        )
        frame = read_frame(path, shape=data.shape)
    np.testing.assert_array_equal(frame.data, data)
    millis = stamp.replace(microsecond=stamp.microsecond // 1000 * 1000, tzinfo=UTC)
    assert frame.meta.epoch_s == pytest.approx(millis.timestamp(), abs=1e-6)
    assert (frame.meta.exposure_s, frame.meta.period_s) == (exposure_s, period_s)
    assert frame.meta.position == position


# --- EDF and TIFF ----------------------------------------------------------------


def test_edf_with_lima_header(tmp_path):
    path = tmp_path / "frame.edf"
    data = counts(SHAPE_300K, dtype=np.float32)
    header = {
        "time_of_day": f"{START_EPOCH_S + 3.25:.6f}",
        "time_of_frame": "3.250000",  # relative to the start of the acquisition
        "acq_expo_time": "9.5",
        "acq_latency_time": "0.5",
        "position_index": "12",
    }
    EdfImage(data=data, header=header).write(str(path))
    frame = read_frame(path, shape=SHAPE_300K)
    assert frame.data.dtype == np.float32
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta == FrameMeta(path, 0, START_EPOCH_S + 3.25, 9.5, 10.0, 12)


def test_edf_date_string_and_relative_times(tmp_path):
    path = tmp_path / "a.edf"
    header = {"time": "Wed Nov 25 10:00:00 2026", "count_time": "1.0", "time_of_frame": "4.0"}
    EdfImage(data=np.zeros((3, 4), dtype=np.uint16), header=header).write(str(path))
    assert read_frame(path).meta.epoch_s == START_EPOCH_S
    path = tmp_path / "b.edf"
    header = {"time_of_frame": "4.0", "position": "2.35"}
    EdfImage(data=np.zeros((3, 4)), header=header).write(str(path))
    meta = read_frame(path).meta
    assert meta.epoch_s is None  # 4 s after an unknown start is no stamp
    assert meta.position is None  # a motor position, not a position index


def test_multi_frame_edf(tmp_path):
    path = tmp_path / "stack.edf"
    image = EdfImage(data=counts((5, 6), 0), header={"time_of_day": str(START_EPOCH_S)})
    image.append_frame(data=counts((5, 6), 1), header={"time_of_day": str(START_EPOCH_S + 10)})
    image.write(str(path))
    refs = list_frames(path, shape=(5, 6))
    assert [r.frame_index for r in refs] == [0, 1]
    frames = list(iter_frames(path, shape=(5, 6)))
    np.testing.assert_array_equal(frames[1].data, counts((5, 6), 1))
    assert [f.meta.epoch_s for f in frames] == [START_EPOCH_S, START_EPOCH_S + 10]
    with pytest.raises(FrameReadError, match=r"stack\.edf: frame 2 out of range.* 2 frame"):
        read_frame(FrameRef(path, 2))


def test_tiff_round_trip(tmp_path):
    path = tmp_path / "frame.tif"
    data = counts(SHAPE_300KW, dtype=np.uint32)
    TifImage(data=data, header={}).write(str(path))
    frame = read_frame(path, shape=SHAPE_300KW)
    assert frame.data.dtype == np.uint32
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta == FrameMeta(path, 0)
    assert list_frames(path) == [FrameRef(path, 0, None)]


# --- HDF5 ------------------------------------------------------------------------


def test_plain_hdf5_stack_at_a_given_path(tmp_path):
    path = tmp_path / "stack.h5"
    stack = np.stack([counts(SHAPE_300K, seed) for seed in range(3)])
    with h5py.File(path, "w") as fh:
        fh["frames/images"] = stack
        fh["other/big"] = np.zeros((2, *SHAPE_300K))
    refs = list_frames(path, h5_dataset="frames/images")
    assert refs == [FrameRef(path, i, "frames/images") for i in range(3)]
    frame = read_frame(refs[2], shape=SHAPE_300K)
    np.testing.assert_array_equal(frame.data, stack[2])
    assert frame.meta == FrameMeta(path, 2, dataset="frames/images")


def lima_file(path, n=3, compression=None):
    stack = np.stack([counts(SHAPE_300KW, seed) for seed in range(n)])
    with h5py.File(path, "w") as fh:
        det = fh.create_group("entry_0000/instrument/pilatus300kw")
        det.create_dataset("data", data=stack, chunks=(1, *SHAPE_300KW), **(compression or {}))
        det["acquisition/exposure_time"] = 9.9
        det["acquisition/latency_time"] = 0.1
        det["acquisition/nb_frames"] = n
        fh["entry_0000/measurement/data"] = det["data"]  # LIMA's hard link
        fh["entry_0000/start_time"] = "2026-11-25T10:00:00+00:00"
    return stack


@pytest.mark.parametrize(
    "compression",
    [None, {"compression": "gzip"}, hdf5plugin.Bitshuffle(cname="lz4")],
    ids=["plain", "gzip", "bitshuffle-lz4"],
)
def test_lima_layout_is_found_and_read(tmp_path, compression):
    path = tmp_path / "pilatus_0000.h5"
    stack = lima_file(path, compression=compression)
    refs = list_frames(path, shape=SHAPE_300KW)
    assert len(refs) == 3
    assert refs[0].h5_dataset in (
        "/entry_0000/instrument/pilatus300kw/data",
        "/entry_0000/measurement/data",
    )
    frames = list(iter_frames(path, shape=SHAPE_300KW))
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.data, stack[i])
        assert frame.meta == FrameMeta(
            path, i, None, 9.9, pytest.approx(10.0), None, dataset=refs[0].h5_dataset
        )
    assert read_frame(refs[1], shape=SHAPE_300KW).meta == frames[1].meta


def bliss_file(path, n=4):
    stack = np.stack([counts(SHAPE_300KW, seed) for seed in range(n)])
    with h5py.File(path, "w") as fh:
        scan = fh.create_group("1.1")
        scan["start_time"] = "2026-11-25T11:00:00+01:00"
        det = scan.create_group("instrument/pilatus")
        det["data"] = stack
        det["acq_parameters/acq_expo_time"] = 9.99
        det["acq_parameters/acq_latency_time"] = 0.01
        scan["instrument/positioners/sy"] = np.linspace(0, 4, n)
        scan["measurement/position"] = np.linspace(0.5, 3.5, n)  # a motor, not an index
        scan["measurement/pilatus"] = h5py.SoftLink("/1.1/instrument/pilatus/data")
        scan["measurement/epoch"] = START_EPOCH_S + 10.0 * np.arange(n)
        scan["measurement/elapsed_time"] = 10.0 * np.arange(n)
        scan["measurement/position_index"] = np.arange(n) % 21
        # Another camera's stack: picked only when its shape is asked for.
        scan["instrument/basler/data"] = np.zeros((n, 64, 80), dtype=np.uint8)
        scan["measurement/basler"] = h5py.SoftLink("/1.1/instrument/basler/data")
        # A 3-D array away from the usual places
        fh["1.1/plotselect/cube"] = np.zeros((2, *SHAPE_300KW))
    return stack


def test_bliss_layout_with_per_frame_time_stamps(tmp_path):
    path = tmp_path / "sample_0001.h5"
    stack = bliss_file(path)
    refs = list_frames(path, shape=SHAPE_300KW)
    assert len(refs) == 4
    assert refs[0].h5_dataset in ("/1.1/instrument/pilatus/data", "/1.1/measurement/pilatus")
    frames = list(iter_frames(path, shape=SHAPE_300KW))
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.data, stack[i])
        assert frame.meta == FrameMeta(
            path, i, START_EPOCH_S + 10.0 * i, 9.99, 10.0, i, dataset=refs[0].h5_dataset
        )
        assert read_frame(refs[i]).meta == frame.meta
    basler = list_frames(path, shape=(64, 80))
    assert basler[0].h5_dataset in ("/1.1/instrument/basler/data", "/1.1/measurement/basler")


def test_bliss_measurement_link_reads_the_detector_metadata(tmp_path):
    path = tmp_path / "sample_0001.h5"
    bliss_file(path)
    frame = read_frame(FrameRef(path, 1, "/1.1/measurement/pilatus"), shape=SHAPE_300KW)
    assert frame.meta == FrameMeta(
        path, 1, START_EPOCH_S + 10.0, 9.99, 10.0, 1, dataset="/1.1/measurement/pilatus"
    )


def test_hdf5_found_without_a_shape_prefers_bliss_names(tmp_path):
    path = tmp_path / "sample_0001.h5"
    bliss_file(path)
    assert list_frames(path)[0].h5_dataset in (
        "/1.1/instrument/pilatus/data",
        "/1.1/measurement/pilatus",
    )


def test_hdf5_without_suffix_is_recognised(tmp_path):
    path = tmp_path / "scan0001"
    with h5py.File(path, "w") as fh:
        fh["entry/data/data"] = np.ones((2, 4, 5), dtype=np.int32)
    assert len(list_frames(path)) == 2
    assert read_frame(FrameRef(path, 1)).data.sum() == 20


def test_two_dimensional_dataset_is_one_frame(tmp_path):
    path = tmp_path / "single.h5"
    data = counts(SHAPE_300K)
    with h5py.File(path, "w") as fh:
        fh["entry/image"] = data
    assert list_frames(path, h5_dataset="entry/image") == [FrameRef(path, 0, "entry/image")]
    assert list_frames(path, shape=SHAPE_300K) == [FrameRef(path, 0, "/entry/image")]
    np.testing.assert_array_equal(read_frame(path, shape=SHAPE_300K).data, data)


def test_iter_frames_is_lazy(tmp_path):
    # A virtual stack whose frames live in one file each: a frame changed on disk after
    # the iteration started is seen, so frames are read one by one, not all at the start.
    layout = h5py.VirtualLayout(shape=(3, 4, 5), dtype=np.float64)
    for i in range(3):
        with h5py.File(tmp_path / f"part{i}.h5", "w") as fh:
            fh["data"] = np.full((4, 5), float(i))
        layout[i] = h5py.VirtualSource(str(tmp_path / f"part{i}.h5"), "data", shape=(4, 5))
    path = tmp_path / "stack.h5"
    with h5py.File(path, "w") as fh:
        fh.create_virtual_dataset("entry/data", layout)
    frames = iter_frames(path, shape=(4, 5))
    assert next(frames).data.max() == 0.0
    with h5py.File(tmp_path / "part2.h5", "r+") as fh:
        fh["data"][...] = 7.0
    assert [f.data.max() for f in frames] == [1.0, 7.0]


# --- errors ----------------------------------------------------------------------


def read_error(ref, **kwargs):
    with pytest.raises(FrameReadError) as info:
        read_frame(ref, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_frame_read_error_is_an_os_error():
    assert issubclass(FrameReadError, OSError)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.cbf"
    assert read_error(path) == f"{path}: no such file; check the path or glob"
    with pytest.raises(FrameReadError, match="no such file"):
        list_frames(tmp_path / "nope.h5")
    with pytest.raises(FrameReadError, match="no such file"):
        read_mask_file(tmp_path / "mask.edf", shape=(2, 2))


@pytest.mark.parametrize("name", ["f.cbf", "f.edf", "f.h5", "f.tif"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.touch()
    assert read_error(path).startswith(f"{path}: the file is empty (0 bytes)")
    with pytest.raises(FrameReadError, match="empty"):
        list_frames(path)


def test_cbf_cut_in_half_is_refused(tmp_path):
    path = tmp_path / "f0001.cbf"
    study_cbf(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    message = read_error(FrameRef(path, 0), shape=SHAPE_300KW)
    assert message.startswith(f"{path}: truncated CBF")


def test_cbf_missing_its_last_bytes_is_refused(tmp_path):
    path = tmp_path / "f0001.cbf"
    study_cbf(path)
    raw = path.read_bytes()
    start = raw.index(b"\x0c\x1a\x04\xd5")
    for end in (len(raw) - 100, start + 10):
        path.write_bytes(raw[:end])
        assert "truncated CBF" in read_error(path)


@pytest.mark.parametrize(
    ("dtype", "keep"), [(np.float32, 0.87), (np.uint16, 0.52), (np.int32, 0.3)]
)
def test_edf_cut_short_is_a_read_error_not_zeros(tmp_path, dtype, keep):
    # fabio fills the missing end of an EDF with zeros: that frame reduced to a plausible
    # answer (q1 0.83, exit 0), or to "frame_all_zero" (never read again)
    path = tmp_path / "frame_0001.edf"
    data = np.random.default_rng(0).poisson(50.0, (195, 487)).astype(dtype)
    EdfImage(data=data).write(str(path))
    np.testing.assert_array_equal(read_frame(path).data, data)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    message = read_error(path)
    assert message.startswith(f"{path}: truncated file: frame 0 is incomplete")
    assert "copy the file again" in message


def test_cbf_cut_before_its_data_is_refused_without_hanging(tmp_path):
    # fabio loops forever on this file: read it in a child process with a time limit.
    path = tmp_path / "f0001.cbf"
    study_cbf(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b"\x0c\x1a\x04\xd5")])
    code = (
        "import sys\nfrom detectors.io import read_frame\nfrom detectors.errors import "
        "FrameReadError\ntry:\n    read_frame(sys.argv[1])\nexcept FrameReadError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert done.stdout.startswith(f"{path}: truncated or not a CBF image")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"beamtime notes\n" * 20),
        ("frame.dat", bytes(range(256)) * 4),
        ("frame.tif", b"II*\x00" + bytes(200)),
        ("frame.edf", b"{\nHeaderID = EH:000001:000000:000000 ;\n}\n" + bytes(64)),
        ("frame.cbf", b"###CBF: VERSION 1.5\r\ndata_frame\r\n"),
    ],
)
def test_unreadable_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert read_error(path).startswith(f"{path}: ")


def test_h5_suffix_on_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "frames.h5"
    path.write_bytes(b"not hdf5 at all" * 10)
    assert read_error(path).startswith(f"{path}: not a readable HDF5 file")


def test_wrong_shape_names_file_shapes_and_fix(tmp_path):
    path = tmp_path / "f0001.cbf"
    study_cbf(path, shape=SHAPE_300K)
    message = read_error(path, shape=SHAPE_300KW)
    assert message.startswith(str(path))
    assert "(195, 1475)" in message
    assert "(619, 487)" in message
    assert "check the detector" in message


def test_hdf5_dataset_of_wrong_shape(tmp_path):
    path = tmp_path / "stack.h5"
    with h5py.File(path, "w") as fh:
        fh["data"] = np.zeros((2, *SHAPE_300K))
    with pytest.raises(FrameReadError, match=r"data: expected frames of shape \(195, 1475\)"):
        list_frames(path, shape=SHAPE_300KW, h5_dataset="data")
    with pytest.raises(FrameReadError, match=r"no frame dataset of shape \(n, 195, 1475\)"):
        list_frames(path, shape=SHAPE_300KW)


def test_hdf5_without_frame_dataset_lists_what_it_has(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as fh:
        fh["1.1/measurement/epoch"] = np.arange(5.0)
        fh["1.1/measurement/diode"] = np.arange(5.0)
        fh["1.1/title"] = "loopscan 5 0.1"
    message = read_error(path, shape=SHAPE_300KW)
    assert message.startswith(f"{path}: no frame dataset of shape (n, 195, 1475)")
    assert "/1.1/measurement/epoch (5,)" in message
    assert "/1.1/measurement/diode (5,)" in message
    with pytest.raises(FrameReadError, match="no dataset 'entry/data'"):
        list_frames(path, h5_dataset="entry/data")
    with pytest.raises(FrameReadError, match="not a frame stack"):
        list_frames(path, h5_dataset="1.1/measurement/epoch")


def test_hdf5_with_no_frames(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("1.1/measurement/pilatus", shape=(0, *SHAPE_300KW), dtype=np.int32)
    with pytest.raises(FrameReadError, match=r"scan\.h5: dataset .*pilatus holds no frames"):
        list_frames(path, shape=SHAPE_300KW)


def test_frame_index_out_of_range(tmp_path):
    path = tmp_path / "pilatus_0000.h5"
    lima_file(path, n=2)
    ref = list_frames(path, shape=SHAPE_300KW)[0]
    message = read_error(FrameRef(path, 5, ref.h5_dataset))
    assert message == f"{path}: frame 5 out of range, {ref.h5_dataset} holds 2 frame(s)"
    cbf = tmp_path / "f.cbf"
    study_cbf(cbf)
    assert "frame 1 out of range" in read_error(FrameRef(cbf, 1))


def test_frame_refs_pickle_and_results_are_frozen(tmp_path):
    ref = FrameRef(tmp_path / "x.h5", 3, "/1.1/measurement/pilatus")
    assert pickle.loads(pickle.dumps(ref)) == ref
    frame = Frame(np.zeros((2, 2)), FrameMeta(tmp_path, 0))
    with pytest.raises(AttributeError):
        frame.meta = FrameMeta(tmp_path, 1)  # type: ignore[misc]


# --- mask files ------------------------------------------------------------------


def user_mask_array():
    mask = np.zeros(SHAPE_300KW, dtype=np.uint8)
    mask[100:110, 200:220] = 1  # beam stop
    mask[0, 0] = 255
    return mask


@pytest.mark.parametrize("suffix", [".edf", ".tif", ".npy", ".cbf"])
def test_user_mask_file_in_each_format(tmp_path, suffix):
    path = tmp_path / f"mask{suffix}"
    mask = user_mask_array()
    if suffix == ".edf":
        EdfImage(data=mask, header={}).write(str(path))
    elif suffix == ".tif":
        TifImage(data=mask, header={}).write(str(path))
    elif suffix == ".npy":
        np.save(path, mask.astype(bool))
    else:
        CbfImage(data=mask.astype(np.int32), header={}).write(str(path))
    user = read_mask_file(path, shape=SHAPE_300KW)
    assert user.dtype == np.bool_
    np.testing.assert_array_equal(user, mask != 0)
    full = static_mask("pilatus300kw", user_mask=user)
    assert full.sum() == 2 * 7 * 195 + 201


def test_user_mask_of_wrong_shape_names_the_file(tmp_path):
    path = tmp_path / "mask.edf"
    EdfImage(data=np.zeros(SHAPE_300K, dtype=np.uint8), header={}).write(str(path))
    with pytest.raises(FrameReadError, match=r"mask\.edf.*\(619, 487\).*\(195, 1475\)"):
        read_mask_file(path, shape=SHAPE_300KW)
    npy = tmp_path / "mask.npy"
    np.save(npy, np.zeros((3, 3)))
    with pytest.raises(FrameReadError, match=r"mask\.npy: mask of shape \(3, 3\)"):
        read_mask_file(npy, shape=SHAPE_300KW)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(FrameReadError, match=r"bad\.npy: cannot read the mask"):
        read_mask_file(bad, shape=SHAPE_300KW)


def test_frame_mask_on_a_read_frame(tmp_path):
    path = tmp_path / "f.cbf"
    study_cbf(path)
    frame = read_frame(path, shape=SHAPE_300KW)
    mask = frame_mask(frame.data, static_mask("Pilatus300kw"))
    assert mask[0, :3].all()  # -1, -2 and saturated pixels
    assert mask.sum() == 2 * 7 * 195 + 3
