"""Scherrer sizes of cube-shaped domains: integral breadths, the exact cube line, K.

Oracles independent of the code under test: scipy.integrate for areas, the analytic
sinc^2 line, scipy.special.voigt_profile for Voigt breadths, and the demo generator's own
direct-quadrature cube line (sample_data.synth.line200_profile), which shares no code with
the Fourier (Bertaut) evaluation in pipeline.scherrer.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad, trapezoid
from scipy.special import voigt_profile

from detectors.errors import ConfigError
from pipeline.config import DEFAULT_K_FACTOR, ScherrerSettings, config_from_dict
from pipeline.cube_line import cube_line_profile, fit_cube_line, volume_weighted_edge_ratio
from pipeline.fits import PeakFitSettings, fit_peak200
from pipeline.io import load_config, load_plan
from pipeline.reduce import _with_scherrer
from pipeline.scherrer import (
    GAUSS_BREADTH_PER_FWHM,
    integral_breadth_per_nm,
    lorentz_height_share,
    remove_instrumental_breadth,
    scherrer_size_nm,
)
from sample_data.synth import line200_profile

Q200_PER_NM = 2 * math.tau / 0.6124  # PbSe (200)
Q111_PER_NM = Q200_PER_NM * math.sqrt(3) / 2


def _pseudo_voigt(x, fwhm, eta):
    """The pseudo-Voigt of pipeline.fits: unit height, eta the Lorentzian height share."""
    u = x / fwhm
    return (1 - eta) * np.exp(-4 * math.log(2) * u * u) + eta / (1 + 4 * u * u)


@pytest.mark.parametrize("fwhm", [0.3, 1.1])
@pytest.mark.parametrize(
    ("shape", "eta"),
    [("gaussian", None), ("lorentzian", None), *[("pseudo_voigt", e) for e in (0, 0.3, 0.7, 1)]],
)
def test_integral_breadth_is_area_over_height_by_numerical_integration(fwhm, shape, eta):
    lorentz = {"gaussian": 0.0, "lorentzian": 1.0}.get(shape, eta)
    area, _ = quad(lambda x: _pseudo_voigt(x, fwhm, lorentz), -np.inf, np.inf, limit=400)
    assert integral_breadth_per_nm(fwhm, peak_shape=shape, eta=eta) == pytest.approx(area, 1e-6)


@pytest.mark.parametrize("area_share", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_height_share_of_lmfit_area_share(area_share):
    fwhm = 0.7
    height_share = lorentz_height_share(area_share)
    # lmfit: (1 - f) G + f L, both of unit area and the same FWHM
    gauss_height = 1 / (fwhm * GAUSS_BREADTH_PER_FWHM)
    lorentz_height = 2 / (math.pi * fwhm)
    lorentz = area_share * lorentz_height
    assert height_share == pytest.approx(lorentz / (lorentz + (1 - area_share) * gauss_height))


def test_breadth_removal_is_exact_for_pure_shapes():
    sample, inst = 0.6, 0.25
    gauss = remove_instrumental_breadth(math.hypot(sample, inst), inst, peak_shape="gaussian")
    assert gauss == pytest.approx(GAUSS_BREADTH_PER_FWHM * sample)
    lorentz = remove_instrumental_breadth(
        sample + inst, inst, peak_shape="lorentzian", instrument_eta=1.0
    )
    assert lorentz == pytest.approx(math.pi / 2 * sample)
    assert remove_instrumental_breadth(0.5, 0.0, peak_shape="gaussian") == pytest.approx(
        GAUSS_BREADTH_PER_FWHM * 0.5
    )
    assert math.isnan(remove_instrumental_breadth(0.2, 0.25, peak_shape="gaussian"))
    with pytest.raises(ValueError, match="instrumental FWHM"):
        remove_instrumental_breadth(0.5, -0.1, peak_shape="gaussian")


def _voigt_fwhm_and_breadth(sigma, gamma):
    x = np.linspace(0, 20 * (sigma + gamma) + 1, 400_001)
    p = voigt_profile(x, sigma, gamma)
    half = x[np.argmax(p < p[0] / 2)]
    return 2 * half, 1 / p[0]


@pytest.mark.parametrize(("sigma", "gamma"), [(0.2, 0.05), (0.15, 0.15), (0.05, 0.3)])
def test_breadth_removal_of_a_gaussian_instrument_from_voigt_lines(sigma, gamma):
    """A Voigt sample line (sigma, gamma) seen through a Gaussian instrument is the Voigt
    (hypot(sigma, sigma_i), gamma); described as the pseudo-Voigt of the same FWHM and
    breadth, the rule must give back the sample's Voigt breadth (scipy)."""
    sigma_i = 0.25 / (2 * math.sqrt(2 * math.log(2)))
    fwhm, breadth = _voigt_fwhm_and_breadth(math.hypot(sigma, sigma_i), gamma)
    # the pseudo-Voigt of this FWHM with this breadth
    eta = (breadth / fwhm - GAUSS_BREADTH_PER_FWHM) / (math.pi / 2 - GAUSS_BREADTH_PER_FWHM)
    _, sample_breadth = _voigt_fwhm_and_breadth(sigma, gamma)
    got = remove_instrumental_breadth(fwhm, 0.25, peak_shape="pseudo_voigt", eta=eta)
    assert got == pytest.approx(sample_breadth, rel=0.03)


