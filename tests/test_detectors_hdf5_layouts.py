"""HDF5 files as facilities write them: BLISS scans, LIMA files, Dectris series, NeXus.

Every file is written here with h5py the way the facility writes it. Each frame holds its
own acquisition number in every pixel, so that a test sees which frame came back.
"""

import subprocess
import sys

import h5py
import hdf5plugin
import numpy as np
import pytest

from detectors.errors import FrameReadError
from detectors.io import FrameRef, iter_frames, linked_files, list_frames, read_frame
from pipeline.config import DetectorSettings
from pipeline.io import expand_frames

SHAPE = (16, 20)
T0 = 1_795_600_800.0  # 2026-11-25T10:00:00Z


def frames(first, n, dtype=np.int32):
    """Frames numbered first..first+n-1: each pixel holds the frame's number."""
    return np.stack([np.full(SHAPE, first + i, dtype=dtype) for i in range(n)])


def numbers(path, **kwargs):
    """The frame numbers and time stamps of every frame read, in the order listed."""
    refs = list_frames(path, shape=SHAPE, **kwargs)
    read = [read_frame(ref, shape=SHAPE) for ref in refs]
    iterated = list(iter_frames(path, shape=SHAPE, **kwargs))
    assert [f.meta for f in iterated] == [f.meta for f in read]
    for frame in read:
        assert np.unique(frame.data).size == 1  # never a frame of zeros filled in
    return [int(f.data[0, 0]) for f in read], [f.meta.epoch_s for f in read]


# --- BLISS: one run over several scans ----------------------------------------------


def bliss_scan(fh, scan, first, n, *, epoch0=None, nexus=True, det="pilatus"):
    g = fh.create_group(scan)
    g.attrs["NX_class"] = "NXentry"
    group = g.create_group(f"instrument/{det}")
    if nexus:
        group.attrs["NX_class"] = "NXdetector"
    group.create_dataset("data", data=frames(first, n), chunks=(1, *SHAPE), compression="gzip")
    group["acq_parameters/acq_expo_time"] = 9.5
    m = g.create_group("measurement")
    m.attrs["NX_class"] = "NXcollection"
    m[det] = h5py.SoftLink(f"/{scan}/instrument/{det}/data")
    if epoch0 is not None:
        m["epoch"] = epoch0 + 10.0 * np.arange(n)
    return group


@pytest.mark.parametrize("nexus", [True, False], ids=["NXdetector", "plain-names"])
def test_bliss_scans_are_read_whole_in_scan_number_order(tmp_path, nexus):
    # written out of name order: /10.1 after /2.1 (string order would put it second)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as fh:
        bliss_scan(fh, "2.1", 3, 2, epoch0=T0 + 100, nexus=nexus)
        bliss_scan(fh, "10.1", 5, 4, epoch0=T0 + 1000, nexus=nexus)
        bliss_scan(fh, "1.1", 0, 3, epoch0=T0, nexus=nexus)
    got, epochs = numbers(path)
    assert got == list(range(9))
    assert epochs == [T0, T0 + 10, T0 + 20, T0 + 100, T0 + 110] + [
        T0 + 1000 + 10 * i for i in range(4)
    ]
    refs = list_frames(path, shape=SHAPE)
    assert [r.h5_dataset.split("/")[1] for r in refs] == ["1.1"] * 3 + ["2.1"] * 2 + ["10.1"] * 4
    assert [r.frame_index for r in refs] == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    # each frame says which dataset it came from, and carries its scan's metadata
    frame = read_frame(refs[4], shape=SHAPE)
    assert frame.meta.dataset == refs[4].h5_dataset == refs[4].dataset
    assert frame.meta.exposure_s == 9.5
    # a path with no dataset counts through the whole run, as listed
    assert int(read_frame(FrameRef(path, 6), shape=SHAPE).data[0, 0]) == 6
    with pytest.raises(FrameReadError, match=r"frame 9 out of range, its 3 frame stacks hold 9"):
        read_frame(FrameRef(path, 9), shape=SHAPE)


def test_bliss_scans_follow_their_time_stamps_not_their_numbers(tmp_path):
    # a scan numbered later but recorded earlier (scan numbers reset by a new session)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as fh:
        bliss_scan(fh, "1.1", 4, 2, epoch0=T0 + 500)
        bliss_scan(fh, "3.1", 0, 4, epoch0=T0)
    assert numbers(path)[0] == [0, 1, 2, 3, 4, 5]


