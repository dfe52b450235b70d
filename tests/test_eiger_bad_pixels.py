"""Eiger2 1M in 16-bit mode: gaps and bad pixels hold 65535; the file's pixel_mask flags them.

The case eiger_uint16_badpixels: 100 bad pixels of 1 million at 65535 lost the {200} fit
in 4 of 20 noise draws (seeds 2, 4, 11, 16) and inflated its error 7-13x in 9 more. The
answer must be the clean frame's, on every draw; hot pixels flagged only in the
detector's pixel_mask must be left out too.
"""

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from calibration.geometry import DetectorGeometry
from calibration.io import save_poni
from detectors.io import Frame, FrameMeta, read_frame
from pipeline.config import DetectorSettings, ScherrerSettings
from pipeline.io import load_geometry, load_static_mask
from pipeline.reduce import plan_reduction, reduce_frame
from sample_data import synth

pytestmark = pytest.mark.slow


def eiger_plan(tmp_path: Path, kind: str):
    if kind == "giwaxs":
        det = DetectorGeometry("Eiger2_1M", 0.2, (1060 + 0.5) * 75e-6, -0.043, 0.12398e-9)
        extra = {"q_perp_band_per_nm": "lowest", "q_par_range_per_nm": (15.5, 23.5)}
    else:
        det = DetectorGeometry(
            "Eiger2_1M", 1.0, (1000 + 0.5) * 75e-6, (515 + 0.5) * 75e-6, 0.12398e-9
        )
        extra = {}
    poni = tmp_path / f"eiger_{kind}.poni"
    save_poni(poni, det)
    settings = DetectorSettings(
        kind=kind, frames=("x",), poni=poni, incidence_angle_deg=0.3, **extra
    )
    geometry = load_geometry(settings)
    plan = plan_reduction(
        settings,
        geometry=geometry,
        static_mask=load_static_mask(geometry, None),
        resolution=None,
        scherrer=ScherrerSettings(),
    )
    return geometry, plan


