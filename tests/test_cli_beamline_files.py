"""`gixs reduce` on HDF5 files as beamlines write them, run as a user runs it.

The demo's Pilatus 300K-W frames are put into a BLISS file split over three scans (as a
timescan stopped and restarted), and into a BLISS master whose LIMA files were not
copied. The whole run must come out, in acquisition order; a missing file must be named.
"""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from detectors.io import read_frame
from pipeline.cli import EXIT_OK, EXIT_USAGE

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo"
# (scan, demo frames): written out of name order, /10.1 last in time
SCANS = (("10.1", (32, 33)), ("2.1", (20, 21)), ("1.1", (0, 12)))
PAUSE_S = 300.0


def run_gixs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )


def write_config(folder: Path, frames: str) -> Path:
    shutil.copy(DEMO / "gisaxs.poni", folder / "gisaxs.poni")
    config = folder / "run.toml"
    config.write_text(
        "schema_version = 1\n[gisaxs]\n"
        f'frames = ["{frames}"]\nponi = "gisaxs.poni"\nincidence_angle_deg = 0.3\n'
        "n_bins = 300\n"
    )
    return config


def bliss_run(folder: Path) -> tuple[Path, list[str]]:
    """Three scans, a pause between each; returns the file and the demo frames in order."""
    path = folder / "run.h5"
    order = []
    with h5py.File(path, "w") as fh:
        for scan, indices in SCANS:
            frames = [read_frame(DEMO / "gisaxs" / f"gisaxs_{i:05d}.cbf") for i in indices]
            group = fh.create_group(f"{scan}/instrument/pilatus300kw")
            group.attrs["NX_class"] = "NXdetector"
            group.create_dataset("data", data=np.stack([f.data for f in frames]))
            group["acq_parameters/acq_expo_time"] = 9.99
            rank = [1, 2, 10].index(int(float(scan)))  # by number: 1.1 < 2.1 < 10.1
            fh[f"{scan}/measurement/pilatus300kw"] = h5py.SoftLink(
                f"/{scan}/instrument/pilatus300kw/data"
            )
            fh[f"{scan}/measurement/epoch"] = np.array(
                [f.meta.epoch_s + rank * PAUSE_S for f in frames]
            )
        for scan in ("1.1", "2.1", "10.1"):
            indices = dict(SCANS)[scan]
            order += [f"gisaxs/gisaxs_{i:05d}.cbf" for i in indices]
    return path, order


@pytest.fixture(scope="module")
def truth() -> dict[str, dict]:
    return {t["file"]: t for t in json.loads((DEMO / "truth.json").read_text())}


@pytest.mark.slow
def test_a_run_over_three_bliss_scans_is_reduced_whole_in_order(tmp_path, truth):
    _, order = bliss_run(tmp_path)
    config = write_config(tmp_path, "run.h5")
    done = run_gixs("reduce", str(config), "--out", str(tmp_path / "out"), "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    with open(tmp_path / "out" / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    times = [float(r["time_s"]) for r in rows]
    assert times == sorted(times)
    # each scan starts after a pause: the gaps show on the time axis
    assert max(np.diff(times)) > PAUSE_S
    # the frames of each scan are numbered from 0: the dataset column tells them apart
    scans = [scan for scan in ("1.1", "2.1", "10.1") for _ in dict(SCANS)[scan]]
    datasets = [f"/{scan}/instrument/pilatus300kw/data" for scan in scans]  # the link's target
    assert [r["dataset"] for r in rows] == datasets
    assert [r["frame"] for r in rows] == ["0", "1"] * 3
    for row, name in zip(rows, order, strict=True):
        expected = truth[name]
        assert row["symmetry"] == expected["symmetry"], name
        if expected["q1_nm-1"] is not None:
            assert float(row["q1_nm-1"]) == pytest.approx(expected["q1_nm-1"], rel=5e-3), name
        assert "time_from_order" not in row["flags"]


def test_a_bliss_master_without_its_lima_files_names_them(tmp_path):
    (tmp_path / "scan0001").mkdir()
    path = tmp_path / "sample_0001.h5"
    with h5py.File(path, "w") as fh:
        fh["1.1/instrument/pilatus300kw/data"] = h5py.ExternalLink(
            "scan0001/pilatus300kw_0000.h5", "/entry_0000/instrument/pilatus300kw/data"
        )
        fh["1.1/instrument/pilatus300kw"].attrs["NX_class"] = "NXdetector"
        fh["1.1/measurement/epoch"] = np.arange(3.0) + 1.8e9
    config = write_config(tmp_path, "sample_0001.h5")
    done = run_gixs("reduce", str(config), "--out", str(tmp_path / "out"), "--quiet")
    # no frame of the detector can be read: one error line naming the file, exit 2
    assert done.returncode == EXIT_USAGE
    assert "pilatus300kw_0000.h5" in done.stdout + done.stderr
    assert "missing" in done.stdout + done.stderr
