"""Rod and {200} fits on seeded synthetic profiles with known answers."""

import math
from dataclasses import replace
from pathlib import Path

import lmfit
import numpy as np
import pytest

from detectors.errors import ConfigError
from pipeline.cube_line import cube_line_profile
from pipeline.fits import (
    PeakFit,
    PeakFitSettings,
    RodFit,
    RodFitSettings,
    fit_peak200,
    fit_rods,
)
from pipeline.io import load_config, load_plan
from pipeline.lattice import rod_positions
from pipeline.varpro import (
    MODE_PEAKS,
    SeparableModel,
    fit_statistics,
    levenberg_marquardt,
    prepare_profile,
)

FOUR_LN2 = 4 * math.log(2)
Q_SAXS = np.linspace(0.3, 2.4, 400)
Q_WAXS = np.linspace(15.5, 23.5, 300)


def gaussian(q, center, fwhm):
    return np.exp(-FOUR_LN2 * ((q - center) / fwhm) ** 2)


def lorentzian(q, center, fwhm):
    return 1 / (1 + 4 * ((q - center) / fwhm) ** 2)


def poisson(rng, expected):
    counts = rng.poisson(expected).astype(float)
    return counts, np.sqrt(np.maximum(counts, 1.0))


def rod_profile(q1, symmetry, *, gamma=None, fwhm=0.06, height=400.0, seed=0, shape=gaussian):
    """Power law + constant + rods whose heights fall off by 0.64 per rod, Poisson noise."""
    rng = np.random.default_rng(seed)
    expected = 2000 * Q_SAXS**-3 + 100
    if symmetry != "none":
        positions = rod_positions(q1, symmetry, gamma_deg=gamma, q_max_per_nm=Q_SAXS[-1])
        for i, center in enumerate(positions):
            expected = expected + height * 0.64**i * shape(Q_SAXS, center, fwhm)
    return poisson(rng, expected)


def cube_form_factor(q, edge_nm=5.7, spread=0.1):
    """In-plane orientation and size average of |F|^2 of a cube lying on a face."""
    phi = np.linspace(0, np.pi / 4, 48)
    z = np.linspace(-2, 2, 17)
    edges = edge_nm * (1 + spread * z)
    weights = np.exp(-0.5 * z**2) * edges**6
    qx = q[:, None, None] * np.cos(phi)[None, :, None]
    qy = q[:, None, None] * np.sin(phi)[None, :, None]
    half = edges[None, None, :] / 2
    f2 = (np.sinc(qx * half / np.pi) * np.sinc(qy * half / np.pi)) ** 2
    return (f2 * weights).sum(axis=2).mean(axis=1) / weights.sum()


SETTINGS = RodFitSettings()


@pytest.mark.parametrize("q1", [0.78, 0.80])
def test_hexagonal_rods_give_hexagonal_and_q1(q1):
    y, s = rod_profile(q1, "hexagonal")
    fit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    assert fit.ok, fit.message
    assert fit.symmetry == "hexagonal"
    assert fit.q1_per_nm == pytest.approx(q1, rel=3e-3)
    assert 0 < fit.q1_err_per_nm < 0.01
    assert fit.spacing_nm == pytest.approx(4 * math.pi / (math.sqrt(3) * q1), rel=3e-3)
    assert fit.rod_positions_per_nm[:3] == pytest.approx([q1, math.sqrt(3) * q1, 2 * q1], rel=3e-3)
    assert math.isnan(fit.gamma_deg)
    assert 0.7 < fit.redchi < 1.4
    assert fit.ic_none - fit.ic_hexagonal > 100


def test_square_rods_give_square():
    y, s = rod_profile(0.83, "square", seed=1)
    fit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    assert (fit.symmetry, fit.ok) == ("square", True)
    assert fit.q1_per_nm == pytest.approx(0.83, rel=3e-3)
    assert fit.spacing_nm == pytest.approx(7.57, rel=5e-3)
    assert fit.ic_hexagonal - fit.ic_square > SETTINGS.delta_ic_symmetry


def test_rhombic_rods_give_pseudo_hexagonal_and_gamma():
    y, s = rod_profile(0.80, "pseudo-hexagonal", gamma=75.0, seed=2)
    fit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    assert (fit.symmetry, fit.ok) == ("pseudo-hexagonal", True)
    assert fit.q1_per_nm == pytest.approx(0.80, rel=3e-3)
    assert fit.gamma_deg == pytest.approx(75.0, abs=1.0)
    assert 0 < fit.gamma_err_deg < 1.0
    expected = 2 * math.pi / (0.80 * math.sin(math.radians(75.0)))
    assert fit.spacing_nm == pytest.approx(expected, rel=5e-3)
    assert fit.ic_rhombic < min(fit.ic_hexagonal, fit.ic_square) - SETTINGS.delta_ic_symmetry


