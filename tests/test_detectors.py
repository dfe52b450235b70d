"""Readers, writer and masks, on real files written by fabio and h5py."""

from datetime import UTC, datetime
from pathlib import Path

import fabio
import h5py
import hdf5plugin
import numpy as np
import pytest
from fabio.edfimage import EdfImage
from fabio.tifimage import TifImage
from pyFAI.detectors import detector_factory

from detectors.errors import FrameReadError, GeometryError
from detectors.io import FrameRef, iter_frames, list_frames, read_frame, read_mask_file, write_cbf
from detectors.pilatus import (
    SATURATION_COUNTS,
    canonical_detector_name,
    frame_mask,
    static_mask,
)

W_SHAPE = (195, 1475)  # Pilatus 300K-W
K_SHAPE = (619, 487)  # Pilatus 300K


def counts(shape, seed=0):
    return np.random.default_rng(seed).poisson(20, shape).astype(np.int32)


def test_cbf_round_trip_with_header(tmp_path):
    data = counts(W_SHAPE)
    path = tmp_path / "f.cbf"
    stamp = datetime(2026, 11, 25, 10, 0, 7, 250000)
    write_cbf(path, data, timestamp=stamp, exposure_s=9.9, period_s=10.0, position=7)
    frame = read_frame(FrameRef(path), shape=W_SHAPE)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.epoch_s == stamp.replace(tzinfo=UTC).timestamp()
    assert (frame.meta.exposure_s, frame.meta.period_s, frame.meta.position) == (9.9, 10.0, 7)
    assert "Position_index 7" in fabio.open(str(path)).header["_array_data.header_contents"]


def test_edf_and_tiff(tmp_path):
    data = counts(K_SHAPE, 1)
    edf = tmp_path / "f.edf"
    EdfImage(data=data, header={"time_of_frame": "1795600800.5", "count_time": "2.0"}).write(
        str(edf)
    )
    frame = read_frame(edf, shape=K_SHAPE)
    np.testing.assert_array_equal(frame.data, data)
    assert (frame.meta.epoch_s, frame.meta.exposure_s) == (1795600800.5, 2.0)
    tif = tmp_path / "f.tif"
    TifImage(data=data).write(str(tif))
    frame = read_frame(tif, shape=K_SHAPE)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.epoch_s is None  # no time stamp: the pipeline uses order x period


def test_plain_hdf5_stack_is_read_lazily_frame_by_frame(tmp_path):
    stack = np.stack([counts(W_SHAPE, i) for i in range(3)])
    path = tmp_path / "stack.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("/scan/frames", data=stack, chunks=(1, *W_SHAPE))
    refs = list_frames(path, h5_dataset="/scan/frames")
    assert [r.frame_index for r in refs] == [0, 1, 2]
    np.testing.assert_array_equal(read_frame(refs[2], shape=W_SHAPE).data, stack[2])
    frames = list(iter_frames(path, shape=W_SHAPE))
    assert len(frames) == 3
    np.testing.assert_array_equal(frames[1].data, stack[1])


def test_lima_layout_compressed_is_found_by_shape(tmp_path):
    stack = np.stack([counts(K_SHAPE, i) for i in range(2)])
    path = tmp_path / "lima.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("/entry_0000/measurement/mask_like", data=np.zeros((4, 3, 3)))
        fh.create_dataset(
            "/entry_0000/instrument/pilatus/data", data=stack, **hdf5plugin.Bitshuffle()
        )
        fh["/entry_0000/instrument/pilatus/acquisition/exposure_time"] = 0.5
    refs = list_frames(path, shape=K_SHAPE)
    assert [(r.h5_dataset, r.frame_index) for r in refs] == [
        ("/entry_0000/instrument/pilatus/data", 0),
        ("/entry_0000/instrument/pilatus/data", 1),
    ]
    frame = read_frame(refs[1], shape=K_SHAPE)
    np.testing.assert_array_equal(frame.data, stack[1])
    assert frame.meta.exposure_s == 0.5


