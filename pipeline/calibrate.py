"""File-level calibration steps behind ``gixs calibrate``: read, compute, report.

The science lives in :mod:`calibration`; this module only wires files to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from calibration.geometry import DetectorGeometry, GIGeometry
from calibration.incidence import IncidenceReport, calibrate_incidence
from calibration.io import load_poni, save_resolution
from calibration.resolution import InstrumentResolution, PeakShape, resolution_from_frame
from detectors.io import FrameRef, read_frame, read_mask_file
from detectors.pilatus import detector_saturation_counts, frame_mask


def check_incidence(
    frame: Path,
    *,
    poni: Path,
    incidence_angle_deg: float,
    detector: str | None = None,
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
    detector : str or None
        pyFAI detector name overriding the PONI file's.
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
    detector_geometry, raw, invalid = _detector_and_frame(poni, detector, frame)
    geometry = GIGeometry.create(detector_geometry, incidence_angle_deg=incidence_angle_deg)
    return calibrate_incidence(
        raw,
        geometry,
        mask=_mask(detector_geometry, mask) | invalid,
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
    detector: str | None = None,
) -> InstrumentResolution:
    """Fit a calibrant frame's lines and write the instrumental resolution JSON to `out`.

    `detector` (a pyFAI name) overrides the PONI file's detector.
    """
    detector_geometry, data, invalid = _detector_and_frame(poni, detector, frame)
    resolution = resolution_from_frame(
        data,
        detector_geometry,
        calibrant=calibrant,
        mask=_mask(detector_geometry, mask) | invalid,
        shape=peak_shape,
    )
    save_resolution(out, resolution)
    return resolution


def _detector_and_frame(
    poni: Path, detector: str | None, frame: Path
) -> tuple[DetectorGeometry, NDArray[np.float64], NDArray[np.bool_]]:
    """The PONI's detector, frame 0 of `frame` in counts, and the frame's invalid pixels.

    `detector` overrides the PONI file's. Invalid pixels (True) are those the reduction
    leaves out: the data type's largest value, negative or non-finite values, the
    detector's saturation and its own pixel mask (:func:`detectors.pilatus.frame_mask`);
    a single pixel at 2^32 - 1 in the band through the beam passed for the specular spot.
    A generic detector without a frame shape takes the frame's.
    """
    geometry = load_poni(poni, detector=detector)
    if not geometry.has_shape:
        read = read_frame(FrameRef(Path(frame), 0))
        geometry = geometry.with_frame_shape(read.data.shape)
    else:
        read = read_frame(FrameRef(Path(frame), 0), shape=geometry.shape)
    saturation = read.meta.saturation_counts
    if saturation is None:
        saturation = detector_saturation_counts(geometry.detector)
    invalid = frame_mask(
        read.data,
        np.zeros(read.data.shape, dtype=bool),
        saturation_counts=saturation,
        pixel_mask=read.pixel_mask,
    )
    return geometry, read.data.astype(np.float64), invalid


def _mask(detector: DetectorGeometry, user: Path | None) -> NDArray[np.bool_]:
    gaps = detector.gap_mask()
    return gaps if user is None else gaps | read_mask_file(user, shape=detector.shape)
