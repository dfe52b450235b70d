"""Every PONI that pyFAI reads: kept as pyFAI builds it, or refused saying what to add.

The oracle is pyFAI itself: ``pyFAI.load`` on the same file must give the same detector
(shape, pixel sizes, binning, orientation) and the same pixel positions and angles.
"""

import json
import math
from pathlib import Path

import fabio
import numpy as np
import pyFAI
import pytest
from pyFAI.detectors import detector_factory
from pyFAI.integrator.azimuthal import AzimuthalIntegrator
from pyFAI.io.ponifile import PoniFile
from pyFAI.spline import Spline

from calibration.geometry import DetectorGeometry, GIGeometry
from calibration.incidence import check_orientation
from calibration.io import load_poni
from detectors.errors import FrameReadError, GeometryError
from detectors.io import read_frame
from pipeline.inspect import inspect_frame
from sample_data.synth import GisaxsState, gisaxs_frame

DATA = Path(__file__).parent / "data" / "poni"
DEMO_SQUARE_FRAME = (
    Path(__file__).parents[1] / "sample_data" / "demo" / "gisaxs" / "gisaxs_00033.cbf"
)
WAVELENGTH_M = 1.2398e-10
GISAXS_PONI = {"dist": 0.578, "poni1": 0.029, "poni2": 0.1268, "wavelength": WAVELENGTH_M}
# pixels whose positions and angles are compared with pyFAI's (row, col), corners included
ROWS = np.array([0, 3, 57, 120])
COLS = np.array([0, 11, 200, 90])


