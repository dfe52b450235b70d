"""Fingerprints and checkpoint text: what keys a result, and what a checkpoint may hold."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.io import FrameRef
from pipeline.checkpoints import CheckpointFormatError, decode, encode
from pipeline.config import ScherrerSettings
from pipeline.fingerprint import FileIdentity, chunk_fingerprint, fingerprint, plan_fingerprint
from pipeline.fits import RodFit
from pipeline.io import load_config, load_plan

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo" / "demo.toml"


@pytest.fixture(scope="module")
def gisaxs():
    config = load_config(DEMO)
    settings = config.detectors[0]
    return settings, config, load_plan(settings, config)


def test_every_part_of_a_plan_keys_it(gisaxs):
    settings, config, plan = gisaxs
    key = plan_fingerprint(plan, settings, version="1.0")
    assert key == plan_fingerprint(load_plan(settings, config), settings, version="1.0")
    changed = [
        plan_fingerprint(plan, settings, version="1.1"),
        plan_fingerprint(
            dataclasses.replace(
                plan, rod_settings=dataclasses.replace(plan.rod_settings, peak_shape="lorentzian")
            ),
            settings,
            version="1.0",
        ),
        plan_fingerprint(
            dataclasses.replace(plan, scherrer=ScherrerSettings(k_factor=0.886)),
            settings,
            version="1.0",
        ),
        plan_fingerprint(
            dataclasses.replace(plan, geometry=plan.geometry.with_incidence(0.31)),
            settings,
            version="1.0",
        ),
        plan_fingerprint(
            dataclasses.replace(plan, static_mask=~plan.static_mask), settings, version="1.0"
        ),
        plan_fingerprint(plan, dataclasses.replace(settings, tilt_angle_deg=0.1), version="1.0"),
    ]
    assert len({key, *changed}) == len(changed) + 1
    # the frame globs are not part of it: the chunks key their own frames
    same = dataclasses.replace(settings, frames=("elsewhere/*.cbf",))
    assert plan_fingerprint(plan, same, version="1.0") == key


def test_a_chunk_is_keyed_by_its_files_identity():
    refs = (FrameRef(Path("a.cbf")), FrameRef(Path("b.cbf")))
    ident = {
        "a.cbf": FileIdentity("a.cbf", 10, 1, "00"),
        "b.cbf": FileIdentity("b.cbf", 10, 1, "11"),
    }
    key = chunk_fingerprint("plan", refs, ident)
    for field, value in (("size", 11), ("mtime_ns", 2), ("sha256", "22")):
        other = dict(ident, b=None)
        other["b.cbf"] = dataclasses.replace(ident["b.cbf"], **{field: value})
        assert chunk_fingerprint("plan", refs, other) != key
    assert chunk_fingerprint("other plan", refs, ident) != key
    assert chunk_fingerprint("plan", refs[::-1], ident) != key
    assert chunk_fingerprint("plan", refs, {"a.cbf": ident["a.cbf"], "b.cbf": None}) == ""


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.zeros(3), np.zeros(3, dtype=np.float32)),
        (np.zeros((2, 3)), np.zeros((3, 2))),
        (0.0, -0.0),
        ((1, 2), (2, 1)),
        ({"a": 1}, {"a": 2}),
    ],
)
def test_distinct_values_have_distinct_fingerprints(a, b):
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) == fingerprint(a)


@given(
    st.lists(
        st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=5), st.none()),
        max_size=6,
    )
)
def test_checkpoint_text_round_trips(values):
    back = decode(encode(tuple(values)), types={})
    assert len(back) == len(values)
    for x, y in zip(back, values, strict=True):
        assert (isinstance(x, float) and math.isnan(x) and math.isnan(y)) or x == y


def test_checkpoint_text_rebuilds_only_the_types_it_is_given():
    nan = math.nan
    rod = RodFit(
        0.83, 0.001, "square", nan, nan, 7.57, 0.01, 9.07, 7.57, 0.05, 0.001, 0.0, 3.9, 0.1,
        (0.83, 1.66), (120.0, 30.5), 1.02, 10.0, 5.0, -20.0, nan, "bic", 140, True, True,
    )  # fmt: skip
    text = encode((rod, np.arange(4, dtype=np.int16).reshape(2, 2), Path("x.cbf")))
    got = decode(text, types={"RodFit": RodFit})
    assert encode(got[0]) == encode(rod)  # NaN fields too
    assert got[0].rod_positions_per_nm == (0.83, 1.66)
    assert got[1].dtype == np.int16
    assert got[1].tolist() == [[0, 1], [2, 3]]
    assert got[2] == Path("x.cbf")
    with pytest.raises(CheckpointFormatError, match="RodFit"):
        decode(text, types={})
    with pytest.raises(CheckpointFormatError):
        decode("\x80\x04K\x01.", types={})  # a pickle is not read
