"""The per-frame path: one frame in, one reduced result out.

Everything that depends only on the geometry (q maps, the band's sparse cut matrices,
the static mask, the fit settings, the instrumental width) is built once by
:func:`plan_reduction`; :func:`reduce_frame` then does only per-frame work: the band's
negative and saturated pixels, two sparse mat-vecs, the fits and the Scherrer arithmetic.
Batch, live and scripted use all stand on these two calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calibration.geometry import GIGeometry, QMaps
from calibration.incidence import FrameIncidencePlan, frame_incidence_flag, plan_frame_incidence
from calibration.resolution import InstrumentResolution
from detectors.io import Frame, FrameRef
from detectors.pilatus import detector_saturation_counts
from pipeline.checks import band_pixels, band_problem, band_saturation_flag, is_input_problem
from pipeline.config import DetectorSettings, Kind, ScherrerSettings
from pipeline.cube_line import CubeLineFit, fit_cube_line
from pipeline.cuts import (
    bins_for_range,
    check_band_above_horizon,
    lowest_band_per_nm,
    yoneda_band_per_nm,
)
from pipeline.fits import (
    PeakFit,
    PeakFitSettings,
    RodFit,
    RodFitSettings,
    fit_peak200,
    fit_rods,
)
from pipeline.integrate import CutPlan, integrate_cut, plan_cut
from pipeline.scherrer import (
    integral_breadth_err_per_nm,
    integral_breadth_per_nm,
    lorentz_height_share,
    remove_instrumental_breadth,
    remove_instrumental_fwhm,
    scherrer_size_err_nm,
    scherrer_size_nm,
)

#: Flag of a frame whose {200} width was not corrected for the instrument.
FLAG_NO_RESOLUTION = "no_instrument_correction"
#: Flag of a domain size whose sample width is below :data:`RESOLUTION_FRACTION` of the
#: instrumental FWHM: there the size is biased low beyond its error (80 nm cubes came out
#: 6 % small, 150 nm ones 13 %, on the demo's 0.25 nm^-1 instrument), a lower bound.
FLAG_NEAR_RESOLUTION = "domain_near_resolution"
#: Sample width, as a fraction of the instrumental FWHM, below which a size is flagged.
RESOLUTION_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class ReductionPlan:
    """Everything the per-frame path needs that depends only on geometry and settings.

    Attributes
    ----------
    kind : {"gisaxs", "giwaxs"}
        Which analysis runs on the cut: superlattice rods or the {200} reflection.
    geometry : GIGeometry
        Grazing-incidence geometry the cut was planned for.
    static_mask : ndarray of bool, shape (rows, cols)
        Module gaps and the user mask (True = masked).
    cut : CutPlan
        The precomputed q_par cut over the q_perp band.
    rod_settings, peak_settings : RodFitSettings or PeakFitSettings
        Fit settings; only the one of `kind` is used.
    resolution : InstrumentResolution or None
        Instrumental width beta_inst(q); None: no correction, and a flag says so.
    scherrer : ScherrerSettings
        Scherrer method, constant K and (cube_profile) size spread.
    incidence : FrameIncidencePlan or None
        The per-frame check of the incidence angle (specular spot, Yoneda band); None:
        not checked.
    """

    kind: Kind
    geometry: GIGeometry
    static_mask: NDArray[np.bool_]
    cut: CutPlan
    rod_settings: RodFitSettings
    peak_settings: PeakFitSettings
    resolution: InstrumentResolution | None
    scherrer: ScherrerSettings
    incidence: FrameIncidencePlan | None = None

    @property
    def q_par_per_nm(self) -> NDArray[np.float64]:
        """q_par of the cut's bins, in nm^-1 (mean q of the pixels in each bin)."""
        return self.cut.q_par_per_nm

    @property
    def resolved_fwhm_per_nm(self) -> float | None:
        """FWHM of a line the cut must resolve, in nm^-1 (None where not known).

        GISAXS: the widest rod the fit accepts (``max_width_per_nm``); GIWAXS: the
        instrumental width, the narrowest a {200} line can be.
        """
        if self.kind == "gisaxs":
            return self.rod_settings.max_width_per_nm
        return None if self.resolution is None else self.resolution.fwhm0_per_nm


