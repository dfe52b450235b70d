"""The batch run and the `gixs` command on a small seeded demo, as a user runs them."""

import csv
import json
import math
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from silx.io.nxdata import NXdata

from pipeline.batch import reduce_run
from pipeline.cli import EXIT_OK, EXIT_SOME_FRAMES_BAD, EXIT_USAGE, main
from pipeline.io import load_config
from pipeline.timeseries import COLUMNS
from sample_data.io import write_demo

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A small demo run: 12 GISAXS frames (all phases) and 8 GIWAXS frames."""
    return write_demo(tmp_path_factory.mktemp("demo") / "run", seed=1, n_gisaxs=12, n_giwaxs=8)


def truth_of(config: Path) -> dict[str, dict]:
    return {t["file"]: t for t in json.loads((config.parent / "truth.json").read_text())}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_reduce_matches_truth_and_writes_valid_nexus(demo, tmp_path):
    out = reduce_run(load_config(demo), tmp_path / "out", progress=False, now=NOW)
    truth = truth_of(demo)
    rows = read_csv(out.csv)
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 20
    for row in rows:
        expected = truth[row["file"]]
        if row["detector"] == "gisaxs":
            if expected["symmetry"] == "pseudo-hexagonal":
                # known limit: some rhombic angles (72-74 deg) stay undecided, with both
                # spacings given; the committed demo's angles all come out right
                assert row["symmetry"] in ("pseudo-hexagonal", "unknown"), row["file"]
            else:
                assert row["symmetry"] == expected["symmetry"], row["file"]
            if expected["q1_nm-1"] is None:
                assert row["q1_nm-1"] == ""
            elif row["symmetry"] != "unknown":
                # rhombic rods split: q1 within 1 % here (0.04 % on the committed demo)
                rel = 1e-2 if expected["symmetry"] == "pseudo-hexagonal" else 5e-3
                assert float(row["q1_nm-1"]) == pytest.approx(expected["q1_nm-1"], rel=rel)
        else:
            fwhm = float(row["fwhm200_nm-1"])
            assert fwhm == pytest.approx(expected["fwhm200_nm-1"], rel=0.03), row["file"]
            # the instrumental width (0.25 nm^-1 in the demo) is removed before Scherrer
            assert float(row["fwhm200_corr_nm-1"]) < fwhm
            assert float(row["domain_nm"]) == pytest.approx(expected["domain_nm"], rel=0.05)
            # every row says how the size was measured: the cube line, K = 1 on its breadth
            assert (row["scherrer_method"], float(row["scherrer_k"])) == ("cube_profile", 1.0)
            breadth = float(row["breadth200_corr_nm-1"])
            assert float(row["domain_nm"]) == pytest.approx(2 * math.pi / breadth, rel=1e-5)
        assert float(row["time_s"]) == pytest.approx(expected["time_s"])
    with h5py.File(out.nexus) as fh:
        assert fh.attrs["default"] == "entry"
        for name in ("first_rod", "peak200", "gisaxs_cuts", "giwaxs_cuts"):
            nxdata = NXdata(fh["entry"][name])
            assert nxdata.is_valid, (name, nxdata.issues)
        cuts = fh["entry/gisaxs_cuts/intensity"]
        assert cuts.shape == (12, fh["entry/gisaxs_cuts/q_par"].shape[0])
        process = fh["entry/reduction"]
        assert "incidence_angle_deg = 0.3" in process["config/data"][()].decode()
        assert process["inputs/file_name"].shape == (20,)
        assert process["settings/k_factor"][()] == 1.0
        assert process["settings/scherrer_method"][()].decode() == "cube_profile"
        assert fh["entry/peak200/domain"].attrs["scherrer_method"] == "cube_profile"
        assert fh["entry/peak200/breadth_corr"].attrs["units"] == "1/nm"
    assert [p.name for p in out.plots] == [
        "rods_vs_time.png",
        "fwhm200_vs_time.png",
        "waterfall_gisaxs.png",
        "waterfall_giwaxs.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in out.plots)


def test_resumed_run_equals_uninterrupted_run(demo, tmp_path):
    config = load_config(demo)
    whole = reduce_run(config, tmp_path / "whole", progress=False, now=NOW)
    # interrupt: keep only the first checkpoint of the second run, as a kill would
    part = tmp_path / "part"
    reduce_run(config, part, jobs=2, progress=False, now=NOW)
    checkpoints = sorted((part / "checkpoints").iterdir())
    for extra in checkpoints[1:]:
        extra.unlink()
    resumed = reduce_run(config, part, jobs=2, progress=False, now=NOW)
    assert resumed.n_resumed == 12  # the kept checkpoint: all 12 GISAXS frames
    assert read_csv(resumed.csv) == read_csv(whole.csv)
    with h5py.File(whole.nexus) as a, h5py.File(resumed.nexus) as b:
        np.testing.assert_array_equal(
            a["entry/gisaxs_cuts/intensity"][()], b["entry/gisaxs_cuts/intensity"][()]
        )


def test_bad_frame_is_flagged_and_the_rest_reduced(demo, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo.parent, run)
    bad = run / "gisaxs" / "gisaxs_00004.cbf"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated
    (run / "gisaxs" / "gisaxs_00005.cbf").write_bytes(b"")  # empty
    code = main(["reduce", str(run / "demo.toml"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == EXIT_SOME_FRAMES_BAD
    rows = read_csv(tmp_path / "o" / "summary.csv")
    flagged = {r["file"]: r["flags"] for r in rows if "read_error" in r["flags"]}
    assert set(flagged) == {"gisaxs/gisaxs_00004.cbf", "gisaxs/gisaxs_00005.cbf"}
    assert "empty" in flagged["gisaxs/gisaxs_00005.cbf"]
    others = [r for r in rows if r["detector"] == "gisaxs" and r["file"] not in flagged]
    assert len(others) == 10
    assert all(
        r["symmetry"] in ("none", "hexagonal", "pseudo-hexagonal", "square", "unknown")
        for r in others
    )
    assert any(r["symmetry"] == "square" for r in others)


def run_gixs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_cli_reduce_and_inspect_as_subprocess(demo, tmp_path):
    done = run_gixs("reduce", str(demo), "--out", str(tmp_path / "o"), "--jobs", "2", "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    assert "wrote" in done.stdout
    assert (tmp_path / "o" / "results.h5").exists()

    truth = truth_of(demo)
    square = demo.parent / "gisaxs" / "gisaxs_00011.cbf"
    done = run_gixs(
        "inspect", str(square), "--poni", str(demo.parent / "gisaxs.poni"),
        "--incidence-angle", "0.3", "--detector", "PILATUS300KW", "--json",
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr
    record = json.loads(done.stdout)
    assert tuple(record) == COLUMNS
    assert record["symmetry"] == "square"
    assert record["q1_nm-1"] == pytest.approx(truth["gisaxs/gisaxs_00011.cbf"]["q1_nm-1"], 5e-3)
    assert record["spacing_nm"] == pytest.approx(2 * math.pi / record["q1_nm-1"])

    giwaxs = demo.parent / "giwaxs" / "giwaxs_00007.cbf"
    args = ["--poni", str(demo.parent / "giwaxs.poni"), "--incidence-angle", "0.3", "--json"]
    plain = json.loads(run_gixs("inspect", str(giwaxs), *args).stdout)
    assert plain["detector"] == "giwaxs"  # decided from the q range
    assert "no_instrument_correction" in plain["flags"]
    resolution = str(demo.parent / "resolution_giwaxs.json")
    corrected = json.loads(
        run_gixs("inspect", str(giwaxs), *args, "--resolution", resolution).stdout
    )
    expected = truth["giwaxs/giwaxs_00007.cbf"]
    assert corrected["fwhm200_nm-1"] == pytest.approx(expected["fwhm200_nm-1"], rel=0.03)
    assert corrected["domain_nm"] == pytest.approx(expected["domain_nm"], rel=0.05)
    assert plain["domain_nm"] < corrected["domain_nm"]
    # the study's convention, K = 1 on the FWHM, stays available and is said so
    study = json.loads(
        run_gixs(
            "inspect", str(giwaxs), *args, "--resolution", resolution,
            "--scherrer-method", "fwhm", "--k-factor", "1",
        ).stdout
    )  # fmt: skip
    assert (study["scherrer_method"], study["scherrer_k"]) == ("fwhm", 1.0)
    assert study["domain_nm"] == pytest.approx(2 * math.pi / study["fwhm200_corr_nm-1"])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d, t: (t / "e.cbf").write_bytes(b"") or ["inspect", str(t / "e.cbf")], "empty"),
        (lambda d, t: ["inspect", str(d.parent / "giwaxs" / "giwaxs_00000.cbf")], "shape"),
        (lambda d, t: ["reduce", str(_edit(d, t, "n_bins", "n_binz"))], "unknown key 'n_binz'"),
        (lambda d, t: ["inspect", str(_no_frames_h5(t))], "no frame dataset"),
        (
            lambda d, t: ["inspect", str(d.parent / "gisaxs/gisaxs_00000.cbf"), "--max-nfev=3"],
            "--max-nfev 3: give an integer in [5, 100000]",
        ),
        (
            lambda d, t: [
                "inspect",
                str(d.parent / "gisaxs/gisaxs_00000.cbf"),
                "--max-nfev=" + "9" * 20,
            ],
            "give an integer in [5, 100000]",
        ),
        (  # a GISAXS frame forced to GIWAXS
            lambda d, t: ["inspect", str(d.parent / "gisaxs/gisaxs_00000.cbf"), "--kind=giwaxs"],
            "none of the giwaxs range 15.5-23.5 nm^-1 (the kind from --kind): drop --kind",
        ),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_2(demo, tmp_path, make, expected):
    args = make(demo, tmp_path)
    if args[0] == "inspect":
        args += ["--poni", str(demo.parent / "gisaxs.poni"), "--incidence-angle", "0.3"]
    done = run_gixs(*args)
    assert done.returncode == EXIT_USAGE
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]


def test_a_fit_at_its_evaluation_limit_names_the_setting_that_raises_it(demo, tmp_path):
    frame = demo.parent / "giwaxs" / "giwaxs_00007.cbf"
    args = ["--poni", str(demo.parent / "giwaxs.poni"), "--incidence-angle", "0.3", "--json"]
    limited = run_gixs("inspect", str(frame), *args, "--max-nfev", "5")
    assert limited.returncode == EXIT_OK, limited.stderr
    record = json.loads(limited.stdout)
    assert "stopped at its evaluation limit (max_nfev = 5)" in record["flags"]
    assert "--max-nfev of gixs inspect" in record["flags"]
    assert record["domain_nm"] is None  # a missing value, not a number
    config = _edit(demo, tmp_path, "[giwaxs]", "[giwaxs]\nmax_nfev = 5")
    done = run_gixs("reduce", str(config), "--out", str(tmp_path / "out"), "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    with open(tmp_path / "out" / "summary.csv", newline="") as fh:
        giwaxs = [r for r in csv.DictReader(fh) if r["detector"] == "giwaxs"]
    assert any("max_nfev = 5" in r["flags"] for r in giwaxs)
    assert all(r["domain_nm"] == "" for r in giwaxs if "max_nfev" in r["flags"])  # no value


@pytest.mark.parametrize("n_bins", ["auto", 139])
def test_an_instrument_narrower_than_the_pixels_names_the_resolution_file(demo, tmp_path, n_bins):
    # a resolution file with a FWHM of 0.01 nm^-1: the automatic bins (two pixel columns,
    # 0.058 nm^-1) cannot resolve it, and no instrument is that narrow: the file is named
    resolution = json.loads((demo.parent / "resolution_giwaxs.json").read_text())
    for line in resolution["lines"]:
        line["fwhm_per_nm"] = 0.01
    resolution["model"]["fwhm0_per_nm"] = 0.01
    narrow = tmp_path / "narrow.json"
    narrow.write_text(json.dumps(resolution))
    giwaxs = demo.read_text().split("[giwaxs]\n")[1]
    edited = giwaxs.replace('"resolution_giwaxs.json"', f'"{narrow}"', 1)
    edited = edited.replace('n_bins = "auto"', f"n_bins = {n_bins}" if n_bins != "auto" else "")
    config = demo.parent / f"narrow_{n_bins}.toml"
    config.write_text(demo.read_text().replace(giwaxs, edited, 1))
    done = run_gixs("reduce", str(config), "--out", str(tmp_path / "out"), "--quiet")
    assert done.returncode == EXIT_USAGE, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"check {narrow} (gixs calibrate resolution)" in line
    assert line.endswith("; or set n_bins >= 1600")  # not "auto": it has the same bins


def test_bins_too_coarse_for_a_plausible_instrument_ask_for_bins_not_a_new_file(demo, tmp_path):
    # the demo's 0.25 nm^-1 instrument with n_bins = 40 (0.2 nm^-1 bins): more bins or
    # "auto" (two pixel columns) fix it; the resolution file is not to blame
    giwaxs = demo.read_text().split("[giwaxs]\n")[1]
    config = demo.parent / "coarse.toml"
    config.write_text(
        demo.read_text().replace(giwaxs, giwaxs.replace('n_bins = "auto"', "n_bins = 40"), 1)
    )
    done = run_gixs("reduce", str(config), "--out", str(tmp_path / "out"), "--quiet")
    assert done.returncode == EXIT_USAGE, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith('set n_bins >= 65 or n_bins = "auto"'), line
    assert "resolution" not in line


def test_poni_with_missing_key_is_named(demo, tmp_path):
    poni = tmp_path / "bad.poni"
    text = (demo.parent / "gisaxs.poni").read_text()
    poni.write_text("\n".join(li for li in text.splitlines() if not li.startswith("Distance")))
    done = run_gixs(
        "inspect", str(demo.parent / "gisaxs" / "gisaxs_00000.cbf"),
        "--poni", str(poni), "--incidence-angle", "0.3",
    )  # fmt: skip
    assert done.returncode == EXIT_USAGE
    assert str(poni) in done.stderr
    assert "Distance" in done.stderr


def test_help_documents_each_command():
    for command in ("reduce", "inspect", "calibrate", "make-sample-data"):
        done = run_gixs(command, "--help")
        assert done.returncode == 0
        assert "usage: gixs" in done.stdout


def _edit(config: Path, tmp_path: Path, old: str, new: str) -> Path:
    path = config.parent / f"edited_{new}.toml"
    path.write_text(config.read_text().replace(old, new, 1))
    return path


def _no_frames_h5(tmp_path: Path) -> Path:
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as fh:
        fh["entry/notes"] = np.arange(3)
    return path


def test_time_axis_follows_headers_when_file_names_do_not(demo, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo.parent, run)
    first, last = run / "gisaxs" / "gisaxs_00000.cbf", run / "gisaxs" / "gisaxs_00011.cbf"
    swap = run / "gisaxs" / "swap.cbf"
    first.rename(swap)
    last.rename(first)
    swap.rename(last)  # now the name order is not the time order
    out = reduce_run(load_config(run / "demo.toml"), tmp_path / "o", progress=False, now=NOW)
    rows = read_csv(out.csv)
    times = [float(r["time_s"]) for r in rows]
    assert times == sorted(times)
    by_time = {float(r["time_s"]): r for r in rows if r["detector"] == "gisaxs"}
    with h5py.File(out.nexus) as fh:
        group = fh["entry/first_rod"]
        for time_s, symmetry in zip(group["time"][()], group["symmetry"][()], strict=True):
            assert by_time[time_s]["symmetry"] == symmetry.decode()
        assert group["time"][0] == 110.0  # gisaxs_00000.cbf now holds the frame taken at 110 s


def test_saturated_pixels_of_a_frame_are_left_out(demo):
    from dataclasses import replace

    from detectors.io import read_frame
    from detectors.pilatus import SATURATION_COUNTS
    from pipeline.io import expand_frames, load_plan
    from pipeline.reduce import reduce_frame

    config = load_config(demo)
    settings = config.settings("gisaxs")
    plan = load_plan(settings, config)
    frame = read_frame(expand_frames(settings)[-1], shape=plan.geometry.detector.shape)
    clean = reduce_frame(frame, plan)
    data = frame.data.copy()
    band = plan.cut.pixel_index[::7]  # every 7th pixel of the cut saturates
    data.reshape(-1)[band] = SATURATION_COUNTS
    hit = reduce_frame(replace(frame, data=data), plan)
    assert np.nanmax(hit.intensity) < 2 * np.nanmax(clean.intensity)
    assert hit.rod is not None
    assert hit.rod.symmetry == clean.rod.symmetry