@pytest.mark.parametrize("edge", [4.0, 5.7, 9.0, 13.0])
def test_cube_line_is_sinc_squared_with_breadth_two_pi_over_edge(edge):
    dq = np.linspace(0, math.tau / edge, 2001)  # to the first zero
    x = dq * edge / 2
    exact = edge / math.tau * np.sinc(x / math.pi) ** 2
    line = cube_line_profile(dq, edge_nm=edge)
    assert line == pytest.approx(exact, abs=2e-4 * exact[0])
    wide = np.linspace(0, 60, 600_001)
    area = 2 * trapezoid(cube_line_profile(wide, edge_nm=edge), wide)
    assert area == pytest.approx(1.0, abs=0.005)  # tails beyond 60 nm^-1: 2 / (60 pi edge)
    # K = 1 on the integral breadth, K = 0.8859 on the FWHM (Langford & Wilson 1978)
    assert 1 / line[0] == pytest.approx(math.tau / edge, rel=1e-9)
    # any shape in, that shape out (a scalar too)
    np.testing.assert_allclose(cube_line_profile(dq.reshape(-1, 1), edge_nm=edge), line[:, None])
    assert float(cube_line_profile(dq[5], edge_nm=edge)) == pytest.approx(line[5], rel=1e-12)
    half = np.interp(-0.5, -line / line[0], dq)  # the falling side, up to the first zero
    assert 2 * half == pytest.approx(math.tau * 0.8859 / edge, rel=1e-3)


@pytest.mark.parametrize(
    ("edge", "spread", "inst"),
    [(5.7, 0.6 / 5.7, 0.25), (4.0, 0.1, 0.0), (9.0, 0.05, 0.25), (13.0, 0.1, 0.1), (5.7, 0.2, 0.4)],
)
def test_cube_line_agrees_with_the_generators_direct_quadrature(edge, spread, inst):
    dq = np.linspace(0, 4, 401)
    vol_edge = edge * volume_weighted_edge_ratio(spread)
    fourier = cube_line_profile(
        dq, edge_nm=vol_edge, size_spread=spread, instrument_fwhm_per_nm=inst
    )
    direct = line200_profile(dq, cube_edge_nm=edge, size_spread=spread, instrument_fwhm_per_nm=inst)
    assert fourier / fourier[0] == pytest.approx(direct, abs=2e-3)


def _cut(edge, spread, inst, *, rng, counts=5000.0):
    """A {200} cut of number-mean edge `edge` with a {111} line and a sloped background."""
    q = np.linspace(15.5, 23.5, 150)
    line = line200_profile(q - Q200_PER_NM, cube_edge_nm=edge, size_spread=spread,
                           instrument_fwhm_per_nm=inst)  # fmt: skip
    expected = 150 + 4 * (q - 15.5) + counts * line
    expected += 0.3 * counts * np.exp(-4 * math.log(2) * ((q - Q111_PER_NM) / 0.9) ** 2)
    y = rng.poisson(expected).astype(float)
    return q, y, np.sqrt(np.maximum(y, 1.0))


