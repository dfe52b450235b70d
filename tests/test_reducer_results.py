"""The per-frame reducer every mode shares, and the module that owns results.h5."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from silx.io.nxdata import NXdata

from detectors.errors import FrameReadError
from detectors.io import FrameRef, write_cbf
from pipeline.batch import CHUNK_FRAMES, reduce_chunk
from pipeline.checks import FLAG_ALL_ZERO
from pipeline.fingerprint import settings_fingerprint
from pipeline.io import load_config
from pipeline.reducer import FrameReducer, Reduced, RunClock
from pipeline.results_file import Journal, JournalEntry, ResultsWriter, read_results, write_results

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo"


@pytest.fixture(scope="module")
def config():
    return load_config(DEMO / "demo.toml")


@pytest.fixture(scope="module")
def reducers(config):
    clock = RunClock()
    return {
        d.kind: FrameReducer.from_settings(d, config, clock=clock, cold_every=4)
        for d in config.detectors
    }


def refs(kind: str, first: int, last: int) -> list[FrameRef]:
    return [FrameRef(DEMO / kind / f"{kind}_{i:05d}.cbf") for i in range(first, last)]


def test_reducer_with_cold_starts_equals_the_batch_chunks(config, reducers):
    for kind in ("gisaxs", "giwaxs"):
        plan = reducers[kind].plan
        frames = refs(kind, 24, 30)  # 6 frames: one chunk of 4 and one of 2
        live = FrameReducer(plan, cold_every=4)
        steps = [live.reduce_ref(ref) for ref in frames]
        batch = [*reduce_chunk(frames[:4], plan).results, *reduce_chunk(frames[4:], plan).results]
        for step, ref in zip(steps, batch, strict=True):
            assert step.result.flags == ref.flags
            np.testing.assert_array_equal(step.result.intensity, ref.intensity)
            if kind == "gisaxs":
                assert step.result.rod == ref.rod
            else:
                assert step.result.peak == ref.peak
                assert step.result.domain_nm == ref.domain_nm
    assert CHUNK_FRAMES == 16  # watch mode starts cold where the batch's chunks start


def test_run_clock_is_fixed_by_the_first_frame_and_extends(config):
    clock = RunClock()
    gisaxs = FrameReducer.from_settings(config.settings("gisaxs"), config, clock=clock)
    giwaxs = FrameReducer.from_settings(config.settings("giwaxs"), config, clock=clock)
    first = gisaxs.reduce_ref(refs("gisaxs", 30, 31)[0])
    assert first.time_s == 0.0
    later = [giwaxs.reduce_ref(r).time_s for r in refs("giwaxs", 30, 33)]
    assert later == pytest.approx([0.0, 10.0, 20.0], abs=1e-6)  # the demo's 10 s period
    given = RunClock(t0_epoch_s=first.result.epoch_s - 300.0)
    again = FrameReducer(gisaxs.plan, clock=given).reduce_ref(refs("gisaxs", 30, 31)[0])
    assert again.time_s == pytest.approx(300.0)


def test_fingerprint_changes_with_any_setting_or_geometry_file(config, tmp_path):
    from dataclasses import replace

    def key_of(settings, run=config, version="1.0"):
        return settings_fingerprint(settings, run, version=version)

    settings = config.settings("gisaxs")
    key = key_of(settings)
    assert key_of(replace(settings, incidence_angle_deg=0.31)) != key
    assert key_of(replace(settings, n_bins=299)) != key
    assert key_of(settings, replace(config, scherrer=replace(config.scherrer, k_factor=0.9))) != key
    assert key_of(settings, version="1.1") != key  # another release may reduce otherwise
    poni = tmp_path / "g.poni"
    poni.write_text(settings.poni.read_text() + "\n# moved\n")
    assert key_of(replace(settings, poni=poni)) != key
    assert key_of(replace(settings, frames=("x/*.cbf",))) == key


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (np.ones((100, 80), np.int32), "(100, 80)"),
        (np.ones((195, 1474), np.int32), "(195, 1474)"),
    ],
)
def test_bad_frames_become_flagged_rows(reducers, tmp_path, data, reason):
    path = tmp_path / "bad.cbf"
    write_cbf(path, data, timestamp=None, exposure_s=None, period_s=None, position=None)
    step = FrameReducer(reducers["gisaxs"].plan).reduce_ref(FrameRef(path))
    assert not step.result.read_ok
    assert reason in step.result.flags[0]
    assert str(path) in step.result.flags[0]


def test_all_zero_frame_is_an_input_problem_not_a_fit(reducers, tmp_path):
    path = tmp_path / "zero.cbf"
    write_cbf(path, np.zeros((195, 1475), np.int32), timestamp=None, exposure_s=None,
              period_s=None, position=None)  # fmt: skip
    reducer = FrameReducer(reducers["gisaxs"].plan)
    step = reducer.reduce_ref(FrameRef(path))
    assert step.result.read_ok
    assert not step.result.input_ok
    assert step.result.flags[0].startswith(FLAG_ALL_ZERO)
    assert step.result.rod is None
    assert reducer.previous is None  # the next frame starts cold


def _entries(reducers) -> list[JournalEntry]:
    out = []
    for kind in ("gisaxs", "giwaxs"):
        for ref in refs(kind, 28, 31):
            step = FrameReducer(reducers[kind].plan).reduce_ref(ref)
            out.append(JournalEntry(step, f"{kind}/{ref.path.name}", f"id-{ref.path.name}"))
    return out


def test_results_file_round_trip_and_valid_nexus(config, reducers, tmp_path):
    entries = _entries(reducers)
    plans = {k: r.plan for k, r in reducers.items()}
    path = tmp_path / "results.h5"
    write_results(path, entries, plans, config, fingerprints={"gisaxs": "abc"})
    data = read_results(path)
    assert [(r.detector, r.file) for r in data.rows] == [
        (e.reduced.result.kind, e.file)
        for e in sorted(entries, key=lambda e: (e.reduced.time_s, e.reduced.result.kind))
    ]
    assert [j[2] for j in data.journal] == [0] * 6
    with h5py.File(path) as fh:
        for name in ("first_rod", "peak200", "gisaxs_cuts", "giwaxs_cuts"):
            group = NXdata(fh["entry"][name])
            assert group.is_valid, group.issues
        assert fh["entry/first_rod/q1"].attrs["units"] == "1/nm"
        assert fh["entry/gisaxs_cuts/intensity"].attrs["units"] == "counts"
        assert fh["entry/reduction/settings/gisaxs/fingerprint"][()] == b"abc"
        assert fh["entry/first_rod/q1"][2] == entries[2].reduced.result.rod.q1_per_nm


def test_a_results_file_from_before_the_dataset_column_is_still_read(config, reducers, tmp_path):
    entries = _entries(reducers)
    path = tmp_path / "results.h5"
    write_results(path, entries, {k: r.plan for k, r in reducers.items()}, config)
    with h5py.File(path, "a") as fh:
        assert fh["entry/summary/dataset"].shape == (6,)
        del fh["entry/summary/dataset"]  # as release 0.x wrote it
    rows = read_results(path).rows
    assert len(rows) == 6
    assert {r.dataset for r in rows} == {""}


def test_another_process_reads_the_file_while_frames_are_appended(config, reducers, tmp_path):
    entries = _entries(reducers)
    plans = {k: r.plan for k, r in reducers.items()}
    path = tmp_path / "results.h5"
    script = (
        "import sys, h5py\n"
        "with h5py.File(sys.argv[1], 'r', swmr=True) as fh:\n"
        "    print(fh['entry/journal/frame'].shape[0], fh['entry/summary/q1_nm-1'].shape[0])\n"
    )
    seen = []
    with ResultsWriter(path, plans, config, swmr=True) as writer:
        for entry in entries:
            writer.append([entry])
            run = subprocess.run(
                [sys.executable, "-c", script, str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            seen.append(tuple(map(int, run.stdout.split())))
    assert seen == [(n, n) for n in range(1, 7)]


def test_journal_drops_a_record_cut_by_a_kill_and_refuses_other_settings(reducers, tmp_path):
    entries = _entries(reducers)[:3]
    path = tmp_path / "journal.bin"
    journal = Journal(path, {"gisaxs": "k1"})
    for entry in entries:
        journal.append(entry)
    journal.close()
    whole = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b"\x40\x00\x00\x00\x00\x00\x00\x00half a rec")  # a kill mid-write
    again = Journal(path, {"gisaxs": "k1"})
    assert [e.key for e in again.entries] == [e.key for e in entries]
    assert isinstance(again.entries[0].reduced, Reduced)
    again.close()
    assert path.stat().st_size == whole
    with pytest.raises(FrameReadError, match="other settings"):
        Journal(path, {"gisaxs": "k2"})
