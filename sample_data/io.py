"""Write the seeded demo beamtime: CBF frames, PONI files, calibrants, truth and config.

The committed demo in ``sample_data/demo/`` is made by this module; regenerate it with
``python -c "from pathlib import Path; from sample_data.io import write_demo;
write_demo(Path('sample_data/demo'))"`` from the repository root (or
``gixs make-sample-data sample_data/demo``). Same seed, same bytes.

Layout of the folder::

    demo.toml                    run settings (schema 1) for `gixs reduce`
    gisaxs.poni, giwaxs.poni     pyFAI geometries (Pilatus 300K-W at 0.578 m, 300K at 0.25 m)
    gisaxs/gisaxs_00000.cbf ...  GISAXS frames, 10 s apart
    giwaxs/giwaxs_00000.cbf ...  GIWAXS frames at the same times
    calibrants/gisaxs_agbh.cbf   silver behenate on the GISAXS detector
    calibrants/giwaxs_lab6.cbf   LaB6 on the GIWAXS detector
    resolution_giwaxs.json       instrumental width fitted on giwaxs_lab6.cbf
    truth.json                   one record per frame (list), see :meth:`DemoFrame.truth`
    truth_meta.json              seed, beam, instrumental widths, K, geometry, timeline
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from calibration.geometry import ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG, DetectorGeometry, GIGeometry
from calibration.incidence import direct_beam_pixel
from calibration.io import save_poni, save_resolution
from calibration.resolution import resolution_from_frame
from detectors.io import write_cbf
from sample_data import synth

#: Start of the demo run (local time of the first exposure).
START_TIME = datetime(2026, 11, 25, 10, 0, 0)
#: The calibrant frames were taken this long before the run.
CALIBRANT_LEAD_TIME = timedelta(minutes=30)

CONFIG_NAME = "demo.toml"
TRUTH_NAME = "truth.json"
TRUTH_META_NAME = "truth_meta.json"
RESOLUTION_NAME = "resolution_giwaxs.json"

_DETECTOR_LABELS = {
    "gisaxs": "PILATUS 300K-W, S/N 00-0000 (synthetic)",
    "giwaxs": "PILATUS 300K, S/N 00-0001 (synthetic)",
}
_CALIBRANTS = {
    "gisaxs": ("AgBh", "calibrants/gisaxs_agbh.cbf", synth.GISAXS_INSTRUMENT_FWHM_PER_NM, 0.3),
    "giwaxs": ("LaB6", "calibrants/giwaxs_lab6.cbf", synth.GIWAXS_INSTRUMENT_FWHM_PER_NM, 0.0),
}
_KIND_CODES = {"gisaxs": 0, "giwaxs": 1}
_CALIBRANT_STREAM = 2

_CONFIG_TEXT = """\
# Demo run of insitu-gixs: synthetic in-situ GISAXS/GIWAXS of PbSe nanocubes on ethylene
# glycol (made by sample_data.io.write_demo; the truth is in truth.json).
# resolution_giwaxs.json was fitted on calibrants/giwaxs_lab6.cbf, as
# `gixs calibrate resolution` does.
schema_version = 1
[gisaxs]
frames = ["gisaxs/*.cbf"]
poni = "gisaxs.poni"
incidence_angle_deg = 0.3
q_perp_band_per_nm = "yoneda"
q_par_range_per_nm = [0.3, 2.4]
n_bins = "auto"
peak_shape = "gaussian"
q1_window_per_nm = [0.4, 1.4]
[giwaxs]
frames = ["giwaxs/*.cbf"]
poni = "giwaxs.poni"
incidence_angle_deg = 0.3
q_perp_band_per_nm = "lowest"
q_par_range_per_nm = [15.5, 23.5]
n_bins = "auto"
peak_shape = "gaussian"
peak_window_per_nm = [16.5, 23.5]
resolution = "resolution_giwaxs.json"
# the domain size from the fitted line of cube-shaped domains (K = 1 on its integral
# breadth); the study's convention is method = "fwhm" with k_factor = 1.0
[scherrer]
method = "cube_profile"
"""


def frame_file(kind: synth.Kind, frame: int) -> str:
    """Path of a frame relative to the demo folder, e.g. ``gisaxs/gisaxs_00007.cbf``."""
    return f"{kind}/{kind}_{frame:05d}.cbf"


def write_demo(
    out_dir: Path,
    *,
    seed: int = 0,
    n_gisaxs: int = 34,
    n_giwaxs: int = 34,
    progress: bool = False,
) -> Path:
    """Write the demo beamtime into `out_dir` and return the path of its ``demo.toml``.

    Every frame draws its Poisson noise from its own generator, seeded with
    ``(seed, detector, frame)``, so the files do not depend on the order of writing and
    the same seed gives the same bytes. Frames of an earlier demo in `out_dir`
    (``gisaxs/gisaxs_*.cbf``, ``giwaxs/giwaxs_*.cbf``) are removed first, so that the
    config's globs see this run only.

    Parameters
    ----------
    out_dir : Path
        Folder to write (created if missing).
    seed : int
        Seed of the noise (>= 0); recorded in ``truth_meta.json``.
    n_gisaxs, n_giwaxs : int
        Number of frames per detector (>= 0, one of them >= 2).
    progress : bool
        Show a progress bar (tqdm, on stderr).

    Returns
    -------
    Path
        The config file ``out_dir / "demo.toml"``.

    Raises
    ------
    ValueError
        If `seed` is negative or the frame counts are invalid.
    OSError
        If the folder or a file cannot be written.
    """
    if seed < 0:
        msg = f"seed must be >= 0, got {seed!r}"
        raise ValueError(msg)
    timeline = synth.demo_timeline(n_gisaxs, n_giwaxs)
    out_dir = Path(out_dir)
    detectors = {"gisaxs": synth.GISAXS_GEOMETRY, "giwaxs": synth.GIWAXS_GEOMETRY}
    for kind in detectors:
        (out_dir / kind).mkdir(parents=True, exist_ok=True)
        for stale in sorted((out_dir / kind).glob(f"{kind}_*.cbf")):
            stale.unlink()
    (out_dir / "calibrants").mkdir(exist_ok=True)

    geometries = {
        kind: GIGeometry.create(det, incidence_angle_deg=synth.INCIDENCE_ANGLE_DEG)
        for kind, det in detectors.items()
    }
    maps = {kind: geometry.q_maps() for kind, geometry in geometries.items()}
    for kind, det in detectors.items():
        _write_poni(out_dir / f"{kind}.poni", det)

    records: list[dict[str, object]] = []
    for item in tqdm(timeline, desc="demo frames", unit="frame", disable=not progress):
        rng = np.random.default_rng([seed, _KIND_CODES[item.kind], item.frame])
        if isinstance(item.state, synth.GisaxsState):
            data = synth.gisaxs_frame(geometries[item.kind], maps[item.kind], item.state, rng=rng)
        else:
            data = synth.giwaxs_frame(geometries[item.kind], maps[item.kind], item.state, rng=rng)
        file = frame_file(item.kind, item.frame)
        write_cbf(
            out_dir / file,
            data,
            timestamp=START_TIME + timedelta(seconds=item.time_s),
            exposure_s=synth.EXPOSURE_S,
            period_s=synth.PERIOD_S,
            position=item.position,
            detector_label=_DETECTOR_LABELS[item.kind],
        )
        records.append(item.truth(file))

    for kind, det in detectors.items():
        calibrant, file, fwhm, decay = _CALIBRANTS[kind]
        rng = np.random.default_rng([seed, _CALIBRANT_STREAM, _KIND_CODES[kind]])
        data = synth.calibrant_frame(
            det, calibrant=calibrant, fwhm_per_nm=fwhm, line_decay=decay, rng=rng
        )
        write_cbf(
            out_dir / file,
            data,
            timestamp=START_TIME - CALIBRANT_LEAD_TIME + timedelta(minutes=_KIND_CODES[kind]),
            exposure_s=synth.EXPOSURE_S,
            period_s=synth.PERIOD_S,
            position=0,
            detector_label=_DETECTOR_LABELS[kind],
        )
        if kind == "giwaxs":
            resolution = resolution_from_frame(
                data.astype(np.float64), det, calibrant=calibrant, mask=synth.gap_mask(det)
            )
            save_resolution(out_dir / RESOLUTION_NAME, resolution)

    _write_json(out_dir / TRUTH_NAME, records)
    _write_json(
        out_dir / TRUTH_META_NAME,
        _truth_meta(seed, n_gisaxs, n_giwaxs, detectors, geometries),
    )
    config = out_dir / CONFIG_NAME
    config.write_text(_CONFIG_TEXT, encoding="utf-8")
    return config


def _truth_meta(
    seed: int,
    n_gisaxs: int,
    n_giwaxs: int,
    detectors: dict[str, DetectorGeometry],
    geometries: dict[str, GIGeometry],
) -> dict[str, object]:
    """What the truth means and how the demo was made."""
    n_last = max(n_gisaxs, n_giwaxs) - 1
    return {
        "generator": "sample_data.io.write_demo",
        "seed": seed,
        "n_gisaxs": n_gisaxs,
        "n_giwaxs": n_giwaxs,
        "start_time": START_TIME.isoformat(),
        "period_s": synth.PERIOD_S,
        "exposure_s": synth.EXPOSURE_S,
        "positions": (
            f"{synth.N_POSITIONS} sample positions visited back and forth "
            "(0, 1, ..., 20, 19, ..., 1, 0, 1, ...), one per frame"
        ),
        "timeline": (
            f"the run compresses the study's {synth.STUDY_DURATION_S:g} s: frame i (both "
            f"detectors, at time_s = {synth.PERIOD_S:g} * i) stands for "
            f"{synth.STUDY_DURATION_S:g} s * i / {n_last} after injection; phases: form "
            "factor only, hexagonal (q1 0.78 -> 0.80), pseudo-hexagonal (rhombic, b "
            "0.805 -> 0.825, gamma 70 -> 80 deg), square (q1 0.83); {200} FWHM 1.1 -> 0.7 "
            "-> 0.5 nm^-1 while the rings turn into in-plane spots"
        ),
        "wavelength_m": synth.WAVELENGTH_M,
        "energy_keV": 10.0,
        "incidence_angle_deg": synth.INCIDENCE_ANGLE_DEG,
        "critical_angle_deg": ETHYLENE_GLYCOL_CRITICAL_ANGLE_DEG,
        "scherrer_k": synth.SCHERRER_K,
        "scherrer_method": (
            "K = 1 on the integral breadth of the {200} line of cube-shaped domains, q "
            "along <100> (Langford & Wilson 1978); K = 0.886 on its FWHM"
        ),
        "instrument_profile": "gaussian",
        "instrument_fwhm_per_nm": {
            "gisaxs": synth.GISAXS_INSTRUMENT_FWHM_PER_NM,
            "giwaxs": synth.GIWAXS_INSTRUMENT_FWHM_PER_NM,
        },
        "fwhm200_rule": (
            "the {200} line is sum_L n(L) L^3 * L sinc^2(dq L / 2) over a Gaussian number "
            "distribution n(L) of cube edges (mean m, sd "
            f"{synth.SIZE_SPREAD:.4f} m), each cube weighted by its volume as diffraction "
            "weights it, convolved with the Gaussian instrument "
            "(instrument_fwhm_per_nm.giwaxs); fwhm200_nm-1 is the FWHM of that line along "
            "q_par (instrument included)"
        ),
        "domain_rule": (
            "domain_nm = <L^4> / <L^3>, the volume-weighted mean cube edge: the sample line's "
            "integral breadth is exactly 2 pi / domain_nm"
        ),
        "q1_rule": (
            "q1_nm-1: first rod; pseudo-hexagonal: rhombic lattice of equal sides and "
            "angle gamma_deg, rods at q1 * sqrt(h^2 + k^2 - 2 h k cos gamma), spacing "
            "2 pi / (q1 sin gamma)"
        ),
        "rod_fwhm_per_nm": synth.ROD_FWHM_PER_NM,
        "pbse_a0_nm": synth.PBSE_A0_NM,
        "cube_edge_nm": [synth.CUBE_EDGE_NM, synth.CUBE_EDGE_SD_NM],
        "size_spread": synth.SIZE_SPREAD,
        "geometry": {
            kind: {
                "poni": f"{kind}.poni",
                "detector": det.detector,
                "distance_m": det.distance_m,
                "poni1_m": det.poni1_m,
                "poni2_m": det.poni2_m,
                "direct_beam_row_col_px": [
                    round(value, 3) for value in direct_beam_pixel(geometries[kind])
                ],
                "sample_orientation": geometries[kind].sample_orientation,
            }
            for kind, det in detectors.items()
        },
        "calibrants": {
            kind: {"calibrant": calibrant, "file": file, "fwhm_per_nm": fwhm}
            for kind, (calibrant, file, fwhm, _) in _CALIBRANTS.items()
        },
        "resolution": RESOLUTION_NAME,
    }


def _write_poni(path: Path, geometry: DetectorGeometry) -> None:
    """:func:`calibration.io.save_poni`, with pyFAI's clock line made reproducible."""
    save_poni(path, geometry)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    stamp = "# Calibration done on "
    fixed = f"{stamp}{(START_TIME - CALIBRANT_LEAD_TIME).isoformat()} (synthetic demo)\n"
    path.write_text(
        "".join(fixed if line.startswith(stamp) else line for line in lines), encoding="utf-8"
    )


def _write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