def _geometry_lines(rot: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> str:
    return (
        "Distance: 0.578\nPoni1: 0.029\nPoni2: 0.1268\n"
        f"Rot1: {rot[0]}\nRot2: {rot[1]}\nRot3: {rot[2]}\nWavelength: 1.2398e-10\n"
    )


def _pyfai_poni(tmp_path: Path, name: str, config: dict, *, rot=(0.0, 0.0, 0.0)) -> Path:
    """A PONI file written by pyFAI's own AzimuthalIntegrator.save."""
    detector = detector_factory(name, config)
    ai = AzimuthalIntegrator(
        detector=detector, rot1=rot[0], rot2=rot[1], rot3=rot[2], **GISAXS_PONI
    )
    path = tmp_path / f"{name}.poni"
    ai.save(str(path))
    return path


def _assert_same_as_pyfai(path: Path, geometry: DetectorGeometry) -> None:
    reference = pyFAI.load(str(path))
    ours, theirs = geometry.pyfai_detector(), reference.detector
    assert type(ours) is type(theirs)
    assert geometry.shape == tuple(theirs.shape)
    assert (ours.pixel1, ours.pixel2) == pytest.approx((theirs.pixel1, theirs.pixel2), rel=1e-12)
    assert tuple(ours.binning) == tuple(theirs.binning)
    assert int(ours.orientation) == int(theirs.orientation)
    rows = np.minimum(ROWS, geometry.shape[0] - 1)
    cols = np.minimum(COLS, geometry.shape[1] - 1)
    np.testing.assert_allclose(
        ours.calc_cartesian_positions(rows, cols)[:2],
        theirs.calc_cartesian_positions(rows, cols)[:2],
        rtol=1e-12,
        atol=1e-15,
    )
    ai = AzimuthalIntegrator(
        dist=geometry.distance_m,
        poni1=geometry.poni1_m,
        poni2=geometry.poni2_m,
        rot1=geometry.rot1_rad,
        rot2=geometry.rot2_rad,
        rot3=geometry.rot3_rad,
        wavelength=geometry.wavelength_m,
        detector=ours,
    )
    np.testing.assert_allclose(ai.tth(rows, cols), reference.tth(rows, cols), rtol=1e-12)
    np.testing.assert_allclose(ai.chi(rows, cols), reference.chi(rows, cols), rtol=1e-12)


@pytest.mark.parametrize(
    ("name", "config", "shape", "pixel_um"),
    [
        ("Pilatus300kw", {}, (195, 1475), 172.0),
        ("Pilatus300kw", {"orientation": 1}, (195, 1475), 172.0),
        ("Pilatus1M", {}, (1043, 981), 172.0),
        ("Eiger2_4M", {"orientation": 2}, (2162, 2068), 75.0),
        ("RayonixMx225", {"binning": [3, 3]}, (2048, 2048), 109.971),
        ("RayonixMx225", {"binning": [2, 2], "orientation": 4}, (3072, 3072), 73.242),
        ("RayonixSx165", {"binning": [4, 4]}, (1024, 1024), 158.0),
        ("Perkin", {}, (2048, 2048), 200.0),
        (
            "Detector",
            {"pixel1": 1e-4, "pixel2": 1.5e-4, "max_shape": [300, 400]},
            (300, 400),
            100.0,
        ),
    ],
)
def test_poni_written_by_pyfai_is_read_as_pyfai_reads_it(tmp_path, name, config, shape, pixel_um):
    path = _pyfai_poni(tmp_path, name, config)
    geometry = load_poni(path)
    assert geometry.shape == shape
    assert geometry.pixel_size_m[0] == pytest.approx(pixel_um * 1e-6, rel=1e-4)
    _assert_same_as_pyfai(path, geometry)


def test_poni_written_by_ponifile_round_trips_binning(tmp_path):
    detector = detector_factory("RayonixMx225", {"binning": [3, 3], "orientation": 2})
    ai = AzimuthalIntegrator(detector=detector, **GISAXS_PONI)
    path = tmp_path / "ponifile.poni"
    with path.open("w") as stream:
        PoniFile(ai).write(stream)
    geometry = load_poni(path)
    assert (geometry.shape, geometry.orientation) == ((2048, 2048), 2)
    assert json.loads(geometry.detector_config)["pixel1"] == pytest.approx(109.971e-6)
    _assert_same_as_pyfai(path, geometry)


@pytest.mark.parametrize("rot", [(0.01, -0.02, 0.03), (-0.05, 0.0, 0.0), (0.0, 0.0, math.pi / 2)])
def test_tilted_calibration_keeps_pyfai_angles(tmp_path, rot):
    path = _pyfai_poni(tmp_path, "Pilatus1M", {}, rot=rot)
    geometry = load_poni(path)
    assert (geometry.rot1_rad, geometry.rot2_rad, geometry.rot3_rad) == pytest.approx(rot)
    _assert_same_as_pyfai(path, geometry)


def test_tilted_calibration_reduces_a_frame(tmp_path):
    # a GISAXS detector tilted by a few degrees, PONI written by pyFAI, square lattice
    detector = detector_factory("Pilatus300kw", {})
    ai = AzimuthalIntegrator(detector=detector, rot1=0.02, rot2=-0.03, rot3=0.01, **GISAXS_PONI)
    poni = tmp_path / "tilted.poni"
    ai.save(str(poni))
    geometry = GIGeometry.create(load_poni(poni), incidence_angle_deg=0.3)
    frame = gisaxs_frame(geometry, geometry.q_maps(), GisaxsState("square", 0.83, 90.0), rng=5)
    fabio.cbfimage.CbfImage(data=frame).write(str(tmp_path / "tilted.cbf"))
    row = inspect_frame(tmp_path / "tilted.cbf", poni=poni, incidence_angle_deg=0.3)
    assert (row.symmetry, row.q1_per_nm) == ("square", pytest.approx(0.83, rel=0.01))


#: How pyFAI's detector orientation stores the picture of its default orientation 3.
FLIPS = {
    1: (slice(None, None, -1), slice(None, None, -1)),
    2: (slice(None, None, -1),),
    4: (slice(None), slice(None, None, -1)),
}


@pytest.mark.parametrize("orientation", [1, 2, 4])
def test_frame_stored_flipped_with_the_orientation_in_its_poni_is_reduced(tmp_path, orientation):
    # the demo's square frame as a detector stored in another orientation writes it, with
    # pyFAI's own PONI saying so: the same lattice (orientations 1 and 2 gave "none")
    detector = detector_factory("Pilatus300kw", {"orientation": orientation})
    ai = AzimuthalIntegrator(detector=detector, **GISAXS_PONI)
    reference = AzimuthalIntegrator(detector=detector_factory("Pilatus300kw"), **GISAXS_PONI)
    flip = FLIPS[orientation]
    assert np.allclose(ai.twoThetaArray(), reference.twoThetaArray()[flip])  # pyFAI agrees
    poni = tmp_path / "flipped.poni"
    ai.save(str(poni))
    demo = fabio.open(str(DEMO_SQUARE_FRAME)).data
    fabio.edfimage.EdfImage(data=np.ascontiguousarray(demo[flip])).write(str(tmp_path / "f.edf"))
    row = inspect_frame(tmp_path / "f.edf", poni=poni, incidence_angle_deg=0.3)
    assert (row.symmetry, row.q1_per_nm) == ("square", pytest.approx(0.83, rel=2e-3))
    assert not row.flags
    # and the orientation self-test of `gixs calibrate incidence` passes (1 and 4 failed,
    # "q_par decreases to the right")
    geometry = GIGeometry.create(load_poni(poni), incidence_angle_deg=0.3)
    check = check_orientation(fabio.open(str(tmp_path / "f.edf")).data, geometry)
    assert check.status == "pass", check.message


def test_case_files_give_the_detector_pyfai_gives():
    for name, shape in [
        ("v1_named.poni", (195, 1475)),
        ("generic_detector.poni", (195, 1475)),
        ("rayonix_binned3x3.poni", (2048, 2048)),
        ("radians_case_gisaxs.poni", (195, 1475)),
    ]:
        geometry = load_poni(DATA / name)
        assert geometry.shape == shape, name
        _assert_same_as_pyfai(DATA / name, geometry)


def test_binned_rayonix_reads_2048_frames_of_110_um(tmp_path):
    geometry = load_poni(DATA / "rayonix_binned3x3.poni")
    assert geometry.detector == "RayonixMx225"
    assert geometry.pixel_size_m == pytest.approx((109.971e-6, 109.971e-6))
    assert geometry.gap_mask().shape == (2048, 2048)
    path = tmp_path / "rayonix.tif"
    data = np.random.default_rng(0).integers(0, 1000, (2048, 2048)).astype(np.uint16)
    fabio.tifimage.TifImage(data=data).write(str(path))
    assert read_frame(path, shape=geometry.shape).data.shape == (2048, 2048)
    # the unbinned model, as a rebuild from the name alone would give, refuses it
    unbinned = DetectorGeometry("RayonixMx225", 0.28, 0.2, 0.1125, WAVELENGTH_M)
    assert unbinned.shape == (3072, 3072)
    with pytest.raises(FrameReadError, match="3072"):
        read_frame(path, shape=unbinned.shape)


def test_version_1_without_detector_line_takes_shape_from_the_frame():
    geometry = load_poni(DATA / "v1_no_detector.poni")
    assert geometry.detector == "Detector"
    assert not geometry.has_shape
    assert geometry.pixel_size_m == (172e-6, 172e-6)
    with pytest.raises(GeometryError, match="max_shape"):
        _ = geometry.shape
    shaped = geometry.with_frame_shape((195, 1475))
    assert shaped.shape == (195, 1475)
    assert not shaped.gap_mask().any()
    assert shaped.with_frame_shape((10, 10)) is shaped  # a known shape is kept


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        # Dioptas / pyFAI-calib2: generic detector, pixel sizes and shape in the config
        (
            "poni_version: 2\nDetector: Detector\n"
            'Detector_config: {"pixel1": 7.5e-05, "pixel2": 7.5e-05, "max_shape": [2167, 2070]}\n',
            (2167, 2070),
        ),
        # version 2.1 with an orientation, no shape: the frames' shape is used
        (
            'poni_version: 2.1\nDetector: Detector\nDetector_config: {"pixel1": 1e-4, '
            '"pixel2": 1e-4, "orientation": 3}\n',
            None,
        ),
        # version 1 with pixel sizes and an explicit SplineFile: None
        ("PixelSize1: 1e-4\nPixelSize2: 2e-4\nSplineFile: None\n", None),
        # version 2 named detector, no Detector_config (pyFAI logs, but reads it)
        ("poni_version: 2\nDetector: Pilatus300k\n", (619, 487)),
        # version 1 named with pixel sizes
        ("PixelSize1: 0.000172\nPixelSize2: 0.000172\nDetector: Pilatus300k\n", (619, 487)),
    ],
)
def test_poni_variants_are_read(tmp_path, text, shape):
    path = tmp_path / "variant.poni"
    path.write_text(
        "# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis\n" + text + _geometry_lines()
    )
    geometry = load_poni(path)
    assert geometry.has_shape == (shape is not None)
    if shape is not None:
        assert geometry.shape == shape
        _assert_same_as_pyfai(path, geometry)
    assert geometry.distance_m == 0.578