@dataclass(frozen=True, slots=True)
class FrameResult:
    """The reduction of one frame: its metadata, its cut, its fit and its flags.

    Attributes
    ----------
    kind : {"gisaxs", "giwaxs"}
        Detector kind of the frame.
    path : str
        Source file.
    frame_index : int
        Index of the frame within its file.
    epoch_s : float or None
        Time stamp from the header, s since 1970 (None: not in the file).
    position : int or None
        Sample-position index where known.
    intensity, sigma : ndarray of shape (n_bins,)
        The q_par cut and its Poisson uncertainty (NaN where no valid pixel fell).
    rod : RodFit or None
        GISAXS rod fit (None for GIWAXS frames and for frames that could not be read).
    peak : PeakFit or None
        GIWAXS {200} fit.
    instrument_fwhm_per_nm : float
        Instrumental FWHM removed at the {200} centre (0 when none was removed).
    fwhm_corr_per_nm, domain_nm, domain_err_nm : float
        {200} width with the instrument removed, and the Scherrer size (NaN when not known).
    fwhm_per_nm, fwhm_err_per_nm : float
        {200} FWHM as observed (instrument included) by the Scherrer method's line model:
        the fitted cube line ("cube_profile") or the fitted peak (else), in nm^-1.
    breadth_per_nm, breadth_err_per_nm : float
        {200} integral breadth (area / height) as observed, same model, in nm^-1.
    breadth_corr_per_nm, breadth_corr_err_per_nm : float
        Integral breadth of the sample's line (instrument removed), in nm^-1.
    scherrer_method : str
        The Scherrer method used ("" for GISAXS frames).
    k_factor : float
        The Scherrer constant K used (NaN for GISAXS frames).
    flags : tuple of str
        Short reasons a user reads ("read_error: ...", "rod_fit: ...").
    dataset : str
        HDF5 dataset the frame came from ("" for a one-image file): with `path` and
        `frame_index` (which counts within the dataset) it names the frame.
    """

    kind: Kind
    path: str
    frame_index: int
    epoch_s: float | None
    exposure_s: float | None
    period_s: float | None
    position: int | None
    intensity: NDArray[np.float64]
    sigma: NDArray[np.float64]
    rod: RodFit | None = None
    peak: PeakFit | None = None
    instrument_fwhm_per_nm: float = 0.0
    fwhm_corr_per_nm: float = math.nan
    domain_nm: float = math.nan
    domain_err_nm: float = math.nan
    fwhm_per_nm: float = math.nan
    fwhm_err_per_nm: float = math.nan
    breadth_per_nm: float = math.nan
    breadth_err_per_nm: float = math.nan
    breadth_corr_per_nm: float = math.nan
    breadth_corr_err_per_nm: float = math.nan
    scherrer_method: str = ""
    k_factor: float = math.nan
    flags: tuple[str, ...] = ()
    dataset: str = ""

    @property
    def read_ok(self) -> bool:
        """False when the frame could not be read (the row is kept, flagged)."""
        return not any(flag.startswith("read_error") for flag in self.flags)

    @property
    def input_ok(self) -> bool:
        """False when the frame could not be read or holds no usable data (flagged)."""
        return not is_input_problem(self.flags)


def resolve_band(
    settings: DetectorSettings,
    geometry: GIGeometry,
    static_mask: NDArray[np.bool_],
    maps: QMaps,
) -> tuple[float, float]:
    """The q_perp band of the cut, in nm^-1, from the settings' band policy.

    Raises
    ------
    ConfigError
        If a GISAXS band given as [lo, hi] lies wholly below the sample horizon
        (:func:`~pipeline.cuts.check_band_above_horizon`).
    """
    band = settings.q_perp_band_per_nm
    if band == "yoneda":
        return yoneda_band_per_nm(geometry, critical_angle_deg=settings.critical_angle_deg)
    if band == "lowest":
        return lowest_band_per_nm(maps, static_mask=static_mask)
    if settings.kind == "gisaxs":
        check_band_above_horizon(
            band, geometry, critical_angle_deg=settings.critical_angle_deg, where="[gisaxs]"
        )
    return band


