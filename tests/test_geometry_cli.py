"""The geometry cases of a new user's files through the real `gixs` command.

Cases (../shared/cases/inputs): a generic-detector PONI and a version-1 PONI without a
Detector line (q1 0.83 nm^-1, square, with or without --detector; the override wins),
a version-1 PONI with a Detector line, a binned Rayonix, and an incidence angle given in
radians. Every refusal is one line with exit status 2.
"""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import fabio
import numpy as np
import pytest

from calibration.geometry import GIGeometry
from calibration.io import load_poni
from pipeline.cli import EXIT_OK, EXIT_USAGE
from sample_data.synth import GisaxsState, gisaxs_frame

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "poni"
DEMO = ROOT / "sample_data" / "demo"
SQUARE = DEMO / "gisaxs" / "gisaxs_00033.cbf"  # the cases' frame: square, q1 = 0.83 nm^-1


def run_gixs(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def inspect_json(poni: Path, *extra: str, frame: Path = SQUARE) -> dict:
    done = run_gixs("inspect", frame, "--poni", poni, "--incidence-angle", "0.3", "--json", *extra)
    assert done.returncode == EXIT_OK, done.stderr
    return json.loads(done.stdout)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == EXIT_USAGE, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("poni", "override"),
    [
        ("generic_detector.poni", None),
        ("generic_detector.poni", "Pilatus300kw"),
        ("v1_no_detector.poni", None),
        ("v1_no_detector.poni", "pilatus 300k-w"),
        ("v1_named.poni", None),
    ],
)
def test_inspect_reads_generic_and_version_1_ponis(poni, override):
    record = inspect_json(DATA / poni, *(["--detector", override] if override else []))
    assert record["symmetry"] == "square"
    assert record["q1_nm-1"] == pytest.approx(0.83, rel=5e-3)
    assert "incidence_mismatch" not in record["flags"]


def test_override_wins_over_the_ponis_pixel_size(tmp_path):
    # a generic PONI claiming 160 um pixels: wrong q without the override, right with it
    wrong = tmp_path / "wrong_pixels.poni"
    wrong.write_text((DATA / "generic_detector.poni").read_text().replace("0.000172", "0.00016"))
    assert load_poni(wrong).pixel_size_m == (1.6e-4, 1.6e-4)
    plain = inspect_json(wrong)  # the frame contradicts this geometry, and says so
    assert plain["q1_nm-1"] != pytest.approx(0.83, rel=0.02)
    assert "incidence_mismatch: measured" in plain["flags"]
    record = inspect_json(wrong, "--detector", "Pilatus300kw")
    assert (record["symmetry"], record["q1_nm-1"]) == ("square", pytest.approx(0.83, rel=5e-3))


def test_wrong_override_is_one_error_line():
    line = one_error_line(
        run_gixs(
            "inspect",
            SQUARE,
            "--poni",
            DATA / "generic_detector.poni",
            "--incidence-angle",
            "0.3",
            "--detector",
            "Pilatus300k",
        )
    )
    assert "(619, 487)" in line
    assert str(SQUARE) in line


def _run_folder(tmp_path: Path, poni: str, extra: str = "") -> Path:
    shutil.copy(SQUARE, tmp_path / "frame_q1_0.83.cbf")
    shutil.copy(DATA / poni, tmp_path / poni)
    config = tmp_path / "run.toml"
    config.write_text(
        f'schema_version = 1\n[gisaxs]\nframes = ["frame_q1_0.83.cbf"]\nponi = "{poni}"\n{extra}'
    )
    return config


@pytest.mark.parametrize(
    ("poni", "extra"),
    [
        # the case's run.toml: generic PONI and the detector key
        ("generic_detector.poni", 'detector = "Pilatus300kw"\nincidence_angle_deg = 0.3\n'),
        ("v1_no_detector.poni", "incidence_angle_deg = 0.3\n"),
    ],
)
def test_reduce_with_generic_poni_and_detector_key(tmp_path, poni, extra):
    config = _run_folder(tmp_path, poni, extra)
    done = run_gixs("reduce", config, "--out", tmp_path / "out", "--quiet")
    assert done.returncode == EXIT_OK, done.stderr
    with open(tmp_path / "out" / "summary.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["symmetry"] == "square"
    assert float(row["q1_nm-1"]) == pytest.approx(0.83, rel=5e-3)
    assert row["flags"] == ""


def test_incidence_in_radians_is_refused_by_every_command(tmp_path):
    poni = DATA / "radians_case_gisaxs.poni"
    for command in (["inspect"], ["calibrate", "incidence"]):
        line = one_error_line(
            run_gixs(*command, SQUARE, "--poni", poni, "--incidence-angle", "0.005236")
        )
        assert "--incidence-angle 0.005236" in line
        assert "0.005236 looks like 0.3 deg given in radians" in line
    config = _run_folder(tmp_path, "radians_case_gisaxs.poni", "incidence_angle_deg = 0.005236\n")
    line = one_error_line(run_gixs("reduce", config, "--out", tmp_path / "out"))
    assert str(config) in line
    assert "[gisaxs] incidence_angle_deg = 0.005236" in line
    assert "0.3 deg given in radians" in line
    assert not (tmp_path / "out" / "results.h5").exists()


@pytest.mark.parametrize("band", ["[0.03, 0.08]", "[0.1, 0.2]", "[-0.5, -0.1]"])
def test_rod_band_below_the_sample_horizon_is_refused(tmp_path, band):
    # values meant in A^-1, or a band in the shadow of the surface: every frame came out
    # "none" with no flag and exit 0
    config = _run_folder(
        tmp_path, "v1_named.poni", f"incidence_angle_deg = 0.3\nq_perp_band_per_nm = {band}\n"
    )
    line = one_error_line(run_gixs("reduce", config, "--out", tmp_path / "out"))
    assert str(config) in line
    assert f"q_perp_band_per_nm = {band}" in line
    assert "below the sample horizon (q_perp = k sin alpha_i = 0.265 nm^-1" in line
    assert '"yoneda" (0.280-0.480 nm^-1)' in line
    inspect = one_error_line(
        run_gixs("inspect", SQUARE, "--poni", DEMO / "gisaxs.poni", "--incidence-angle", "0.3",
                 "--band", *band.strip("[]").split(", "))
    )  # fmt: skip
    assert "below the sample horizon" in inspect


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("detector", "Eiger2_4M", "measured with the detector 'Eiger2_4M' ("),
        ("wavelength_m", 0.7e-10, "measured at wavelength_m = 7e-11 ("),
    ],
)
def test_resolution_of_another_set_up_is_refused(tmp_path, key, value, said):
    # the instrument width of another detector or energy gave a domain size, unflagged
    resolution = json.loads((DEMO / "resolution_giwaxs.json").read_text())
    resolution[key] = value
    (tmp_path / "other.json").write_text(json.dumps(resolution))
    config = tmp_path / "run.toml"
    config.write_text(
        f'schema_version = 1\n[giwaxs]\nframes = ["{DEMO / "giwaxs" / "giwaxs_00033.cbf"}"]\n'
        f'poni = "{DEMO / "giwaxs.poni"}"\nincidence_angle_deg = 0.3\nresolution = "other.json"\n'
    )
    line = one_error_line(run_gixs("reduce", config, "--out", tmp_path / "out"))
    assert str(tmp_path / "other.json") in line
    assert said in line
    assert f"gixs calibrate resolution FRAME --poni {DEMO / 'giwaxs.poni'}" in line
    frame, poni = DEMO / "giwaxs" / "giwaxs_00033.cbf", DEMO / "giwaxs.poni"
    line = one_error_line(
        run_gixs("inspect", frame, "--poni", poni, "--incidence-angle", "0.3",
                 "--resolution", tmp_path / "other.json")
    )  # fmt: skip
    assert said in line


