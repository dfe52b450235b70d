"""Results that follow the settings, runs that cannot hurt each other, and bad inputs
named as what they are: `gixs reduce` as a user runs it, on a few demo frames (issue 8)."""

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest

from detectors.errors import OutputError
from detectors.io import FrameRef, read_frame
from pipeline.batch import reduce_run
from pipeline.cli import EXIT_OK, EXIT_SOME_FRAMES_BAD, EXIT_USAGE
from pipeline.io import LOCK_NAME, load_config, read_lock_holder, write_csv
from pipeline.timeseries import SeriesRow

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sample_data" / "demo"
GISAXS = ("gisaxs_00031.cbf", "gisaxs_00033.cbf")
GIWAXS = ("giwaxs_00031.cbf", "giwaxs_00033.cbf")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_config(
    run: Path,
    *,
    gisaxs: dict | None = None,
    giwaxs: dict | None = None,
    k_factor: float = 1.0,
    name: str = "run.toml",
) -> Path:
    """A run config over the copied demo frames; None leaves a detector out."""
    tables = {}
    if gisaxs is not None:
        tables["gisaxs"] = {
            "frames": ["gisaxs/*.cbf"],
            "poni": "gisaxs.poni",
            "incidence_angle_deg": 0.3,
            "n_bins": 300,
        } | gisaxs
    if giwaxs is not None:
        tables["giwaxs"] = {
            "frames": ["giwaxs/*.cbf"],
            "poni": "giwaxs.poni",
            "incidence_angle_deg": 0.3,
            "n_bins": 150,
            "resolution": "resolution_giwaxs.json",
        } | giwaxs
    lines = ["schema_version = 1"]
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    lines += ["[scherrer]", f"k_factor = {k_factor!r}"]
    path = run / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def run(tmp_path) -> Path:
    """Two GISAXS and two GIWAXS demo frames of the square phase, copied to tmp_path."""
    run = tmp_path / "run"
    for kind, names in (("gisaxs", GISAXS), ("giwaxs", GIWAXS)):
        (run / kind).mkdir(parents=True)
        for name in names:
            shutil.copy(DEMO / kind / name, run / kind / name)
        shutil.copy(DEMO / f"{kind}.poni", run / f"{kind}.poni")
    shutil.copy(DEMO / "resolution_giwaxs.json", run / "resolution_giwaxs.json")
    return run