def test_bliss_layout_gives_per_frame_epoch(tmp_path):
    stack = np.stack([counts(W_SHAPE, i) for i in range(3)])
    path = tmp_path / "bliss.h5"
    with h5py.File(path, "w") as fh:
        fh["/1.1/measurement/pilatus300kw"] = stack
        fh["/1.1/measurement/epoch"] = np.array([100.0, 110.0, 120.0])
    frames = list(iter_frames(path, shape=W_SHAPE))
    assert [f.meta.epoch_s for f in frames] == [100.0, 110.0, 120.0]


def test_bad_files_name_the_file_and_the_problem(tmp_path):
    empty = tmp_path / "empty.cbf"
    empty.write_bytes(b"")
    with pytest.raises(FrameReadError, match=r"empty\.cbf: the file is empty"):
        read_frame(empty)
    whole = tmp_path / "whole.cbf"
    write_cbf(whole, counts(W_SHAPE), timestamp=None, exposure_s=None, period_s=None,
              position=None)  # fmt: skip
    cut = tmp_path / "cut.cbf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(FrameReadError, match=r"cut\.cbf"):
        read_frame(cut)
    with pytest.raises(FrameReadError, match=r"expected a frame of shape \(619, 487\)"):
        read_frame(whole, shape=K_SHAPE)
    nothing = tmp_path / "nothing.h5"
    with h5py.File(nothing, "w") as fh:
        fh["entry/notes"] = np.arange(5)
    with pytest.raises(FrameReadError, match=r"nothing\.h5: no frame dataset.*entry/notes"):
        list_frames(nothing, shape=W_SHAPE)
    with pytest.raises(FrameReadError, match="no such file"):
        read_frame(tmp_path / "missing.cbf")
    stack = tmp_path / "two.h5"
    with h5py.File(stack, "w") as fh:
        fh["data"] = np.zeros((2, *W_SHAPE))
    with pytest.raises(FrameReadError, match="frame 5 out of range"):
        read_frame(FrameRef(stack, 5), shape=W_SHAPE)


@pytest.mark.parametrize(("name", "shape"), [("Pilatus300k", K_SHAPE), ("Pilatus300kw", W_SHAPE)])
def test_gap_masks_follow_pyfai(name, shape):
    mask = static_mask(name.upper())
    assert mask.shape == shape
    assert mask.sum() == np.asarray(detector_factory(name).mask, bool).sum()
    assert mask.sum() > 0  # module gaps exist on both


def test_frame_mask_adds_negative_and_saturated_pixels():
    static = static_mask("Pilatus300kw")
    data = counts(W_SHAPE)
    data[10, 10], data[20, 20] = -2, SATURATION_COUNTS
    mask = frame_mask(data, static)
    assert mask[10, 10]
    assert mask[20, 20]
    assert mask.sum() == static.sum() + 2


@pytest.mark.parametrize("suffix", [".npy", ".edf", ".tif"])
def test_user_mask_files(tmp_path, suffix):
    user = np.zeros(W_SHAPE, np.uint8)
    user[5:8, 100:110] = 1
    path = tmp_path / f"mask{suffix}"
    if suffix == ".npy":
        np.save(path, user)
    elif suffix == ".edf":
        EdfImage(data=user).write(str(path))
    else:
        TifImage(data=user).write(str(path))
    mask = read_mask_file(path, shape=W_SHAPE)
    assert mask.sum() == 30
    combined = static_mask("Pilatus300kw", user_mask=mask)
    assert combined[6, 105]
    with pytest.raises(FrameReadError, match="does not fit"):
        read_mask_file(path, shape=K_SHAPE)


def test_detector_names_any_case_and_unknown():
    assert canonical_detector_name("pilatus1m") == "Pilatus1M"
    assert canonical_detector_name("EIGER2_4M") == "Eiger2_4M"
    with pytest.raises(GeometryError, match="did you mean"):
        canonical_detector_name("pilatus300kx")


def test_demo_frames_read_back(tmp_path):
    demo = Path(__file__).resolve().parents[1] / "sample_data" / "demo" / "gisaxs"
    frame = read_frame(demo / "gisaxs_00000.cbf", shape=W_SHAPE)
    assert frame.meta.period_s == 10.0
    assert frame.meta.position == 0