def test_nothing_about_the_detector_is_refused_saying_what_to_add(tmp_path):
    path = tmp_path / "bare.poni"
    path.write_text(_geometry_lines())
    with pytest.raises(GeometryError, match="no pixel size") as info:
        load_poni(path)
    message = str(info.value)
    assert str(path) in message
    assert "Detector" in message
    assert "--detector" in message
    assert "\n" not in message
    # the override supplies what is missing
    assert load_poni(path, detector="pilatus 300k-w").shape == (195, 1475)


def test_version_2_without_detector_line_needs_the_override(tmp_path):
    path = tmp_path / "v2.poni"
    path.write_text('poni_version: 2\nDetector_config: {"orientation": 2}\n' + _geometry_lines())
    with pytest.raises(GeometryError, match="lacks the key Detector") as info:
        load_poni(path)
    assert "--detector" in str(info.value)
    geometry = load_poni(path, detector="Pilatus300kw")
    assert (geometry.detector, geometry.orientation, geometry.shape) == (
        "Pilatus300kw",
        2,
        (195, 1475),
    )


def test_override_wins_over_every_kind_of_detector(tmp_path):
    unknown = tmp_path / "unknown.poni"
    unknown.write_text("poni_version: 2\nDetector: NoSuchDetector\n" + _geometry_lines())
    with pytest.raises(GeometryError, match="pyFAI knows no detector called 'NoSuchDetector'"):
        load_poni(unknown)
    for path in [
        unknown,
        DATA / "generic_detector.poni",
        DATA / "v1_no_detector.poni",
        DATA / "rayonix_binned3x3.poni",
        DATA / "v1_named.poni",
    ]:
        geometry = load_poni(path, detector="PILATUS300K")
        assert (geometry.detector, geometry.shape, geometry.detector_config) == (
            "Pilatus300k",
            (619, 487),
            "",
        ), path
        expected = 0.578 if path == unknown else pyFAI.load(str(path)).dist
        assert geometry.distance_m == pytest.approx(expected)


