"""Per-frame results become one time series: one row per frame, both detectors.

Times come from the frames' header time stamps, relative to the earliest frame of the run.
A frame without a time stamp among frames that have one is placed between its neighbours
(or a period beyond the last) and flagged ``time_interpolated``; only a detector none of
whose frames carries a time stamp gets times from the file order and the exposure period,
and every such row says so in its flags (``time_from_order``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import Kind
from pipeline.reduce import FrameResult

#: Columns of summary.csv, in order (also the keys of `gixs inspect --json`).
COLUMNS: tuple[str, ...] = (
    "time_s",
    "detector",
    "file",
    "dataset",
    "frame",
    "position",
    "q1_nm-1",
    "q1_err_nm-1",
    "symmetry",
    "spacing_nm",
    "fwhm200_nm-1",
    "fwhm200_err_nm-1",
    "fwhm200_corr_nm-1",
    "breadth200_nm-1",
    "breadth200_err_nm-1",
    "breadth200_corr_nm-1",
    "breadth200_corr_err_nm-1",
    "domain_nm",
    "domain_err_nm",
    "scherrer_method",
    "scherrer_k",
    "flags",
)

#: Flag of a row whose time was derived from the file order and the exposure period.
FLAG_TIME_FROM_ORDER = "time_from_order"
#: Flag of a frame without a time stamp whose time was interpolated from its neighbours'.
FLAG_TIME_INTERPOLATED = "time_interpolated"


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """One frame of the time series; fields follow :data:`COLUMNS`.

    Attributes
    ----------
    time_s : float
        Time since the first frame of the run, in s (NaN when not known).
    detector : {"gisaxs", "giwaxs"}
        Which detector took the frame.
    file : str
        Source file, relative to the run's folder where it lies inside it.
    dataset : str
        The HDF5 dataset the frame was read from ("" for a file of one image or one
        stack): two scans of one BLISS file, or two data files of a Dectris series, have
        frames of the same index.
    frame : int
        Index of the frame within its file (within its dataset for HDF5).
    position : int or None
        Sample-position index.
    q1_per_nm, q1_err_per_nm : float
        First superlattice rod and its standard error, in nm^-1 (NaN without a rod).
    symmetry : str
        "none", "hexagonal", "pseudo-hexagonal", "square" or "unknown" ("" for GIWAXS).
    spacing_nm : float
        Nearest-neighbour spacing for that symmetry, in nm.
    fwhm200_per_nm, fwhm200_err_per_nm : float
        {200} FWHM along q_par as observed on the detector (instrument included), from the
        Scherrer method's line model (the fitted cube line for "cube_profile", else the
        fitted peak), in nm^-1.
    fwhm200_corr_per_nm : float
        {200} FWHM with the instrumental width removed, in nm^-1.
    breadth200_per_nm, breadth200_err_per_nm : float
        {200} integral breadth (area / height) as observed, same model, in nm^-1.
    breadth200_corr_per_nm, breadth200_corr_err_per_nm : float
        Integral breadth of the sample's line (instrument removed), in nm^-1.
    domain_nm, domain_err_nm : float
        Scherrer domain size and its error, in nm.
    scherrer_method : str
        "cube_profile", "integral_breadth" or "fwhm" ("" for GISAXS rows).
    scherrer_k : float
        The Scherrer constant K used (dimensionless).
    flags : str
        Semicolon-separated reasons ("" when all is well).
    """

    time_s: float
    detector: Kind
    file: str
    dataset: str
    frame: int
    position: int | None
    q1_per_nm: float = math.nan
    q1_err_per_nm: float = math.nan
    symmetry: str = ""
    spacing_nm: float = math.nan
    fwhm200_per_nm: float = math.nan
    fwhm200_err_per_nm: float = math.nan
    fwhm200_corr_per_nm: float = math.nan
    breadth200_per_nm: float = math.nan
    breadth200_err_per_nm: float = math.nan
    breadth200_corr_per_nm: float = math.nan
    breadth200_corr_err_per_nm: float = math.nan
    domain_nm: float = math.nan
    domain_err_nm: float = math.nan
    scherrer_method: str = ""
    scherrer_k: float = math.nan
    flags: str = ""

    def as_record(self) -> dict[str, object]:
        """The row as a mapping keyed by :data:`COLUMNS` (None for a missing position)."""
        return dict(
            zip(
                COLUMNS,
                (
                    self.time_s,
                    self.detector,
                    self.file,
                    self.dataset,
                    self.frame,
                    self.position,
                    self.q1_per_nm,
                    self.q1_err_per_nm,
                    self.symmetry,
                    self.spacing_nm,
                    self.fwhm200_per_nm,
                    self.fwhm200_err_per_nm,
                    self.fwhm200_corr_per_nm,
                    self.breadth200_per_nm,
                    self.breadth200_err_per_nm,
                    self.breadth200_corr_per_nm,
                    self.breadth200_corr_err_per_nm,
                    self.domain_nm,
                    self.domain_err_nm,
                    self.scherrer_method,
                    self.scherrer_k,
                    self.flags,
                ),
                strict=True,
            )
        )


def frame_times_s(
    results: Sequence[FrameResult], *, t0_epoch_s: float | None, period_s: float | None
) -> tuple[list[float], list[str | None]]:
    """Times of one detector's frames (in acquisition order), in s since the run start.

    Parameters
    ----------
    results : sequence of FrameResult
        One detector's frames in acquisition order.
    t0_epoch_s : float or None
        Epoch time of the run's first frame (both detectors), s since 1970.
    period_s : float or None
        Exposure period from the settings, used when the headers give none.

    Returns
    -------
    times : list of float
        Times in s (NaN where nothing gives a time).
    flags : list of str or None
        Per frame: None for a time stamp of its own, :data:`FLAG_TIME_INTERPOLATED` for a
        frame without one placed from its neighbours' time stamps, and
        :data:`FLAG_TIME_FROM_ORDER` for every frame when none has a time stamp.

    Examples
    --------
    >>> frame_times_s([], t0_epoch_s=None, period_s=10.0)
    ([], [])
    """
    n = len(results)
    known = [i for i, r in enumerate(results) if r.epoch_s is not None]
    periods = [r.period_s for r in results if r.period_s is not None]
    period = period_s if period_s is not None else (periods[0] if periods else math.nan)
    if not known or t0_epoch_s is None:
        return [i * period for i in range(n)], [FLAG_TIME_FROM_ORDER] * n
    index = np.array(known, dtype=float)
    times = np.array([results[i].epoch_s for i in known], dtype=float) - t0_epoch_s
    if len(known) > 1:  # the measured spacing of the stamped frames, per frame
        step = float(np.median(np.diff(times) / np.diff(index)))
    else:
        step = period
    out: list[float] = []
    flags: list[str | None] = []
    for i, result in enumerate(results):
        if result.epoch_s is not None:
            out.append(result.epoch_s - t0_epoch_s)
            flags.append(None)
            continue
        if index[0] < i < index[-1]:
            out.append(float(np.interp(i, index, times)))
        elif i < index[0]:
            out.append(float(times[0] - (index[0] - i) * step))
        else:
            out.append(float(times[-1] + (i - index[-1]) * step))
        flags.append(FLAG_TIME_INTERPOLATED)
    return out, flags


def build_rows(
    results: Mapping[Kind, Sequence[FrameResult]],
    *,
    period_s: Mapping[Kind, float | None],
    base_dir: Path | None = None,
) -> list[SeriesRow]:
    """One row per frame: each detector's frames in acquisition order, detector by detector.

    Parameters
    ----------
    results : mapping of kind to sequence of FrameResult
        Each detector's results in acquisition order.
    period_s : mapping of kind to float or None
        Each detector's exposure period from the settings (for frames without time stamps).
    base_dir : Path or None
        Folder that file names are given relative to, where they lie inside it.

    Returns
    -------
    list of SeriesRow
        The time series.
    """
    epochs = [r.epoch_s for rs in results.values() for r in rs if r.epoch_s is not None]
    t0 = min(epochs) if epochs else None
    rows: list[SeriesRow] = []
    for kind, kind_results in results.items():
        times, flags = frame_times_s(kind_results, t0_epoch_s=t0, period_s=period_s.get(kind))
        for time_s, flag, result in zip(times, flags, kind_results, strict=True):
            rows.append(row_from_result(result, time_s, base_dir=base_dir, time_flag=flag))
    return rows


def chronological(rows: Sequence[SeriesRow]) -> list[SeriesRow]:
    """Rows sorted by time, then detector (rows without a time last, in their order)."""
    return sorted(rows, key=lambda r: (math.inf if math.isnan(r.time_s) else r.time_s, r.detector))


def row_from_result(
    result: FrameResult,
    time_s: float,
    *,
    base_dir: Path | None = None,
    from_order: bool = False,
    time_flag: str | None = None,
) -> SeriesRow:
    """The time-series row of one frame's result.

    `time_flag` (or `from_order`, for :data:`FLAG_TIME_FROM_ORDER`) says how its time was
    made when the frame has no time stamp of its own.
    """
    flags = list(result.flags)
    if from_order:
        time_flag = FLAG_TIME_FROM_ORDER
    if time_flag is not None:
        flags.append(time_flag)
    fields: dict[str, object] = {}
    if result.rod is not None:
        rod = result.rod
        fields = {
            "q1_per_nm": rod.q1_per_nm,
            "q1_err_per_nm": rod.q1_err_per_nm,
            "symmetry": rod.symmetry,
            "spacing_nm": rod.spacing_nm,
        }
        if rod.symmetry == "unknown":
            flags.append(
                f"symmetry undecided: spacing {rod.spacing_hex_nm:.3f} nm if hexagonal, "
                f"{rod.spacing_square_nm:.3f} nm if square"
            )
    if result.peak is not None:
        fields |= {
            "fwhm200_per_nm": result.fwhm_per_nm,
            "fwhm200_err_per_nm": result.fwhm_err_per_nm,
            "fwhm200_corr_per_nm": result.fwhm_corr_per_nm,
            "breadth200_per_nm": result.breadth_per_nm,
            "breadth200_err_per_nm": result.breadth_err_per_nm,
            "breadth200_corr_per_nm": result.breadth_corr_per_nm,
            "breadth200_corr_err_per_nm": result.breadth_corr_err_per_nm,
            "domain_nm": result.domain_nm,
            "domain_err_nm": result.domain_err_nm,
            "scherrer_method": result.scherrer_method,
            "scherrer_k": result.k_factor,
        }
    return SeriesRow(
        time_s=time_s,
        detector=result.kind,
        file=_display_path(result.path, base_dir),
        dataset=result.dataset,
        frame=result.frame_index,
        position=result.position,
        flags="; ".join(flags),
        **fields,  # type: ignore[arg-type]
    )


def _display_path(path: str, base_dir: Path | None) -> str:
    if base_dir is None:
        return path
    try:
        return Path(path).resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path
