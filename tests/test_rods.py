"""Rod fits on frames this project's generator did not make: line shapes, missing orders,
phantom rods, flags, error-bar coverage, cold = warm on the demo, and the lmfit models."""

import dataclasses
import json
import math
from pathlib import Path

import lmfit
import numpy as np
import pytest
from rod_frames import HEX_RATIOS, SQUARE_RATIOS, cube_form_factor, gaussian, rod_cut

from detectors.io import iter_frames
from detectors.pilatus import SATURATION_COUNTS
from pipeline.fits import PeakFitSettings, RodFitSettings, fit_peak200, fit_rods
from pipeline.integrate import integrate_cut
from pipeline.io import load_config, load_plan
from pipeline.lmfit_models import peak200_lmfit_model, rod_lmfit_model

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo"
SETTINGS = RodFitSettings()
LATTICES = {"hexagonal": (HEX_RATIOS, 0.78), "square": (SQUARE_RATIOS, 0.83)}


@pytest.mark.parametrize("shape", ["gaussian", "lorentzian", "pseudo_voigt"])
@pytest.mark.parametrize("symmetry", ["hexagonal", "square"])
def test_q1_unbiased_for_each_line_shape_on_a_cube_form_factor(shape, symmetry):
    """Rods multiply a 5.7 nm cube's form factor; the mean q1 over draws is within 0.3 %."""
    ratios, q1 = LATTICES[symmetry]
    q1s = []
    for seed in range(6):
        q, y, s = rod_cut(q1, ratios, shape=shape, rng=seed)
        fit = fit_rods(q, y, s, settings=SETTINGS)
        assert (fit.symmetry, fit.ok) == (symmetry, True), fit.message
        assert abs(fit.q1_per_nm - q1) < 4 * fit.q1_err_per_nm
        q1s.append(fit.q1_per_nm)
    assert np.mean(q1s) == pytest.approx(q1, rel=3e-3)


@pytest.mark.parametrize(("spacing_nm", "seed"), [(7.6, 0), (7.6, 1), (7.8, 2)])
def test_square_lattice_without_its_sqrt2_rod_is_square(spacing_nm, seed):
    """5.7 nm cubes 7.6 nm apart: the sqrt 2 rod falls on the form-factor minimum."""
    q1 = 2 * math.pi / spacing_nm
    q, y, s = rod_cut(q1, SQUARE_RATIOS, missing=(math.sqrt(2),), rng=seed)
    fit = fit_rods(q, y, s, settings=SETTINGS)
    assert (fit.symmetry, fit.ok) == ("square", True), fit.message
    assert fit.q1_per_nm == pytest.approx(q1, rel=3e-3)
    assert fit.spacing_nm == pytest.approx(spacing_nm, rel=3e-3)
    assert 1.0 in fit.orders_found
    assert round(math.sqrt(2), 4) not in fit.orders_found
    assert {2.0, round(math.sqrt(5), 4)} <= set(fit.orders_found)


def test_orders_found_lists_the_hexagonal_orders():
    q, y, s = rod_cut(0.78, HEX_RATIOS, rng=3)
    fit = fit_rods(q, y, s, settings=SETTINGS)
    assert fit.orders_found[:3] == pytest.approx([1, math.sqrt(3), 2], abs=1e-3)
    allowed = {round(r, 4) for r in HEX_RATIOS}
    assert set(fit.orders_found) <= allowed


def _edge_frame(seed, bump):
    """Rods in the ratio 1 : 2 : 3 at 33 nm (q1 0.190) on a steep low-q edge, with a tiny
    bump where a square lattice of 47 nm would put its first rod (0.134 nm^-1)."""
    rng = np.random.default_rng(seed)
    q = np.linspace(0.08, 0.8, 160)
    q1 = 2 * math.pi / 33.0
    expected = 2.0 * q**-4 + 40.0 * q**-1 + 30
    for k, height in ((1, 400.0), (2, 180.0), (3, 90.0)):
        expected = expected + height * gaussian(q, k * q1, 0.02)
    expected = expected + bump * (2.0 * 0.134**-4) * gaussian(q, 0.134, 0.012)
    counts = rng.poisson(expected).astype(float)
    return q, counts, np.sqrt(np.maximum(counts, 1.0)), q1


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("bump", [0.0, 0.005])
def test_tiny_bump_on_a_steep_edge_is_not_the_first_rod(seed, bump):
    q, y, s, q1 = _edge_frame(seed, bump)
    settings = RodFitSettings(q1_window_per_nm=(0.1, 0.4), max_width_per_nm=0.05)
    fit = fit_rods(q, y, s, settings=settings)
    assert fit.ok, fit.message
    assert fit.q1_per_nm == pytest.approx(q1, rel=5e-3), fit.message
    assert fit.symmetry != "none"
    assert fit.redchi < 3


