"""PONI and resolution files: round trips and errors that name the file and the key."""

import json
from pathlib import Path

import pytest

from calibration.geometry import DetectorGeometry
from calibration.io import load_poni, load_resolution, save_poni, save_resolution
from calibration.resolution import InstrumentResolution
from detectors.errors import GeometryError

PONI_V2 = """\
# Calibration done by hand
poni_version: 2
Detector: Pilatus300k
Detector_config: {"pixel1": 0.000172, "pixel2": 0.000172}
Distance: 0.25
Poni1: 0.1365
Poni2: 0.042
Rot1: 0.001
Rot2: -0.002
Rot3: 0
Wavelength: 1.2398e-10
"""


def _resolution() -> InstrumentResolution:
    return InstrumentResolution(
        calibrant="LaB6",
        shape="gaussian",
        wavelength_m=1.2398e-10,
        line_q_per_nm=(15.115, 21.376),
        line_fwhm_per_nm=(0.151, 0.158),
        line_fwhm_err_per_nm=(0.0007, 0.0009),
        line_lorentz_fraction=(0.0, 0.0),
        fwhm0_per_nm=0.14,
        relative_fwhm=0.004,
        model="quadrature",
        skipped_lines=("LaB6 line at q = 26.181 nm^-1: too weak",),
        detector="Pilatus300k",
    )


@pytest.mark.parametrize("orientation", [1, 2, 3, 4])
def test_poni_round_trips_with_its_detector_orientation(tmp_path: Path, orientation: int) -> None:
    geometry = DetectorGeometry(
        "Pilatus300kw", 0.578, 0.03, 0.12, 1.2398e-10, 1e-3, -2e-3, 0.0, orientation
    )
    path = tmp_path / "gisaxs.poni"
    save_poni(path, geometry)
    assert load_poni(path) == geometry


def test_poni_version_2_without_orientation_gets_pyfai_default(tmp_path: Path) -> None:
    path = tmp_path / "v2.poni"
    path.write_text(PONI_V2)
    geometry = load_poni(path)
    assert geometry == DetectorGeometry(
        "Pilatus300k", 0.25, 0.1365, 0.042, 1.2398e-10, 0.001, -0.002, 0.0, orientation=3
    )


@pytest.mark.parametrize(
    ("line_start", "key"),
    [
        ("Distance", "Distance"),
        ("Poni1", "Poni1"),
        ("Poni2", "Poni2"),
        ("Wavelength", "Wavelength"),
        ("Detector:", "Detector"),
        ("Rot3", "Rot3"),
    ],
)
def test_poni_missing_key_is_named_on_one_line(tmp_path: Path, line_start: str, key: str) -> None:
    path = tmp_path / "broken.poni"
    path.write_text("".join(ln for ln in PONI_V2.splitlines(True) if not ln.startswith(line_start)))
    with pytest.raises(GeometryError, match=f"lacks the key {key}") as info:
        load_poni(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_poni_version_1_without_detector_name_or_pixel_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v1.poni"
    text = PONI_V2.replace("poni_version: 2\n", "").replace("Detector: Pilatus300k\n", "")
    path.write_text(text.replace("Detector_config", "# Detector_config"))
    with pytest.raises(GeometryError, match=r"no pixel size.*PixelSize1"):
        load_poni(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such PONI file"),
        (b"\xff\xfe\x00 not text", "cannot read the PONI file"),
        (PONI_V2.replace("0.25", "abc").encode(), "cannot read the PONI file"),
        (PONI_V2.replace("Pilatus300k", "NoSuchDetector").encode(), "knows no detector called"),
    ],
)
def test_unreadable_poni_names_the_file(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.poni"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GeometryError, match=match) as info:
        load_poni(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_resolution_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    save_resolution(path, _resolution())
    assert load_resolution(path) == _resolution()
    document = json.loads(path.read_text())
    assert document["schema_version"] == 1
    assert document["lines"][0]["fwhm_per_nm"] == pytest.approx(0.151)
    assert document["model"]["q_range_per_nm"] == [15.115, 21.376]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("calibrant"), "lacks the key calibrant"),
        (lambda d: d["lines"][1].pop("fwhm_err_per_nm"), r"lines\[1\]\.fwhm_err_per_nm"),
        (lambda d: d.update(extra=1), "unknown key extra"),
        (lambda d: d.update(schema_version=99), "schema_version 99"),
        (lambda d: d["model"].update(fwhm0_per_nm="wide"), "model.fwhm0_per_nm"),
        (lambda d: d["lines"][0].update(fwhm_per_nm=-1.0), "line widths"),
    ],
)
def test_bad_resolution_file_names_file_and_key(tmp_path: Path, edit, match: str) -> None:
    path = tmp_path / "res.json"
    save_resolution(path, _resolution())
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    with pytest.raises(GeometryError, match=match) as info:
        load_resolution(path)
    assert str(path) in str(info.value)


def test_missing_or_non_json_resolution_file(tmp_path: Path) -> None:
    with pytest.raises(GeometryError, match="resolution file not found"):
        load_resolution(tmp_path / "none.json")
    path = tmp_path / "res.json"
    path.write_text("{not json")
    with pytest.raises(GeometryError, match="cannot read the resolution file as JSON"):
        load_resolution(path)