def plan_reduction(
    settings: DetectorSettings,
    *,
    geometry: GIGeometry,
    static_mask: NDArray[np.bool_],
    resolution: InstrumentResolution | None,
    scherrer: ScherrerSettings,
) -> ReductionPlan:
    """Precompute the per-frame path of one detector (run once per geometry).

    Parameters
    ----------
    settings : DetectorSettings
        The detector's run settings (band, q range, bins, fit window, peak shape).
    geometry : GIGeometry
        Its grazing-incidence geometry.
    static_mask : ndarray of bool, shape (rows, cols)
        Gaps and user mask (True = masked).
    resolution : InstrumentResolution or None
        Instrumental resolution for the {200} correction (GIWAXS).
    scherrer : ScherrerSettings
        Scherrer constant.

    Returns
    -------
    ReductionPlan
        The plan that :func:`reduce_frame` uses for every frame.
    """
    maps = geometry.q_maps()
    band = resolve_band(settings, geometry, static_mask, maps)
    n_bins = settings.n_bins or bins_for_range(maps, settings.q_par_range_per_nm)
    cut = plan_cut(
        geometry,
        static_mask=static_mask,
        q_perp_band_per_nm=band,
        q_par_range_per_nm=settings.q_par_range_per_nm,
        n_bins=n_bins,
        maps=maps,
    )
    return ReductionPlan(
        kind=settings.kind,
        geometry=geometry,
        static_mask=static_mask,
        cut=cut,
        rod_settings=RodFitSettings(
            peak_shape=settings.peak_shape,
            q1_window_per_nm=settings.q1_window_per_nm,
            max_nfev=settings.max_nfev,
        ),
        peak_settings=PeakFitSettings(
            peak_shape=settings.peak_shape,
            window_per_nm=settings.peak_window_per_nm,
            max_nfev=settings.max_nfev,
        ),
        resolution=resolution,
        scherrer=scherrer,
        incidence=plan_frame_incidence(
            geometry,
            maps=maps,
            static_mask=static_mask,
            critical_angle_deg=settings.critical_angle_deg,
        ),
    )


def reduce_frame(
    frame: Frame, plan: ReductionPlan, *, previous: FrameResult | None = None
) -> FrameResult:
    """Reduce one frame: cut, fit, and (GIWAXS) the Scherrer size.

    Parameters
    ----------
    frame : Frame
        The frame and its metadata, as read by :mod:`detectors.io`.
    plan : ReductionPlan
        The detector's precomputed plan.
    previous : FrameResult or None
        The previous frame's result, whose fit starts this one (warm start).

    Returns
    -------
    FrameResult
        Never raises for a frame that was read: a failed fit is a flagged result.
    """
    data = frame.data
    # gaps and the user mask are in the plan; the detector's pixel mask and the frame's
    # invalid values (by its data type, and its saturation) are tested on the band only
    saturation = frame.meta.saturation_counts
    if saturation is None:
        saturation = detector_saturation_counts(plan.geometry.detector.detector)
    cut = integrate_cut(plan.cut, data, dynamic_mask=frame.pixel_mask, saturation_counts=saturation)
    band = band_pixels(plan.cut, data, saturation_counts=saturation, pixel_mask=frame.pixel_mask)
    problem = band_problem(band)
    meta = frame.meta
    incidence = (
        None
        if plan.incidence is None
        else frame_incidence_flag(
            data, plan.incidence, saturation_counts=saturation, pixel_mask=frame.pixel_mask
        )
    )
    checks = tuple(flag for flag in (band_saturation_flag(band), incidence) if flag is not None)
    common = {
        "kind": plan.kind,
        "path": str(meta.path),
        "frame_index": meta.frame_index,
        "epoch_s": meta.epoch_s,
        "exposure_s": meta.exposure_s,
        "period_s": meta.period_s,
        "position": meta.position,
        "intensity": cut.intensity,
        "sigma": cut.sigma,
        "dataset": meta.dataset or "",
    }
    if problem is not None:  # no data to fit: flagged as what it is, never "no rod"
        return FrameResult(**common, flags=(problem,))  # type: ignore[arg-type]
    if plan.kind == "gisaxs":
        rod = fit_rods(
            cut.q_par_per_nm,
            cut.intensity,
            cut.sigma,
            settings=plan.rod_settings,
            start=previous.rod if previous is not None else None,
        )
        flags = () if rod.ok else (f"rod_fit: {rod.message}",)
        return FrameResult(**common, rod=rod, flags=flags + checks)  # type: ignore[arg-type]
    peak = fit_peak200(
        cut.q_par_per_nm,
        cut.intensity,
        cut.sigma,
        settings=plan.peak_settings,
        start=previous.peak if previous is not None else None,
    )
    return _with_scherrer(common, peak, plan, checks)