def test_bliss_scans_without_time_stamps_follow_scan_numbers(tmp_path):
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as fh:
        for scan, first in (("10.1", 6), ("9.1", 4), ("2.1", 2), ("1.1", 0)):
            bliss_scan(fh, scan, first, 2, epoch0=None)
    got, epochs = numbers(path)
    assert got == list(range(8))
    assert epochs == [None] * 8


def test_a_pause_in_acquisition_is_a_gap_in_the_time_stamps(tmp_path):
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as fh:
        group = bliss_scan(fh, "1.1", 0, 5)
        del group  # the epochs of one scan: 10 s apart, then a 300 s pause
        fh["1.1/measurement/epoch"] = T0 + np.array([0.0, 10.0, 20.0, 320.0, 330.0])
    epochs = numbers(path)[1]
    assert np.diff(epochs).tolist() == [10.0, 10.0, 300.0, 10.0]


def test_h5_dataset_as_a_list_or_a_pattern(tmp_path):
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as fh:
        bliss_scan(fh, "1.1", 0, 2, epoch0=T0)
        bliss_scan(fh, "2.1", 2, 2, epoch0=T0 + 100)
        bliss_scan(fh, "3.1", 4, 2, epoch0=T0 + 200)
    pattern = "/*.1/measurement/pilatus"
    assert numbers(path, h5_dataset=pattern)[0] == list(range(6))
    assert numbers(path, h5_dataset="/[13].1/instrument/pilatus/data")[0] == [0, 1, 4, 5]
    # a list: those stacks, in acquisition order
    listed = ["/3.1/measurement/pilatus", "/1.1/measurement/pilatus"]
    assert numbers(path, h5_dataset=listed)[0] == [0, 1, 4, 5]
    # one path: that stack only
    assert numbers(path, h5_dataset="/2.1/measurement/pilatus")[0] == [2, 3]
    with pytest.raises(FrameReadError, match=r"no dataset matches h5_dataset '/\*\.1/nothing'"):
        list_frames(path, shape=SHAPE, h5_dataset="/*.1/nothing")


# --- BLISS master with LIMA files ---------------------------------------------------


def lima_file(path, first, n, det="pilatus"):
    with h5py.File(path, "w") as fh:
        group = fh.create_group(f"entry_0000/instrument/{det}")
        group.attrs["NX_class"] = "NXdetector"
        group.create_dataset(
            "data", data=frames(first, n), chunks=(1, *SHAPE), **hdf5plugin.Bitshuffle()
        )
        fh["entry_0000/measurement/data"] = group["data"]


def bliss_master_with_lima(folder, *, virtual):
    """A BLISS scan whose frames live in two LIMA files (3 + 2 frames)."""
    (folder / "scan0001").mkdir()
    lima_file(folder / "scan0001" / "pilatus_0000.h5", 0, 3)
    lima_file(folder / "scan0001" / "pilatus_0001.h5", 3, 2)
    path = folder / "sample_0001.h5"
    with h5py.File(path, "w") as fh:
        det = fh.create_group("1.1/instrument/pilatus")
        det.attrs["NX_class"] = "NXdetector"
        if virtual:  # BLISS >= 1.9: one virtual dataset over the LIMA files
            layout = h5py.VirtualLayout(shape=(5, *SHAPE), dtype=np.int32)
            for i, (first, n) in enumerate(((0, 3), (3, 2))):
                source = h5py.VirtualSource(
                    f"scan0001/pilatus_{i:04d}.h5",
                    "/entry_0000/instrument/pilatus/data",
                    shape=(n, *SHAPE),
                )
                layout[first : first + n] = source
            det.create_virtual_dataset("data", layout, fillvalue=0)
        else:  # one external link per LIMA file, as separate stacks of one scan
            fh["1.1/instrument/pilatus/data"] = h5py.ExternalLink(
                "scan0001/pilatus_0000.h5", "/entry_0000/instrument/pilatus/data"
            )
            fh["2.1/instrument/pilatus/data"] = h5py.ExternalLink(
                "scan0001/pilatus_0001.h5", "/entry_0000/instrument/pilatus/data"
            )
            fh["2.1/instrument/pilatus"].attrs["NX_class"] = "NXdetector"
        fh["1.1/measurement/epoch"] = T0 + 10.0 * np.arange(5 if virtual else 3)
        fh["1.1/measurement/pilatus"] = h5py.SoftLink("/1.1/instrument/pilatus/data")
    return path


