"""`gixs inspect` on a detector, energy, distance, format and lattice other than the demo's."""

import numpy as np
import pytest
from fabio.edfimage import EdfImage

from calibration.geometry import DetectorGeometry, GIGeometry
from calibration.io import save_poni
from pipeline.inspect import inspect_frame
from sample_data.synth import GisaxsState, gisaxs_frame


@pytest.mark.parametrize(
    ("symmetry", "q1_per_nm", "gamma_deg", "spacing_nm"),
    [("hexagonal", 0.62, 60.0, 4 * np.pi / (np.sqrt(3) * 0.62)), ("square", 0.55, 90.0, None)],
)
def test_pilatus1m_edf_at_12_kev(tmp_path, symmetry, q1_per_nm, gamma_deg, spacing_nm):
    # a Pilatus 1M at 2.5 m and 12 keV, alpha_i 0.2 deg, larger nanocrystals than the study's
    det = DetectorGeometry("Pilatus1M", 2.5, 0.155, 0.085, 0.10332e-9)
    geometry = GIGeometry.create(det, incidence_angle_deg=0.2)
    frame = gisaxs_frame(
        geometry, geometry.q_maps(), GisaxsState(symmetry, q1_per_nm, gamma_deg), rng=3
    )
    EdfImage(data=frame).write(str(tmp_path / "frame.edf"))
    save_poni(tmp_path / "p1m.poni", det)
    mask = np.zeros(det.shape, np.uint8)
    mask[170:185, 80:100] = 1  # a beamstop holder, say
    np.save(tmp_path / "mask.npy", mask)
    row = inspect_frame(
        tmp_path / "frame.edf",
        poni=tmp_path / "p1m.poni",
        incidence_angle_deg=0.2,
        mask=tmp_path / "mask.npy",
    )
    assert row.detector == "gisaxs"
    assert row.symmetry == symmetry
    assert row.q1_per_nm == pytest.approx(q1_per_nm, rel=0.01)
    expected_spacing = spacing_nm if spacing_nm is not None else 2 * np.pi / q1_per_nm
    assert row.spacing_nm == pytest.approx(expected_spacing, rel=0.01)
