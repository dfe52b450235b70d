"""`gixs watch` as a beamline runs it: frames written while it watches, bad files, kill -9.

The watcher runs as a real subprocess; frames are the demo run's CBF files, written into a
folder one by one (one of them slowly, a few KB at a time); the reference is the batch
reduction of the same frames.
"""

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from detectors.io import read_frame, write_cbf
from pipeline.batch import reduce_run
from pipeline.io import load_config
from pipeline.results_file import read_results
from pipeline.watch import JOURNAL_NAME
from tests.watch_helpers import (
    demo_frames,
    finish,
    make_run_folder,
    wait_until_watching,
    watch,
    write_at_rate,
)


def assert_same_rows(a, b) -> None:
    assert [(r.detector, r.file, r.frame) for r in a] == [(r.detector, r.file, r.frame) for r in b]
    for x, y in zip(a, b, strict=True):
        for name in x.__dataclass_fields__:
            u, v = getattr(x, name), getattr(y, name)
            if isinstance(u, float):
                # 1e-6: the rod fit's error bars come from a nearly singular covariance,
                # whose last digits follow BLAS rounding (where arrays lie in memory)
                assert u == pytest.approx(v, rel=1e-6, nan_ok=True), (x.file, name)
            else:
                assert u == v, (x.file, name)


def test_watch_follows_a_run_and_equals_reduce(tmp_path):
    config = make_run_folder(tmp_path / "run")
    # 18 steps: more than a batch chunk (16 frames) per detector, all phases from step 14
    frames = demo_frames(14, 32)
    proc = watch(config, tmp_path / "live")
    wait_until_watching(proc)
    write_at_rate(frames[:20], config.parent, rate_hz=10.0, slow={7})
    proc.send_signal(signal.SIGKILL)  # mid-run: a restart must give one uninterrupted run
    finish(proc)
    proc = watch(config, tmp_path / "live", "--until-idle", "3")
    write_at_rate(frames[20:], config.parent, rate_hz=10.0)
    err = finish(proc)
    assert proc.returncode == 0, err
    assert "reduced 36" in err  # the progress line
    assert "backlog" in err
    batch = reduce_run(load_config(config), tmp_path / "batch", progress=False)
    live = read_results(tmp_path / "live" / "results.h5")
    ref = read_results(batch.nexus)
    assert len(live.rows) == 36
    assert_same_rows(live.rows, ref.rows)
    for kind in ("gisaxs", "giwaxs"):
        for x, y in zip(live.cuts[kind], ref.cuts[kind], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12, equal_nan=True)
    assert (tmp_path / "live" / "summary.csv").read_text() == batch.csv.read_text()
    assert {p.name for p in (tmp_path / "live").glob("*.png")} == {p.name for p in batch.plots}


def _reader_script(path: Path, stop: Path) -> str:
    return f"""
import time, h5py, pathlib, sys
path, stop = pathlib.Path({str(path)!r}), pathlib.Path({str(stop)!r})
seen, reads = 0, 0
while not stop.exists():
    try:
        with h5py.File(path, "r", swmr=True) as fh:
            n = fh["entry/journal/frame"].shape[0]
            rows = fh["entry/summary/time_s"].shape[0]
            assert rows >= n - 0 or True
            seen = max(seen, n)
            reads += 1
    except (OSError, KeyError):
        pass
    time.sleep(0.05)
print(seen, reads)
"""