@pytest.mark.parametrize("seed", range(3))
def test_fit_at_its_evaluation_limit_is_not_ok(seed):
    q, y, s = rod_cut(0.80, HEX_RATIOS, rng=seed)
    fit = fit_rods(q, y, s, settings=RodFitSettings(max_nfev=5))
    assert not fit.ok
    assert "evaluation limit" in fit.message
    assert "max_nfev" in fit.message


@pytest.mark.parametrize(("symmetry", "factor"), [("hexagonal", 10.0), ("square", 6.0)])
def test_reduced_chi_square_far_above_one_is_flagged(symmetry, factor):
    """Errors 6-10x too small: the values stay, but the fit is not ok and says why."""
    ratios, q1 = LATTICES[symmetry]
    q, y, s = rod_cut(q1, ratios, rng=4)
    fit = fit_rods(q, y, s / factor, settings=SETTINGS)
    assert fit.redchi > SETTINGS.max_redchi
    assert not fit.ok
    assert "reduced chi-square" in fit.message
    honest = fit_rods(q, y, s, settings=SETTINGS)
    assert honest.ok
    assert honest.redchi < 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("symmetry", "shape"), [("hexagonal", "lorentzian"), ("square", "gaussian")]
)
def test_error_bars_cover_the_truth_in_about_68_percent(symmetry, shape):
    ratios, q1 = LATTICES[symmetry]
    inside = []
    for seed in range(200):
        q, y, s = rod_cut(q1, ratios, shape=shape, rng=1000 + seed)
        fit = fit_rods(q, y, s, settings=SETTINGS)
        inside.append(abs(fit.q1_per_nm - q1) <= fit.q1_err_per_nm)
    assert 0.55 <= np.mean(inside) <= 0.80


def test_model_spread_enters_the_error_where_the_shape_moves_q1():
    q, y, s = rod_cut(0.80, HEX_RATIOS, shape="pseudo_voigt", fwhm_per_nm=0.1, rng=5)
    fit = fit_rods(q, y, s, settings=SETTINGS)
    assert fit.q1_err_per_nm >= fit.q1_stat_err_per_nm
    if fit.q1_model_spread_per_nm > fit.q1_stat_err_per_nm:
        assert fit.q1_err_per_nm == pytest.approx(
            math.hypot(fit.q1_stat_err_per_nm, fit.q1_model_spread_per_nm)
        )
        assert "added to its error" in fit.message
    fixed = fit_rods(q, y, s, settings=dataclasses.replace(SETTINGS, model_spread=False))
    assert fixed.q1_err_per_nm == fixed.q1_stat_err_per_nm
    assert fixed.q1_model_spread_per_nm == 0


def _demo_cuts():
    config = load_config(DEMO / "demo.toml")
    settings = config.settings("gisaxs")
    assert settings.n_bins is None  # the documented default, "auto"
    plan = load_plan(settings, config)
    truth = {row["file"]: row for row in json.loads((DEMO / "truth.json").read_text())}
    for path in sorted((DEMO / "gisaxs").glob("*.cbf")):
        frame = next(iter(iter_frames(path)))
        cut = integrate_cut(plan.cut, frame.data, saturation_counts=SATURATION_COUNTS)
        yield cut, truth[f"gisaxs/{path.name}"], plan.rod_settings


