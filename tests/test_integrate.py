"""q_par cuts: pyFAI's grazing-incidence integration as the oracle, and the physics of bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray
from pyFAI.containers import Integrate1dFiberResult
from scipy.optimize import curve_fit

from calibration.geometry import DetectorGeometry, GIGeometry, QMaps
from detectors.errors import GeometryError
from pipeline.integrate import (
    PYFAI_METHOD,
    CutPlan,
    QCut,
    integrate_cut,
    map_2d,
    plan_cut,
)

WAVELENGTH_M = 0.12398e-9  # 10.0 keV
SATURATED = 1_048_573
YONEDA_BAND = (0.28, 0.48)  # around alpha_f = 0.13 deg at alpha_i = 0.3 deg, 10 keV
IN_PLANE_BAND = (0.0, 0.5)
NPT_OOP = 1000  # q_perp bins of the oracle's inner 2-D step


class Setup:
    """A real detector geometry with its static (module gap) mask and q maps."""

    def __init__(self, detector: DetectorGeometry, sample_orientation: int | str = "auto") -> None:
        self.geometry = GIGeometry.create(
            detector, incidence_angle_deg=0.3, sample_orientation=sample_orientation
        )
        self.mask: NDArray[np.bool_] = np.asarray(detector.pyfai_detector().mask, dtype=bool)
        self.maps: QMaps = self.geometry.q_maps()
        integrator = self.geometry.integrator()
        shape = detector.shape
        self.norm = np.asarray(integrator.solidAngleArray(shape, True), dtype=np.float64) * (
            integrator.polarization(shape, 0.99)
        )

    def plan(
        self,
        band: tuple[float, float],
        q_range: tuple[float, float],
        n_bins: int,
        *,
        fold: bool = True,
        whole_lines: bool = True,
    ) -> CutPlan:
        return plan_cut(
            self.geometry,
            static_mask=self.mask,
            q_perp_band_per_nm=band,
            q_par_range_per_nm=q_range,
            n_bins=n_bins,
            fold=fold,
            maps=self.maps,
            whole_lines=whole_lines,
        )

    def pyfai_cut(
        self,
        data: NDArray[np.float64],
        band: tuple[float, float],
        q_range: tuple[float, float],
        n_bins: int,
    ) -> Integrate1dFiberResult:
        """The official call, on a fresh integrator (pyFAI caches arrays by unit name)."""
        return self.geometry.integrator().integrate1d_grazing_incidence(
            data,
            npt_ip=n_bins,
            ip_range=q_range,
            npt_oop=NPT_OOP,
            oop_range=band,
            unit_ip=self.geometry.unit("qip_nm^-1"),
            unit_oop=self.geometry.unit("qoop_nm^-1"),
            vertical_integration=False,
            mask=self.mask.astype(np.int8),
            polarization_factor=0.99,
            method=PYFAI_METHOD,
        )


@pytest.fixture(scope="module")
def gisaxs() -> Setup:
    """The demo-like GISAXS set-up: Pilatus 300K-W at 0.578 m, beam near the bottom middle."""
    return Setup(DetectorGeometry("Pilatus300kw", 0.578, 0.030, 0.1268, WAVELENGTH_M))


@pytest.fixture(scope="module")
def giwaxs() -> Setup:
    """GIWAXS: Pilatus 300K at 0.25 m, direct beam beyond the left edge, horizon low."""
    return Setup(DetectorGeometry("Pilatus300k", 0.25, 0.104, -0.045, WAVELENGTH_M))


# (setup, band, one-sided q_par range, n_bins): the study's two detectors
CASES = [
    ("gisaxs", YONEDA_BAND, (0.3, 2.4), 140),
    ("gisaxs", YONEDA_BAND, (-2.4, -0.3), 97),
    ("giwaxs", IN_PLANE_BAND, (17.0, 23.5), 200),
]


def rod_frame(
    setup: Setup, q0_per_nm: float, sigma_per_nm: float, *, background: float = 5.0
) -> NDArray[np.float64]:
    """A noise-free frame: a rod at |q_par| = q0 on a flat background, seen by the detector."""
    q_par = np.abs(setup.maps.q_par_per_nm)
    true = background + 1000.0 * np.exp(-0.5 * ((q_par - q0_per_nm) / sigma_per_nm) ** 2)
    return true * setup.norm


def pyfai_bins(setup: Setup, plan: CutPlan) -> NDArray[np.int64]:
    """The q_par bin pyFAI puts each pixel in (-1: none), with its rule for no splitting.

    pyFAI's histogram takes the bin as int((q - q_min) / width), which rounds towards zero:
    pixels up to one bin below the range (in q_par, and in q_perp with its NPT_OOP bins)
    land in the first bin. The cut leaves them out on purpose.
    """
    band, q_range = plan.q_perp_band_per_nm, plan.q_par_range_per_nm
    n_bins = plan.bin_edges_per_nm.size - 1
    q_par, q_perp = setup.maps.q_par_per_nm, setup.maps.q_perp_per_nm
    in_par = np.trunc((q_par - q_range[0]) / (q_range[1] - q_range[0]) * n_bins)
    in_perp = np.trunc((q_perp - band[0]) / (band[1] - band[0]) * NPT_OOP)
    inside = (in_par >= 0) & (in_par < n_bins) & (in_perp >= 0) & (in_perp < NPT_OOP)
    return np.where(inside & ~setup.mask, in_par, -1).astype(np.int64).ravel()


def bins_pyfai_fills_otherwise(setup: Setup, plan: CutPlan) -> NDArray[np.int64]:
    """The bins into which pyFAI also puts pixels from just outside the band or range."""
    their_bin = pyfai_bins(setup, plan)
    just_outside = their_bin >= 0
    just_outside[plan.pixel_index] = False
    return np.unique(their_bin[just_outside])


@pytest.mark.parametrize(("name", "band", "q_range", "n_bins"), CASES)
def test_cut_equals_pyfai_grazing_incidence(request, name, band, q_range, n_bins):
    setup: Setup = request.getfixturevalue(name)
    rng = np.random.default_rng(1)
    data = rng.poisson(
        rod_frame(setup, abs(q_range[0]) + 0.4 * (q_range[1] - q_range[0]), 0.05)
    ).astype(np.float64)
    plan = setup.plan(band, q_range, n_bins, fold=False, whole_lines=False)
    ours = integrate_cut(plan, data)
    oracle = setup.pyfai_cut(data, band, q_range, n_bins)

    # the same regular bins, and pyFAI's pixel-to-bin rule understood
    edges = plan.bin_edges_per_nm
    np.testing.assert_allclose(oracle.integrated, 0.5 * (edges[1:] + edges[:-1]), atol=1e-5)
    their_bin = pyfai_bins(setup, plan)
    np.testing.assert_array_equal(
        oracle.count, np.bincount(their_bin[their_bin >= 0], minlength=n_bins)
    )

    # bins where pyFAI takes in pixels from just outside the band or range differ on purpose
    differ = bins_pyfai_fills_otherwise(setup, plan)
    assert differ.size <= 0.05 * n_bins
    same = np.setdiff1d(np.arange(n_bins), differ)
    count = np.zeros(n_bins)
    count[plan.bin_index] = ours.n_pixels
    np.testing.assert_array_equal(count[same], oracle.count[same])
    intensity = np.full(n_bins, np.nan)
    intensity[plan.bin_index] = ours.intensity
    filled = same[oracle.count[same] > 0]
    assert filled.size > 0.8 * n_bins
    np.testing.assert_allclose(intensity[filled], oracle.intensity[filled], rtol=1e-6)


@pytest.mark.parametrize(("name", "band", "q_range", "n_bins"), CASES)
def test_bin_positions_are_pyfais_mean_pixel_q(request, name, band, q_range, n_bins):
    # pyFAI's own per-pixel q, averaged per bin: integrating the q map and a frame of ones
    # gives sum(q) / sum(norm) and n / sum(norm), whose ratio is the mean q of the bin
    setup: Setup = request.getfixturevalue(name)
    plan = setup.plan(band, q_range, n_bins, fold=False, whole_lines=False)
    q_map = setup.geometry.integrator().array_from_unit(
        unit=setup.geometry.unit("qip_nm^-1"), typ="center", scale=True
    )
    shift = 1.0 - q_range[0]  # pyFAI's cut is 0 where the signal is negative: keep q + shift > 0
    of_q = setup.pyfai_cut(np.asarray(q_map, dtype=np.float64) + shift, band, q_range, n_bins)
    of_ones = setup.pyfai_cut(np.ones(setup.geometry.detector.shape), band, q_range, n_bins)
    # bins that pyFAI fills with pixels from just outside (see pyfai_bins) are left out
    same = np.isin(plan.bin_index, bins_pyfai_fills_otherwise(setup, plan), invert=True)
    assert same.sum() > 0.8 * n_bins
    kept = plan.bin_index[same]
    mean_q = of_q.intensity[kept] / of_ones.intensity[kept] - shift
    np.testing.assert_allclose(plan.q_par_per_nm[same], mean_q, rtol=0, atol=1e-5)

    # each position lies inside its own bin
    lower, upper = plan.bin_edges_per_nm[plan.bin_index], plan.bin_edges_per_nm[plan.bin_index + 1]
    assert np.all((plan.q_par_per_nm >= lower) & (plan.q_par_per_nm <= upper))
    assert np.all(np.diff(plan.q_par_per_nm) > 0)


def gaussian(
    q: NDArray[np.float64], amplitude: float, centre: float, sigma: float, offset: float
) -> NDArray[np.float64]:
    return amplitude * np.exp(-0.5 * ((q - centre) / sigma) ** 2) + offset


def fitted_centre(cut: QCut, q0: float, half_window: float) -> float:
    near = np.isfinite(cut.intensity) & (np.abs(cut.q_par_per_nm - q0) < half_window)
    start = (cut.intensity[near].max(), q0 * 1.01, half_window / 4, cut.intensity[near].min())
    params, _ = curve_fit(gaussian, cut.q_par_per_nm[near], cut.intensity[near], p0=start)
    return float(params[1])


@pytest.mark.parametrize("n_bins", [70, 123, 140, 211, 300, 420])
def test_gisaxs_rod_comes_out_at_its_q(gisaxs, n_bins):
    # bins from 1/3 to 2 pixels wide (one pixel is 0.015 nm^-1 here)
    q0 = 0.80
    plan = gisaxs.plan(YONEDA_BAND, (0.3, 2.4), n_bins)
    cut = integrate_cut(plan, rod_frame(gisaxs, q0, 0.03))
    assert fitted_centre(cut, q0, 0.15) == pytest.approx(q0, rel=1e-3)


@pytest.mark.parametrize("n_bins", [150, 257, 400])
def test_giwaxs_in_plane_peak_comes_out_at_its_q(giwaxs, n_bins):
    q0 = 20.52  # PbSe {200}
    plan = giwaxs.plan(IN_PLANE_BAND, (17.0, 23.5), n_bins)
    cut = integrate_cut(plan, rod_frame(giwaxs, q0, 0.2))
    assert fitted_centre(cut, q0, 1.2) == pytest.approx(q0, rel=1e-3)


def horizon_frame(setup: Setup, line: NDArray[np.float64]) -> NDArray[np.float64]:
    """A noise-free frame: `line` (per pixel, along q_par) times a bright band in q_perp.

    Below and in the Yoneda band the rows of one detector column differ some tenfold, as
    in a real GIWAXS frame near the horizon.
    """
    q_perp = setup.maps.q_perp_per_nm
    band = 1.0 + 9.0 * np.exp(-0.5 * ((q_perp - 0.25) / 0.08) ** 2)
    return line * band * setup.norm


@pytest.fixture(scope="module")
def giwaxs_turned() -> Setup:
    """A Pilatus 300K turned by 90 deg about the beam: q_par runs along its columns."""
    detector = DetectorGeometry(
        "Pilatus300k", 0.25, 0.02, 0.042, WAVELENGTH_M, rot3_rad=math.pi / 2
    )
    return Setup(detector, sample_orientation=1)


# (setup, band, q_par range): whole lines are detector columns, or rows when turned
WHOLE_LINE_CASES = [
    ("giwaxs", IN_PLANE_BAND, (17.0, 23.5)),
    ("giwaxs_turned", (0.3, 0.8), (3.0, 12.0)),
]


def _roughness_and_bins(
    setup: Setup, band, q_range, columns_per_bin: float, *, whole_lines: bool
) -> tuple[float, int]:
    """Bin-to-bin roughness of the cut of a flat frame whose rows differ, and bins kept."""
    q_par = setup.maps.q_par_per_nm
    step = max(float(np.nanmedian(np.abs(np.diff(q_par, axis=a)))) for a in (0, 1))  # a line
    n_bins = round((q_range[1] - q_range[0]) / (columns_per_bin * step))
    frame = horizon_frame(setup, np.full(setup.geometry.detector.shape, 100.0))
    plan = setup.plan(band, q_range, n_bins, whole_lines=whole_lines)
    cut = integrate_cut(plan, frame)
    return float(np.std(cut.intensity[1:] / cut.intensity[:-1])), plan.n_bins


@pytest.mark.parametrize(("name", "band", "q_range"), WHOLE_LINE_CASES)
@pytest.mark.parametrize("columns_per_bin", [1.6, 2.07, 2.5, 3.3])
def test_whole_lines_keep_a_flat_cut_flat_where_the_rows_differ(
    request, name, band, q_range, columns_per_bin
):
    setup: Setup = request.getfixturevalue(name)
    rough, kept = _roughness_and_bins(setup, band, q_range, columns_per_bin, whole_lines=True)
    assert rough < 0.01
    _, kept_pixels = _roughness_and_bins(setup, band, q_range, columns_per_bin, whole_lines=False)
    assert kept >= kept_pixels - 2  # lines never pile up into a few bins


@pytest.mark.parametrize(("name", "band", "q_range"), WHOLE_LINE_CASES)
def test_bins_that_split_lines_spike_the_cut(request, name, band, q_range):
    # why whole lines: a bin that takes only some rows of a line gets another mix of bright
    # and dark rows than its neighbours (about 2 lines a bin splits many of them)
    setup: Setup = request.getfixturevalue(name)
    split, _ = _roughness_and_bins(setup, band, q_range, 2.07, whole_lines=False)
    whole, _ = _roughness_and_bins(setup, band, q_range, 2.07, whole_lines=True)
    assert split > 3 * whole


@pytest.mark.parametrize(("name", "band", "q_range"), WHOLE_LINE_CASES)
def test_bins_finer_than_the_lines_keep_them_whole(request, name, band, q_range):
    # n_bins far beyond the detector's lines: each line stays one bin (before, the lines
    # fell apart into bins of one or two pixels and the {200} fit found no peak)
    setup: Setup = request.getfixturevalue(name)
    fine, finest = (setup.plan(band, q_range, n, whole_lines=True) for n in (5_000, 100_000))
    pixels = np.diff(finest.binning.indptr)
    assert finest.n_bins == fine.n_bins
    assert np.median(pixels) == np.median(np.diff(fine.binning.indptr)) > 4
    frame = horizon_frame(setup, np.full(setup.geometry.detector.shape, 100.0))
    np.testing.assert_allclose(
        integrate_cut(finest, frame).intensity, integrate_cut(fine, frame).intensity, rtol=1e-12
    )


def test_a_band_one_row_high_keeps_its_bins(giwaxs):
    # one row of the band per column (two in a few bins): whole lines change nothing
    thin = (0.30, 0.32)
    plans = [giwaxs.plan(thin, (17.0, 23.5), 150, whole_lines=w) for w in (True, False)]
    assert plans[0].n_bins == plans[1].n_bins > 100
    np.testing.assert_allclose(plans[0].q_par_per_nm, plans[1].q_par_per_nm)


def test_bad_pixels_of_a_frame_do_not_bias_the_cut(gisaxs):
    plan = gisaxs.plan(YONEDA_BAND, (0.3, 2.4), 140)
    frame = 40.0 * gisaxs.norm  # a flat true intensity of 40
    rng = np.random.default_rng(3)
    bad = rng.random(frame.shape) < 0.1
    frame[bad] = rng.choice([-1.0, -2.0], size=bad.sum())  # Pilatus dead pixels
    hot = (rng.random(frame.shape) < 0.05) & ~bad
    frame[hot] = SATURATED
    frame[np.nonzero(np.isclose(np.abs(gisaxs.maps.q_par_per_nm), 1.0, atol=0.02))] = -1.0
    frame[0, 0] = np.nan

    biased = integrate_cut(plan, frame)
    assert np.nanmax(biased.intensity) > 1000  # saturated pixels must be masked dynamically
    cut = integrate_cut(plan, frame, dynamic_mask=frame >= SATURATED)
    by_limit = integrate_cut(plan, frame, saturation_counts=SATURATED)
    np.testing.assert_array_equal(by_limit.intensity, cut.intensity)
    np.testing.assert_array_equal(by_limit.n_pixels, cut.n_pixels)
    has_pixels = cut.n_pixels > 0
    np.testing.assert_allclose(cut.intensity[has_pixels], 40.0, rtol=1e-9)
    # the compiled pass is the plan's sparse products over the valid pixels (scipy's)
    values = frame.reshape(-1)[plan.pixel_index]
    valid = (values >= 0) & (values < SATURATED)  # NaN fails both
    signal = plan.binning @ np.where(valid, values, 0.0)
    norm = plan.normalisation @ valid.astype(np.float64)
    np.testing.assert_allclose(
        cut.intensity[has_pixels], signal[has_pixels] / norm[has_pixels], rtol=1e-13
    )
    np.testing.assert_array_equal(cut.n_pixels, np.rint(plan.binning @ valid).astype(int))
    # a bin whose pixels are all bad this frame is NaN, not zero
    dead = np.abs(cut.q_par_per_nm - 1.0) < 0.01
    assert dead.any()
    assert np.all(np.isnan(cut.intensity[dead]) & np.isnan(cut.sigma[dead]))
    assert np.all(cut.n_pixels[dead] == 0)
    # the same frame without bad pixels has all of them
    full = integrate_cut(plan, 40.0 * gisaxs.norm)
    assert np.all(full.n_pixels >= cut.n_pixels)
    assert full.n_pixels.sum() == plan.pixel_index.size


def test_sigma_is_poisson(gisaxs):
    plan = gisaxs.plan(YONEDA_BAND, (0.3, 2.4), 70)
    data = np.random.default_rng(5).poisson(200.0 * gisaxs.norm)
    cut = integrate_cut(plan, data)
    ones = integrate_cut(plan, np.ones(gisaxs.geometry.detector.shape))
    sum_norm = cut.n_pixels / ones.intensity
    np.testing.assert_allclose(cut.sigma, np.sqrt(cut.intensity * sum_norm) / sum_norm)
    # relative error ~ 1 / sqrt(counts)
    np.testing.assert_allclose(cut.sigma / cut.intensity, 1 / np.sqrt(200.0 * sum_norm), rtol=0.1)


def bin_sums(setup: Setup, plan: CutPlan, data: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sum of counts, sum of normalisation and pixel count per regular bin, from two cuts."""
    n = plan.bin_edges_per_nm.size - 1
    cut = integrate_cut(plan, data)
    ones = integrate_cut(plan, np.ones_like(data))
    sums = np.zeros((3, n))
    sum_norm = ones.n_pixels / ones.intensity
    sums[:, plan.bin_index] = cut.intensity * sum_norm, sum_norm, cut.n_pixels
    return sums