@pytest.mark.parametrize(("q1", "symmetry"), [(0.5, "hexagonal"), (1.1, "square")])
@pytest.mark.parametrize("seed", [3, 4])
def test_first_rod_found_anywhere_in_the_window(q1, symmetry, seed):
    # the first rod stands 15 % above the power law, wherever it is
    height = 0.15 * (2000 * q1**-3 + 100)
    y, s = rod_profile(q1, symmetry, height=height, seed=seed)
    fit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    assert fit.symmetry == symmetry
    assert fit.q1_per_nm == pytest.approx(q1, rel=3e-3)


def test_lorentzian_rods():
    y, s = rod_profile(0.80, "hexagonal", shape=lorentzian, seed=4)
    fit = fit_rods(Q_SAXS, y, s, settings=RodFitSettings(peak_shape="lorentzian"))
    assert fit.symmetry == "hexagonal"
    assert fit.q1_per_nm == pytest.approx(0.80, rel=3e-3)
    assert fit.width_per_nm == pytest.approx(0.06, rel=0.1)


def test_pseudo_voigt_rods_with_growing_width():
    settings = RodFitSettings(peak_shape="pseudo_voigt", width_model="linear")
    y, s = rod_profile(0.80, "hexagonal", seed=5)
    fit = fit_rods(Q_SAXS, y, s, settings=settings)
    assert fit.symmetry == "hexagonal"
    assert fit.q1_per_nm == pytest.approx(0.80, rel=3e-3)
    assert fit.width_growth == pytest.approx(0.0, abs=0.2)


def test_background_only_is_none():
    y, s = rod_profile(0.8, "none", seed=6)
    fit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    assert (fit.symmetry, fit.ok) == ("none", True)
    assert math.isnan(fit.q1_per_nm)
    assert fit.background_exponent == pytest.approx(3.0, abs=0.3)
    assert "no rod" in fit.message


@pytest.mark.parametrize("seed", range(4))
def test_noise_only_is_none(seed):
    rng = np.random.default_rng(seed)
    y, s = poisson(rng, np.full(Q_SAXS.size, 50.0))
    fit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    assert (fit.symmetry, fit.ok) == ("none", True)


@pytest.mark.parametrize("scale", [1e3, 1e5])
def test_cube_form_factor_minima_are_not_rods(scale):
    rng = np.random.default_rng(7)
    expected = scale * cube_form_factor(Q_SAXS) + 0.002 * scale * Q_SAXS**-2 + 20
    y, s = poisson(rng, expected)
    fit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    assert (fit.symmetry, fit.ok) == ("none", True), fit.message


def test_only_first_rod_in_range_is_unknown_with_both_spacings():
    y, s = rod_profile(0.80, "hexagonal", seed=8)
    settings = RodFitSettings(fit_range_per_nm=(0.3, 1.05))
    fit = fit_rods(Q_SAXS, y, s, settings=settings)
    assert fit.symmetry == "unknown"
    assert fit.q1_per_nm == pytest.approx(0.80, abs=3 * fit.q1_err_per_nm)
    assert math.isnan(fit.spacing_nm)
    assert fit.spacing_hex_nm == pytest.approx(9.07, rel=5e-3)
    assert fit.spacing_square_nm == pytest.approx(2 * math.pi / 0.80, rel=5e-3)
    assert fit.rod_positions_per_nm == pytest.approx([fit.q1_per_nm])
    assert "undecided" in fit.message


def test_rods_on_a_form_factor_background_envelope():
    """I = P(q) S(q): broad rods sit lower than S's peak unless P multiplies them."""
    rng = np.random.default_rng(9)
    form = cube_form_factor(Q_SAXS)
    structure = 1 + sum(
        3 * 0.75**i * gaussian(Q_SAXS, c, 0.12)
        for i, c in enumerate(rod_positions(0.80, "hexagonal", q_max_per_nm=2.4))
    )
    y, s = poisson(rng, 3e3 * form * structure + 6 * Q_SAXS**-2 + 20)
    flat = fit_rods(Q_SAXS, y, s, settings=RodFitSettings(rod_envelope="flat", model_spread=False))
    scaled = fit_rods(
        Q_SAXS, y, s, settings=RodFitSettings(rod_envelope="background", model_spread=False)
    )
    chosen = fit_rods(Q_SAXS, y, s, settings=RodFitSettings())
    assert chosen.rod_model.endswith("/background")  # the criterion picks I = P S
    assert abs(scaled.q1_per_nm - 0.80) < abs(flat.q1_per_nm - 0.80)
    assert scaled.q1_per_nm == pytest.approx(0.80, rel=0.01)