def _with_scherrer(
    common: dict[str, object], peak: PeakFit, plan: ReductionPlan, checks: tuple[str, ...] = ()
) -> FrameResult:
    flags: list[str] = [] if peak.ok else [f"peak_fit: {peak.message}"]
    inst_eta = 0.0
    if plan.resolution is None:
        inst = 0.0
        flags.append(FLAG_NO_RESOLUTION)
    else:
        inst = plan.resolution.fwhm_per_nm(peak.center_per_nm) if peak.ok else math.nan
        if plan.resolution.shape != "gaussian":  # calibrant fits give lmfit's area share
            shares = plan.resolution.line_lorentz_fraction
            inst_eta = lorentz_height_share(float(np.mean(shares)))
    settings = plan.scherrer
    k = settings.k
    line_ok = True  # the width's line model gave a width (the cube line may not)
    if settings.method == "cube_profile":
        cube = _cube_line(common, peak, plan, inst, inst_eta)
        if peak.ok and not cube.ok:
            flags.append(f"cube_line_fit: {cube.message}")
        line_ok = cube.ok
        widths = (
            _LineWidths(
                fwhm=cube.fwhm_per_nm,
                fwhm_err=cube.fwhm_err_per_nm,
                fwhm_corr=cube.sample_fwhm_per_nm,
                fwhm_corr_err=math.nan,  # not used: the size comes from the breadth
                breadth=cube.breadth_per_nm,
                breadth_err=cube.breadth_err_per_nm,
                breadth_corr=cube.sample_breadth_per_nm,
                breadth_corr_err=cube.sample_breadth_err_per_nm,
            )
            if line_ok
            else _LineWidths(*(math.nan,) * 8)  # a cube line at its edge bound: no width
        )
        width, width_err = widths.breadth_corr, widths.breadth_corr_err
    else:
        widths = _peak_widths(peak, inst, inst_eta)
        if settings.method == "integral_breadth":
            width, width_err = widths.breadth_corr, widths.breadth_corr_err
        else:
            width, width_err = widths.fwhm_corr, widths.fwhm_corr_err
    if not peak.ok:
        width = math.nan
    domain = scherrer_size_nm(width, k_factor=k)
    domain_err = scherrer_size_err_nm(width, width_err, k_factor=k)
    if peak.ok and line_ok and not math.isfinite(width):
        flags.append(_unresolved_flag(settings.method, peak, inst_eta))
    elif peak.ok and line_ok and not math.isfinite(widths.fwhm_corr):
        flags.append("fwhm200 not above the instrumental width")
    elif peak.ok and inst > 0 and width < RESOLUTION_FRACTION * inst:
        flags.append(
            f"{FLAG_NEAR_RESOLUTION}: the sample width {width:.3g} nm^-1 is below "
            f"{RESOLUTION_FRACTION:g} x the instrumental FWHM {inst:.3g} nm^-1: the size "
            f"{domain:.0f} nm is biased low (a lower bound)"
        )
    return FrameResult(
        **common,  # type: ignore[arg-type]
        peak=peak,
        instrument_fwhm_per_nm=inst,
        fwhm_corr_per_nm=widths.fwhm_corr,
        domain_nm=domain,
        domain_err_nm=domain_err,
        fwhm_per_nm=widths.fwhm,
        fwhm_err_per_nm=widths.fwhm_err,
        breadth_per_nm=widths.breadth,
        breadth_err_per_nm=widths.breadth_err,
        breadth_corr_per_nm=widths.breadth_corr,
        breadth_corr_err_per_nm=widths.breadth_corr_err,
        scherrer_method=settings.method,
        k_factor=k,
        flags=(*flags, *checks),
    )


def _unresolved_flag(method: str, peak: PeakFit, inst_eta: float) -> str:
    """Why the {200} line gave no size: its width is not above the instrument's."""
    if method == "fwhm":
        return "fwhm200 not above the instrumental width: no domain size"
    words = (
        f"{method}: the sample breadth is not above the instrument's (no domain size)"
        if method == "cube_profile"
        else "breadth200 not above the instrumental breadth by the Voigt rule: no domain size"
    )
    if method == "integral_breadth" and peak.peak_shape == "lorentzian" and inst_eta < 1.0:
        words += (
            '; a peak_shape = "lorentzian" fit has no Gaussian part to remove the '
            'instrument\'s from: use peak_shape = "pseudo_voigt" or method = "cube_profile"'
        )
    return words


