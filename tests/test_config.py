from pathlib import Path

import pytest

from detectors.errors import ConfigError
from pipeline.config import config_from_dict
from pipeline.io import load_config

GOOD = """
schema_version = 1
[gisaxs]
frames = ["gisaxs/*.cbf"]
poni = "gisaxs.poni"
incidence_angle_deg = 0.3
[giwaxs]
frames = "giwaxs/*.cbf"
poni = "/abs/giwaxs.poni"
incidence_angle_deg = 0.3
q_perp_band_per_nm = [0.0, 0.5]
resolution = "res.json"
[scherrer]
k_factor = 0.94
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_good_config_resolves_paths_and_kind_defaults(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    gisaxs, giwaxs = config.settings("gisaxs"), config.settings("giwaxs")
    assert gisaxs is not None
    assert giwaxs is not None
    assert gisaxs.poni == tmp_path / "gisaxs.poni"
    assert gisaxs.frames == (str(tmp_path / "gisaxs/*.cbf"),)
    assert gisaxs.q_perp_band_per_nm == "yoneda"
    assert gisaxs.q_par_range_per_nm == (0.3, 2.4)
    assert giwaxs.poni == Path("/abs/giwaxs.poni")
    assert giwaxs.q_perp_band_per_nm == (0.0, 0.5)
    assert giwaxs.q_par_range_per_nm == (15.5, 23.5)
    assert giwaxs.resolution == tmp_path / "res.json"
    assert config.scherrer.k_factor == 0.94
    assert config.text == GOOD
    assert config.source == (tmp_path / "run.toml").resolve()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("incidence_angle_deg = 0.3\n[giwaxs]", "incidense_angle_deg = 0.3\n[giwaxs]"),
            "unknown key 'incidense_angle_deg' in [gisaxs]",
        ),
        (("k_factor = 0.94", "k_factor = -1"), "[scherrer] k_factor must be in [0.5, 2.5]"),
        (
            ("resolution", "q1_window_per_nm = [0.4, 1.4]\nresolution"),
            "unknown key 'q1_window_per_nm' in [giwaxs]",
        ),
        (("[0.0, 0.5]", '"middle"'), "q_perp_band_per_nm must be 'yoneda', 'lowest'"),
        (("schema_version = 1", "schema_version = 7"), "schema_version 7 is not known"),
        (("schema_version = 1", "schema_version = 1\nfoo = 2"), "unknown key 'foo' in top level"),
        (("[giwaxs]", "max_nfev = 3\n[giwaxs]"), "[gisaxs] max_nfev must be an integer in [5,"),
        (("[giwaxs]", "max_nfev = 6.5\n[giwaxs]"), "[gisaxs] max_nfev must be an integer in [5,"),
        (
            ("[giwaxs]", "max_nfev = 99999999999999999999\n[giwaxs]"),
            "max_nfev must be an integer in [5, 100000]",
        ),
        (
            ("[giwaxs]", 'detector = "pilatus 301k-x"\n[giwaxs]'),
            "[gisaxs] detector = 'pilatus 301k-x': pyFAI knows no detector called",
        ),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, edit, expected):
    path = write(tmp_path, GOOD.replace(*edit, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_peak_shape_lists_allowed_values(tmp_path):
    path = write(tmp_path, GOOD.replace("k_factor", 'peak_shape = "voigt"\n[x]\nk', 1))
    with pytest.raises(ConfigError, match="unknown key 'x'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"peak_shape must be one of \('gaussian'"):
        config_from_dict(
            {
                "gisaxs": {
                    "frames": "a",
                    "poni": "p",
                    "incidence_angle_deg": 0.3,
                    "peak_shape": "voigt",
                }
            },
            base_dir=tmp_path,
            source="x.toml",
        )


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[gisaxs\n"))
    with pytest.raises(ConfigError, match="no \\[gisaxs\\] or \\[giwaxs\\]"):
        load_config(write(tmp_path, "schema_version = 1\n"))
    with pytest.raises(ConfigError, match="poni is missing"):
        load_config(write(tmp_path, "[gisaxs]\nframes='a'\nincidence_angle_deg=0.3\n"))
