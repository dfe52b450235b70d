"""Detector models and masks against pyFAI's own detectors and the numbers in SCIENCE.md."""

import numpy as np
import pyFAI.detectors
import pytest
from pyFAI.detectors import detector_factory

from detectors.errors import GeometryError
from detectors.pilatus import (
    PILATUS_300K,
    PILATUS_300KW,
    SATURATION_COUNTS,
    canonical_detector_name,
    detector_model,
    frame_mask,
    gap_mask,
    pyfai_detector,
    static_mask,
)

# Three modules of 195 x 487 pixels: stacked with two 17-row gaps (300K), side by side
# with two 7-column gaps (300K-W) -- counted here from the datasheet, not from pyFAI.
GAPS_300K = 2 * 17 * 487
GAPS_300KW = 2 * 7 * 195


@pytest.mark.parametrize(
    ("name", "shape", "n_gap_px"),
    [(PILATUS_300K, (619, 487), GAPS_300K), (PILATUS_300KW, (195, 1475), GAPS_300KW)],
)
def test_study_detectors_have_their_shape_pixels_and_gaps(name, shape, n_gap_px):
    model = detector_model(name)
    assert model.name == name
    assert model.shape == shape
    assert (model.pixel_row_m, model.pixel_col_m) == (pytest.approx(172e-6), pytest.approx(172e-6))
    assert model.n_gap_px == n_gap_px


@pytest.mark.parametrize("name", [PILATUS_300K, PILATUS_300KW])
def test_gap_mask_is_pyfais_mask(name):
    reference = detector_factory(name).calc_mask() != 0
    mask = gap_mask(name.upper())
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, reference)


def test_300k_gaps_are_the_rows_between_modules():
    mask = gap_mask("pilatus300k")
    gap_rows = np.flatnonzero(mask.all(axis=1))
    np.testing.assert_array_equal(gap_rows, [*range(195, 212), *range(407, 424)])
    assert not mask[~mask.all(axis=1)].any()


def test_300kw_gaps_are_the_columns_between_modules():
    mask = gap_mask("pilatus300kw")
    gap_cols = np.flatnonzero(mask.all(axis=0))
    np.testing.assert_array_equal(gap_cols, [*range(487, 494), *range(981, 988)])
    assert not mask[:, ~mask.all(axis=0)].any()


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("pilatus300kw", "Pilatus300kw"),
        ("PILATUS300K", "Pilatus300k"),
        ("Pilatus 300K-W", "Pilatus300kw"),
        ("pilatus_300k", "Pilatus300k"),
        ("Pilatus1M", "Pilatus1M"),
        ("eiger2_4m", "Eiger2_4M"),
        ("EIGER2_1M-W", "Eiger2_1MW"),
    ],
)
def test_detector_names_in_any_case_and_spelling(given, canonical):
    assert canonical_detector_name(given) == canonical
    assert type(detector_factory(canonical)).__name__ == canonical


def test_every_pyfai_detector_name_maps_to_its_class():
    for alias, cls in pyFAI.detectors.ALL_DETECTORS.items():
        assert canonical_detector_name(alias.upper()) == cls.__name__


def test_unknown_detector_lists_close_matches():
    with pytest.raises(GeometryError, match=r"'pilatus300kx'.*did you mean.*Pilatus300k"):
        canonical_detector_name("pilatus300kx")
    with pytest.raises(GeometryError, match="no detector called 'xyz'"):
        static_mask("xyz")


def test_detector_without_fixed_shape_is_refused():
    with pytest.raises(GeometryError, match="no fixed frame shape"):
        pyfai_detector("detector")


def test_other_pyfai_detectors_get_their_own_mask():
    mask = static_mask("eiger2_4m")
    assert mask.shape == detector_factory("Eiger2_4M").shape
    assert mask.sum() == np.count_nonzero(detector_factory("Eiger2_4M").mask)


def test_static_mask_adds_the_user_mask():
    user = np.zeros((195, 1475), dtype=np.uint8)
    user[10:20, 100:110] = 3  # nonzero = masked
    user[0, 490] = 1  # already a gap pixel
    mask = static_mask("Pilatus300kw", user_mask=user)
    assert mask.sum() == GAPS_300KW + 100
    assert mask[10:20, 100:110].all()


def test_static_mask_refuses_a_user_mask_of_another_shape():
    with pytest.raises(GeometryError, match=r"\(619, 487\).*Pilatus300kw.*\(195, 1475\)"):
        static_mask("Pilatus300kw", user_mask=np.zeros((619, 487), dtype=bool))


def test_frame_mask_masks_gaps_negative_and_saturated_pixels():
    static = gap_mask(PILATUS_300K)
    data = np.full(static.shape, 50, dtype=np.int32)
    data[static] = -1  # how Pilatus writes gap pixels
    data[5, 5] = -2  # a dead pixel
    data[6, 6] = SATURATION_COUNTS
    data[7, 7] = SATURATION_COUNTS - 1  # one count below: kept
    data[8, 8] = 0
    mask = frame_mask(data, static)
    assert mask[5, 5]
    assert mask[6, 6]
    assert not mask[7, 7]
    assert not mask[8, 8]
    assert mask.sum() == GAPS_300K + 2
    assert not static[5, 5]  # the static mask is not changed


def test_frame_mask_masks_nan_and_honours_the_saturation_setting():
    static = np.zeros((2, 3), dtype=bool)
    data = np.array([[1.0, np.nan, 99.0], [100.0, -0.5, 3.0]])
    assert frame_mask(data, static, saturation_counts=100).tolist() == [
        [False, True, False],
        [True, True, False],
    ]


def test_saturation_is_the_20_bit_counter_limit():
    assert 2**20 - 4 < SATURATION_COUNTS < 2**20
