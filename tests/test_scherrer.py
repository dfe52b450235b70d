"""Scherrer sizes and the removal of the instrumental width."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.scherrer import (
    remove_instrumental_fwhm,
    scherrer_size_err_nm,
    scherrer_size_nm,
)

widths = st.floats(min_value=0.05, max_value=5.0)
etas = st.floats(min_value=0.0, max_value=1.0)


@pytest.mark.parametrize(
    ("fwhm", "size", "study"), [(1.1, 5.7, 5.9), (0.7, 9.0, 9.1), (0.5, 12.6, 13.2)]
)
def test_study_sizes_with_k_one(fwhm, size, study):
    domain = scherrer_size_nm(fwhm, k_factor=1.0)
    assert round(domain, 1) == size
    assert domain == pytest.approx(study, rel=0.05)


def test_k_factor_scales_the_size():
    assert scherrer_size_nm(0.5, k_factor=0.9) == pytest.approx(0.9 * scherrer_size_nm(0.5))


def test_gaussian_widths_add_in_quadrature_and_lorentzian_linearly():
    assert remove_instrumental_fwhm(0.5, 0.3, peak_shape="gaussian") == pytest.approx(0.4)
    assert remove_instrumental_fwhm(0.5, 0.3, peak_shape="lorentzian") == pytest.approx(0.2)


@given(fwhm=widths, fraction=st.floats(min_value=0.0, max_value=0.95))
def test_pseudo_voigt_rule_reduces_to_the_pure_shapes(fwhm, fraction):
    inst = fraction * fwhm
    gauss = remove_instrumental_fwhm(fwhm, inst, peak_shape="gaussian")
    lorentz = remove_instrumental_fwhm(fwhm, inst, peak_shape="lorentzian")
    pv0 = remove_instrumental_fwhm(fwhm, inst, peak_shape="pseudo_voigt", eta=0.0)
    pv1 = remove_instrumental_fwhm(fwhm, inst, peak_shape="pseudo_voigt", eta=1.0)
    assert pv0 == pytest.approx(gauss, rel=1e-4)
    assert pv1 == pytest.approx(lorentz, rel=1e-4, abs=1e-9)


@given(fwhm=widths, eta=etas)
def test_pseudo_voigt_without_instrument_keeps_the_width(fwhm, eta):
    kept = remove_instrumental_fwhm(fwhm, 0.0, peak_shape="pseudo_voigt", eta=eta)
    assert kept == pytest.approx(fwhm, rel=1e-4)


@given(eta1=etas, eta2=etas)
def test_more_lorentzian_removes_more(eta1, eta2):
    low, high = sorted((eta1, eta2))
    a = remove_instrumental_fwhm(0.5, 0.3, peak_shape="pseudo_voigt", eta=low)
    b = remove_instrumental_fwhm(0.5, 0.3, peak_shape="pseudo_voigt", eta=high)
    assert 0.2 - 1e-9 <= b <= a + 1e-9 <= 0.4 + 2e-9


@pytest.mark.parametrize("shape", ["gaussian", "lorentzian", "pseudo_voigt"])
def test_width_not_above_instrument_is_nan(shape):
    assert math.isnan(remove_instrumental_fwhm(0.3, 0.3, peak_shape=shape, eta=0.5))
    assert math.isnan(remove_instrumental_fwhm(0.2, 0.3, peak_shape=shape, eta=0.5))
    assert math.isnan(remove_instrumental_fwhm(math.nan, 0.1, peak_shape=shape, eta=0.5))
    assert math.isnan(remove_instrumental_fwhm(0.5, math.nan, peak_shape=shape, eta=0.5))
    # a failed fit: every value NaN, the pipeline goes on
    assert math.isnan(remove_instrumental_fwhm(math.nan, 0.1, peak_shape=shape, eta=math.nan))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="instrumental"):
        remove_instrumental_fwhm(0.5, -0.1, peak_shape="gaussian")
    with pytest.raises(ValueError, match="eta"):
        remove_instrumental_fwhm(0.5, 0.1, peak_shape="pseudo_voigt")
    with pytest.raises(ValueError, match="peak_shape"):
        remove_instrumental_fwhm(0.5, 0.1, peak_shape="voigt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k_factor"):
        scherrer_size_nm(0.5, k_factor=0.0)


def test_size_of_no_width_is_nan():
    assert math.isnan(scherrer_size_nm(math.nan))
    assert math.isnan(scherrer_size_nm(0.0))
    assert math.isnan(scherrer_size_err_nm(math.nan, 0.01))
    assert math.isnan(scherrer_size_err_nm(0.5, math.nan))


def test_size_error_is_the_derivative():
    beta, err = 0.5, 0.01
    step = 1e-6
    slope = (scherrer_size_nm(beta + step) - scherrer_size_nm(beta - step)) / (2 * step)
    assert scherrer_size_err_nm(beta, err) == pytest.approx(abs(slope) * err, rel=1e-6)