@pytest.mark.parametrize(
    ("intensity", "words"),
    [(np.full(400, np.nan), "NaN"), (np.zeros(400), "zero"), (np.full(5, 1.0), "length")],
)
def test_unusable_profiles_fail_with_a_message(intensity, words):
    sigma = np.sqrt(np.abs(intensity))
    rod = fit_rods(Q_SAXS, intensity, sigma, settings=SETTINGS)
    peak = fit_peak200(Q_WAXS, intensity[:300], sigma[:300], settings=PeakFitSettings())
    assert not rod.ok
    assert words in rod.message
    assert math.isnan(rod.q1_per_nm)
    assert not peak.ok
    assert math.isnan(peak.fwhm_per_nm)
    assert peak.message


def test_a_cut_in_any_order_gives_the_sorted_cuts_fit():
    # a cut from a script may come descending or shuffled: it is sorted before the fit
    y, s = rod_profile(0.8, "hexagonal", seed=41)
    ordered = fit_rods(Q_SAXS, y, s, settings=RodFitSettings())
    order = np.random.default_rng(41).permutation(Q_SAXS.size)
    shuffled = fit_rods(Q_SAXS[order], y[order], s[order], settings=RodFitSettings())
    assert shuffled.symmetry == ordered.symmetry == "hexagonal"
    assert shuffled.q1_per_nm == pytest.approx(ordered.q1_per_nm, rel=1e-12)
    wy, ws = peak_profile(0.7, seed=42)
    peak = fit_peak200(Q_WAXS[::-1], wy[::-1], ws[::-1], settings=PeakFitSettings())
    assert peak.fwhm_per_nm == pytest.approx(
        fit_peak200(Q_WAXS, wy, ws, settings=PeakFitSettings()).fwhm_per_nm, rel=1e-12
    )


def test_nan_bins_are_dropped():
    y, s = rod_profile(0.80, "hexagonal", seed=10)
    y[::7] = np.nan
    s[3::11] = np.nan
    fit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    assert fit.symmetry == "hexagonal"
    assert fit.n_points == np.sum(np.isfinite(y) & np.isfinite(s))


@pytest.mark.parametrize("window", [(0.4, 0.76), (0.84, 1.4)])
def test_first_rod_outside_the_window_is_flagged(window):
    y, s = rod_profile(0.80, "hexagonal", seed=11)
    fit = fit_rods(Q_SAXS, y, s, settings=RodFitSettings(q1_window_per_nm=window))
    assert not fit.ok
    assert "widen q1_window_per_nm" in fit.message
    assert math.isnan(fit.q1_per_nm)


@pytest.mark.parametrize(
    ("symmetry", "gamma"), [("hexagonal", None), ("square", None), ("pseudo-hexagonal", 75.0)]
)
def test_warm_start_gives_the_cold_answer(symmetry, gamma):
    y, s = rod_profile(0.81, symmetry, gamma=gamma, seed=12)
    cold = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    warm = fit_rods(Q_SAXS, y, s, settings=SETTINGS, start=cold)
    assert warm.warm_started
    assert not cold.warm_started
    assert warm.symmetry == cold.symmetry == symmetry
    assert warm.q1_per_nm == pytest.approx(cold.q1_per_nm, rel=1e-4)
    assert warm.q1_err_per_nm == pytest.approx(cold.q1_err_per_nm, rel=0.05)


def test_warm_start_follows_a_moving_rod_and_falls_back_when_it_vanishes():
    y0, s0 = rod_profile(0.78, "hexagonal", seed=13)
    previous = fit_rods(Q_SAXS, y0, s0, settings=SETTINGS)
    y1, s1 = rod_profile(0.80, "hexagonal", seed=14)
    moved = fit_rods(Q_SAXS, y1, s1, settings=SETTINGS, start=previous)
    assert moved.q1_per_nm == pytest.approx(0.80, rel=3e-3)
    y2, s2 = rod_profile(1.1, "square", seed=15)
    jumped = fit_rods(Q_SAXS, y2, s2, settings=SETTINGS, start=previous)
    assert jumped.symmetry == "square"
    assert jumped.q1_per_nm == pytest.approx(1.1, rel=3e-3)


