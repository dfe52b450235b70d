"""One frame, no config: the rods or the {200} peak of a single frame.

The kind of frame (GISAXS or GIWAXS) follows from the q range the detector reaches; the
q_par range is the kind's default clipped to what the band reaches on this detector, so
frames from other beamlines and detectors work without settings.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from calibration.io import load_resolution
from detectors.errors import ConfigError
from detectors.io import FrameRef, read_frame
from pipeline.checks import check_cut_bins
from pipeline.config import (
    KIND_DEFAULTS,
    DetectorSettings,
    Kind,
    PeakShape,
    ScherrerMethod,
    ScherrerSettings,
)
from pipeline.cuts import frame_kind, q_par_coverage_per_nm
from pipeline.io import check_resolution_setup, load_geometry, load_static_mask
from pipeline.reduce import ReductionPlan, plan_reduction, reduce_frame, resolve_band
from pipeline.timeseries import SeriesRow, row_from_result


def inspect_frame(
    path: Path,
    *,
    poni: Path,
    incidence_angle_deg: float,
    detector: str | None = None,
    mask: Path | None = None,
    mask_invert: bool = False,
    resolution: Path | None = None,
    kind: Kind | None = None,
    frame_index: int = 0,
    h5_dataset: str | None = None,
    sample_orientation: int | Literal["auto"] = "auto",
    tilt_angle_deg: float = 0.0,
    q_perp_band_per_nm: tuple[float, float] | None = None,
    q_par_range_per_nm: tuple[float, float] | None = None,
    peak_shape: PeakShape = "gaussian",
    max_nfev: int = 60,
    k_factor: float | None = None,
    scherrer_method: ScherrerMethod = "cube_profile",
) -> SeriesRow:
    """Reduce one frame file and return its summary row.

    Parameters
    ----------
    path : Path
        Frame file (CBF, EDF, TIFF or HDF5).
    poni : Path
        pyFAI PONI geometry file.
    incidence_angle_deg : float
        Incidence angle alpha_i, in degrees.
    detector : str or None
        pyFAI detector name overriding the PONI file's.
    mask, resolution : Path or None
        User mask file; instrumental resolution JSON (without it the {200} width is not
        corrected and the flags say so).
    mask_invert : bool
        True for a mask written as nonzero = good pixel.
    kind : {"gisaxs", "giwaxs"} or None
        Force the kind; None decides it from the q range.
    frame_index : int
        Frame within the file.
    h5_dataset : str or None
        HDF5 dataset of the frames (None: found from the detector shape).
    sample_orientation : int or "auto"
        pyFAI sample orientation; "auto": horizontal sample, q_perp up on the frame.
    tilt_angle_deg : float
        Sample tilt, in degrees.
    q_perp_band_per_nm, q_par_range_per_nm : tuple of float or None
        Band and q_par range of the cut, in nm^-1 (None: the kind's defaults).
    peak_shape : {"gaussian", "lorentzian", "pseudo_voigt"}
        Peak shape of the fits.
    max_nfev : int
        Evaluation limit of each fit (>= 5).
    k_factor : float or None
        Scherrer constant K (None: the method's K for cubes).
    scherrer_method : {"cube_profile", "integral_breadth", "fwhm"}
        Scherrer method (see :mod:`pipeline.scherrer`).

    Returns
    -------
    SeriesRow
        The frame's row (time 0 s), keyed like summary.csv by ``as_record()``.

    Raises
    ------
    GixsError
        For a bad file, geometry or setting; the message names it.
    """
    settings = DetectorSettings(
        kind=kind or "gisaxs",
        frames=(str(path),),
        poni=poni,
        incidence_angle_deg=incidence_angle_deg,
        detector=detector,
        h5_dataset=h5_dataset,
        mask=mask,
        mask_invert=mask_invert,
        tilt_angle_deg=tilt_angle_deg,
        sample_orientation=sample_orientation,
        peak_shape=peak_shape,
        max_nfev=max_nfev,
        resolution=resolution,
    )
    geometry = load_geometry(settings)
    instrument = None if resolution is None else load_resolution(resolution)
    if instrument is not None and resolution is not None:
        check_resolution_setup(instrument, geometry, resolution_file=resolution, poni_file=poni)
    # read first: a frame of another detector is named before any q range is derived
    frame = read_frame(FrameRef(Path(path), frame_index, h5_dataset), shape=geometry.detector.shape)
    fix = "drop --mask-invert" if mask_invert else "add --mask-invert"
    static = load_static_mask(geometry, mask, invert=mask_invert, fix=fix)
    maps = geometry.q_maps()
    forced = kind is not None
    kind = kind or frame_kind(maps, static)
    band = q_perp_band_per_nm or KIND_DEFAULTS[kind]["q_perp_band_per_nm"]
    settings = replace(settings, kind=kind, q_perp_band_per_nm=band)
    if q_par_range_per_nm is None:
        lo, hi = KIND_DEFAULTS[kind]["q_par_range_per_nm"]
        reach_lo, reach_hi = q_par_coverage_per_nm(
            maps, static, resolve_band(settings, geometry, static, maps)
        )
        q_par_range_per_nm = (max(lo, reach_lo), min(hi, reach_hi))
        if q_par_range_per_nm[0] >= q_par_range_per_nm[1]:
            how = "--kind" if forced else "the q range on the detector"
            msg = (
                f"{path}: in its q_perp band the frame reaches q_par {reach_lo:.2f}-"
                f"{reach_hi:.2f} nm^-1, none of the {kind} range {lo:g}-{hi:g} nm^-1 (the kind "
                f"from {how}): " + ("drop --kind" if forced else "give --q-range and --band")
            )
            raise ConfigError(msg)
    settings = replace(settings, q_par_range_per_nm=q_par_range_per_nm)

    def plan_with(static_mask: NDArray[np.bool_]) -> ReductionPlan:
        return plan_reduction(
            settings,
            geometry=geometry,
            static_mask=static_mask,
            resolution=instrument,
            scherrer=ScherrerSettings(method=scherrer_method, k_factor=k_factor),
        )

    plan = plan_with(static)
    unmasked = None if mask is None else plan_with(geometry.detector.gap_mask()).cut.n_bins
    check_cut_bins(
        plan.cut, where="gixs inspect", unmasked_bins=unmasked, mask_file=mask, fix=fix,
        line_fwhm_per_nm=plan.resolved_fwhm_per_nm, bins_setting="none",
        resolution_file=resolution if kind == "giwaxs" else None,
    )  # fmt: skip
    return row_from_result(reduce_frame(frame, plan), 0.0)