def _default_size(q, y, sigma, inst):
    settings = ScherrerSettings()
    peak = fit_peak200(q, y, sigma, settings=PeakFitSettings(window_per_nm=(16.5, 23.5)))
    assert peak.ok, peak.message
    neighbours = (
        ((peak.center111_per_nm, peak.fwhm111_per_nm, 0.0),)
        if math.isfinite(peak.center111_per_nm)
        else ()
    )
    cube = fit_cube_line(
        q, y, sigma,
        center_per_nm=peak.center_per_nm, fwhm_per_nm=peak.fwhm_per_nm,
        window_per_nm=(16.5, 23.5), size_spread=settings.size_spread,
        instrument_fwhm_per_nm=inst, neighbours=neighbours,
    )  # fmt: skip
    assert cube.ok, cube.message
    return cube, scherrer_size_nm(cube.sample_breadth_per_nm, k_factor=settings.k), peak


@pytest.mark.parametrize("edge", [4.0, 5.7, 9.0, 13.0])
@pytest.mark.parametrize(("spread", "inst"), [(0.0, 0.0), (0.0, 0.25), (0.6 / 5.7, 0.25)])
def test_case_scherrer_cube_k_default_method_within_5_percent(edge, spread, inst):
    """shared/cases/inputs/scherrer_cube_K: the default method sizes cubes right."""
    rng = np.random.default_rng(int(edge * 10) + int(spread * 100) + int(inst * 100))
    q, y, sigma = _cut(edge, spread, inst, rng=rng)
    cube, domain, _ = _default_size(q, y, sigma, inst)
    truth = edge * volume_weighted_edge_ratio(spread)  # what a breadth measures
    assert domain == pytest.approx(truth, rel=0.05)
    assert domain == pytest.approx(truth, abs=3 * cube.edge_err_nm + 0.01 * truth)
    exact_fwhm = _fwhm(line200_profile, edge, spread, inst)
    assert cube.fwhm_per_nm == pytest.approx(exact_fwhm, rel=0.03)


@pytest.mark.parametrize("counts", [500.0, 5000.0])
def test_domain_size_error_bars_cover_the_truth_over_noise_draws(counts):
    # the demo's cubes (5.7 nm, 0.6 nm spread, 0.25 nm^-1 instrument), 300 Poisson draws of
    # a line from the generator's direct quadrature: the true size lies within one reported
    # standard error in about 68 % of them (binomial 3 sigma: 60-76 %), without a bias
    rng = np.random.default_rng(11)
    edge, spread, inst = 5.7, 0.6 / 5.7, 0.25
    truth = edge * volume_weighted_edge_ratio(spread)
    z = []
    for _ in range(300):
        q, y, sigma = _cut(edge, spread, inst, rng=rng, counts=counts)
        cube, domain, _ = _default_size(q, y, sigma, inst)
        z.append((domain - truth) / cube.edge_err_nm)
    z = np.asarray(z)
    assert 0.60 <= np.mean(np.abs(z) < 1.0) <= 0.80
    assert abs(np.mean(z)) < 0.25
    assert 0.8 < np.std(z) < 1.2


def _fwhm(profile, edge, spread, inst):
    dq = np.linspace(0, 4, 40_001)
    p = profile(dq, cube_edge_nm=edge, size_spread=spread, instrument_fwhm_per_nm=inst)
    return 2 * dq[np.argmax(p < 0.5)]


def test_case_scherrer_cube_k_old_convention_overstates_by_a_quarter():
    """The product before: K = 1 on a Gaussian's FWHM gives 7.2 nm for 5.7 nm cubes."""
    q, y, sigma = _cut(5.7, 0.0, 0.0, rng=np.random.default_rng(3), counts=5000.0)
    peak = fit_peak200(q, y, sigma, settings=PeakFitSettings(window_per_nm=(16.5, 23.5)))
    assert scherrer_size_nm(peak.fwhm_per_nm, k_factor=1.0) == pytest.approx(7.2, rel=0.03)


def test_pseudo_voigt_fit_does_not_follow_a_sinc_squared_line():
    """Measured: a free-eta pseudo-Voigt (and a Gaussian) fitted to the exact cube line is
    ~10 % too narrow, so its integral breadth is too; the default fits the cube line."""
    q, y, sigma = _cut(5.7, 0.0, 0.0, rng=np.random.default_rng(4))
    for shape in ("gaussian", "pseudo_voigt"):
        settings = PeakFitSettings(peak_shape=shape, window_per_nm=(16.5, 23.5))
        peak = fit_peak200(q, y, sigma, settings=settings)
        assert peak.fwhm_per_nm < 0.93 * math.tau * 0.8859 / 5.7
        breadth = integral_breadth_per_nm(peak.fwhm_per_nm, peak_shape=shape, eta=peak.eta)
        assert math.tau / breadth > 1.1 * 5.7