def test_fold_averages_both_sides(gisaxs):
    n, q_range = 84, (0.3, 2.4)
    rng = np.random.default_rng(7)
    data = rng.poisson(50.0 * gisaxs.norm * (1 + (gisaxs.maps.q_par_per_nm > 0))).astype(float)
    folded = bin_sums(gisaxs, gisaxs.plan(YONEDA_BAND, q_range, n), data)
    right = bin_sums(gisaxs, gisaxs.plan(YONEDA_BAND, q_range, n, fold=False), data)
    left = bin_sums(
        gisaxs, gisaxs.plan(YONEDA_BAND, (-q_range[1], -q_range[0]), n, fold=False), data
    )[:, ::-1]
    assert np.all(left[2] > 0)
    assert np.all(right[2] > 0)  # both sides on the detector: the beam is mid-detector
    np.testing.assert_allclose(folded, left + right, rtol=1e-9)
    # the right side was made twice as bright: the folded cut lies between the two
    cut = integrate_cut(gisaxs.plan(YONEDA_BAND, q_range, n), data)
    assert np.all((cut.intensity > 55) & (cut.intensity < 95))


def test_fold_where_one_side_only_is_on_the_detector(giwaxs):
    # the direct beam is beyond the left edge: |q_par| and signed q_par give the same cut
    folded = giwaxs.plan(IN_PLANE_BAND, (17.0, 23.5), 100)
    signed = giwaxs.plan(IN_PLANE_BAND, (17.0, 23.5), 100, fold=False)
    data = rod_frame(giwaxs, 20.52, 0.2)
    np.testing.assert_allclose(
        integrate_cut(folded, data).intensity, integrate_cut(signed, data).intensity
    )