def gixs(*args: object, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def by_file(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["file"]: row for row in rows}


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


# --- checkpoints follow the settings ---------------------------------------------


def test_changed_settings_are_reduced_again_not_taken_from_checkpoints(run, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    config = write_config(run, gisaxs={}, giwaxs={})
    done = gixs("reduce", config, "--out", out, "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    assert "reduced 4 frames (0 from checkpoints)" in done.stdout
    first = by_file(read_csv(out / "summary.csv"))
    # no pickle in the output folder: every checkpoint is JSON data
    stored = sorted((out / "checkpoints").iterdir())
    assert [p.suffix for p in stored] == [".json", ".json"]
    for path in stored:
        assert json.loads(path.read_text())["format"].startswith("insitu-gixs-checkpoint")

    # the GISAXS peak shape and K change: the GISAXS frames and the GIWAXS domain sizes
    # are recomputed; the recorded settings and the results agree with a fresh run
    config = write_config(run, gisaxs={"peak_shape": "lorentzian"}, giwaxs={}, k_factor=0.886)
    done = gixs("reduce", config, "--out", out, "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    assert "reduced 4 frames (0 from checkpoints)" in done.stdout
    done = gixs("reduce", config, "--out", fresh, "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    rerun, new = read_csv(out / "summary.csv"), read_csv(fresh / "summary.csv")
    assert rerun == new
    for name in GIWAXS:
        before, after = first[f"giwaxs/{name}"], by_file(rerun)[f"giwaxs/{name}"]
        assert float(after["domain_nm"]) == pytest.approx(
            0.886 * float(before["domain_nm"]), rel=1e-4
        )
    with h5py.File(out / "results.h5") as fh:
        settings = fh["entry/reduction/settings"]
        assert json.loads(settings["gisaxs/rod_fit"][()])["peak_shape"] == "lorentzian"
        assert settings["k_factor"][()] == 0.886
        assert settings["gisaxs/wavelength"][()] == pytest.approx(0.12398)
        assert settings["gisaxs/wavelength"].attrs["units"] == "nm"

    # nothing changed: all from checkpoints; --force redoes all, with the same result
    done = gixs("reduce", config, "--out", out, "--quiet")
    assert "reduced 4 frames (4 from checkpoints)" in done.stdout, done.stderr
    done = gixs("reduce", config, "--out", out, "--quiet", "--force")
    assert "reduced 4 frames (0 from checkpoints)" in done.stdout, done.stderr
    assert read_csv(out / "summary.csv") == new


@pytest.mark.parametrize(
    ("change", "redone"),
    [
        ({"incidence_angle_deg": 0.31}, 2),  # geometry of the GISAXS detector only
        ({"q_par_range_per_nm": [0.3, 2.3]}, 2),  # a cut setting
        ({}, 0),  # nothing
    ],
)
def test_each_detector_setting_keys_its_checkpoints(run, tmp_path, change, redone):
    out = tmp_path / "out"
    reduce_run(load_config(write_config(run, gisaxs={}, giwaxs={})), out, progress=False)
    again = reduce_run(
        load_config(write_config(run, gisaxs=change, giwaxs={})), out, progress=False
    )
    assert again.n_resumed == 4 - redone


def test_a_replaced_frame_and_a_moved_mask_are_reduced_again(run, tmp_path):
    out = tmp_path / "out"
    config = load_config(write_config(run, gisaxs={}))
    first = {r.file: r for r in reduce_run(config, out, progress=False).rows}
    # the same name, other bytes: the earlier frame (hexagonal) replaces the square one
    shutil.copy(DEMO / "gisaxs" / "gisaxs_00012.cbf", run / "gisaxs" / GISAXS[1])
    second = reduce_run(config, out, progress=False)
    assert second.n_resumed == 0
    fresh = reduce_run(config, tmp_path / "fresh", progress=False)
    assert [r.q1_per_nm for r in second.rows] == [r.q1_per_nm for r in fresh.rows]
    assert second.rows[1].q1_per_nm != first[f"gisaxs/{GISAXS[1]}"].q1_per_nm
    # a mask's contents are part of the key, not its name
    mask = np.zeros((195, 1475), dtype=np.uint8)
    np.save(run / "mask.npy", mask)
    masked = load_config(write_config(run, gisaxs={"mask": "mask.npy"}))
    assert reduce_run(masked, out, progress=False).n_resumed == 0
    assert reduce_run(masked, out, progress=False).n_resumed == 2
    mask[100:110, 700:760] = 1
    np.save(run / "mask.npy", mask)
    assert reduce_run(masked, out, progress=False).n_resumed == 0


def test_a_truncated_frame_is_not_checkpointed_and_is_read_again(run, tmp_path):
    out = tmp_path / "out"
    config = load_config(write_config(run, gisaxs={}))
    frame = run / "gisaxs" / GISAXS[1]
    whole = frame.read_bytes()
    frame.write_bytes(whole[: len(whole) // 2])  # still being written
    first = reduce_run(config, out, progress=False)
    assert first.n_bad == 1
    assert "read_error" in first.rows[1].flags
    assert not (out / "checkpoints").exists() or not list((out / "checkpoints").iterdir())
    frame.write_bytes(whole)  # now complete
    second = reduce_run(config, out, progress=False)
    assert (second.n_bad, second.n_resumed) == (0, 0)
    assert second.rows[1].symmetry == "square"


def test_a_checkpoint_is_data_never_code(run, tmp_path):
    out = tmp_path / "out"
    config = load_config(write_config(run, gisaxs={}))
    reduce_run(config, out, progress=False)
    path = out / "checkpoints" / "gisaxs_000000.json"
    document = json.loads(path.read_text())
    # a checkpoint naming another type is refused (and the chunk reduced again)
    document["data"]["__dataclass__"] = "Popen"
    path.write_text(json.dumps(document))
    (out / "checkpoints" / "gisaxs_000000.pkl").write_bytes(b"cos\nsystem\n(S'false'\ntR.")
    again = reduce_run(config, out, progress=False)
    assert again.n_resumed == 0
    assert json.loads(path.read_text())["data"]["__dataclass__"] == "Chunk"


# --- one run at a time, every file whole -----------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from pipeline.io import lock_output_dir
with lock_output_dir(Path(sys.argv[1]), command="gixs reduce live-loop.toml"):
    Path(sys.argv[2]).write_text("held")
    while Path(sys.argv[2]).exists():
        time.sleep(0.05)
"""


def test_a_second_run_on_a_held_folder_says_who_holds_it(run, tmp_path):
    out, flag = tmp_path / "out", tmp_path / "held"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(flag)], cwd=REPO)
    try:
        for _ in range(600):
            if flag.exists():
                break
            time.sleep(0.05)
        done = gixs("reduce", write_config(run, gisaxs={}), "--out", out, "--quiet")
    finally:
        flag.unlink(missing_ok=True)
        holder.wait(timeout=60)
    assert done.returncode == EXIT_USAGE
    (line,) = error_lines(done)
    assert f"pid {holder.pid} on {socket.gethostname()}" in line
    assert "gixs reduce live-loop.toml" in line
    assert "started 20" in line
    assert not (out / "results.h5").exists()
    # released: the folder is free again
    assert read_lock_holder(out) is None


def test_two_concurrent_runs_one_waits_out_the_other(run, tmp_path):
    out = tmp_path / "out"
    config = write_config(run, gisaxs={}, giwaxs={})
    cmd = [sys.executable, "-m", "pipeline.cli", "reduce", str(config), "--out", str(out)]
    procs = [
        subprocess.Popen(
            [*cmd, "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outcomes = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        outcomes.append((proc.returncode, stdout, stderr))
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [EXIT_OK, EXIT_USAGE], outcomes
    loser = next(o for o in outcomes if o[0] == EXIT_USAGE)
    winner = next(o for o in procs if o.returncode == EXIT_OK)
    assert f"in use by pid {winner.pid}" in loser[2]
    assert len(loser[2].strip().splitlines()) == 1
    with h5py.File(out / "results.h5") as fh:
        assert fh["entry/first_rod/q1"].shape == (2,)
        assert np.isfinite(fh["entry/first_rod/q1"][()]).all()
    assert not [p for p in out.rglob("*.tmp")]


def test_a_stale_lock_of_a_dead_run_is_taken_over(run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    holder = {
        "pid": pid,
        "host": socket.gethostname(),
        "started": "2026-11-30T01:00:00+00:00",
        "command": "gixs reduce old.toml",
    }
    (out / LOCK_NAME).write_text(json.dumps(holder))
    done = gixs("reduce", write_config(run, gisaxs={}), "--out", out, "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    assert f"taking over the lock left by pid {pid}" in done.stderr
    assert "no longer running" in done.stderr


# --- output problems: one line, exit 2, before any work --------------------------


def test_out_naming_a_file_is_one_error_line(run, tmp_path):
    target = tmp_path / "results.h5"
    target.write_bytes(b"not a folder")
    done = gixs("reduce", write_config(run, gisaxs={}), "--out", target, "--quiet")
    assert done.returncode == EXIT_USAGE
    (line,) = error_lines(done)
    assert str(target) in line
    assert "is a file" in line
    assert target.read_bytes() == b"not a folder"


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only), unmounted after the test."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, check=False)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr!r}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, *, leave_bytes: int) -> None:
    free = shutil.disk_usage(mount).free
    with open(mount / "filler", "wb") as fh:
        fh.write(b"\0" * max(free - leave_bytes, 0))


def test_a_full_disk_is_one_error_line_before_any_work(run, tmpfs):
    fill(tmpfs, leave_bytes=64 * 1024)
    done = gixs("reduce", write_config(run, gisaxs={}, giwaxs={}), "--out", tmpfs / "out")
    assert done.returncode == EXIT_USAGE, done.stderr
    (line,) = error_lines(done)
    assert "MB free" in line
    assert str(tmpfs / "out") in line
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (tmpfs / "out").iterdir()) == [LOCK_NAME]


def test_a_disk_that_fills_while_writing_is_an_output_error(tmpfs):
    fill(tmpfs, leave_bytes=4 * 1024)
    rows = [SeriesRow(time_s=float(i), detector="gisaxs", file=f"f{i}" * 40, dataset="", frame=0,
                      position=None) for i in range(2000)]  # fmt: skip
    with pytest.raises(OutputError, match="no space left"):
        write_csv(tmpfs / "summary.csv", rows)
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler"]


def test_a_read_only_folder_is_one_error_line(run, tmp_path, tmpfs):
    (tmpfs / "out").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    try:
        done = gixs("reduce", write_config(run, gisaxs={}), "--out", tmpfs / "out", "--quiet")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=False)
    assert done.returncode == EXIT_USAGE
    (line,) = error_lines(done)
    assert "read-only file system" in line
    assert str(tmpfs / "out") in line


@pytest.mark.parametrize("frames", [["gisaxs/*"], ["gisaxs/*.cbf", "gisaxs/*/*"]])
def test_out_inside_the_frames_folder_is_not_read_as_frames(run, frames):
    out = run / "gisaxs" / "out"
    done = gixs("reduce", write_config(run, gisaxs={"frames": ["gisaxs/*"]}), "--out", out)
    assert done.returncode == EXIT_OK, done.stderr  # the new, empty out/ is no frame
    # the second run finds the first one's outputs (plots, results.h5) in the folder
    done = gixs("reduce", write_config(run, gisaxs={"frames": frames}), "--out", out, "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    assert "reduced 2 frames" in done.stdout
    assert "bad frame" not in done.stderr


# --- user mask polarity ----------------------------------------------------------


def test_a_mask_of_the_other_polarity_is_refused_by_name(run, tmp_path):
    good = np.ones((195, 1475), dtype=np.uint8)  # 1 = good pixel, as some tools write
    good[:20, 600:700] = 0  # a beamstop
    np.save(run / "goodpixels.npy", good)
    config = write_config(run, gisaxs={"mask": "goodpixels.npy"})
    done = gixs("reduce", config, "--out", tmp_path / "o", "--quiet")
    assert done.returncode == EXIT_USAGE
    (line,) = error_lines(done)
    assert "goodpixels.npy" in line
    assert "nonzero = masked" in line
    assert "mask_invert = true" in line
    assert "q_perp_band" not in line  # no error about a setting the user never set
    config = write_config(run, gisaxs={"mask": "goodpixels.npy", "mask_invert": True})
    done = gixs("reduce", config, "--out", tmp_path / "o", "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    # gixs inspect: the same error, with its own option
    frame = run / "gisaxs" / GISAXS[1]
    args = ("inspect", frame, "--poni", run / "gisaxs.poni", "--incidence-angle", "0.3")
    done = gixs(*args, "--mask", run / "goodpixels.npy", "--json")
    assert done.returncode == EXIT_USAGE
    assert "--mask-invert" in done.stderr
    assert "mask_invert" not in done.stderr
    done = gixs(*args, "--mask", run / "goodpixels.npy", "--mask-invert", "--json")
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["symmetry"] == "square"


def test_a_mask_hiding_the_whole_band_is_refused_by_name(run, tmp_path):
    from pipeline.io import load_plan

    config = load_config(write_config(run, gisaxs={}))
    band = np.zeros(195 * 1475, dtype=np.uint8)
    band[load_plan(config.detectors[0], config).cut.pixel_index] = 1
    np.save(run / "band.npy", band.reshape(195, 1475))  # hides ~3 % of the detector
    line = refused_mask_line(run, tmp_path, "band.npy")
    assert "every pixel of the cut band" in line


def refused_mask_line(run: Path, tmp_path: Path, mask_name: str) -> str:
    """`gixs reduce` with the mask `mask_name`: refused (exit 2) in one line naming it."""
    done = gixs("reduce", write_config(run, gisaxs={"mask": mask_name}), "--out",
                tmp_path / "o", "--quiet")  # fmt: skip
    assert done.returncode == EXIT_USAGE, done.stderr
    (line,) = error_lines(done)
    assert mask_name in line
    assert "mask_invert = true" in line
    return line


@pytest.mark.parametrize("kept_fraction", [0.1, 0.3])
def test_a_mask_leaving_a_few_bins_of_the_band_is_refused_not_no_rod(run, tmp_path, kept_fraction):
    # an inverted beamstop mask hides most of the band but less than 75 % of the detector:
    # a cut of a few bins would come out "none" with exit 0
    from pipeline.io import load_plan

    config = load_config(write_config(run, gisaxs={}))
    plan = load_plan(config.detectors[0], config)
    mask = np.zeros((195, 1475), dtype=np.uint8)
    rows, cols = np.unravel_index(plan.cut.pixel_index, mask.shape)
    lo, hi = np.quantile(cols, [0.5 - kept_fraction / 2, 0.5 + kept_fraction / 2])
    hidden = (cols < lo) | (cols > hi)
    mask[rows[hidden], cols[hidden]] = 1
    mask[:, :200] = 1  # and some more, still far from 75 % of the detector
    np.save(run / "partial.npy", mask)
    assert "q_par bins" in refused_mask_line(run, tmp_path, "partial.npy")


def refused_n_bins_line(run: Path, tmp_path: Path, n_bins: int) -> str:
    """`gixs reduce` with `n_bins`: refused (exit 2) in one line."""
    done = gixs("reduce", write_config(run, gisaxs={"n_bins": n_bins}), "--out",
                tmp_path / "o", "--quiet")  # fmt: skip
    assert done.returncode == EXIT_USAGE, done.stderr
    (line,) = error_lines(done)
    return line


@pytest.mark.parametrize("n_bins", [10, 11])
def test_a_cut_of_fewer_bins_than_a_fit_needs_is_refused(run, tmp_path, n_bins):
    line = refused_n_bins_line(run, tmp_path, n_bins)
    assert f"the cut has {n_bins} q_par bins" in line
    assert "n_bins" in line


@pytest.mark.parametrize("n_bins", [12, 16, 25])
def test_bins_too_coarse_for_the_rods_are_refused_not_no_rod(run, tmp_path, n_bins):
    # bins of 0.08-0.18 nm^-1 swallow rods 0.04-0.06 wide: the square frames came out
    # "none" with exit 0; a bin may be at most half the widest rod (max_width_per_nm)
    line = refused_n_bins_line(run, tmp_path, n_bins)
    assert f"n_bins = {n_bins}" in line
    assert "n_bins >= 35" in line
    done = gixs("reduce", write_config(run, gisaxs={"n_bins": 35}), "--out",
                tmp_path / "p", "--quiet")  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    assert {r["symmetry"] for r in read_csv(tmp_path / "p" / "summary.csv")} == {"square"}


def test_frames_without_any_time_need_an_exposure_period(run, tmp_path):
    # TIFFs written by fabio carry no header time and no period: without exposure_period_s
    # the run would have no time axis (empty time_s, an empty rods-vs-time plot)
    (run / "tif").mkdir()
    for i, name in enumerate(GISAXS):
        data = read_frame(FrameRef(run / "gisaxs" / name)).data
        fabio.tifimage.TifImage(data=data.astype(np.int32)).write(str(run / "tif" / f"f_{i}.tif"))
    config = write_config(run, gisaxs={"frames": ["tif/*.tif"]})
    done = gixs("reduce", config, "--out", tmp_path / "o", "--quiet")
    assert done.returncode == EXIT_USAGE, done.stderr
    (line,) = error_lines(done)
    assert "no time stamp" in line
    assert "exposure_period_s" in line
    config = write_config(run, gisaxs={"frames": ["tif/*.tif"], "exposure_period_s": 7.5})
    done = gixs("reduce", config, "--out", tmp_path / "p", "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    rows = read_csv(tmp_path / "p" / "summary.csv")
    assert [float(r["time_s"]) for r in rows] == [7.5 * i for i in range(len(GISAXS))]
    assert all("time_from_order" in r["flags"] for r in rows)


# --- input problems are named, never "no rod" ------------------------------------


def test_unusable_frames_are_flagged_as_what_they_are(run, tmp_path):
    from detectors.io import write_cbf

    shape = (195, 1475)
    bad = {
        "zero.cbf": np.zeros(shape),
        "dead.cbf": np.full(shape, -2),
        "saturated.cbf": np.full(shape, 2**20 + 10),
    }
    for name, data in bad.items():
        write_cbf(run / "gisaxs" / name, data, timestamp=None, exposure_s=None,
                  period_s=None, position=None)  # fmt: skip
    fabio.edfimage.EdfImage(data=np.full(shape, np.nan, dtype=np.float32)).write(
        str(run / "gisaxs" / "nan.edf")
    )
    config = write_config(run, gisaxs={"frames": ["gisaxs/*.cbf", "gisaxs/*.edf"]})
    out = tmp_path / "o"
    done = gixs("reduce", config, "--out", out, "--quiet")
    assert done.returncode == EXIT_SOME_FRAMES_BAD, done.stderr
    rows = by_file(read_csv(out / "summary.csv"))
    codes = {
        "zero.cbf": "frame_all_zero",
        "dead.cbf": "frame_dead",
        "saturated.cbf": "frame_saturated",
        "nan.edf": "frame_all_nan",
    }
    for name, code in codes.items():
        row = rows[f"gisaxs/{name}"]
        assert row["flags"].startswith(f"{code}: "), row
        assert row["symmetry"] == ""  # not "none": nothing was fitted
        assert row["q1_nm-1"] == ""
        assert f"gisaxs/{name}" in done.stderr or name in done.stderr
    assert done.stderr.count("bad frame:") == 4
    for name in GISAXS:
        assert rows[f"gisaxs/{name}"]["symmetry"] == "square"
    with h5py.File(out / "results.h5") as fh:
        flags = [f.decode() for f in fh["entry/summary/flags"][()]]
    assert sum(f.startswith("frame_") for f in flags) == 4
    # gixs inspect says the same of one frame, with exit 1
    done = gixs("inspect", run / "gisaxs" / "zero.cbf", "--poni", run / "gisaxs.poni",
                "--incidence-angle", "0.3", "--kind", "gisaxs", "--json")  # fmt: skip
    assert done.returncode == EXIT_SOME_FRAMES_BAD, done.stderr
    record = json.loads(done.stdout)
    assert record["flags"].startswith("frame_all_zero: ")
    assert record["symmetry"] == ""


@pytest.mark.parametrize(
    ("table", "setting", "words"),
    [
        ("gisaxs", {"q1_window_per_nm": [3.0, 4.0]}, "q1_window_per_nm = [3, 4]"),
        ("giwaxs", {"peak_window_per_nm": [30.0, 35.0]}, "peak_window_per_nm = [30, 35]"),
        ("gisaxs", {"q_perp_band_per_nm": [40.0, 50.0]}, "q_perp"),
    ],
)
def test_settings_outside_the_cut_are_one_error_line(run, tmp_path, table, setting, words):
    config = write_config(run, **{table: setting})
    done = gixs("reduce", config, "--out", tmp_path / "o", "--quiet")
    assert done.returncode == EXIT_USAGE
    (line,) = error_lines(done)
    assert words in line
    assert not (tmp_path / "o" / "results.h5").exists()


@pytest.mark.parametrize(
    ("frames", "tried"),
    [("giwaxs_*.cbf", "the first and the last of the"), (None, "the only one listed fails")],
)
def test_a_wrong_detector_is_one_error_line_not_one_per_frame(run, tmp_path, frames, tried):
    # GIWAXS frames (Pilatus 300K, 619 x 487) under the GISAXS geometry (300K-W)
    for name in GIWAXS:
        shutil.copy(run / "giwaxs" / name, run / "gisaxs" / name)
    config = write_config(run, gisaxs={"frames": [f"gisaxs/{frames or GIWAXS[0]}"]})
    done = gixs("reduce", config, "--out", tmp_path / "o", "--quiet")
    assert done.returncode == EXIT_USAGE
    (line,) = error_lines(done)
    assert "[gisaxs] no frame can be read" in line
    assert tried in line
    assert "(619, 487)" in line or "619" in line


def test_a_wrong_h5_dataset_is_one_error_line_not_one_per_frame(run, tmp_path):
    frames = np.stack([fabio.open(str(run / "gisaxs" / n)).data for n in GISAXS])
    with h5py.File(run / "gisaxs" / "stack.h5", "w") as fh:
        fh["entry/data/data"] = frames
    config = write_config(
        run, gisaxs={"frames": ["gisaxs/stack.h5"], "h5_dataset": "/entry/data/wrong"}
    )
    done = gixs("reduce", config, "--out", tmp_path / "o", "--quiet")
    assert done.returncode == EXIT_USAGE, done.stderr
    (line,) = error_lines(done)
    assert "/entry/data/wrong" in line
    config = write_config(  # a bare stack: no times, so the frame period is given
        run,
        gisaxs={
            "frames": ["gisaxs/stack.h5"],
            "h5_dataset": "/entry/data/data",
            "exposure_period_s": 10.0,
        },
    )
    done = gixs("reduce", config, "--out", tmp_path / "o", "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    assert [r["symmetry"] for r in read_csv(tmp_path / "o" / "summary.csv")] == ["square"] * 2
    assert not math.isnan(float(read_csv(tmp_path / "o" / "summary.csv")[1]["q1_nm-1"]))


def test_waterfall_of_a_run_with_an_all_zero_frame_warns_nothing():
    # a bad all-zero frame is a row of zeros in the stacked cuts: no log10(0) warning
    # (pytest turns warnings into errors) and its row is drawn at the floor
    from pipeline.plots import waterfall_figure

    q = np.linspace(0.3, 2.4, 50)
    cuts = np.vstack([np.full(50, 20.0), np.zeros(50), np.full(50, 30.0)])
    fig = waterfall_figure(q, [0.0, 10.0, 20.0], cuts, kind="gisaxs")
    shown = fig.axes[0].images[0].get_array()
    assert np.all(np.isfinite(shown))
    assert shown[1].max() <= shown[0].min()
