"""File-level calibration steps behind ``gixs calibrate``: read, compute, report.

The science lives in :mod:`calibration`; this module only wires files to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from calibration.geometry import GIGeometry
from calibration.incidence import IncidenceReport, calibrate_incidence
from calibration.io import load_poni, save_resolution
from calibration.resolution import InstrumentResolution, PeakShape, resolution_from_frame
from detectors.io import FrameRef, read_frame, read_mask_file
from detectors.pilatus import static_mask


def check_incidence(
    frame: Path,
    *,
    poni: Path,
    incidence_angle_deg: float,
    mask: Path | None = None,
    critical_angle_deg: float = 0.13,
    tolerance_deg: float = 0.02,
) -> IncidenceReport:
    """Measure alpha_i on a frame (specular and Yoneda) and self-test the orientation.

    Parameters
    ----------
    frame : Path
        A GISAXS frame with the specular spot (and the direct beam, masked or attenuated).
    poni : Path
        Its PONI file.
    incidence_angle_deg : float
        The motor value to check, in degrees.
    mask : Path or None
        User mask file (nonzero = masked); module gaps are always masked.
    critical_angle_deg : float
        Critical angle of the liquid for the Yoneda estimate, in degrees.
    tolerance_deg : float
        Largest accepted difference from the motor value, in degrees.

    Returns
    -------
    IncidenceReport
        ``.summary()`` gives three lines for the terminal, ``.ok`` whether all passed.
    """
    detector = load_poni(poni)
    geometry = GIGeometry.create(detector, incidence_angle_deg=incidence_angle_deg)
    data = read_frame(FrameRef(Path(frame), 0), shape=detector.shape).data.astype(np.float64)
    return calibrate_incidence(
        data,
        geometry,
        mask=_mask(detector.detector, detector.shape, mask),
        tolerance_deg=tolerance_deg,
        critical_angle_deg=critical_angle_deg,
    )


def measure_resolution_file(
    frame: Path,
    *,
    poni: Path,
    calibrant: str,
    out: Path,
    mask: Path | None = None,
    peak_shape: PeakShape = "gaussian",
) -> InstrumentResolution:
    """Fit a calibrant frame's lines and write the instrumental resolution JSON to `out`."""
    detector = load_poni(poni)
    data = read_frame(FrameRef(Path(frame), 0), shape=detector.shape).data.astype(np.float64)
    resolution = resolution_from_frame(
        data,
        detector,
        calibrant=calibrant,
        mask=_mask(detector.detector, detector.shape, mask),
        shape=peak_shape,
    )
    save_resolution(out, resolution)
    return resolution


def _mask(detector: str, shape: tuple[int, int], user: Path | None) -> NDArray[np.bool_]:
    user_mask = None if user is None else read_mask_file(user, shape=shape)
    return static_mask(detector, user_mask=user_mask)