def test_override_keeps_the_orientation_and_a_same_model_config(tmp_path):
    path = _pyfai_poni(tmp_path, "RayonixMx225", {"binning": [3, 3], "orientation": 2})
    same = load_poni(path, detector="rayonix_mx225")
    assert (same.shape, same.orientation) == ((2048, 2048), 2)
    other = load_poni(path, detector="Pilatus300kw")
    assert (other.shape, other.orientation) == ((195, 1475), 2)


def test_unknown_override_lists_close_names(tmp_path):
    with pytest.raises(GeometryError, match="Pilatus300kw"):
        load_poni(DATA / "generic_detector.poni", detector="Pilatus300kx")


@pytest.mark.parametrize("spelling", ["pilatus 300k-w", "PILATUS_300KW", "Pilatus300K-W"])
def test_a_detector_line_in_another_spelling_is_read(tmp_path, spelling, capfd):
    # pyFAI knows "Pilatus300kw" only: it logged its whole list of detectors (5 kB) and
    # the file was refused; the name is taken in any spelling, the file's config kept
    path = _pyfai_poni(tmp_path, "Pilatus300kw", {"orientation": 3})
    text = path.read_text()
    path.write_text(text.replace("Detector: Pilatus300kw", f"Detector: {spelling}"))
    assert f"Detector: {spelling}" in path.read_text()
    geometry = load_poni(path)
    (tmp_path / "ref").mkdir()
    reference = load_poni(_pyfai_poni(tmp_path / "ref", "Pilatus300kw", {"orientation": 3}))
    assert (geometry.detector, geometry.shape, geometry.orientation) == (
        reference.detector,
        reference.shape,
        reference.orientation,
    )
    assert geometry.distance_m == reference.distance_m
    path.write_text(text.replace("Detector: Pilatus300kw", "Detector: pilatus 301k-x"))
    with pytest.raises(GeometryError) as err:
        load_poni(path)
    message = str(err.value)
    assert message.startswith(f"{path}: pyFAI knows no detector called 'pilatus 301k-x'")
    assert "did you mean Pilatus300k, Pilatus300kw" in message
    assert "--detector / detector =" in message
    assert "eiger2_cdte" not in capfd.readouterr().err  # no list of every detector