def test_incidence_beyond_the_detector_is_refused():
    line = one_error_line(
        run_gixs("inspect", SQUARE, "--poni", DEMO / "gisaxs.poni", "--incidence-angle", "5.236")
    )
    assert "beyond the detector's reach" in line
    assert "5.236 looks like 0.3 deg given in mrad" in line


def test_inspect_flags_an_incidence_angle_the_frame_contradicts():
    record = inspect_json(DEMO / "gisaxs.poni")
    assert record["flags"] == ""
    done = run_gixs(
        "inspect", SQUARE, "--poni", DEMO / "gisaxs.poni", "--incidence-angle", "0.25", "--json"
    )
    assert done.returncode == EXIT_OK, done.stderr
    flags = json.loads(done.stdout)["flags"]
    assert "incidence_mismatch: measured 0.30 deg vs given 0.25 deg (specular spot)" in flags


def test_calibrate_incidence_takes_the_detector_override(tmp_path):
    bare = tmp_path / "bare.poni"  # no Detector line, no pixel size: only the override
    bare.write_text(
        "".join(
            line
            for line in (DATA / "v1_no_detector.poni").read_text().splitlines(True)
            if not line.startswith("PixelSize")
        )
    )
    args = ["calibrate", "incidence", SQUARE, "--poni", bare, "--incidence-angle", "0.3"]
    line = one_error_line(run_gixs(*args))
    assert str(bare) in line
    assert "--detector" in line
    done = run_gixs(*args, "--detector", "Pilatus300kw")
    assert done.returncode == EXIT_OK, done.stderr
    assert "specular: measured incidence angle 0.300" in done.stdout


def test_calibrate_resolution_takes_the_detector_override(tmp_path):
    poni = tmp_path / "giwaxs_no_detector.poni"  # version 2 without its Detector line
    poni.write_text(
        "".join(
            line
            for line in (DEMO / "giwaxs.poni").read_text().splitlines(True)
            if not line.startswith("Detector:")
        )
    )
    frame = DEMO / "calibrants" / "giwaxs_lab6.cbf"
    args = ["calibrate", "resolution", frame, "--poni", poni, "--calibrant", "LaB6"]
    line = one_error_line(run_gixs(*args, "--out", tmp_path / "r0.json"))
    assert "lacks the key Detector" in line
    done = run_gixs(*args, "--out", tmp_path / "r.json", "--detector", "Pilatus300k")
    assert done.returncode == EXIT_OK, done.stderr
    reference = json.loads((DEMO / "resolution_giwaxs.json").read_text())
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["detector"] == "Pilatus300k"
    assert written["model"]["fwhm0_per_nm"] == pytest.approx(
        reference["model"]["fwhm0_per_nm"], rel=0.05
    )


@pytest.mark.slow
def test_binned_rayonix_reduces_2048_frames(tmp_path):
    # the case's PONI: Rayonix MX225 read out 3 x 3 binned; a 16-bit TIFF as written
    poni = DATA / "rayonix_binned3x3.poni"
    geometry = GIGeometry.create(load_poni(poni), incidence_angle_deg=0.3)
    frame = gisaxs_frame(geometry, geometry.q_maps(), GisaxsState("square", 0.83, 90.0), rng=0)
    path = tmp_path / "rayonix_00001.tif"
    fabio.tifimage.TifImage(data=np.clip(frame, 0, 65535).astype(np.uint16)).write(str(path))
    record = inspect_json(poni, frame=path)
    assert (record["symmetry"], record["q1_nm-1"]) == ("square", pytest.approx(0.83, rel=5e-3))