def test_q1_and_its_error_agree_with_a_full_lmfit_fit():
    """Variable projection: the same minimum and errors as fitting every parameter."""
    q1_true = 0.80
    y, s = rod_profile(q1_true, "hexagonal", seed=16)
    # the engine's oracle: the plain power law plus constant, additive Gaussian rods
    settings = RodFitSettings(
        background_order=0,
        background_knot_spacing_per_nm=None,
        rod_envelope="flat",
        model_spread=False,
    )
    fit = fit_rods(Q_SAXS, y, s, settings=settings)
    ratios = np.sqrt([1, 3, 4, 7, 9])
    params = lmfit.Parameters()
    params.add("p", value=fit.background_exponent)
    params.add("amp", value=2000.0)
    params.add("const", value=100.0)
    params.add("q1", value=fit.q1_per_nm * 1.002)
    params.add("w", value=fit.width_per_nm, min=0.001)
    for i in range(ratios.size):
        params.add(f"h{i}", value=100.0, min=0)

    def residual(p):
        v = p.valuesdict()
        model = v["amp"] * Q_SAXS ** -v["p"] + v["const"]
        for i, r in enumerate(ratios):
            model = model + v[f"h{i}"] * gaussian(Q_SAXS, r * v["q1"], v["w"])
        return (y - model) / s

    out = lmfit.minimize(residual, params)
    assert out.success
    assert fit.q1_per_nm == pytest.approx(out.params["q1"].value, rel=2e-4)
    assert fit.q1_err_per_nm == pytest.approx(out.params["q1"].stderr, rel=0.05)
    assert fit.width_per_nm == pytest.approx(out.params["w"].value, rel=2e-3)
    assert fit.redchi == pytest.approx(out.redchi, rel=1e-2)  # rod at 3 q1 = q_max or not


