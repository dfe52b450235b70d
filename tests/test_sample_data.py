"""The seeded demo beamtime: frames, truth and files (sample_data.synth, sample_data.io)."""

import functools
import hashlib
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from pyFAI.detectors import detector_factory
from scipy.optimize import curve_fit

from calibration.geometry import GIGeometry, QMaps
from calibration.io import load_poni, load_resolution
from calibration.resolution import resolution_from_frame
from detectors.io import read_frame
from pipeline.config import config_from_dict
from sample_data import synth
from sample_data.io import write_demo

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))
GISAXS_KEYS = {"file", "frame", "time_s", "symmetry", "q1_nm-1", "gamma_deg"}
GIWAXS_KEYS = {"file", "frame", "time_s", "symmetry", "fwhm200_nm-1", "domain_nm"}


@pytest.fixture(scope="module")
def gisaxs() -> tuple[GIGeometry, QMaps]:
    geometry = GIGeometry.create(synth.GISAXS_GEOMETRY, incidence_angle_deg=0.3)
    return geometry, geometry.q_maps()


@pytest.fixture(scope="module")
def giwaxs() -> tuple[GIGeometry, QMaps]:
    geometry = GIGeometry.create(synth.GIWAXS_GEOMETRY, incidence_angle_deg=0.3)
    return geometry, geometry.q_maps()


def _gaussian_line(x, height, centre, sigma, offset, slope):
    return height * np.exp(-0.5 * ((x - centre) / sigma) ** 2) + offset + slope * (x - centre)


def _column_cut(
    image: NDArray, maps: QMaps, band: tuple[float, float], gaps: NDArray[np.bool_]
) -> tuple[NDArray, NDArray]:
    """Mean |q_par| and mean counts of the pixels of each column inside a q_perp band."""
    inside = (maps.q_perp_per_nm >= band[0]) & (maps.q_perp_per_nm <= band[1]) & ~gaps
    columns = np.flatnonzero(inside.any(axis=0))
    q = np.array([np.abs(maps.q_par_per_nm[inside[:, c], c]).mean() for c in columns])
    counts = np.array([image[inside[:, c], c].mean() for c in columns])
    return q, counts


def _fit_peak(q: NDArray, counts: NDArray, centre: float, half_window: float, sigma0: float):
    near = np.abs(q - centre) < half_window
    p0 = [counts[near].max() - counts[near].min(), centre, sigma0, counts[near].min(), 0.0]
    popt, _ = curve_fit(_gaussian_line, q[near], counts[near], p0=p0)
    return popt[1], abs(popt[2]) * FWHM_PER_SIGMA


def _pyfai_gaps(name: str) -> NDArray[np.bool_]:
    return np.asarray(detector_factory(name).mask, dtype=bool)


# --------------------------------------------------------------------------- timeline


def test_timeline_follows_the_study_in_order():
    frames = synth.demo_timeline(40, 40)
    gisaxs = [f for f in frames if f.kind == "gisaxs"]
    giwaxs = [f for f in frames if f.kind == "giwaxs"]
    assert len(gisaxs) == len(giwaxs) == 40
    symmetries = [f.state.symmetry for f in gisaxs]
    order = [s for i, s in enumerate(symmetries) if i == 0 or s != symmetries[i - 1]]
    assert order == ["none", "hexagonal", "pseudo-hexagonal", "square"]
    assert min(symmetries.count(s) for s in order) >= 4
    hexagonal = [f.state.q1_per_nm for f in gisaxs if f.state.symmetry == "hexagonal"]
    assert hexagonal == sorted(hexagonal)
    assert hexagonal[0] == pytest.approx(0.78, abs=0.005)
    assert hexagonal[-1] == pytest.approx(0.80, abs=0.005)
    assert gisaxs[-1].state.q1_per_nm == pytest.approx(0.83)
    edges = [f.state.cube_edge_nm for f in giwaxs]
    assert edges[0] == pytest.approx(5.7)  # the study's cubes in dispersion
    assert edges[-1] == pytest.approx(13.1)
    assert np.all(np.diff(edges) >= 0)
    widths = [f.state.fwhm200_per_nm for f in giwaxs]
    assert np.all(np.diff(widths) <= 0)
    assert [f.time_s for f in gisaxs] == [10.0 * i for i in range(40)]
    assert [f.time_s for f in giwaxs] == [10.0 * i for i in range(40)]
    assert [f.position for f in gisaxs[:23]] == [*range(21), 19, 18]
    assert [f.state.symmetry for f in giwaxs] == symmetries