@pytest.mark.parametrize("virtual", [True, False], ids=["virtual-dataset", "external-links"])
def test_bliss_master_reads_the_frames_of_its_lima_files(tmp_path, virtual):
    path = bliss_master_with_lima(tmp_path, virtual=virtual)
    assert numbers(path)[0] == [0, 1, 2, 3, 4]
    # the master copied without its LIMA files: an error naming them, never zeros
    (tmp_path / "scan0001" / "pilatus_0001.h5").unlink()
    for call in (
        lambda: list_frames(path, shape=SHAPE),
        lambda: read_frame(FrameRef(path, 4), shape=SHAPE),  # a frame of the missing file
        lambda: list(iter_frames(path, shape=SHAPE)),
    ):
        with pytest.raises(FrameReadError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"{path}: ")
        assert "pilatus_0001.h5" in message
        assert "missing" in message
    (tmp_path / "scan0001" / "pilatus_0000.h5").unlink()
    with pytest.raises(FrameReadError, match=r"pilatus_0000\.h5.*missing|missing.*pilatus_0000"):
        list_frames(path, shape=SHAPE)


def test_virtual_frames_missing_from_a_short_source_are_errors_not_zeros(tmp_path):
    # a LIMA file still being written: the virtual dataset maps 4 frames, the file has 2
    source = tmp_path / "pilatus_0000.h5"
    with h5py.File(source, "w") as fh:
        fh.create_dataset("data", data=frames(0, 2), maxshape=(None, *SHAPE))
    path = tmp_path / "master.h5"
    with h5py.File(path, "w") as fh:
        layout = h5py.VirtualLayout(shape=(4, *SHAPE), dtype=np.int32)
        layout[0:4] = h5py.VirtualSource(source.name, "data", shape=(4, *SHAPE))
        fh.create_virtual_dataset("entry/instrument/detector/data", layout, fillvalue=0)
        fh["entry/instrument/detector"].attrs["NX_class"] = "NXdetector"
    refs = list_frames(path, shape=SHAPE)
    assert len(refs) == 4
    assert int(read_frame(refs[1], shape=SHAPE).data[0, 0]) == 1
    with pytest.raises(FrameReadError, match=r"frame 2 of .*pilatus_0000\.h5.*holds shape"):
        read_frame(refs[2], shape=SHAPE)
    # a frame mapped to no source at all reads as the fill value: refused too
    with h5py.File(path, "a") as fh:
        layout = h5py.VirtualLayout(shape=(3, *SHAPE), dtype=np.int32)
        layout[0:2] = h5py.VirtualSource(source.name, "data", shape=(2, *SHAPE))
        fh.create_virtual_dataset("entry/gappy", layout, fillvalue=0)
    with pytest.raises(FrameReadError, match=r"frame 2 of entry/gappy is mapped to no source"):
        read_frame(FrameRef(path, 2, "entry/gappy"), shape=SHAPE)


# --- Dectris: a master and its data files -------------------------------------------