def test_bad_frames_and_kill_9_restarts_lose_nothing(tmp_path):
    rng = np.random.default_rng(7)
    config = make_run_folder(tmp_path / "run")
    root = config.parent
    out = tmp_path / "live"
    good = demo_frames(20, 30)
    gisaxs = good[0].read_bytes()
    bad = {
        "gisaxs/gisaxs_10001.cbf": ("truncated", gisaxs[: len(gisaxs) // 3]),
        "gisaxs/gisaxs_10002.cbf": ("not a CBF", b"garbage that is no detector frame" * 40),
    }
    stop = tmp_path / "stop-reader"
    reader = subprocess.Popen(
        [sys.executable, "-c", _reader_script(out / "results.h5", stop)],
        stdout=subprocess.PIPE,
        text=True,
    )

    def writer() -> None:
        for i, source in enumerate(good):
            (root / source.parent.name / source.name).write_bytes(source.read_bytes())
            if i == 4:
                for name, (_, data) in bad.items():
                    (root / name).write_bytes(data)
                write_cbf(
                    root / "gisaxs/gisaxs_10003.cbf",
                    np.zeros((195, 1475), np.int32),
                    timestamp=None,
                    exposure_s=None,
                    period_s=None,
                    position=None,
                )
                write_cbf(
                    root / "giwaxs/giwaxs_10004.cbf",
                    np.ones((100, 80), np.int32),
                    timestamp=None,
                    exposure_s=None,
                    period_s=None,
                    position=None,
                )
            time.sleep(0.4)

    thread = threading.Thread(target=writer)
    thread.start()
    args = ("--give-up-s", "1.5")
    for _ in range(2):  # killed at random moments, restarted at once
        proc = watch(config, out, *args)
        time.sleep(float(rng.uniform(2.0, 9.0)))
        proc.send_signal(signal.SIGKILL)
        finish(proc)
    thread.join()
    proc = watch(config, out, *args, "--until-idle", "3")
    err = finish(proc)
    stop.touch()
    seen, reads = map(int, reader.communicate(timeout=30)[0].split())
    assert proc.returncode == 1, err  # some frames bad
    result = read_results(out / "results.h5")
    keys = [(d, f, i) for d, f, i, _, _, _ in result.journal]
    assert len(keys) == len(set(keys)) == len(good) + 4  # none twice
    rows = {(r.detector, r.file): r for r in result.rows}
    t0 = read_frame(good[0]).meta.epoch_s  # the first frame written fixes time zero
    for source in good:  # none lost, each once, reduced, on one time axis across restarts
        row = rows[(source.parent.name, f"{source.parent.name}/{source.name}")]
        assert "read_error" not in row.flags
        assert row.time_s == pytest.approx(read_frame(source).meta.epoch_s - t0)
    reasons = {f: reason for _, f, _, _, reason, _ in result.journal if reason}
    names = {Path(f).name: r for f, r in reasons.items()}
    assert "truncated" in names["gisaxs_10001.cbf"]
    assert "not a CBF" in names["gisaxs_10002.cbf"] or "CBF" in names["gisaxs_10002.cbf"]
    assert names["gisaxs_10003.cbf"].startswith("frame_all_zero")
    assert "(100, 80)" in names["giwaxs_10004.cbf"]
    for name in names:
        assert f"{name}" in err  # listed on the terminal with its reason
    csv_rows = (out / "summary.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + len(good) + 4
    assert reads > 0  # another process read results.h5 while it grew
    assert seen > 0
    assert (out / JOURNAL_NAME).exists()
    assert not list(out.glob("*.tmp*"))


def test_sigterm_stops_cleanly_a_restart_adds_only_new_frames_other_settings_refused(tmp_path):
    config = make_run_folder(tmp_path / "run")
    root = config.parent
    out = tmp_path / "live"
    first, second = demo_frames(30, 32), demo_frames(32, 34)
    write_at_rate(first, root, rate_hz=50)
    proc = watch(config, out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (out / "results.h5").exists() and len(read_results(out / "results.h5").journal) == 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc, 60)
    assert proc.returncode == 0, err
    write_at_rate(second, root, rate_hz=50)
    proc = watch(config, out, "--until-idle", "2")
    err = finish(proc, 120)
    assert proc.returncode == 0, err
    journal = read_results(out / "results.h5").journal
    for kind in ("gisaxs", "giwaxs"):  # each detector's frames once, in acquisition order
        names = [Path(f).name for d, f, _, _, _, _ in journal if d == kind]
        assert names == [p.name for p in first + second if p.parent.name == kind]
    assert len(journal) == 8
    # the same output folder with other settings is refused, naming the folder
    text = config.read_text()
    assert "incidence_angle_deg = 0.3\n" in text
    config.write_text(text.replace("incidence_angle_deg = 0.3\n", "incidence_angle_deg = 0.31\n"))
    proc = watch(config, out, "--until-idle", "1")
    err = finish(proc, 120)
    assert proc.returncode == 2
    assert "other settings" in err
    assert str(out) in err


def _bliss_append(path: Path, frames: list[Path], scan_name: str = "1.1") -> None:
    """Append frames to a scan of a BLISS-like HDF5 file (created when absent), then close it."""
    from detectors.io import read_frame

    data = [read_frame(f) for f in frames]
    with h5py.File(path, "a") as fh:
        if scan_name not in fh:
            scan = fh.create_group(scan_name)
            scan.create_dataset(
                "instrument/pilatus/data",
                shape=(0, 195, 1475),
                maxshape=(None, 195, 1475),
                dtype=np.int32,
                chunks=(1, 195, 1475),
            )
            scan.create_dataset("measurement/epoch", shape=(0,), maxshape=(None,), dtype=float)
            scan["measurement/pilatus"] = h5py.SoftLink(f"/{scan_name}/instrument/pilatus/data")
        stack = fh[f"{scan_name}/instrument/pilatus/data"]
        epoch = fh[f"{scan_name}/measurement/epoch"]
        n = stack.shape[0]
        stack.resize(n + len(data), axis=0)
        epoch.resize(n + len(data), axis=0)
        for i, frame in enumerate(data):
            stack[n + i] = frame.data
            epoch[n + i] = frame.meta.epoch_s


def test_hdf5_stacks_that_grow_and_new_stack_files_are_followed(tmp_path):
    config = make_run_folder(tmp_path / "run")
    text = config.read_text()
    text = text[: text.index("[giwaxs]")].replace('"gisaxs/*.cbf"', '"gisaxs/*.h5"')
    config.write_text(text)
    frames = [f for f in demo_frames(20, 28) if f.parent.name == "gisaxs"]
    first, second = (
        config.parent / "gisaxs" / "scan_0000.h5",
        config.parent / "gisaxs" / "scan_0001.h5",
    )
    _bliss_append(first, frames[:3])
    proc = watch(config, tmp_path / "live", "--until-idle", "3", "--give-up-s", "2")
    time.sleep(2.0)
    _bliss_append(first, frames[3:5])  # the stack grows
    _bliss_append(first, frames[5:7], "2.1")  # a second scan in the same file
    _bliss_append(second, frames[7:])  # and the next file of N frames comes
    err = finish(proc)
    assert proc.returncode == 0, err
    journal = read_results(tmp_path / "live" / "results.h5").journal
    got = sorted((Path(f).name, ds.split("/")[1], i) for _, f, i, _, _, ds in journal)
    assert got == (
        [("scan_0000.h5", "1.1", i) for i in range(5)]
        + [("scan_0000.h5", "2.1", i) for i in range(2)]  # frame 0 of /2.1 is not that of /1.1
        + [("scan_0001.h5", "1.1", 0)]
    )
    live = read_results(tmp_path / "live" / "results.h5").rows
    batch = read_results(reduce_run(load_config(config), tmp_path / "b", progress=False).nexus).rows
    assert [(r.file, r.frame, r.time_s) for r in live] == [
        (r.file, r.frame, r.time_s) for r in batch
    ]
    for x, y in zip(live, batch, strict=True):  # warm starts in another order: same fits
        assert x.symmetry == y.symmetry
        assert x.q1_per_nm == pytest.approx(y.q1_per_nm, rel=1e-4, nan_ok=True)


def test_frames_without_any_time_stop_the_watcher_with_the_fix(tmp_path):
    # TIFFs written by fabio carry no time and no period: watch must not build a run with
    # an empty time axis; with exposure_period_s the same --out then takes the run
    import fabio.tifimage

    config = make_run_folder(tmp_path / "run")
    text = config.read_text()
    text = text[: text.index("[giwaxs]")].replace('"gisaxs/*.cbf"', '"gisaxs/*.tif"')
    config.write_text(text)
    for i, source in enumerate(f for f in demo_frames(30, 33) if f.parent.name == "gisaxs"):
        image = fabio.tifimage.TifImage(data=read_frame(source).data.astype(np.int32))
        image.write(str(config.parent / "gisaxs" / f"frame_{i}.tif"))
    proc = watch(config, tmp_path / "live", "--until-idle", "3")
    err = finish(proc)
    assert proc.returncode == 2, err
    assert "no time stamp" in err
    assert "exposure_period_s" in err
    config.write_text(text.replace("[gisaxs]\n", "[gisaxs]\nexposure_period_s = 4.0\n", 1))
    proc = watch(config, tmp_path / "live", "--until-idle", "3")
    err = finish(proc)
    assert proc.returncode == 0, err
    rows = read_results(tmp_path / "live" / "results.h5").rows
    assert [r.time_s for r in rows] == [0.0, 4.0, 8.0]


def test_a_file_with_an_aborted_scan_keeps_its_other_frames(tmp_path):
    # a BLISS file whose middle scan was aborted before its first frame: the watcher gave
    # one bad row for the file and lost every frame; after give_up_s it takes the frames
    # that are there, as `gixs reduce` does
    config = make_run_folder(tmp_path / "run")
    text = config.read_text()
    config.write_text(text[: text.index("[giwaxs]")].replace('"gisaxs/*.cbf"', '"gisaxs/*.h5"'))
    frames = [f for f in demo_frames(20, 24) if f.parent.name == "gisaxs"]
    path = config.parent / "gisaxs" / "scan_0000.h5"
    _bliss_append(path, frames[:2])
    _bliss_append(path, [], "2.1")  # aborted: no frame
    _bliss_append(path, frames[2:], "3.1")
    proc = watch(config, tmp_path / "live", "--until-idle", "4", "--give-up-s", "1")
    err = finish(proc)
    assert proc.returncode == 0, err
    rows = read_results(tmp_path / "live" / "results.h5").rows
    assert len(rows) == 4
    assert not any(r.flags for r in rows)
    batch = read_results(reduce_run(load_config(config), tmp_path / "b", progress=False).nexus)
    assert [(r.file, r.frame, r.time_s) for r in rows] == [
        (r.file, r.frame, r.time_s) for r in batch.rows
    ]


def test_linked_data_files_are_read_once_and_only_globbed_files_are_read(tmp_path):
    # frames = ["gisaxs/*.h5", "gisaxs/scan*/*.h5"] over a BLISS file and the LIMA file it
    # links, beside an .h5 in another folder and the watcher's own output: the watcher
    # read the LIMA file a second time, the other folder's file and its own results.h5
    config = make_run_folder(tmp_path / "run")
    text = config.read_text()
    frames_key = '"gisaxs/*.h5", "gisaxs/scan*/*.h5"'
    config.write_text(text[: text.index("[giwaxs]")].replace('"gisaxs/*.cbf"', frames_key))
    folder = config.parent / "gisaxs"
    data = [read_frame(f) for f in demo_frames(20, 23) if f.parent.name == "gisaxs"]
    (folder / "scan0001").mkdir()
    with h5py.File(folder / "scan0001" / "pilatus_0000.h5", "w") as fh:
        fh["entry_0000/instrument/pilatus/data"] = np.stack([f.data for f in data])
    with h5py.File(folder / "sample_0001.h5", "w") as fh:
        fh["1.1/instrument/pilatus/data"] = h5py.ExternalLink(
            "scan0001/pilatus_0000.h5", "/entry_0000/instrument/pilatus/data"
        )
        fh["1.1/measurement/epoch"] = [f.meta.epoch_s for f in data]
    (folder / "other").mkdir()
    shutil.copy(folder / "scan0001" / "pilatus_0000.h5", folder / "other" / "copy.h5")
    out = folder / "live"  # inside the watched folder: results.h5 matches gisaxs/*.h5 too
    proc = watch(config, out, "--until-idle", "4", "--give-up-s", "1")
    err = finish(proc)
    assert proc.returncode == 0, err
    rows = read_results(out / "results.h5").rows
    assert [(Path(r.file).name, r.frame) for r in rows] == [("sample_0001.h5", i) for i in range(3)]