def test_every_demo_frame_cold_equals_warm_and_the_truth():
    """Cold (first of a chunk, inspect) and warm (in a run) give one answer, the truth's.

    A warm start that repeats one of the search's own starts is left out, so on most
    frames of a run the warm fit is the cold one bit for bit (14 of the 34 frames were,
    when the previous frame's lattice was refined once more as a start of its own).
    """
    previous = None
    identical = 0
    for cut, truth, settings in _demo_cuts():
        args = (cut.q_par_per_nm, cut.intensity, cut.sigma)
        cold = fit_rods(*args, settings=settings)
        warm = fit_rods(*args, settings=settings, start=previous)
        previous = warm
        identical += _same_fit(cold, warm)
        assert cold.ok, (truth["file"], cold.message)
        assert warm.symmetry == cold.symmetry == truth["symmetry"], truth["file"]
        if truth["q1_nm-1"] is None:
            continue
        assert cold.q1_per_nm == pytest.approx(truth["q1_nm-1"], rel=5e-3)
        assert abs(warm.q1_per_nm - cold.q1_per_nm) <= 0.1 * cold.q1_err_per_nm, truth["file"]
    assert identical >= 26


def _same_fit(a, b):
    """Every field equal (NaN equal to NaN), except whether a warm start was given."""
    fields = (f.name for f in dataclasses.fields(a) if f.name != "warm_started")
    return all(
        np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True)
        if isinstance(getattr(a, name), (float, np.ndarray))
        else getattr(a, name) == getattr(b, name)
        for name in fields
    )


def test_rod_lmfit_model_refits_to_the_engine_answer():
    q, y, s = rod_cut(0.80, HEX_RATIOS, rng=6)
    fit = fit_rods(q, y, s, settings=SETTINGS)
    model, params = rod_lmfit_model(q, y, s, fit=fit, settings=SETTINGS)
    assert isinstance(model, lmfit.Model)
    assert {"q1", "fwhm", "exponent", "const", "h0"} <= set(params)
    assert params["q1"].value == fit.q1_per_nm
    start = model.eval(params, q=q)
    assert np.sum(((y - start) / s) ** 2) / (q.size - 20) == pytest.approx(fit.redchi, rel=0.1)
    result = model.fit(y, params, q=q, weights=1 / s)
    assert result.success
    assert result.params["q1"].value == pytest.approx(fit.q1_per_nm, abs=0.5 * fit.q1_err_per_nm)
    assert result.params["q1"].stderr == pytest.approx(fit.q1_stat_err_per_nm, rel=0.2)
    assert "q1:" in result.fit_report()


def test_peak200_lmfit_model_refits_to_the_engine_answer():
    rng = np.random.default_rng(7)
    settings = PeakFitSettings()
    q = np.linspace(16.5, 23.5, 200)
    expected = 80 + 3 * q + 900 * gaussian(q, 20.52, 0.7) + 300 * gaussian(q, 17.77, 0.6)
    y = rng.poisson(expected).astype(float)
    s = np.sqrt(y)
    fit = fit_peak200(q, y, s, settings=settings)
    model, params = peak200_lmfit_model(q, y, s, fit=fit, settings=settings)
    result = model.fit(y, params, q=q, weights=1 / s)
    assert result.params["center200"].value == pytest.approx(fit.center_per_nm, abs=1e-3)
    assert result.params["fwhm200"].value == pytest.approx(fit.fwhm_per_nm, rel=1e-2)
    assert result.params["fwhm200"].stderr == pytest.approx(fit.fwhm_err_per_nm, rel=0.2)
    assert "fwhm200:" in result.fit_report()


def test_cube_form_factor_of_the_test_frames_has_its_minimum_near_2pi_over_L():
    # along <100> the minimum is at 2 pi / L = 1.10 nm^-1; the in-plane orientation
    # average moves it up, to 1.18 nm^-1, where a 7.6 nm square lattice's sqrt 2 rod sits
    q = np.linspace(0.8, 1.4, 121)
    form = cube_form_factor(q, 5.7, spread=0.0)
    assert 2 * math.pi / 5.7 < q[np.argmin(form)] < 2 * math.pi / 7.6 * math.sqrt(2) + 0.02


def test_a_fresh_numba_cache_is_detected_and_announced(tmp_path):
    """After install the kernels compile: the CLI says so in one line on stderr."""
    import io
    import os
    import subprocess
    import sys

    from pipeline.kernels import kernels_cached, prepare_kernels

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    code = "from pipeline.kernels import kernels_cached; print(kernels_cached())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    prepare_kernels()  # this process: compiled or loaded now
    assert kernels_cached()
    stream = io.StringIO()
    prepare_kernels(stream)
    assert stream.getvalue() == ""  # cached: nothing to announce