def test_truth_records_have_exactly_the_issue_keys():
    frames = synth.demo_timeline(40, 40)
    for frame in frames:
        record = frame.truth(f"{frame.kind}/x.cbf")
        assert set(record) == (GISAXS_KEYS if frame.kind == "gisaxs" else GIWAXS_KEYS)
    none = next(f for f in frames if f.kind == "gisaxs")
    assert none.truth("a")["q1_nm-1"] is None
    state = frames[-1].state
    assert isinstance(state, synth.GiwaxsState)
    # domain_nm is the volume-weighted mean edge of the Gaussian number distribution
    mean, sd = state.cube_edge_nm, state.size_spread * state.cube_edge_nm
    edges = np.linspace(mean - 6 * sd, mean + 6 * sd, 20001)
    weights = np.exp(-0.5 * ((edges - mean) / sd) ** 2)
    volume_mean = np.sum(weights * edges**4) / np.sum(weights * edges**3)
    assert state.domain_nm == pytest.approx(volume_mean, rel=1e-4)


@pytest.mark.parametrize(
    ("edge", "spread", "inst"),
    [(5.7, 0.0, 0.0), (5.7, 0.105, 0.25), (12.6, 0.105, 0.25), (4.0, 0.2, 0.1)],
)
def test_200_line_is_the_volume_weighted_cube_line_convolved_with_the_instrument(
    edge, spread, inst
):
    """Independent check of the generator's line: sinc^2 by scipy quadrature over sizes."""
    from scipy.integrate import quad

    def sample(dq):
        def one(t):
            size = edge * (1 + spread * t)
            return math.exp(-t * t / 2) * size**4 * np.sinc(dq * size / math.tau) ** 2

        return quad(one, -6, 6)[0] if spread else edge**4 * np.sinc(dq * edge / math.tau) ** 2

    dq = np.array([0.0, 0.2, 0.5, 0.9, 1.5])
    if inst:
        s = inst / synth.FWHM_PER_SIGMA
        grid = np.linspace(-5 * s, 5 * s, 61)
        kernel = np.exp(-0.5 * (grid / s) ** 2)
        values = [np.sum(kernel * [sample(d - g) for g in grid]) for d in dq]
    else:
        values = [sample(d) for d in dq]
    expected = np.array(values) / values[0]
    got = synth.line200_profile(dq, cube_edge_nm=edge, size_spread=spread,
                                instrument_fwhm_per_nm=inst)  # fmt: skip
    assert got == pytest.approx(expected, abs=2e-3)


def test_rhombic_rods_reduce_to_hexagonal_and_square():
    q, m = synth.rod_positions_per_nm(0.8, 60.0, q_max_per_nm=2.5)
    assert q / 0.8 == pytest.approx([1, math.sqrt(3), 2, math.sqrt(7), 3])
    assert m.tolist() == [6, 6, 6, 12, 6]
    q, _ = synth.rod_positions_per_nm(0.81, 75.0, q_max_per_nm=1.7)
    cos_g = math.cos(math.radians(75.0))
    roots = [1.0, 2 - 2 * cos_g, 2 + 2 * cos_g, 5 - 4 * cos_g, 4.0]
    expected = np.sqrt(roots)
    assert q / 0.81 == pytest.approx(expected)


# --------------------------------------------------------------------------- frames


def test_gisaxs_frame_is_seeded_int32_with_pyfai_gaps(gisaxs):
    geometry, maps = gisaxs
    state = synth.GisaxsState("hexagonal", 0.8, 60.0)
    first = synth.gisaxs_frame(geometry, maps, state, rng=7)
    again = synth.gisaxs_frame(geometry, maps, state, rng=np.random.default_rng(7))
    other = synth.gisaxs_frame(geometry, maps, state, rng=8)
    assert first.shape == (195, 1475)
    assert first.dtype == np.int32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    gaps = _pyfai_gaps("Pilatus300kw")
    assert gaps.any()
    np.testing.assert_array_equal(first == -1, gaps)
    assert first[~gaps].min() >= 0
    assert first.max() <= synth.PILATUS_MAX_COUNTS


def test_giwaxs_and_calibrant_frames_have_pyfai_gaps(giwaxs):
    geometry, maps = giwaxs
    frame = synth.giwaxs_frame(geometry, maps, synth.giwaxs_state_at(2000.0), rng=1)
    gaps = _pyfai_gaps("Pilatus300k")
    assert frame.shape == (619, 487)
    assert frame.dtype == np.int32
    np.testing.assert_array_equal(frame == -1, gaps)
    calibrant = synth.calibrant_frame(
        synth.GIWAXS_GEOMETRY, calibrant="LaB6", fwhm_per_nm=0.25, rng=1
    )
    np.testing.assert_array_equal(calibrant == -1, gaps)