@pytest.mark.parametrize(
    ("fwhm", "size", "study"), [(1.1, 5.7, 5.9), (0.7, 9.0, 9.1), (0.5, 12.6, 13.2)]
)
def test_study_convention_is_a_setting_that_reproduces_its_numbers(tmp_path, fwhm, size, study):
    data = {
        "giwaxs": {"frames": ["x.cbf"], "poni": "x.poni", "incidence_angle_deg": 0.3},
        "scherrer": {"method": "fwhm", "k_factor": 1.0},
    }
    settings = config_from_dict(data, base_dir=tmp_path, source="run.toml").scherrer
    assert (settings.method, settings.k) == ("fwhm", 1.0)
    domain = scherrer_size_nm(fwhm, k_factor=settings.k)
    assert round(domain, 1) == size
    assert domain == pytest.approx(study, rel=0.05)


def test_default_method_and_k_per_method(tmp_path):
    base = {"giwaxs": {"frames": ["x.cbf"], "poni": "x.poni", "incidence_angle_deg": 0.3}}
    default = config_from_dict(base, base_dir=tmp_path, source="run.toml").scherrer
    assert (default.method, default.k, default.size_spread) == ("cube_profile", 1.0, 0.1)
    for method, k in DEFAULT_K_FACTOR.items():
        data = base | {"scherrer": {"method": method}}
        assert config_from_dict(data, base_dir=tmp_path, source="r.toml").scherrer.k == k
    assert DEFAULT_K_FACTOR["fwhm"] == pytest.approx(0.8859)
    for table, message in [
        ({"method": "voigt"}, "method must be one of"),
        ({"size_spread": 0.5}, "size_spread must be in"),
        ({"k_factor": 0}, r"k_factor must be in \[0.5, 2.5\]"),
        ({"k_factor": 100}, r"k_factor must be in \[0.5, 2.5\]"),
    ]:
        with pytest.raises(ConfigError, match=message) as err:
            config_from_dict(base | {"scherrer": table}, base_dir=tmp_path, source="r.toml")
        assert "r.toml" in str(err.value)


def test_fwhm_method_with_the_cube_k_sizes_the_exact_line():
    for edge in (4.0, 5.7, 13.0):
        fwhm = _fwhm(line200_profile, edge, 0.0, 0.0)
        assert scherrer_size_nm(fwhm, k_factor=DEFAULT_K_FACTOR["fwhm"]) == pytest.approx(
            edge, rel=0.01
        )


def test_failed_start_gives_a_flagged_nan_fit():
    q = np.linspace(16.5, 23.5, 100)
    y = np.full_like(q, 100.0)
    fit = fit_cube_line(q, y, np.sqrt(y), center_per_nm=math.nan, fwhm_per_nm=math.nan,
                        window_per_nm=(16.5, 23.5), size_spread=0.1,
                        instrument_fwhm_per_nm=0.25)  # fmt: skip
    assert not fit.ok
    assert math.isnan(fit.edge_nm)
    assert "no {200} peak" in fit.message


def test_degenerate_neighbours_give_a_flagged_fit_not_an_error():
    # two "neighbour" reflections at the same place: their columns are one column twice,
    # the background block cannot be solved; a flagged NaN fit, never an exception
    q = np.linspace(16.5, 23.5, 100)
    y = 100 + 3000 * cube_line_profile(q - 20.52, edge_nm=5.7)
    twin = (17.77, 0.8, 0.3)
    fit = fit_cube_line(q, y, np.sqrt(y), center_per_nm=20.52, fwhm_per_nm=1.0,
                        window_per_nm=(16.5, 23.5), size_spread=0.1,
                        instrument_fwhm_per_nm=0.25, neighbours=(twin, twin))  # fmt: skip
    assert not fit.ok
    assert math.isnan(fit.edge_nm)
    assert "failed numerically" in fit.message
    assert "degenerate" in fit.message