def test_rod_settings_are_validated():
    with pytest.raises(ConfigError, match="peak_shape"):
        RodFitSettings(peak_shape="voigt")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="q1_window_per_nm"):
        RodFitSettings(q1_window_per_nm=(1.4, 0.4))
    with pytest.raises(ConfigError, match="ic"):
        RodFitSettings(ic="dic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="background_order"):
        PeakFitSettings(background_order=7)


# ----------------------------------------------------------------------------------- {200}


def peak_profile(fwhm, *, shape="gaussian", eta=0.5, center=20.52, seed=0):
    """{200} on a sloped background, with {111} (broader) and a {220} tail, Poisson noise."""
    rng = np.random.default_rng(seed)

    def peak(c, w, h):
        if shape == "gaussian":
            return h * gaussian(Q_WAXS, c, w)
        if shape == "lorentzian":
            return h * lorentzian(Q_WAXS, c, w)
        return h * (eta * lorentzian(Q_WAXS, c, w) + (1 - eta) * gaussian(Q_WAXS, c, w))

    ratio = center / 20.52
    expected = (
        200
        + 5 * (Q_WAXS - 20)
        + peak(center, fwhm, 3000)
        + peak(17.77 * ratio, 1.1 * fwhm, 1200)
        + peak(29.02 * ratio, fwhm, 800)
    )
    return poisson(rng, expected)


@pytest.mark.parametrize("fwhm", [1.1, 0.7, 0.5])
def test_gaussian_200_width_recovered(fwhm):
    y, s = peak_profile(fwhm, seed=int(fwhm * 10))
    fit = fit_peak200(Q_WAXS, y, s, settings=PeakFitSettings())
    assert fit.ok, fit.message
    assert fit.fwhm_per_nm == pytest.approx(fwhm, rel=0.01)
    assert fit.center_per_nm == pytest.approx(20.52, abs=0.01)
    assert fit.amplitude == pytest.approx(3000, rel=0.03)
    assert 0 < fit.fwhm_err_per_nm < 0.01
    assert fit.center111_per_nm == pytest.approx(17.77, abs=0.03)
    assert math.isnan(fit.center220_per_nm)  # 29.02 lies outside the window
    assert (fit.eta, fit.eta_err) == (0.0, 0.0)


@pytest.mark.parametrize(("shape", "eta"), [("lorentzian", 1.0), ("pseudo_voigt", 0.4)])
def test_lorentzian_and_pseudo_voigt_200(shape, eta):
    y, s = peak_profile(0.7, shape=shape, eta=eta, seed=20)
    fit = fit_peak200(Q_WAXS, y, s, settings=PeakFitSettings(peak_shape=shape))
    assert fit.ok, fit.message
    assert fit.fwhm_per_nm == pytest.approx(0.7, rel=0.02)
    assert fit.eta == pytest.approx(eta, abs=0.08)
    assert fit.peak_shape == shape


def test_shifted_200_is_found_from_the_data():
    y, s = peak_profile(0.7, center=20.9, seed=21)
    fit = fit_peak200(Q_WAXS, y, s, settings=PeakFitSettings())
    assert fit.center_per_nm == pytest.approx(20.9, abs=0.01)
    assert fit.fwhm_per_nm == pytest.approx(0.7, rel=0.01)


def test_no_200_peak_is_a_flagged_result():
    rng = np.random.default_rng(22)
    y, s = poisson(rng, 200 + 5 * (Q_WAXS - 20))
    fit = fit_peak200(Q_WAXS, y, s, settings=PeakFitSettings())
    assert not fit.ok
    assert "no {200} peak" in fit.message
    assert "16.5-23.5 nm^-1" in fit.message


def test_200_at_the_edge_of_its_region_is_a_flagged_result():
    y, s = peak_profile(0.5, center=21.0, seed=23)
    fit = fit_peak200(Q_WAXS, y, s, settings=PeakFitSettings(window_per_nm=(16.5, 20.8)))
    assert not fit.ok
    assert "edge" in fit.message


@pytest.mark.parametrize("shape", ["gaussian", "pseudo_voigt"])
def test_200_warm_start_gives_the_cold_answer(shape):
    settings = PeakFitSettings(peak_shape=shape)
    y, s = peak_profile(0.7, shape=shape, seed=24)
    cold = fit_peak200(Q_WAXS, y, s, settings=settings)
    warm = fit_peak200(Q_WAXS, y, s, settings=settings, start=cold)
    assert warm.warm_started
    assert warm.fwhm_per_nm == pytest.approx(cold.fwhm_per_nm, rel=1e-4)
    assert warm.center_per_nm == pytest.approx(cold.center_per_nm, abs=1e-4)


@pytest.mark.parametrize("shape", ["gaussian", "lorentzian", "pseudo_voigt"])
def test_200_fit_at_its_evaluation_limit_is_not_ok(shape):
    # a cube line with its {111} neighbour: the fit needs more than 5 evaluations
    rng = np.random.default_rng(31)
    line = cube_line_profile(Q_WAXS - 20.52, edge_nm=5.7, size_spread=0.1)
    y, s = poisson(rng, 100 + 3 * Q_WAXS + 8000 * line + 2000 * np.roll(line, -95))
    limited = fit_peak200(Q_WAXS, y, s, settings=PeakFitSettings(peak_shape=shape, max_nfev=5))
    assert not limited.ok
    assert "evaluation limit (max_nfev = 5)" in limited.message
    assert "raise max_nfev" in limited.message
    assert math.isnan(limited.fwhm_per_nm)
    assert fit_peak200(Q_WAXS, y, s, settings=PeakFitSettings(peak_shape=shape)).ok


def test_covariance_with_a_peak_of_height_zero_is_the_pseudo_inverse():
    # {200} alone: the {111} neighbour's height comes out 0, so the model does not depend
    # on its centre and width and J^T J is singular; the compiled Cholesky covariance
    # leaves those rows at 0, as the pseudo-inverse of the whole matrix does
    rng = np.random.default_rng(32)
    y, _ = poisson(rng, 200 + 5 * (Q_WAXS - 20) + 3000 * gaussian(Q_WAXS, 20.52, 0.6))
    profile = prepare_profile(Q_WAXS, y, np.sqrt(np.maximum(y, 1)), (16.5, 23.5), 2)
    model = SeparableModel(
        mode=MODE_PEAKS,
        shape="gaussian",
        power_law=False,
        param_names=("center200", "fwhm200", "center111", "fwhm111"),
        families=np.zeros((2, 2)),
    )
    refined = levenberg_marquardt(
        model,
        profile,
        np.array([20.5, 0.6, 17.8, 0.6]),
        np.array([19.5, 0.03, 17.0, 0.03]),
        np.array([21.5, 3.5, 18.5, 3.5]),
        max_nfev=100,
    )
    ev = refined.evaluation
    assert ev.beta[ev.n_background + 1] == 0.0  # the {111} column is inactive
    stats = fit_statistics(ev, profile.n, 4, "bic")
    kernel = stats.covariance
    assert np.all(kernel[2:4] == 0.0)
    assert np.all(kernel[:, 2:4] == 0.0)
    assert np.all(np.diag(kernel)[:2] > 0)
    np.testing.assert_allclose(kernel, stats._pseudo_inverse_covariance(), rtol=1e-6, atol=1e-14)


def test_max_nfev_of_the_config_reaches_both_fits():
    config = load_config(Path(__file__).resolve().parents[1] / "sample_data/demo/demo.toml")
    for settings in config.detectors:
        plan = load_plan(replace(settings, max_nfev=7), config)
        assert plan.rod_settings.max_nfev == plan.peak_settings.max_nfev == 7


def test_results_are_frozen():
    y, s = rod_profile(0.8, "hexagonal")
    fit: RodFit = fit_rods(Q_SAXS, y, s, settings=SETTINGS)
    with pytest.raises(AttributeError):
        fit.q1_per_nm = 1.0  # type: ignore[misc]
    peak: PeakFit = fit_peak200(Q_WAXS, *peak_profile(0.7), settings=PeakFitSettings())
    with pytest.raises(AttributeError):
        peak.ok = False  # type: ignore[misc]


# ------------------------------------------------------- the sample-data generator's physics


def synth_cut(study_time_s, *, seed, pixels_per_bin=20):
    """A q_par cut built like sample_data.synth draws a GISAXS frame (Yoneda band)."""
    from sample_data import synth

    q = np.linspace(0.3, 2.4, 300)
    q_perp = 0.38  # the Yoneda band at 10 keV, 0.3 deg
    state = synth.gisaxs_state_at(study_time_s)
    expected = 3000 * synth.cube_form_factor(q, np.full_like(q, q_perp)) + 0.5
    if state.q1_per_nm is not None:
        vertical = float(synth.cube_form_factor(np.zeros(1), np.array([q_perp]))[0])
        positions, multiplicity = synth.rod_positions_per_nm(
            state.q1_per_nm, state.gamma_deg, q_max_per_nm=2.6
        )
        for position, count in zip(positions, multiplicity, strict=True):
            height = 700 * count * state.q1_per_nm / position * np.exp(-((0.6 * position) ** 2))
            expected = expected + vertical * height * gaussian(q, position, state.rod_fwhm_per_nm)
    counts = np.random.default_rng(seed).poisson(expected * pixels_per_bin).astype(float)
    return q, counts / pixels_per_bin, np.sqrt(np.maximum(counts, 1)) / pixels_per_bin, state


def test_study_timeline_of_the_sample_data_generator():
    previous = None
    for i, time_s in enumerate((150.0, 600.0, 1200.0, 1650.0, 1800.0, 2100.0, 2400.0, 2700.0)):
        q, y, s, state = synth_cut(time_s, seed=i)
        cold = fit_rods(q, y, s, settings=SETTINGS)
        warm = fit_rods(q, y, s, settings=SETTINGS, start=previous)
        previous = warm
        for fit in (cold, warm):
            assert fit.ok, fit.message
            assert fit.symmetry == state.symmetry, (time_s, fit.message)
            if state.q1_per_nm is not None:
                assert fit.q1_per_nm == pytest.approx(state.q1_per_nm, rel=2e-3)
            if state.symmetry == "pseudo-hexagonal":
                assert fit.gamma_deg == pytest.approx(state.gamma_deg, abs=1.0)


def test_compiled_cholesky_inverse_is_numpys_inverse():
    # the covariance and the cube line's background block invert by this compiled
    # Cholesky; numpy's general inverse is its oracle, and a singular matrix fails
    from pipeline.varpro import cholesky_inverse

    rng = np.random.default_rng(12)
    for size in (1, 2, 4, 7):
        a = rng.normal(size=(size + 3, size))
        matrix = a.T @ a
        inverse, ok = cholesky_inverse(matrix, 1e-12)
        assert ok
        np.testing.assert_allclose(inverse, np.linalg.inv(matrix), rtol=1e-9, atol=1e-12)
    twin = rng.normal(size=(6, 1))
    singular = np.hstack([twin, twin]).T @ np.hstack([twin, twin])
    inverse, ok = cholesky_inverse(singular, 1e-12)
    assert not ok
    assert np.all(inverse == 0)