@pytest.mark.parametrize(
    ("symmetry", "q1_per_nm", "gamma_deg"),
    [("hexagonal", 0.80, 60.0), ("pseudo-hexagonal", 0.815, 75.0), ("square", 0.83, 90.0)],
)
def test_rods_sit_at_the_intended_q_par_on_both_sides(gisaxs, symmetry, q1_per_nm, gamma_deg):
    geometry, maps = gisaxs
    state = synth.GisaxsState(symmetry, q1_per_nm, gamma_deg)
    frame = synth.gisaxs_frame(geometry, maps, state, rng=3)
    gaps = frame < 0
    yoneda = geometry.q_perp_at_exit_angle_per_nm(0.13)
    band = (yoneda - 0.1, yoneda + 0.1)
    inside = (maps.q_perp_per_nm >= band[0]) & (maps.q_perp_per_nm <= band[1]) & ~gaps
    positions, _ = synth.rod_positions_per_nm(q1_per_nm, gamma_deg, q_max_per_nm=2.1)
    apart = np.diff(positions, prepend=-1.0, append=9.0)
    positions = positions[np.minimum(apart[:-1], apart[1:]) > 3 * state.rod_fwhm_per_nm]
    assert positions.size >= 3
    for side in (1, -1):
        half = inside & (side * maps.q_par_per_nm > 0)
        q, counts = _column_cut(frame, maps, band, ~half)
        for rod in positions:
            centre, fwhm = _fit_peak(q, counts, rod, 2.5 * state.rod_fwhm_per_nm, 0.017)
            assert centre == pytest.approx(rod, rel=2e-3)
            assert fwhm == pytest.approx(state.rod_fwhm_per_nm, rel=0.1)


def _narrow_excess(counts: NDArray) -> float:
    """Largest ratio of a profile to its running median over 15 columns (~0.2 nm^-1)."""
    padded = np.pad(counts, 7, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 15)
    return float(np.max(counts / np.median(windows, axis=1)))


def test_disordered_frame_has_no_rods(gisaxs):
    geometry, maps = gisaxs
    yoneda = geometry.q_perp_at_exit_angle_per_nm(0.13)
    band = (yoneda - 0.1, yoneda + 0.1)
    gaps = synth.gap_mask(synth.GISAXS_GEOMETRY)
    excess = {}
    for state in (synth.GisaxsState("none", None, None), synth.GisaxsState("square", 0.83, 90.0)):
        expected = synth.gisaxs_expected(geometry, maps, state)
        q, counts = _column_cut(expected, maps, band, gaps | (maps.q_par_per_nm < 0))
        window = (q > 0.4) & (q < 2.4)
        excess[state.symmetry] = _narrow_excess(counts[window])
    assert excess["none"] < 1.05
    assert excess["square"] > 1.5


def test_the_brightest_row_is_the_yoneda_band(gisaxs):
    geometry, maps = gisaxs
    expected = synth.gisaxs_expected(geometry, maps, synth.GisaxsState("hexagonal", 0.8, 60.0))
    column = int(np.argmin(np.abs(maps.q_par_per_nm[150] - 1.2)))  # off the rods
    row = int(np.argmax(expected[:, column]))
    assert maps.q_perp_per_nm[row, column] == pytest.approx(
        geometry.q_perp_at_exit_angle_per_nm(0.13), abs=0.03
    )
    horizon_per_nm = geometry.k_per_nm * math.sin(math.radians(0.3))
    below = maps.q_perp_per_nm[:, column] < horizon_per_nm - 0.02
    assert np.all(expected[below, column] < 1.0)  # nothing below the horizon


def _rock_salt_pair(q, height200, centre200, stretch, height111, sigma111, offset, slope, *, state):
    """{200} (the truth's line, its q axis stretched) and a Gaussian {111} at sqrt(3)/2."""
    centre111 = centre200 * math.sqrt(3) / 2
    return (
        height200 * state.line200((q - centre200) / stretch)
        + height111 * np.exp(-0.5 * ((q - centre111) / sigma111) ** 2)
        + offset
        + slope * (q - centre200)
    )