@pytest.mark.parametrize("fwhm", [0.05, 0.1])
def test_a_cube_line_at_its_edge_bound_reports_no_size(fwhm):
    # a {200} line narrower than the instrument (0.25 nm^-1): the cube edge runs to its
    # 200 nm bound; the row must carry the flag and no width or size (it said 200 nm)
    demo = Path(__file__).resolve().parents[1] / "sample_data/demo/demo.toml"
    config = load_config(demo)
    plan = load_plan(next(d for d in config.detectors if d.kind == "giwaxs"), config)
    q = plan.q_par_per_nm
    rng = np.random.default_rng(3)
    y = rng.poisson(200 + 5000 * np.exp(-4 * math.log(2) * ((q - 20.52) / fwhm) ** 2))
    y = y.astype(float)
    peak = fit_peak200(q, y, np.sqrt(y), settings=plan.peak_settings)
    assert peak.ok
    common = {"kind": "giwaxs", "path": "f.cbf", "frame_index": 0, "epoch_s": None,
              "exposure_s": None, "period_s": None, "position": None, "intensity": y,
              "sigma": np.sqrt(y), "dataset": ""}  # fmt: skip
    result = _with_scherrer(common, peak, plan)
    assert result.flags == ("cube_line_fit: the cube edge ran to a bound of 0.5-200 nm",)
    for value in (result.domain_nm, result.fwhm_per_nm, result.breadth_corr_per_nm):
        assert math.isnan(value)


def test_a_breadth_method_without_a_size_says_why():
    # a Lorentzian {200} fit has no Gaussian part to remove the (Gaussian) instrument's
    # from by the Voigt rule: no domain size, and a flag that says so and what to use
    # (it came out as an empty size with no flag and exit 0)
    from dataclasses import replace

    demo = Path(__file__).resolve().parents[1] / "sample_data/demo/demo.toml"
    config = load_config(demo)
    settings = next(d for d in config.detectors if d.kind == "giwaxs")
    plan = load_plan(replace(settings, peak_shape="lorentzian"), config)
    plan = replace(plan, scherrer=ScherrerSettings(method="integral_breadth"))
    q = plan.q_par_per_nm
    rng = np.random.default_rng(4)
    y = rng.poisson(
        200 + 5000 * cube_line_profile(q - 20.52, edge_nm=8.0, instrument_fwhm_per_nm=0.25)
    )
    y = y.astype(float)
    peak = fit_peak200(q, y, np.sqrt(y), settings=plan.peak_settings)
    assert peak.ok
    assert peak.peak_shape == "lorentzian"
    common = {"kind": "giwaxs", "path": "f.cbf", "frame_index": 0, "epoch_s": None,
              "exposure_s": None, "period_s": None, "position": None, "intensity": y,
              "sigma": np.sqrt(y), "dataset": ""}  # fmt: skip
    result = _with_scherrer(common, peak, plan)
    assert math.isnan(result.domain_nm)
    (flag,) = result.flags
    assert flag.startswith("breadth200 not above the instrumental breadth")
    assert 'use peak_shape = "pseudo_voigt" or method = "cube_profile"' in flag
    # the same line fitted as a pseudo-Voigt gives a size
    voigt_plan = replace(plan, peak_settings=replace(plan.peak_settings, peak_shape="pseudo_voigt"))
    voigt = fit_peak200(q, y, np.sqrt(y), settings=voigt_plan.peak_settings)
    assert math.isfinite(_with_scherrer(common, voigt, voigt_plan).domain_nm)


def test_large_domains_where_the_instrument_dominates_keep_honest_errors():
    # 80 nm cubes: the sample breadth is a fifth of the instrument's; the edge error came
    # from derivatives that straddled a node of the tabulated line and collapsed to
    # +- 0.2 nm on frames 8 nm off (seed 1 here)
    from detectors.io import Frame, FrameMeta
    from pipeline.reduce import reduce_frame
    from sample_data import synth

    demo = Path(__file__).resolve().parents[1] / "sample_data/demo/demo.toml"
    config = load_config(demo)
    plan = load_plan(config.settings("giwaxs"), config)
    geometry = plan.geometry
    state = synth.GiwaxsState("square", cube_edge_nm=80.0, in_plane_fraction=0.7)
    expected = synth.giwaxs_expected(geometry, geometry.q_maps(), state)
    gaps = synth.gap_mask(geometry.detector)
    pulls = []
    for seed in range(6):
        counts = synth.detector_counts(expected, gaps, rng=seed)
        result = reduce_frame(Frame(counts, FrameMeta(Path("x"), 0)), plan)
        assert result.domain_err_nm > 0.03 * result.domain_nm, (seed, result.domain_err_nm)
        pulls.append((result.domain_nm - state.domain_nm) / result.domain_err_nm)
        # and the row says the size is near the resolution limit, biased low
        assert any(f.startswith("domain_near_resolution:") for f in result.flags), result.flags
    assert max(abs(p) for p in pulls) < 3, pulls