def _smooth_spline(path: Path) -> Path:
    """A smooth distortion spline of a 255 x 255 detector of 50 um pixels, by pyFAI."""
    spline = Spline()
    spline.zeros(xmin=0.0, ymin=0.0, xmax=256.0, ymax=256.0, pixSize=50.0)
    y, x = np.mgrid[0:256, 0:256] / 256.0
    spline.xDispArray = 0.5 * np.sin(np.pi * x) * y
    spline.yDispArray = 0.3 * x * y
    spline.array2spline(smoothing=1000, timing=False)
    spline.grid = 1000.0
    spline.pixelSize = (50.0, 50.0)
    spline.write(str(path))
    return path


def test_spline_detector_is_kept_with_its_spline(tmp_path):
    spline = _smooth_spline(tmp_path / "frelon.spline")
    detector = detector_factory("FReLoN", {"splineFile": str(spline)})
    ai = AzimuthalIntegrator(detector=detector, **GISAXS_PONI)
    path = tmp_path / "frelon.poni"
    ai.save(str(path))
    geometry = load_poni(path)
    assert json.loads(geometry.detector_config) == {"splineFile": str(spline)}
    assert geometry.pyfai_detector().splinefile == str(spline)
    _assert_same_as_pyfai(path, geometry)


def test_relative_spline_is_found_next_to_the_poni(tmp_path, monkeypatch):
    folder = tmp_path / "calib"
    folder.mkdir()
    _smooth_spline(folder / "distortion.spline")
    path = folder / "v1.poni"
    path.write_text(
        "PixelSize1: 5e-05\nPixelSize2: 5e-05\nSplineFile: distortion.spline\n" + _geometry_lines()
    )
    monkeypatch.chdir(tmp_path)  # pyFAI alone looks for the spline here, and fails
    with pytest.raises(OSError, match="Spline"):
        PoniFile(str(path))
    geometry = load_poni(path)
    assert geometry.shape == (255, 255)
    assert geometry.pyfai_detector().splinefile == str((folder / "distortion.spline").resolve())
    monkeypatch.chdir(folder)  # where pyFAI finds it: the same detector
    _assert_same_as_pyfai(path, geometry)