@pytest.mark.parametrize("study_time_s", [0.0, 1500.0, 2100.0, 2700.0])
def test_in_plane_200_width_equals_the_truth(giwaxs, study_time_s):
    geometry, maps = giwaxs
    state = synth.giwaxs_state_at(study_time_s)
    expected = synth.giwaxs_expected(geometry, maps, state)
    q, counts = _column_cut(expected, maps, (0.0, 0.5), synth.gap_mask(synth.GIWAXS_GEOMETRY))
    assert q.min() < 16.0
    assert q.max() > 23.4
    window = (q > 16.0) & (q < 23.5)
    p0 = [counts[window].max(), 20.5, 1.0, 0.0, 0.4, counts[window].min(), 0.0]
    model = functools.partial(_rock_salt_pair, state=state)
    popt, _ = curve_fit(model, q[window], counts[window], p0=p0)
    # the cut shows the {200} line with the truth's width: no stretch of its q axis
    assert popt[2] == pytest.approx(1.0, rel=0.01)
    assert popt[1] == pytest.approx(2 * math.tau / synth.PBSE_A0_NM, abs=0.02)


def test_calibrant_lines_carry_the_instrumental_width():
    geometry = synth.GIWAXS_GEOMETRY
    frame = synth.calibrant_frame(geometry, calibrant="LaB6", fwhm_per_nm=0.25, rng=5)
    resolution = resolution_from_frame(
        frame.astype(np.float64), geometry, calibrant="LaB6", mask=frame < 0
    )
    assert len(resolution.line_q_per_nm) >= 2
    assert resolution.line_fwhm_per_nm == pytest.approx(
        [0.25] * len(resolution.line_q_per_nm), rel=0.02
    )


# --------------------------------------------------------------------------- demo folder


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_write_demo_writes_a_readable_run(tmp_path):
    config = write_demo(tmp_path / "demo", seed=3, n_gisaxs=3, n_giwaxs=2)
    folder = config.parent
    truth = json.loads((folder / "truth.json").read_text())
    assert isinstance(truth, list)
    assert [(r["file"], r["time_s"]) for r in truth] == [
        ("gisaxs/gisaxs_00000.cbf", 0.0),
        ("giwaxs/giwaxs_00000.cbf", 0.0),
        ("gisaxs/gisaxs_00001.cbf", 10.0),
        ("giwaxs/giwaxs_00001.cbf", 10.0),
        ("gisaxs/gisaxs_00002.cbf", 20.0),
    ]
    for record in truth:
        assert set(record) == (GISAXS_KEYS if record["file"].startswith("gisaxs") else GIWAXS_KEYS)
    assert truth[-1]["symmetry"] == "square"
    meta = json.loads((folder / "truth_meta.json").read_text())
    assert meta["seed"] == 3
    assert meta["instrument_fwhm_per_nm"]["giwaxs"] == 0.25

    for record, position in zip(truth, [0, 0, 1, 1, 2], strict=True):
        frame = read_frame(folder / record["file"])
        assert frame.data.shape == ((195, 1475) if "gisaxs" in record["file"] else (619, 487))
        first = read_frame(folder / truth[0]["file"]).meta.epoch_s
        assert frame.meta.epoch_s - first == pytest.approx(record["time_s"])
        assert frame.meta.position == position
    assert load_poni(folder / "gisaxs.poni") == synth.GISAXS_GEOMETRY
    assert load_poni(folder / "giwaxs.poni") == synth.GIWAXS_GEOMETRY
    resolution = load_resolution(folder / "resolution_giwaxs.json")
    assert resolution.fwhm0_per_nm == pytest.approx(0.25, rel=0.03)

    settings = config_from_dict(
        tomllib.loads(config.read_text()), base_dir=folder, source=str(config)
    )
    giwaxs_settings = settings.settings("giwaxs")
    assert giwaxs_settings is not None
    assert giwaxs_settings.resolution == folder / "resolution_giwaxs.json"
    assert settings.settings("gisaxs") is not None
    assert len(sorted(folder.glob("gisaxs/*.cbf"))) == 3


def test_write_demo_is_deterministic(tmp_path):
    write_demo(tmp_path / "a", seed=1, n_gisaxs=2, n_giwaxs=2)
    write_demo(tmp_path / "b", seed=1, n_gisaxs=2, n_giwaxs=2)
    first, second = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert first == second
    assert len(first) == 12
    write_demo(tmp_path / "a", seed=2, n_gisaxs=2, n_giwaxs=2)
    changed = {name for name, digest in _digest(tmp_path / "a").items() if second[name] != digest}
    assert "gisaxs/gisaxs_00001.cbf" in changed
    assert "giwaxs.poni" not in changed