def dectris_series(folder, sizes, *, pixel_mask=None, flatfield=True, date=None, frame_time=1.0):
    first = 0
    with h5py.File(folder / "series_master.h5", "w") as fh:
        data = fh.create_group("entry/data")
        data.attrs["NX_class"] = "NXdata"
        det = fh.create_group("entry/instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["count_time"] = 0.99
        det["frame_time"] = frame_time
        spec = det.create_group("detectorSpecific")
        if date is not None:
            spec["data_collection_date"] = date  # as the Dectris firmware writes it
        spec["nimages"] = sum(sizes)
        spec["countrate_correction_count_cutoff"] = 60000
        if flatfield:
            spec["flatfield"] = np.ones(SHAPE, np.float32)
        if pixel_mask is not None:
            spec["pixel_mask"] = pixel_mask
        for i, n in enumerate(sizes, start=1):
            name = f"series_data_{i:06d}.h5"
            with h5py.File(folder / name, "w") as df:
                ds = df.create_dataset(
                    "entry/data/data",
                    data=frames(first, n, np.uint16),
                    chunks=(1, *SHAPE),
                    **hdf5plugin.Bitshuffle(cname="lz4"),
                )
                ds.attrs["image_nr_low"], ds.attrs["image_nr_high"] = first + 1, first + n
            data[f"data_{i:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
            first += n
    return folder / "series_master.h5"


def test_dectris_master_reads_every_data_file_in_order(tmp_path):
    mask = np.zeros(SHAPE, np.uint32)
    mask[3, 4] = 1  # gap
    mask[5, 6] = 8  # noisy
    path = dectris_series(tmp_path, [4, 4, 3], pixel_mask=mask)
    got, _ = numbers(path)
    assert got == list(range(11))
    refs = list_frames(path, shape=SHAPE)
    names = [f"/entry/data/data_00000{i // 4 + 1}" for i in range(11)]
    assert [r.h5_dataset for r in refs] == names
    frame = read_frame(refs[9], shape=SHAPE)
    assert frame.data.dtype == np.uint16
    assert (frame.meta.exposure_s, frame.meta.period_s) == (0.99, 1.0)
    assert frame.meta.saturation_counts == 60000
    assert frame.meta.dataset == "/entry/data/data_000003"
    # the detector's own mask comes with every frame: nonzero = masked
    np.testing.assert_array_equal(frame.pixel_mask, mask != 0)
    assert not frame.pixel_mask.flags.writeable


@pytest.mark.parametrize(
    "date",
    ["2026-11-25T11:00:00.000+01:00", "2026-11-25T10:00:00.000Z", "2026-11-25T10:00:00"],
)
def test_dectris_frames_are_timed_from_the_collection_date_and_frame_time(tmp_path, date):
    path = dectris_series(tmp_path, [4, 4, 3], date=date, frame_time=0.25)
    got, epochs = numbers(path)
    assert got == list(range(11))
    # frame k of the series (over all its data files) started k frame times after the date
    np.testing.assert_allclose(epochs, T0 + 0.25 * np.arange(11), rtol=0, atol=1e-6)


def test_nexus_start_time_and_frame_time_time_the_frames(tmp_path):
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as fh:
        entry = fh.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["start_time"] = "2026-11-25T10:00:00Z"
        det = entry.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = frames(0, 3)
        det["frame_time"] = 2.0
    got, epochs = numbers(path)
    assert got == [0, 1, 2]
    assert epochs == [T0, T0 + 2.0, T0 + 4.0]


def test_a_start_date_without_a_frame_period_gives_no_made_up_times(tmp_path):
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as fh:
        entry = fh.create_group("entry")
        entry["start_time"] = "2026-11-25T10:00:00Z"
        entry.create_group("instrument/detector")["data"] = frames(0, 2)
    assert numbers(path)[1] == [None, None]


def test_dectris_master_without_its_data_files_names_them(tmp_path):
    path = dectris_series(tmp_path, [4, 4, 3], pixel_mask=np.zeros(SHAPE, np.uint32))
    (tmp_path / "series_data_000002.h5").unlink()  # one file not transferred
    with pytest.raises(FrameReadError, match=r"series_data_000002\.h5") as info:
        list_frames(path, shape=SHAPE)
    assert "series_data_000001" not in str(info.value)
    for name in ("series_data_000001.h5", "series_data_000003.h5"):
        (tmp_path / name).unlink()
    # the master alone: its 2-D flatfield and pixel_mask are never taken for frames
    for shape in (SHAPE, None):
        with pytest.raises(FrameReadError) as info:
            list_frames(path, shape=shape)
        message = str(info.value)
        assert "series_data_000001.h5" in message
        assert "series_data_000003.h5" in message
        assert "copy them to those paths" in message
        assert str(tmp_path / "series_data_000001.h5") in message


def test_a_lone_flatfield_or_pixel_mask_is_no_frame(tmp_path):
    path = tmp_path / "calib.h5"
    with h5py.File(path, "w") as fh:
        fh["entry/instrument/detector/flatfield"] = np.ones(SHAPE, np.float32)
        fh["entry/instrument/detector/pixel_mask"] = np.zeros(SHAPE, np.uint32)
        fh["entry/instrument/detector/detectorSpecific/countrate_table"] = np.ones(SHAPE)
        fh["entry/dark_image"] = np.ones(SHAPE)
    with pytest.raises(FrameReadError, match=r"no frame dataset of shape \(n, 16, 20\)"):
        list_frames(path, shape=SHAPE)
    # a single 2-D frame of detector shape that is the detector's data is one frame
    with h5py.File(path, "a") as fh:
        fh["entry/instrument/detector"].attrs["NX_class"] = "NXdetector"
        fh["entry/instrument/detector/data"] = np.full(SHAPE, 3.0)
    refs = list_frames(path, shape=SHAPE)
    assert refs == [FrameRef(path, 0, "/entry/instrument/detector/data")]
    frame = read_frame(refs[0], shape=SHAPE)
    assert frame.data[0, 0] == 3.0
    np.testing.assert_array_equal(frame.pixel_mask, np.zeros(SHAPE, bool))


# --- NeXus roles: which stack is the detector's data --------------------------------


def test_nxdetector_data_is_chosen_over_a_dark_stack(tmp_path):
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as fh:
        det = fh.create_group("entry/instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det["dark"] = frames(100, 5)  # more frames, and first in name order
        det["data"] = frames(0, 3)
        pixel_mask = np.zeros(SHAPE, np.uint8)
        pixel_mask[0, :] = 1
        det["pixel_mask"] = pixel_mask
    assert numbers(path)[0] == [0, 1, 2]
    np.testing.assert_array_equal(read_frame(path, shape=SHAPE).pixel_mask, pixel_mask != 0)


def test_nxdata_signal_is_chosen(tmp_path):
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as fh:
        entry = fh.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        plot = entry.create_group("images")
        plot.attrs["NX_class"] = "NXdata"
        plot.attrs["signal"] = "frames"
        plot["background"] = frames(100, 3)
        plot["frames"] = frames(0, 3)
        plot["zzz"] = frames(200, 3)
    assert numbers(path)[0] == [0, 1, 2]
    assert read_frame(path, shape=SHAPE).meta.dataset == "/entry/images/frames"


def test_several_stacks_without_a_role_are_refused_with_the_list(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as fh:
        fh["entry/data"] = frames(0, 3)
        fh["entry/dark"] = frames(100, 3)
        fh["entry/other_camera"] = np.zeros((3, 8, 8))
    for call in (
        lambda: list_frames(path, shape=SHAPE),
        lambda: read_frame(path, shape=SHAPE),
    ):
        with pytest.raises(FrameReadError) as info:
            call()
        message = str(info.value)
        assert "/entry/data (3, 16, 20)" in message
        assert "/entry/dark (3, 16, 20)" in message
        assert "other_camera" not in message
        assert "h5_dataset" in message
    assert numbers(path, h5_dataset="entry/data")[0] == [0, 1, 2]
    # an explicit dataset that is a dangling link names its file
    with h5py.File(path, "a") as fh:
        fh["entry/linked"] = h5py.ExternalLink("gone.h5", "/data")
    with pytest.raises(FrameReadError, match=r"gone\.h5"):
        list_frames(path, shape=SHAPE, h5_dataset="/entry/linked")


_SWMR_WRITER = """
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w", libver="latest") as fh:
    data = fh.create_dataset("entry/data/data", shape=(0, 195, 1475), maxshape=(None, 195, 1475),
                             dtype="int32", chunks=(1, 195, 1475))
    fh.swmr_mode = True
    for i in range(2):
        data.resize(i + 1, axis=0)
        data[i] = np.full((195, 1475), 10 + i, dtype="int32")
        data.flush()
    print("ready", flush=True)
    sys.stdin.readline()
"""


def test_a_stack_held_open_by_an_swmr_writer_is_read(tmp_path):
    # a detector (or gixs watch's own writer) may keep the file open while it grows
    path = tmp_path / "growing.h5"
    writer = subprocess.Popen(
        [sys.executable, "-c", _SWMR_WRITER, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        frames = [frame.data[0, 0] for frame in iter_frames(path, shape=(195, 1475))]
        assert frames == [10, 11]
    finally:
        writer.communicate("\n", timeout=30)
    assert writer.returncode == 0


@pytest.mark.parametrize("layout", ["dectris", "bliss-virtual", "bliss-links"])
def test_a_folder_matched_whole_reads_each_frame_once(tmp_path, layout):
    # "*.h5" over a Dectris series (master + data files) or a BLISS file beside its LIMA
    # files: the data files are read through the file that links them, once (they were
    # read a second time on their own, with made-up times)
    if layout == "dectris":
        master = dectris_series(tmp_path, [4, 4])
        patterns = (str(tmp_path / "*.h5"),)
        data = sorted(tmp_path.glob("series_data_*.h5"))
    else:
        master = bliss_master_with_lima(tmp_path, virtual=layout == "bliss-virtual")
        patterns = (str(tmp_path / "*.h5"), str(tmp_path / "scan0001" / "*.h5"))
        data = sorted((tmp_path / "scan0001").glob("*.h5"))
    assert linked_files(master) == {path.resolve() for path in data}
    assert all(linked_files(path) == set() for path in data)
    settings = DetectorSettings(
        kind="gisaxs", frames=patterns, poni=tmp_path / "unused.poni", incidence_angle_deg=0.3
    )
    refs = expand_frames(settings, shape=SHAPE)
    assert {ref.path for ref in refs} == {master}
    assert len(refs) == len(list_frames(master, shape=SHAPE))


# --- a run whose file has a missing or empty part: the frames that are there ------------


def _run_refs(path, **kwargs):
    settings = DetectorSettings(
        kind="gisaxs", frames=(str(path),), poni=path.parent / "unused.poni",
        incidence_angle_deg=0.3, **kwargs,
    )  # fmt: skip
    return expand_frames(settings, shape=SHAPE)


def test_an_aborted_scan_without_frames_loses_no_other_frame(tmp_path):
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as fh:
        bliss_scan(fh, "1.1", 0, 3, epoch0=T0)
        empty = fh.create_group("2.1/instrument/pilatus")
        empty.attrs["NX_class"] = "NXdetector"
        empty.create_dataset("data", shape=(0, *SHAPE), maxshape=(None, *SHAPE), dtype=np.int32)
        bliss_scan(fh, "3.1", 3, 2, epoch0=T0 + 100.0)
    # the whole run was an error ("holds no frames"): 5 good frames lost
    with pytest.raises(FrameReadError, match="holds no frames"):
        list_frames(path, shape=SHAPE)
    refs = _run_refs(path)
    assert [int(read_frame(ref, shape=SHAPE).data[0, 0]) for ref in refs] == [0, 1, 2, 3, 4]
    for pattern in ("/*.1/instrument/pilatus/data", ("/1.1/instrument/pilatus/data",
                    "/2.1/instrument/pilatus/data", "/3.1/instrument/pilatus/data")):  # fmt: skip
        assert len(_run_refs(path, h5_dataset=pattern)) == 5


def test_a_missing_data_file_of_a_dectris_series_is_one_read_error(tmp_path):
    master = dectris_series(tmp_path, [2, 3])
    (tmp_path / "series_data_000002.h5").unlink()
    refs = _run_refs(master)
    assert [int(read_frame(ref, shape=SHAPE).data[0, 0]) for ref in refs[:2]] == [0, 1]
    (missing,) = refs[2:]
    assert missing.h5_dataset == "/entry/data/data_000002"
    with pytest.raises(
        FrameReadError, match=r"series_data_000002\.h5.*missing|missing.*series_data_000002"
    ):
        read_frame(missing, shape=SHAPE)


def test_frames_of_a_missing_lima_file_are_read_errors_the_others_read(tmp_path):
    master = bliss_master_with_lima(tmp_path, virtual=True)
    (tmp_path / "scan0001" / "pilatus_0001.h5").unlink()
    refs = _run_refs(master)
    assert len(refs) == 5
    assert [int(read_frame(ref, shape=SHAPE).data[0, 0]) for ref in refs[:3]] == [0, 1, 2]
    for ref in refs[3:]:
        with pytest.raises(FrameReadError, match=r"pilatus_0001\.h5"):
            read_frame(ref, shape=SHAPE)


def test_the_links_of_a_file_being_written_are_read(tmp_path):
    # BLISS holds its file open for writing (HDF5 file lock) while the run goes on: the
    # links were read with locking, failed, and the LIMA files were taken as frames twice
    master = bliss_master_with_lima(tmp_path, virtual=False)
    script = (
        f"import h5py, time\nfh = h5py.File({str(master)!r}, 'a')\n"
        "print('open', flush=True)\ntime.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as w:
        try:
            assert w.stdout is not None
            assert w.stdout.readline().strip() == "open"
            expected = {p.resolve() for p in (tmp_path / "scan0001").glob("*.h5")}
            assert linked_files(master) == expected
        finally:
            w.kill()
