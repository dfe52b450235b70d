"""Rods on frames that the project did not make: BornAgain DWBA monolayers of cubes (issue 9).

`tests/bornagain_frames.py` builds the frames (BornAgain's physics, pixel angles from the
PONI numbers alone); here they are checked against BornAgain's own rod positions and then
reduced with `gixs inspect`: the first rod within 0.5 % of the truth, the symmetry right,
and error bars that cover the truth over several noise draws.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bornagain")

from calibration.geometry import DetectorGeometry, GIGeometry
from pipeline.cli import main
from tests import bornagain_frames as bf

PONI = Path(__file__).resolve().parents[1] / "sample_data" / "demo" / "gisaxs.poni"
SEEDS = (0, 1, 2, 3, 4)
ROD_PEAK_COUNTS = 500.0


@pytest.fixture(scope="module")
def geometry() -> bf.PoniGeometry:
    return bf.PoniGeometry.from_file(PONI)


@pytest.fixture(scope="module")
def frames(tmp_path_factory, geometry) -> dict[str, list[Path]]:
    """CBF frames of every lattice, one per noise seed (BornAgain results cached)."""
    folder = tmp_path_factory.mktemp("bornagain")
    out: dict[str, list[Path]] = {}
    for name, lattice in bf.LATTICES.items():
        expected = bf.expected_frame(lattice, geometry, rod_peak_counts=ROD_PEAK_COUNTS)
        out[name] = [
            bf.write_frame(
                folder / f"{name}_{seed}.cbf", bf.noisy_frame(expected, geometry, seed=seed)
            )
            for seed in SEEDS
        ]
    return out


# ------------------------------------------------------------ the frames are what they say


def test_pixel_angles_agree_with_pyfai(geometry):
    # the scattering angle of every pixel, from the PONI numbers, against pyFAI's own
    import pyFAI

    ai = pyFAI.load(str(PONI))
    x, y, z = geometry.lab_vectors_m()
    two_theta = np.arccos(z / np.sqrt(x * x + y * y + z * z))
    # pyFAI computes in single precision
    np.testing.assert_allclose(two_theta, ai.twoThetaArray(), atol=1e-7)


def test_pixel_q_par_agrees_with_the_project_geometry(geometry):
    # |q_par| of every pixel in the Yoneda band region: BornAgain's angle convention
    # (alpha_f above the surface, phi_f in the surface plane) against the project's
    # pyFAI grazing-incidence maps; the sign of phi_f gives the side of the beam
    alpha, phi = bf.exit_angles_rad(geometry)
    q_par = bf.q_par_per_nm(alpha, phi)
    det = DetectorGeometry("Pilatus300kw", 0.578, 0.029, 0.1268, bf.WAVELENGTH_NM * 1e-9)
    maps = GIGeometry.create(det, incidence_angle_deg=bf.INCIDENCE_ANGLE_DEG).q_maps()
    band = (np.degrees(alpha) > 0.0) & (np.degrees(alpha) < 0.5) & (q_par > 0.2)
    np.testing.assert_allclose(np.abs(maps.q_par_per_nm[band]), q_par[band], rtol=2e-4)
    assert np.all(np.sign(maps.q_par_per_nm[band]) == np.sign(phi[band]))
    # and q_perp = k (sin a_f + sin a_i)
    q_perp = bf.K_PER_NM * (np.sin(alpha) + math.sin(math.radians(bf.INCIDENCE_ANGLE_DEG)))
    np.testing.assert_allclose(maps.q_perp_per_nm[band], q_perp[band], atol=2e-4)


@pytest.mark.parametrize("name", list(bf.LATTICES))
def test_bornagain_rods_sit_at_the_lattice_positions(name):
    # the interference function that BornAgain computed, read on our q_par axis, peaks at
    # 2 pi / a sqrt(h^2 + k^2) (square) or 4 pi / (sqrt 3 a) sqrt(h^2 + hk + k^2) (hexagonal)
    lattice = bf.LATTICES[name]
    q, s = bf.cached_interference_line(lattice)
    peaks = [
        q[i] for i in range(1, len(q) - 1) if s[i] > s[i - 1] and s[i] >= s[i + 1] and s[i] > 1
    ]
    rods = lattice.rods_per_nm(float(q[-1]) - 0.02)
    assert len(peaks) >= len(rods)
    for rod in rods:
        nearest = min(peaks, key=lambda p: abs(p - rod))
        # within one sampling step of the line (a crystal); a paracrystal's broad higher
        # orders overlap, which moves their maxima a little
        tolerance = bf.S_Q_STEP_PER_NM if lattice.structure == "crystal" else 0.005 * rod
        assert abs(nearest - rod) <= tolerance, (rod, nearest)
    # the first rod to a fraction of a step: vertex of a parabola through the top 3 points
    top = int(np.argmin(np.abs(q - rods[0])))
    top = top - 1 + int(np.argmax(s[top - 1 : top + 2]))
    y0, y1, y2 = np.log(s[top - 1 : top + 2])
    vertex = q[top] + 0.5 * (q[top + 1] - q[top]) * (y0 - y2) / (y0 - 2 * y1 + y2)
    assert vertex == pytest.approx(lattice.q1_per_nm, rel=1e-3)


@pytest.mark.parametrize("name", ["square_domains", "hexagonal_paracrystal"])
def test_factorised_frame_matches_full_bornagain(name):
    # the frame is I_dilute(alpha_f, phi_f) * S(q_par): checked against a full BornAgain
    # run with the lattice on another exit-angle row
    assert bf.factorisation_error(bf.LATTICES[name], alpha_deg=0.25) < 0.01


# ------------------------------------------------------------ gixs inspect on them


def _inspect_subprocess(path: Path) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "inspect",
            str(path),
            "--poni",
            str(PONI),
            "--incidence-angle",
            "0.3",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _inspect_in_process(path: Path, capsys) -> dict[str, object]:
    code = main(["inspect", str(path), "--poni", str(PONI), "--incidence-angle", "0.3", "--json"])
    assert code == 0
    return dict(json.loads(capsys.readouterr().out))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(bf.LATTICES))
def test_gixs_inspect_finds_the_bornagain_lattice(name, frames, capsys):
    lattice = bf.LATTICES[name]
    truth = lattice.q1_per_nm
    rows = [_inspect_subprocess(frames[name][0])]
    rows += [_inspect_in_process(path, capsys) for path in frames[name][1:]]
    found = [(row["symmetry"], row["q1_nm-1"], row["q1_err_nm-1"], row["flags"]) for row in rows]
    report = f"{name}: truth q1 {truth:.4f}; (symmetry, q1, err, flags) per draw: {found}"
    assert all(row["symmetry"] == lattice.symmetry for row in rows), report
    q1 = np.array([float(row["q1_nm-1"]) for row in rows])  # type: ignore[arg-type]
    err = np.array([float(row["q1_err_nm-1"]) for row in rows])  # type: ignore[arg-type]
    assert np.all(np.abs(q1 / truth - 1.0) < 0.005), report
    # error bars that cover: every draw within 3 sigma, and |z| of the order of 1
    z = (q1 - truth) / err
    assert np.all(np.abs(z) < 3.0), f"{report}; z = {z.round(2)}"
    assert float(np.sqrt(np.mean(z**2))) < 2.0, f"{report}; z = {z.round(2)}"
    spacing = np.array([float(row["spacing_nm"]) for row in rows])  # type: ignore[arg-type]
    np.testing.assert_allclose(spacing, lattice.spacing_nm, rtol=0.005, err_msg=report)