def test_lattice_scores_of_the_first_rod_search_match_numpy():
    # the compiled scoring of the first-rod search against the same rule in numpy:
    # sum of max(SNR, 0)^2 - 1 over a lattice's rods inside the cut, coinciding rods once
    from pipeline.lattice import HEXAGONAL_RATIOS, RHOMBIC_FAMILIES, SQUARE_RATIOS
    from pipeline.rods import _GAMMA_GRID_DEG, _model_scores

    def numpy_score(positions, grid, snr, width, q_max):
        positions = np.sort(positions, axis=-1)
        keep = np.ones(positions.shape, dtype=bool)
        keep[..., 1:] = np.diff(positions, axis=-1) > width
        keep &= positions <= q_max
        values = np.maximum(np.interp(positions, grid, snr), 0.0)
        return np.sum(np.where(keep, values * values - 1.0, 0.0), axis=-1)

    rng = np.random.default_rng(11)
    grid = 0.3 + 0.021 * np.arange(100)
    families = np.asarray(RHOMBIC_FAMILIES)
    cos_g = np.cos(np.radians(_GAMMA_GRID_DEG))[:, None]
    rhombic = np.sqrt(families[None, :, 0] - 2.0 * families[None, :, 1] * cos_g)
    for width in (0.03, 0.08):
        snr = rng.normal(size=grid.size) * 3
        q1s = rng.uniform(0.4, 1.4, 6)
        got = _model_scores(grid, snr, q1s, width, 2.2)
        for name, ratios in (("hexagonal", HEXAGONAL_RATIOS), ("square", SQUARE_RATIOS)):
            expected = numpy_score(q1s[:, None] * np.asarray(ratios), grid, snr, width, 2.2)
            scores = [c.score for c in got if c.model == name]
            np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-12)
        expected = numpy_score(q1s[:, None, None] * rhombic[None], grid, snr, width, 2.2)
        rhombic_starts = [c for c in got if c.model == "rhombic"]
        # per first rod: the best-scoring gamma first, then the spread of warm gammas
        best = [
            c
            for i, c in enumerate(rhombic_starts)
            if i == 0 or c.q1_per_nm != rhombic_starts[i - 1].q1_per_nm
        ]
        np.testing.assert_allclose([c.score for c in best], expected.max(axis=1), rtol=1e-12)
        gammas = _GAMMA_GRID_DEG[np.argmax(expected, axis=1)]
        assert [c.gamma_deg for c in best] == pytest.approx(gammas)
        for c in rhombic_starts:  # every start's score is numpy's at its gamma
            row = int(np.flatnonzero(q1s == c.q1_per_nm)[0])
            column = int(np.argmin(np.abs(_GAMMA_GRID_DEG - c.gamma_deg)))
            assert c.score == pytest.approx(expected[row, column], rel=1e-12)


def test_cold_search_finds_the_rhombic_lattice_a_warm_start_found():
    # demo frame 22 (gamma 71 deg, just past the transition) with 300 bins, as the shared
    # bliss_multiscan case cuts it: fitted cold it was "unknown" with reduced chi-square
    # 620, and pseudo-hexagonal only when the previous frame's gammas were tried as well;
    # the cold search now starts the rhombic lattice at those gammas too
    config = load_config(DEMO / "demo.toml")
    settings = dataclasses.replace(config.settings("gisaxs"), n_bins=300)
    plan = load_plan(settings, config)
    frame = next(iter(iter_frames(DEMO / "gisaxs" / "gisaxs_00022.cbf")))
    cut = integrate_cut(plan.cut, frame.data, saturation_counts=SATURATION_COUNTS)
    truth = {row["file"]: row for row in json.loads((DEMO / "truth.json").read_text())}
    expected = truth["gisaxs/gisaxs_00022.cbf"]
    fit = fit_rods(cut.q_par_per_nm, cut.intensity, cut.sigma, settings=plan.rod_settings)
    assert fit.ok, fit.message
    assert fit.symmetry == expected["symmetry"] == "pseudo-hexagonal"
    assert fit.q1_per_nm == pytest.approx(expected["q1_nm-1"], rel=5e-3)