@dataclass(frozen=True, slots=True)
class _LineWidths:
    """Widths of the {200} line as measured and with the instrument removed, in nm^-1."""

    fwhm: float
    fwhm_err: float
    fwhm_corr: float
    fwhm_corr_err: float
    breadth: float
    breadth_err: float
    breadth_corr: float
    breadth_corr_err: float


def _peak_widths(peak: PeakFit, inst: float, inst_eta: float) -> _LineWidths:
    """The widths of the fitted {200} peak, the instrument removed by the Voigt rules.

    The instrumental width is taken as exact; the errors of the fitted FWHM (and eta) are
    carried through the removal by central differences, whatever the peak shape.
    """

    def corrected(fwhm_per_nm: float) -> float:
        return remove_instrumental_fwhm(fwhm_per_nm, inst, peak_shape=peak.peak_shape, eta=peak.eta)

    def breadth_corrected(fwhm_per_nm: float, eta: float) -> float:
        return remove_instrumental_breadth(
            fwhm_per_nm, inst, peak_shape=peak.peak_shape, eta=eta, instrument_eta=inst_eta
        )

    fwhm, fwhm_err = peak.fwhm_per_nm, peak.fwhm_err_per_nm
    step = 1e-4 * fwhm
    slope = (corrected(fwhm + step) - corrected(fwhm - step)) / (2 * step)
    eta = peak.eta if peak.peak_shape == "pseudo_voigt" else None
    d_fwhm = (
        breadth_corrected(fwhm + step, peak.eta) - breadth_corrected(fwhm - step, peak.eta)
    ) / (2 * step)
    d_eta = 0.0
    if peak.peak_shape == "pseudo_voigt" and 1e-4 <= peak.eta <= 1.0 - 1e-4:
        d_eta = (
            breadth_corrected(fwhm, peak.eta + 1e-4) - breadth_corrected(fwhm, peak.eta - 1e-4)
        ) / 2e-4
    return _LineWidths(
        fwhm=fwhm,
        fwhm_err=fwhm_err,
        fwhm_corr=corrected(fwhm),
        fwhm_corr_err=abs(slope) * fwhm_err,
        breadth=integral_breadth_per_nm(fwhm, peak_shape=peak.peak_shape, eta=eta),
        breadth_err=integral_breadth_err_per_nm(
            fwhm, fwhm_err, peak_shape=peak.peak_shape, eta=eta, eta_err=peak.eta_err
        ),
        breadth_corr=breadth_corrected(fwhm, peak.eta),
        breadth_corr_err=math.hypot(d_fwhm * fwhm_err, d_eta * peak.eta_err),
    )


def _cube_line(
    common: dict[str, object], peak: PeakFit, plan: ReductionPlan, inst: float, inst_eta: float
) -> CubeLineFit:
    """The cube-line fit of the frame's cut, started from the {200} peak fit."""
    eta = peak.eta if peak.peak_shape == "pseudo_voigt" else float(peak.peak_shape == "lorentzian")
    neighbours = tuple(
        (c, w, eta)
        for c, w in (
            (peak.center111_per_nm, peak.fwhm111_per_nm),
            (peak.center220_per_nm, peak.fwhm220_per_nm),
        )
        if math.isfinite(c) and math.isfinite(w) and w > 0
    )
    return fit_cube_line(
        plan.q_par_per_nm,
        np.asarray(common["intensity"]),
        np.asarray(common["sigma"]),
        center_per_nm=peak.center_per_nm,
        fwhm_per_nm=peak.fwhm_per_nm,
        window_per_nm=plan.peak_settings.window_per_nm,
        size_spread=plan.scherrer.size_spread,
        instrument_fwhm_per_nm=inst if math.isfinite(inst) else 0.0,
        instrument_eta=inst_eta,
        neighbours=neighbours,
        background_order=plan.peak_settings.background_order,
    )


def unreadable_frame(ref: FrameRef, plan: ReductionPlan, message: str) -> FrameResult:
    """The flagged, all-NaN result kept for a frame that could not be read."""
    nan = np.full(plan.q_par_per_nm.shape, np.nan)
    return FrameResult(
        kind=plan.kind,
        path=str(ref.path),
        frame_index=ref.frame_index,
        epoch_s=None,
        exposure_s=None,
        period_s=None,
        position=None,
        intensity=nan,
        sigma=nan,
        flags=(f"read_error: {message}",),
        dataset=ref.dataset or "",
    )
