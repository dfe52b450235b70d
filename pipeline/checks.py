"""Plausibility checks: an input problem is named as what it is, never as "no rod".

A frame that holds no usable data (all zero, all NaN, dead or saturated pixels over the
cut band) cannot say whether a lattice is there, so it is flagged with a code and words
(:func:`band_problem`) instead of being fitted. Settings that cannot work on this
detector (a fit window outside the cut, a user mask of the other polarity) are refused
before any frame is read, with the key and the fix.

Flags are ``"<code>: <words>"``; :func:`flag_code` reads the code back, and
:data:`INPUT_PROBLEM_CODES` lists the codes that count as bad frames in the exit status.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numba
import numpy as np
from numpy.typing import NDArray

from detectors.errors import ConfigError
from detectors.pilatus import valid_counts
from pipeline.integrate import CutPlan
from pipeline.varpro import MIN_POINTS

#: Codes of frames whose data cannot be reduced (each counts as a bad frame).
FLAG_ALL_ZERO = "frame_all_zero"
FLAG_ALL_NAN = "frame_all_nan"
FLAG_DEAD = "frame_dead"
FLAG_SATURATED = "frame_saturated"
#: Code of a frame that is fitted although some pixels of its band are saturated.
FLAG_BAND_SATURATED = "band_saturated"
#: Code of a frame that could not be read (written by the batch).
FLAG_READ_ERROR = "read_error"
INPUT_PROBLEM_CODES: tuple[str, ...] = (
    FLAG_READ_ERROR,
    FLAG_ALL_ZERO,
    FLAG_ALL_NAN,
    FLAG_DEAD,
    FLAG_SATURATED,
)

#: A frame whose band has fewer valid pixels than this fraction is not fitted.
MIN_VALID_FRACTION = 0.5
#: A user mask that hides more than this fraction of the detector is suspect.
MAX_MASKED_FRACTION = 0.75
#: A fit window must hold at least this many bins of the cut.
MIN_WINDOW_BINS = 5
#: A user mask that leaves fewer than this fraction of the cut's bins is refused.
MIN_KEPT_BIN_FRACTION = 0.5


def flag_code(flag: str) -> str:
    """The machine-readable code of a flag (the text before the first colon).

    Examples
    --------
    >>> flag_code("frame_all_zero: every pixel of the cut band holds 0 counts")
    'frame_all_zero'
    >>> flag_code("no_instrument_correction")
    'no_instrument_correction'
    """
    return flag.split(":", 1)[0].strip()


def is_input_problem(flags: str | tuple[str, ...]) -> bool:
    """True when a frame's flags say its input is bad (unreadable or unusable data).

    Parameters
    ----------
    flags : str or tuple of str
        A summary row's "; "-joined flags, or a result's flag tuple.

    Examples
    --------
    >>> is_input_problem("frame_dead: 100 % of the band's pixels are invalid")
    True
    >>> is_input_problem(("rod_fit: no rod above 3 sigma",))
    False
    """
    items = flags.split("; ") if isinstance(flags, str) else flags
    return any(flag_code(f) in INPUT_PROBLEM_CODES for f in items if f)


@dataclass(frozen=True, slots=True)
class BandPixels:
    """Counts of the cut band's pixels in one frame, by what they hold.

    Attributes
    ----------
    n_pixels : int
        Pixels of the band (statically unmasked).
    n_nan : int
        Non-finite pixels.
    n_negative : int
        Negative pixels (Pilatus marks dead and gap pixels -1, -2).
    n_saturated : int
        Pixels at or above saturation (or at the maximum of an unsigned type).
    n_valid : int
        The rest: pixels a fit uses.
    n_valid_zero : int
        Valid pixels that hold 0 counts.
    n_masked : int
        Pixels that hold a count but that the detector's own pixel mask leaves out (not
        in `n_valid`).
    n_saturated_masked : int
        Of `n_saturated`, the pixels the detector's own mask marks (bad pixels, gaps that
        hold the type's largest value): these are known, not saturated by the sample.
    """

    n_pixels: int
    n_nan: int
    n_negative: int
    n_saturated: int
    n_valid: int
    n_valid_zero: int
    n_masked: int = 0
    n_saturated_masked: int = 0


def band_pixels(
    cut: CutPlan,
    data: NDArray[np.generic],
    *,
    saturation_counts: float | None,
    pixel_mask: NDArray[np.bool_] | None = None,
) -> BandPixels:
    """Count what the band's pixels of a frame hold.

    Parameters
    ----------
    cut : CutPlan
        The cut (its band's pixels).
    data : ndarray of shape (rows, cols)
        The frame.
    saturation_counts : float or None
        Counts at or above which a pixel is saturated; the largest value of an integer
        type counts as saturated too (:func:`detectors.pilatus.valid_counts`, the rule the
        cut itself applies).
    pixel_mask : ndarray of bool, shape (rows, cols), or None
        The detector's own mask read with the frame (``Frame.pixel_mask``), True = masked:
        the cut leaves these pixels out too.

    Returns
    -------
    BandPixels
        The counts.
    """
    values = np.asarray(data).reshape(-1)[cut.pixel_index]
    valid = valid_counts(values, saturation_counts=saturation_counts)  # the cut's own rule
    masked = (
        np.zeros(values.size, dtype=bool)
        if pixel_mask is None
        else np.asarray(pixel_mask, dtype=bool).reshape(-1)[cut.pixel_index]
    )
    counts = _band_counts(values.astype(np.float64), valid, masked)
    return BandPixels(int(values.size), *counts)


@numba.njit(cache=True)
def _band_counts(
    values: NDArray[np.float64], valid: NDArray[np.bool_], masked: NDArray[np.bool_]
) -> tuple[int, int, int, int, int, int, int]:
    """Counts of the band's pixels by what they hold, in the order of :class:`BandPixels`.

    Non-finite, negative, saturated (finite, not negative, not valid), valid and not
    masked, of those the zeros, valid but masked, and saturated and masked.
    """
    n_nan = n_negative = n_saturated = n_valid = n_valid_zero = n_masked = 0
    n_saturated_masked = 0
    for j in range(values.size):
        x = values[j]
        if not math.isfinite(x):
            n_nan += 1
        elif x < 0.0:
            n_negative += 1
        elif not valid[j]:  # at the saturation or the type's largest value
            n_saturated += 1
            if masked[j]:
                n_saturated_masked += 1
        elif masked[j]:
            n_masked += 1
        else:
            n_valid += 1
            if x == 0.0:
                n_valid_zero += 1
    return n_nan, n_negative, n_saturated, n_valid, n_valid_zero, n_masked, n_saturated_masked


def band_problem(px: BandPixels) -> str | None:
    """Why a frame's data cannot be reduced, as a flag; None when it can.

    Parameters
    ----------
    px : BandPixels
        What the frame's band holds (:func:`band_pixels`, with the detector's own pixel
        mask: a frame whose band the detector masks (almost) whole is as unusable as a
        dead one).

    Returns
    -------
    str or None
        ``"<code>: <words>"`` with a code of :data:`INPUT_PROBLEM_CODES`, or None.

    Examples
    --------
    >>> from calibration.geometry import DetectorGeometry, GIGeometry
    >>> from pipeline.integrate import plan_cut
    >>> det = DetectorGeometry("Pilatus300kw", 0.578, 0.030, 0.1268, 0.12398e-9)
    >>> cut = plan_cut(GIGeometry.create(det, incidence_angle_deg=0.3), static_mask=None,
    ...                q_perp_band_per_nm=(0.28, 0.48), q_par_range_per_nm=(0.3, 2.4),
    ...                n_bins=140)
    >>> zero = band_pixels(cut, np.zeros(det.shape), saturation_counts=None)
    >>> band_problem(zero).split(":")[0]
    'frame_all_zero'
    >>> band_problem(band_pixels(cut, np.full(det.shape, 5.0), saturation_counts=None)) is None
    True
    """
    n = max(px.n_pixels, 1)
    if px.n_nan == px.n_pixels:
        return f"{FLAG_ALL_NAN}: every pixel of the cut band is NaN (no data in the file)"
    # no counts at all is the cause, whatever share of the band is masked or dead besides
    if px.n_valid > 0 and px.n_valid_zero == px.n_valid:
        return (
            f"{FLAG_ALL_ZERO}: every pixel of the cut band holds 0 counts (no beam, a "
            "closed shutter, or data not written)"
        )
    if px.n_valid >= MIN_VALID_FRACTION * n:
        return None
    causes = [
        (FLAG_SATURATED, px.n_saturated, "saturated"),
        (FLAG_ALL_NAN, px.n_nan, "NaN"),
        (FLAG_DEAD, px.n_negative, "negative (dead)"),
        (FLAG_DEAD, px.n_masked, "masked by the detector's own pixel_mask"),
    ]
    code, count, words = max(causes, key=lambda cause: cause[1])
    return (
        f"{code}: {100 * (n - px.n_valid) / n:.0f} % of the cut band's pixels are invalid "
        f"({100 * count / n:.0f} % {words}); the frame is not fitted"
    )


def band_saturation_flag(px: BandPixels) -> str | None:
    """A flag where pixels of the band are saturated (and not in the detector's mask).

    The cut leaves saturated pixels out, so the brightest rods or {200} peak lose their
    tops: where few are, the fit barely moves; where many are (a flux 100x too high), a
    rod can come out at q1 / sqrt 2 with a small error. The frame is still fitted, and the
    flag says how much of the band was lost.

    Returns
    -------
    str or None
        ``"band_saturated: ..."`` with the number and share of saturated pixels, or None.
    """
    n_saturated = px.n_saturated - px.n_saturated_masked
    if n_saturated == 0:
        return None
    share = 100 * n_saturated / max(px.n_pixels, 1)
    return (
        f"{FLAG_BAND_SATURATED}: {n_saturated} pixels ({share:.2g} % of the cut band) are "
        "saturated and left out of the cut: the brightest rods or "
        "peak lose their tops and the fit may be biased; attenuate the beam or shorten the "
        "exposure"
    )


def check_fit_window(
    window_per_nm: tuple[float, float], cut: CutPlan, *, key: str, where: str
) -> None:
    """Refuse a fit window that holds too few bins of the cut.

    Parameters
    ----------
    window_per_nm : (float, float)
        The window, in nm^-1.
    cut : CutPlan
        The planned cut (its bins are those the detector reaches).
    key : str
        The setting's name, for the message ("q1_window_per_nm").
    where : str
        Where it is set ("[gisaxs] in run.toml").

    Raises
    ------
    ConfigError
        If fewer than :data:`MIN_WINDOW_BINS` bins of the cut lie in the window.
    """
    q = cut.q_par_per_nm
    lo, hi = window_per_nm
    inside = int(np.count_nonzero((q >= lo) & (q <= hi)))
    if inside >= MIN_WINDOW_BINS:
        return
    msg = (
        f"{where} {key} = [{lo:g}, {hi:g}] nm^-1 holds {inside} bins of the cut, which "
        f"spans q_par {float(q.min()):.3g} to {float(q.max()):.3g} nm^-1 on this detector "
        f"(q_par_range_per_nm, clipped to what the detector reaches); set {key} inside it"
    )
    raise ConfigError(msg)


def check_cut_bins(
    cut: CutPlan,
    *,
    where: str,
    unmasked_bins: int | None = None,
    mask_file: Path | None = None,
    fix: str = "",
    line_fwhm_per_nm: float | None = None,
    bins_setting: Literal["n_bins", "auto", "none"] = "n_bins",
    resolution_file: Path | None = None,
    auto_bin_width_per_nm: Callable[[], float] | None = None,
) -> None:
    """Refuse a cut with too few or too coarse q_par bins to fit rods or the {200} line.

    Parameters
    ----------
    cut : CutPlan
        The planned cut (its bins are those with a pixel left).
    where : str
        Where the settings are ("[gisaxs] in run.toml", "gixs inspect").
    unmasked_bins : int or None
        Bins of the same cut without the user mask (None: no user mask).
    mask_file : Path or None
        The user mask, for the message.
    fix : str
        How to invert the mask, for the message.
    line_fwhm_per_nm : float or None
        FWHM of a line the cut must resolve (``ReductionPlan.resolved_fwhm_per_nm``):
        a bin may be at most half of it.
    bins_setting : {"n_bins", "auto", "none"}
        How the bins were chosen, for the fix the message names: an ``n_bins`` value, the
        automatic bins of a config (``n_bins = "auto"``), or none the user can set
        (``gixs inspect``).
    resolution_file : Path or None
        The instrumental resolution that set `line_fwhm_per_nm` (GIWAXS), for the message.
    auto_bin_width_per_nm : callable or None
        With ``bins_setting="n_bins"``: the width the automatic bins (two pixel columns)
        would have, in nm^-1, asked only when the bins are refused; a line they cannot
        resolve is narrower than any instrument, and the resolution file is named.

    Raises
    ------
    ConfigError
        If the user mask leaves fewer than :data:`MIN_KEPT_BIN_FRACTION` of the bins the
        cut has without it, the cut has fewer bins than a fit needs
        (:data:`pipeline.varpro.MIN_POINTS`), or its bins are wider than half
        `line_fwhm_per_nm` (rods that fit within a bin come out as "no rod").
    """
    kept = cut.n_bins
    lo, hi = cut.q_par_range_per_nm
    if unmasked_bins and mask_file is not None and kept < MIN_KEPT_BIN_FRACTION * unmasked_bins:
        msg = (
            f"{where} mask {mask_file} leaves {kept} of the {unmasked_bins} q_par bins of the "
            f"cut ({lo:g}-{hi:g} nm^-1 in the q_perp band): too few to fit; if it was written "
            f"as 1 = good pixel, {fix}; else open the mask over the band"
        )
        raise ConfigError(msg)
    if kept < MIN_POINTS:
        msg = (
            f"{where} the cut has {kept} q_par bins ({cut.bin_edges_per_nm.size - 1} over "
            f"{lo:g}-{hi:g} nm^-1, those with pixels kept); the fits need at least "
            f'{MIN_POINTS}: raise n_bins (or use n_bins = "auto") or widen q_par_range_per_nm'
        )
        raise ConfigError(msg)
    n_regular = cut.bin_edges_per_nm.size - 1
    bin_width = (hi - lo) / n_regular
    if line_fwhm_per_nm is not None and bin_width > (1 + 1e-9) * line_fwhm_per_nm / 2:
        needed = math.ceil(2 * (hi - lo) / line_fwhm_per_nm - 1e-9)
        # the automatic bins are two pixel columns: no instrument is narrower than that
        auto_fails = bins_setting != "n_bins" or (
            auto_bin_width_per_nm is not None
            and auto_bin_width_per_nm() > (1 + 1e-9) * line_fwhm_per_nm / 2
        )
        fixes = {
            "n_bins": f"set n_bins >= {needed}" + ("" if auto_fails else ' or n_bins = "auto"'),
            "auto": f"set n_bins >= {needed}",
            "none": "give a --q-range where the detector's columns are finer, or drop --kind",
        }
        advice = fixes[bins_setting]
        if resolution_file is not None and auto_fails:
            advice = (
                f"check {resolution_file} (gixs calibrate resolution): an instrumental width "
                "below two pixel columns is not plausible"
                + ("" if bins_setting == "none" else f"; or {advice}")
            )
        msg = (
            f"{where} n_bins = {n_regular} makes q_par bins {bin_width:.3g} nm^-1 wide over "
            f"{lo:g}-{hi:g} nm^-1, more than half of a {line_fwhm_per_nm:g} nm^-1 wide line: "
            f"the lines cannot be resolved; {advice}"
        )
        raise ConfigError(msg)


def untimed_frames_message(kind: str, frame: str) -> str:
    """The error for frames that carry no time stamp and no period, with no setting either.

    Examples
    --------
    >>> untimed_frames_message("gisaxs", "a.tif").split(":")[0]
    '[gisaxs] a.tif'
    """
    return (
        f"[{kind}] {frame}: the frames carry no time stamp and no frame period: set "
        f"exposure_period_s = <seconds from one frame to the next> in [{kind}] to time "
        "them by their order"
    )


def check_user_mask(
    user_mask: NDArray[np.bool_],
    *,
    gaps: NDArray[np.bool_],
    mask_file: Path,
    fix: str,
    band: NDArray[np.bool_] | None = None,
) -> None:
    """Refuse a user mask that is most probably of the other polarity.

    The mask is suspect when it hides more than :data:`MAX_MASKED_FRACTION` of the
    detector's pixels (gaps left out) or every pixel of the cut band, while its inverse
    would not: it was then almost surely written with 1 = good pixel.

    Parameters
    ----------
    user_mask : ndarray of bool, shape (rows, cols)
        The mask as read (True = hidden).
    gaps : ndarray of bool, shape (rows, cols)
        The detector's own gaps and dead pixels (True = hidden).
    mask_file : Path
        The mask's file, for the message.
    fix : str
        How to invert it where the user gives it ("set mask_invert = true in [gisaxs]",
        "add --mask-invert").
    band : ndarray of bool, shape (rows, cols), or None
        Pixels of the cut band (None: not tested).

    Raises
    ------
    ConfigError
        If the mask looks inverted.
    """
    usable = ~np.asarray(gaps, dtype=bool)
    hidden = np.asarray(user_mask, dtype=bool) & usable
    shown = ~np.asarray(user_mask, dtype=bool) & usable
    n = max(int(np.count_nonzero(usable)), 1)
    frac, frac_inverse = np.count_nonzero(hidden) / n, np.count_nonzero(shown) / n
    in_band = usable if band is None else np.asarray(band, dtype=bool) & usable
    hides_band = band is not None and bool(in_band.any()) and not (in_band & shown).any()
    inverse_hides_band = band is not None and not (in_band & hidden).any()
    suspect = frac > MAX_MASKED_FRACTION or hides_band
    inverse_fine = frac_inverse <= MAX_MASKED_FRACTION and not inverse_hides_band
    if suspect and (inverse_fine or hides_band):
        what = "every pixel of the cut band" if hides_band else "most of the detector"
        msg = (
            f"{mask_file}: this mask hides {what} ({100 * frac:.0f} % of its pixels); "
            "insitu-gixs reads a mask as nonzero = masked, and a mask written as 1 = good "
            f"pixel (as some tools do) must be inverted: {fix}"
        )
        raise ConfigError(msg)