def eiger_counts(expected: np.ndarray, gaps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 16-bit Eiger frame: Poisson counts of `expected`, clipped below 65535, gaps 65535."""
    counts = np.minimum(rng.poisson(np.maximum(expected, 0)), 65534).astype(np.uint16)
    counts[gaps] = 65535
    return counts


def dectris_file(path: Path, frame: np.ndarray, pixel_mask: np.ndarray) -> None:
    with h5py.File(path, "w") as fh:
        fh.create_dataset(
            "entry/data/data",
            data=frame[None],
            chunks=(1, *frame.shape),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
        spec = fh.create_group("entry/instrument/detector/detectorSpecific")
        spec["pixel_mask"] = pixel_mask
        spec["bit_depth_image"] = 16
        spec["pixel_mask_applied"] = 1


@pytest.fixture(scope="module")
def giwaxs(tmp_path_factory):
    geometry, plan = eiger_plan(tmp_path_factory.mktemp("giwaxs"), "giwaxs")
    state = synth.GiwaxsState("square", cube_edge_nm=9.0, in_plane_fraction=0.7)  # FWHM ~0.7 nm^-1
    expected = synth.giwaxs_expected(geometry, geometry.q_maps(), state)
    return geometry, plan, expected, state


@pytest.mark.parametrize("seed", [2, 4, 5, 11])
def test_giwaxs_fit_with_100_pixels_at_65535_is_the_clean_fit(giwaxs, seed):
    geometry, plan, expected, state = giwaxs
    gaps = synth.gap_mask(geometry.detector)
    rng = np.random.default_rng(seed)
    clean = eiger_counts(expected, gaps, rng)
    dirty = clean.copy()
    dirty.flat[rng.choice(np.flatnonzero(~gaps), 100, replace=False)] = 65535
    meta = FrameMeta(Path("synthetic"), 0)
    want = reduce_frame(Frame(clean, meta), plan).peak
    got = reduce_frame(Frame(dirty, meta), plan).peak
    assert want.ok
    assert got.ok
    assert abs(got.fwhm_per_nm - want.fwhm_per_nm) < 0.1 * want.fwhm_err_per_nm
    assert got.fwhm_err_per_nm == pytest.approx(want.fwhm_err_per_nm, rel=0.05)
    # the fit reads the line: a Gaussian fitted to the cube line (sinc^2 with the
    # instrument) comes out a few % narrower than it (5 % here)
    assert 0.88 * state.fwhm200_per_nm < want.fwhm_per_nm < state.fwhm200_per_nm


def test_hot_pixels_flagged_in_the_files_pixel_mask_are_left_out(giwaxs, tmp_path):
    geometry, plan, expected, _ = giwaxs
    gaps = synth.gap_mask(geometry.detector)
    rng = np.random.default_rng(2)
    clean = eiger_counts(expected, gaps, rng)
    # 30 hot pixels inside the cut band, at a value that is a possible count
    hot = rng.choice(plan.cut.pixel_index, 30, replace=False)
    bad = rng.choice(np.flatnonzero(~gaps), 100, replace=False)
    dirty = clean.copy()
    dirty.flat[hot] = 60000
    dirty.flat[bad] = 65535
    pixel_mask = gaps.astype(np.uint32)
    pixel_mask.flat[bad] |= 8
    pixel_mask.flat[hot] |= 16
    clean_mask = gaps.astype(np.uint32)
    dectris_file(tmp_path / "clean_data_000001.h5", clean, clean_mask)
    dectris_file(tmp_path / "badpix_data_000001.h5", dirty, pixel_mask)
    shape = geometry.detector.shape
    want = reduce_frame(read_frame(tmp_path / "clean_data_000001.h5", shape=shape), plan).peak
    frame = read_frame(tmp_path / "badpix_data_000001.h5", shape=shape)
    np.testing.assert_array_equal(frame.pixel_mask, pixel_mask != 0)
    got = reduce_frame(frame, plan).peak
    assert want.ok
    assert got.ok
    assert abs(got.fwhm_per_nm - want.fwhm_per_nm) < 0.1 * want.fwhm_err_per_nm
    # without its pixel mask the hot pixels would move the fit
    unmasked = reduce_frame(Frame(frame.data, frame.meta), plan).peak
    assert not (unmasked.ok and abs(unmasked.fwhm_per_nm - want.fwhm_per_nm) < want.fwhm_err_per_nm)


def test_gisaxs_rod_with_100_pixels_at_65535_from_the_dectris_file(tmp_path):
    geometry, plan = eiger_plan(tmp_path, "gisaxs")
    expected = synth.gisaxs_expected(
        geometry, geometry.q_maps(), synth.GisaxsState("square", 0.83, 90.0)
    )
    gaps = synth.gap_mask(geometry.detector)
    rng = np.random.default_rng(1)
    clean = eiger_counts(expected, gaps, rng)
    bad = rng.choice(np.flatnonzero(~gaps), 100, replace=False)
    dirty = clean.copy()
    dirty.flat[bad] = 65535
    pixel_mask = gaps.astype(np.uint32)
    pixel_mask.flat[bad] |= 8
    dectris_file(tmp_path / "badpix_data_000001.h5", dirty, pixel_mask)
    frame = read_frame(tmp_path / "badpix_data_000001.h5", shape=geometry.detector.shape)
    rod = reduce_frame(frame, plan).rod
    ref = reduce_frame(Frame(clean, FrameMeta(Path("clean"), 0)), plan).rod
    assert (rod.symmetry, ref.symmetry) == ("square", "square")
    assert rod.q1_per_nm == pytest.approx(ref.q1_per_nm, abs=1e-3)
    assert rod.q1_per_nm == pytest.approx(0.83, abs=5e-3)


@pytest.fixture(scope="module")
def form_factor_only(tmp_path_factory):
    """The Eiger GISAXS plan and the expected frame before any superlattice forms."""
    geometry, plan = eiger_plan(tmp_path_factory.mktemp("ff"), "gisaxs")
    expected = synth.gisaxs_expected(
        geometry, geometry.q_maps(), synth.GisaxsState("none", None, None)
    )
    return plan, expected, synth.gap_mask(geometry.detector)


@pytest.mark.parametrize("seed", range(8, 16))
def test_no_phantom_lattice_on_frames_of_the_form_factor_alone(form_factor_only, seed):
    # seed 11 once gave "square" at q1 0.60 nm^-1 from a 0.145 nm^-1 broad bump (24 % of
    # q1, liquid-like order at most): a rod is at most 0.12 nm^-1 wide by default
    plan, expected, gaps = form_factor_only
    rng = np.random.default_rng(seed)
    frame = eiger_counts(expected, gaps, rng)
    rod = reduce_frame(Frame(frame, FrameMeta(Path("no lattice"), 0)), plan).rod
    assert rod.symmetry == "none", rod.message


def test_frames_the_pixel_mask_makes_unusable_are_bad_frames(giwaxs, tmp_path):
    # a Dectris file whose pixel_mask covers the whole band, and an all-zero frame whose
    # only non-zero pixels are masked ones: bad frames (exit 1), never "no {200} peak"
    geometry, plan, expected, _ = giwaxs
    gaps = synth.gap_mask(geometry.detector)
    rng = np.random.default_rng(6)
    counts = eiger_counts(expected, gaps, rng)
    everything = np.ones(counts.shape, dtype=np.uint32)
    dectris_file(tmp_path / "masked_data_000001.h5", counts, everything)
    shape = geometry.detector.shape
    masked = reduce_frame(read_frame(tmp_path / "masked_data_000001.h5", shape=shape), plan)
    assert any(
        f.startswith("frame_dead:") and "masked by the detector's own pixel_mask" in f
        for f in masked.flags
    ), masked.flags
    assert not masked.input_ok
    zeros = np.where(gaps, 65535, 0).astype(np.uint16)
    # most of the band masked and holding counts: the cause is still that nothing was counted
    hot = rng.choice(plan.cut.pixel_index, plan.cut.pixel_index.size * 3 // 5, replace=False)
    zeros.flat[hot] = 7
    pixel_mask = gaps.astype(np.uint32)
    pixel_mask.flat[hot] |= 16
    dectris_file(tmp_path / "zero_data_000001.h5", zeros, pixel_mask)
    zero = reduce_frame(read_frame(tmp_path / "zero_data_000001.h5", shape=shape), plan)
    assert any(f.startswith("frame_all_zero:") for f in zero.flags), zero.flags
    assert not zero.input_ok