def test_plan_is_read_only_and_reports_its_settings(gisaxs):
    plan = gisaxs.plan(YONEDA_BAND, (0.3, 2.4), 140)
    assert plan.q_perp_band_per_nm == YONEDA_BAND
    assert plan.q_par_range_per_nm == (0.3, 2.4)
    assert plan.fold
    assert plan.frame_shape == (195, 1475)
    assert plan.n_bins == plan.q_par_per_nm.size <= 140
    with pytest.raises(ValueError, match="read-only"):
        plan.q_par_per_nm[0] = 0.0


def test_plan_computes_the_maps_itself(gisaxs):
    given = gisaxs.plan(YONEDA_BAND, (0.3, 2.4), 140)
    built = plan_cut(
        gisaxs.geometry,
        static_mask=gisaxs.mask,
        q_perp_band_per_nm=YONEDA_BAND,
        q_par_range_per_nm=(0.3, 2.4),
        n_bins=140,
    )
    np.testing.assert_array_equal(given.q_par_per_nm, built.q_par_per_nm)
    np.testing.assert_array_equal(given.pixel_index, built.pixel_index)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_bins": 0}, "n_bins"),
        ({"n_bins": 2.5}, "n_bins"),
        ({"q_par_range_per_nm": (2.4, 0.3)}, "lo < hi"),
        ({"q_perp_band_per_nm": (0.1, np.nan)}, "finite"),
        ({"q_par_range_per_nm": (-1.0, 1.0)}, "fold=False"),
        ({"polarization_factor": 1.5}, "polarization"),
        ({"static_mask": np.zeros((10, 10), dtype=bool)}, "static_mask has shape"),
    ],
)
def test_plan_rejects_bad_settings(gisaxs, kwargs, message):
    settings = {
        "static_mask": None,
        "q_perp_band_per_nm": YONEDA_BAND,
        "q_par_range_per_nm": (0.3, 2.4),
        "n_bins": 10,
        "maps": gisaxs.maps,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        plan_cut(gisaxs.geometry, **settings)


def test_band_off_the_detector_is_a_geometry_error(gisaxs):
    with pytest.raises(GeometryError, match="choose a band"):
        gisaxs.plan((5.0, 6.0), (0.3, 2.4), 10)


def test_frame_of_another_detector_is_rejected(gisaxs):
    plan = gisaxs.plan(YONEDA_BAND, (0.3, 2.4), 10)
    with pytest.raises(ValueError, match=r"expected the detector's \(195, 1475\)"):
        integrate_cut(plan, np.zeros((619, 487)))
    with pytest.raises(ValueError, match="dynamic_mask"):
        integrate_cut(plan, np.zeros((195, 1475)), dynamic_mask=np.zeros((2, 2), dtype=bool))


def test_map_2d_puts_the_rod_at_its_q(gisaxs):
    q0 = 0.8
    qmap = map_2d(
        gisaxs.geometry,
        rod_frame(gisaxs, q0, 0.03),
        mask=gisaxs.mask,
        npt_par=400,
        npt_perp=50,
        q_par_range_per_nm=(-2.0, 2.0),
        q_perp_range_per_nm=(0.0, 1.0),
    )
    assert qmap.intensity.shape == (50, 400)
    assert qmap.q_par_per_nm.shape == (400,)
    assert qmap.q_perp_per_nm[0] > 0
    assert qmap.q_perp_per_nm[-1] < 1
    in_band = (qmap.q_perp_per_nm > YONEDA_BAND[0]) & (qmap.q_perp_per_nm < YONEDA_BAND[1])
    profile = np.nan_to_num(qmap.intensity[in_band]).sum(axis=0)
    for side in (-1, 1):
        half = side * qmap.q_par_per_nm > 0
        peak = qmap.q_par_per_nm[half][np.argmax(profile[half])]
        assert abs(abs(peak) - q0) < 0.02  # within two bins
    # bins above the top of the detector (q_perp 2.6 nm^-1) are NaN, not 0
    flat = map_2d(
        gisaxs.geometry,
        3.0 * gisaxs.norm,
        mask=gisaxs.mask,
        npt_par=100,
        npt_perp=40,
        q_perp_range_per_nm=(0.0, 3.0),
    )
    assert not np.isnan(flat.intensity[flat.q_perp_per_nm < 2.5]).any()
    assert np.isnan(flat.intensity[flat.q_perp_per_nm > 2.7]).all()
    np.testing.assert_allclose(flat.intensity[np.isfinite(flat.intensity)], 3.0, rtol=1e-5)
