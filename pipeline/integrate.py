"""Grazing-incidence integration: q_parallel cuts through a q_perpendicular band.

The per-frame hot path. Everything that depends only on the geometry, the static mask and
the band is computed once by :func:`plan_cut`: which pixels fall in the band, the q_par bin
of each, the mean q_par of the pixels of each bin, and pyFAI's per-pixel solid-angle x
polarization normalisation. :func:`integrate_cut` then needs one gather and one compiled
pass of the sparse binning and normalisation matrices over the band's pixels only (some
20 microseconds a frame), where pyFAI's own grazing-incidence calls rebuild their units on
every call.

The result is the one pyFAI's ``FiberIntegrator.integrate1d_grazing_incidence`` gives with
``vertical_integration=False`` and no pixel splitting (the tests keep that call as the
oracle, with ``whole_lines=False``), with four deliberate differences:

- the band's pixels of one detector column go to one bin as a whole (``whole_lines``): a
  bin that took only some rows of a column, whose rows differ near the horizon and in the
  Yoneda band, spiked the cut and narrowed a fitted {200} line by up to 4 %;
- each bin sits at the mean q_par of its pixels, not at its centre (pixels fall unevenly into
  narrow bins, which moved a fitted rod by up to 0.5 %);
- a pixel below the lower end of the q_par range is left out; pyFAI's histogram rounds
  ``(q - q_min) / width`` towards zero and so adds the pixels up to one bin below the range
  to its first bin;
- negative, non-finite and dynamically masked pixels are left out frame by frame.

:func:`map_2d` calls pyFAI's ``integrate2d_grazing_incidence`` for pictures only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from calibration.geometry import GIGeometry, QMaps
from detectors.errors import GeometryError
from detectors.pilatus import valid_counts

#: pyFAI integration method of the oracle and of :func:`map_2d`: no pixel splitting,
#: as pyFAI advises for grazing incidence.
PYFAI_METHOD = ("no", "histogram", "cython")


@dataclass(frozen=True, slots=True)
class CutPlan:
    """Everything a q_par cut needs that does not change from frame to frame.

    Built once per geometry, static mask and band by :func:`plan_cut`; its arrays are
    read-only.

    Attributes
    ----------
    q_par_per_nm : ndarray of shape (n_kept,)
        Mean q_par of the pixels of each bin, in nm^-1 (|q_par| when `fold`); bins that
        no unmasked pixel falls in are dropped.
    q_perp_band_per_nm : tuple of float
        The q_perp band (lo, hi) the cut integrates over, in nm^-1.
    q_par_range_per_nm : tuple of float
        The binned q_par range (lo, hi), in nm^-1 (of |q_par| when `fold`).
    fold : bool
        True when bins are over |q_par|, averaging both sides of the direct beam.
    polarization_factor : float or None
        pyFAI polarization factor of the normalisation (None: no polarization correction).
    frame_shape : tuple of int
        Shape (rows, cols) of the frames the plan accepts.
    bin_edges_per_nm : ndarray of shape (n_bins + 1,)
        Edges of the regular bins, in nm^-1.
    bin_index : ndarray of int, shape (n_kept,)
        Index in the regular grid of each kept bin.
    pixel_index : ndarray of int, shape (n_pixels,)
        Flat indices into the frame of the pixels in the band and range, not statically
        masked, in increasing order.
    binning : scipy.sparse.csr_array of shape (n_kept, n_pixels)
        1 where a pixel (column) falls in a bin (row).
    normalisation : scipy.sparse.csr_array of shape (n_kept, n_pixels)
        The pixel's solid angle x polarization where it falls in the bin, as pyFAI
        normalises (solid angle relative to the point of normal incidence).
    """

    q_par_per_nm: NDArray[np.float64]
    q_perp_band_per_nm: tuple[float, float]
    q_par_range_per_nm: tuple[float, float]
    fold: bool
    polarization_factor: float | None
    frame_shape: tuple[int, int]
    bin_edges_per_nm: NDArray[np.float64]
    bin_index: NDArray[np.intp]
    pixel_index: NDArray[np.intp]
    binning: sparse.csr_array
    normalisation: sparse.csr_array

    @property
    def n_bins(self) -> int:
        """Number of bins kept (bins with at least one unmasked pixel)."""
        return int(self.q_par_per_nm.size)


@dataclass(frozen=True, slots=True)
class QCut:
    """A q_par cut of one frame.

    Attributes
    ----------
    q_par_per_nm : ndarray of shape (n_bins,)
        Bin positions, in nm^-1: the plan's mean q_par of each bin's pixels (fixed for a run).
    intensity : ndarray of shape (n_bins,)
        Sum of counts / sum of solid angle x polarization over the valid pixels of each bin;
        NaN where no valid pixel is left.
    sigma : ndarray of shape (n_bins,)
        Poisson uncertainty sqrt(sum of counts) / sum of normalisation (0 for a bin whose
        valid pixels all hold 0 counts); NaN where no valid pixel is left.
    n_pixels : ndarray of int, shape (n_bins,)
        Number of valid pixels in each bin for this frame.
    """

    q_par_per_nm: NDArray[np.float64]
    intensity: NDArray[np.float64]
    sigma: NDArray[np.float64]
    n_pixels: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class QMap2D:
    """A frame remapped onto a regular (q_par, q_perp) grid, for pictures.

    Attributes
    ----------
    q_par_per_nm : ndarray of shape (n_par,)
        Bin centres along q_par, in nm^-1 (signed).
    q_perp_per_nm : ndarray of shape (n_perp,)
        Bin centres along q_perp, in nm^-1.
    intensity : ndarray of shape (n_perp, n_par)
        Normalised intensity; NaN where no pixel falls.
    """

    q_par_per_nm: NDArray[np.float64]
    q_perp_per_nm: NDArray[np.float64]
    intensity: NDArray[np.float64]


def plan_cut(
    geometry: GIGeometry,
    *,
    static_mask: NDArray[np.bool_] | None,
    q_perp_band_per_nm: tuple[float, float],
    q_par_range_per_nm: tuple[float, float],
    n_bins: int,
    fold: bool = True,
    polarization_factor: float | None = 0.99,
    maps: QMaps | None = None,
    whole_lines: bool = True,
) -> CutPlan:
    """Precompute a q_par cut through a q_perp band (run once per geometry and band).

    A pixel belongs to the cut when its centre lies in the q_perp band and in the q_par
    range (both ends included) and it is not statically masked. Bin ``i`` holds the pixels
    (with `whole_lines`, the detector lines) with ``edges[i] <= q < edges[i + 1]`` (the last
    bin also its upper edge).

    Parameters
    ----------
    geometry : GIGeometry
        Grazing-incidence geometry of the detector.
    static_mask : ndarray of bool, shape (rows, cols), or None
        True for pixels never to use (module gaps, beamstop, user mask).
    q_perp_band_per_nm : tuple of float
        Band (lo, hi) of q_perp to integrate over, in nm^-1, lo < hi.
    q_par_range_per_nm : tuple of float
        Range (lo, hi) of q_par to bin, in nm^-1, lo < hi; of |q_par| when `fold`
        (then 0 <= lo).
    n_bins : int
        Number of regular bins over the range (>= 1).
    fold : bool
        True: bin |q_par|, so each bin averages both sides of the direct beam where both
        are on the detector. False: bin signed q_par (positive right of the direct beam).
    polarization_factor : float or None
        pyFAI polarization factor in [-1, 1] (0.99 for a horizontally polarised
        synchrotron beam); None for no polarization correction.
    maps : QMaps or None
        Per-pixel q maps of `geometry`, if already computed (``geometry.q_maps()``).
    whole_lines : bool
        True: the band's pixels of one detector line (a column, or a row where q_par runs
        along the columns) go to one bin as a whole, the bin of their mean q_par. A bin then
        never holds only some rows of a line: the rows of a line differ (horizon, Yoneda
        band), and bins that each took a different share of them spiked the cut and
        narrowed a fitted line by up to 4 %. False: each pixel goes to the bin of its own
        q_par, as pyFAI's histogram without pixel splitting does (the tests' oracle).

    Returns
    -------
    CutPlan
        The plan :func:`integrate_cut` uses for every frame.

    Raises
    ------
    ValueError
        If `n_bins`, the band, the range or the polarization factor is out of bounds, or a
        mask or map has the wrong shape.
    GeometryError
        If no unmasked pixel of the detector lies in the band and range.
    """
    band = _checked_interval(q_perp_band_per_nm, "q_perp_band_per_nm")
    q_range = _checked_interval(q_par_range_per_nm, "q_par_range_per_nm")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        msg = f"n_bins must be an integer >= 1, got {n_bins!r}"
        raise ValueError(msg)
    if fold and q_range[0] < 0:
        msg = (
            f"with fold=True the q_par range is a range of |q_par| and must start at >= 0, "
            f"got {q_range}; use fold=False for a signed range"
        )
        raise ValueError(msg)
    if polarization_factor is not None and not -1 <= polarization_factor <= 1:
        msg = f"polarization_factor must be in [-1, 1] or None, got {polarization_factor!r}"
        raise ValueError(msg)

    shape = geometry.detector.shape
    maps = geometry.q_maps() if maps is None else maps
    for name, array in (("q_par map", maps.q_par_per_nm), ("q_perp map", maps.q_perp_per_nm)):
        _check_shape(array, shape, name)
    q_par = np.abs(maps.q_par_per_nm) if fold else maps.q_par_per_nm
    q_perp = maps.q_perp_per_nm
    selected = (
        (q_perp >= band[0]) & (q_perp <= band[1]) & (q_par >= q_range[0]) & (q_par <= q_range[1])
    )
    if static_mask is not None:
        _check_shape(static_mask, shape, "static_mask")
        selected &= ~np.asarray(static_mask, dtype=bool)
    pixel_index = np.flatnonzero(selected)
    if pixel_index.size == 0:
        msg = (
            f"no unmasked pixel of the {geometry.detector.detector} has q_perp in "
            f"{band} nm^-1 and {'|q_par|' if fold else 'q_par'} in {q_range} nm^-1; the "
            f"detector spans q_perp {np.nanmin(q_perp):.3g} to {np.nanmax(q_perp):.3g} and "
            f"q_par {np.nanmin(maps.q_par_per_nm):.3g} to {np.nanmax(maps.q_par_per_nm):.3g} "
            "nm^-1: choose a band and range inside it"
        )
        raise GeometryError(msg)

    edges = np.linspace(q_range[0], q_range[1], n_bins + 1)
    q_pixel = q_par.ravel()[pixel_index]
    width = (q_range[1] - q_range[0]) / n_bins
    q_assigned = _line_q(maps, pixel_index, q_pixel, width) if whole_lines else q_pixel
    regular_bin = np.minimum(((q_assigned - q_range[0]) / width).astype(np.intp), n_bins - 1)
    bin_index, row = np.unique(regular_bin, return_inverse=True)
    n_pixels_per_bin = np.bincount(row, minlength=bin_index.size)
    q_mean = np.bincount(row, weights=q_pixel, minlength=bin_index.size) / n_pixels_per_bin

    norm = _pixel_normalisation(geometry, shape, polarization_factor).ravel()[pixel_index]
    column = np.arange(pixel_index.size)
    matrix_shape = (bin_index.size, pixel_index.size)
    binning = sparse.csr_array((np.ones(pixel_index.size), (row, column)), shape=matrix_shape)
    normalisation = sparse.csr_array((norm, (row, column)), shape=matrix_shape)

    for frozen in (q_mean, edges, bin_index, pixel_index):
        frozen.setflags(write=False)
    return CutPlan(
        q_par_per_nm=q_mean,
        q_perp_band_per_nm=band,
        q_par_range_per_nm=q_range,
        fold=fold,
        polarization_factor=polarization_factor,
        frame_shape=shape,
        bin_edges_per_nm=edges,
        bin_index=bin_index,
        pixel_index=pixel_index,
        binning=binning,
        normalisation=normalisation,
    )


def integrate_cut(
    plan: CutPlan,
    data: NDArray[np.generic],
    *,
    dynamic_mask: NDArray[np.bool_] | None = None,
    saturation_counts: float | None = None,
) -> QCut:
    """Integrate one frame along q_par through the plan's q_perp band.

    Pixels that hold no valid count are left out of this frame only, by the frame's data
    type (:func:`detectors.pilatus.valid_counts`): negative values (Pilatus writes -1 and
    -2 in gaps and dead pixels), the largest value of an integer type (65535 in 16-bit
    Eiger data), non-finite values, values at or above `saturation_counts`; and those True
    in `dynamic_mask` (the detector's own pixel mask, hot pixels). Only the band's pixels
    are tested.

    Parameters
    ----------
    plan : CutPlan
        The cut, from :func:`plan_cut`.
    data : ndarray of shape (rows, cols)
        The frame, in counts.
    dynamic_mask : ndarray of bool, shape (rows, cols), or None
        True for pixels to leave out of this frame (``Frame.pixel_mask``, hot pixels).
    saturation_counts : float or None
        Counts at or above which a pixel is saturated and left out (None: no limit).

    Returns
    -------
    QCut
        Intensity, Poisson sigma and number of valid pixels per bin.

    Raises
    ------
    ValueError
        If `data` or `dynamic_mask` does not have the plan's frame shape.

    Examples
    --------
    >>> from calibration.geometry import DetectorGeometry, GIGeometry
    >>> det = DetectorGeometry("Pilatus300kw", 0.578, 0.030, 0.1268, 0.12398e-9)
    >>> plan = plan_cut(GIGeometry.create(det, incidence_angle_deg=0.3), static_mask=None,
    ...                 q_perp_band_per_nm=(0.28, 0.48), q_par_range_per_nm=(0.3, 2.4),
    ...                 n_bins=140)
    >>> frame = np.full(det.shape, 7.0)
    >>> frame[:, 100] = -2.0  # a dead column: left out
    >>> cut = integrate_cut(plan, frame)
    >>> cut.q_par_per_nm.shape, bool(np.all((cut.intensity > 7.0) & (cut.intensity < 8.0)))
    ((140,), True)
    """
    _check_shape(data, plan.frame_shape, "frame")
    values = np.asarray(data).reshape(-1)[plan.pixel_index]
    valid = valid_counts(values, saturation_counts=saturation_counts)
    if dynamic_mask is not None:
        _check_shape(dynamic_mask, plan.frame_shape, "dynamic_mask")
        valid &= ~np.asarray(dynamic_mask, dtype=bool).reshape(-1)[plan.pixel_index]
    binning, normalisation = plan.binning, plan.normalisation
    intensity, sigma, n_pixels = _cut_kernel(
        values.astype(np.float64),
        valid,
        binning.indptr.astype(np.intp, copy=False),  # one compiled signature
        binning.indices.astype(np.intp, copy=False),
        binning.data,
        normalisation.indptr.astype(np.intp, copy=False),
        normalisation.indices.astype(np.intp, copy=False),
        normalisation.data,
    )
    return QCut(plan.q_par_per_nm, intensity, sigma, n_pixels)


@numba.njit(cache=True)
def _cut_kernel(
    values: NDArray[np.float64],
    valid: NDArray[np.bool_],
    binning_indptr: NDArray[np.intp],
    binning_indices: NDArray[np.intp],
    binning_data: NDArray[np.float64],
    norm_indptr: NDArray[np.intp],
    norm_indices: NDArray[np.intp],
    norm_data: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Intensity, sigma and valid pixels per bin from the band's pixel values.

    The sparse products binning @ counts and normalisation @ valid of the two CSR
    matrices (bins x pixels), over the valid pixels only, in one compiled pass: scipy's
    three products cost more in call overhead than in arithmetic on a band of a few
    thousand pixels. Empty bins are NaN.
    """
    n_bins = binning_indptr.size - 1
    intensity = np.empty(n_bins)
    sigma = np.empty(n_bins)
    n_pixels = np.empty(n_bins, dtype=np.int64)
    for b in range(n_bins):
        signal = 0.0
        count = 0.0
        for k in range(binning_indptr[b], binning_indptr[b + 1]):
            j = binning_indices[k]
            if valid[j]:
                signal += binning_data[k] * values[j]
                count += binning_data[k]
        norm = 0.0
        for k in range(norm_indptr[b], norm_indptr[b + 1]):
            j = norm_indices[k]
            if valid[j]:
                norm += norm_data[k]
        n_pixels[b] = round(count)
        if n_pixels[b] == 0:
            intensity[b] = np.nan
            sigma[b] = np.nan
        else:
            intensity[b] = signal / norm
            sigma[b] = math.sqrt(signal) / norm
    return intensity, sigma, n_pixels


def map_2d(
    geometry: GIGeometry,
    data: NDArray[np.generic],
    *,
    mask: NDArray[np.bool_] | None,
    npt_par: int,
    npt_perp: int,
    q_par_range_per_nm: tuple[float, float] | None = None,
    q_perp_range_per_nm: tuple[float, float] | None = None,
    polarization_factor: float | None = 0.99,
) -> QMap2D:
    """Remap a frame onto a regular (q_par, q_perp) grid with pyFAI, for pictures.

    Calls ``FiberIntegrator.integrate2d_grazing_incidence`` (no pixel splitting) on a fresh
    integrator; some 20 ms or more a frame, so not for the per-frame path.

    Parameters
    ----------
    geometry : GIGeometry
        Grazing-incidence geometry of the detector.
    data : ndarray of shape (rows, cols)
        The frame, in counts.
    mask : ndarray of bool, shape (rows, cols), or None
        True for pixels to leave out (negative pixels are not left out unless masked).
    npt_par, npt_perp : int
        Number of bins along signed q_par and along q_perp.
    q_par_range_per_nm, q_perp_range_per_nm : tuple of float or None
        Ranges (lo, hi) in nm^-1; None for the detector's whole span.
    polarization_factor : float or None
        pyFAI polarization factor; None for no polarization correction.

    Returns
    -------
    QMap2D
        The remapped intensity, NaN in empty bins.

    Raises
    ------
    ValueError
        If a range is not an increasing pair of finite numbers or a shape is wrong.
    """
    _check_shape(data, geometry.detector.shape, "frame")
    if mask is not None:
        _check_shape(mask, geometry.detector.shape, "mask")
    par_range = None
    if q_par_range_per_nm is not None:
        par_range = _checked_interval(q_par_range_per_nm, "q_par_range_per_nm")
    perp_range = None
    if q_perp_range_per_nm is not None:
        perp_range = _checked_interval(q_perp_range_per_nm, "q_perp_range_per_nm")
    result = geometry.integrator().integrate2d_grazing_incidence(
        np.asarray(data, dtype=np.float64),
        npt_ip=npt_par,
        unit_ip=geometry.unit("qip_nm^-1"),
        ip_range=par_range,
        npt_oop=npt_perp,
        unit_oop=geometry.unit("qoop_nm^-1"),
        oop_range=perp_range,
        mask=None if mask is None else np.asarray(mask, dtype=np.int8),
        polarization_factor=polarization_factor,
        method=PYFAI_METHOD,
    )
    intensity = np.where(np.asarray(result.count) > 0, result.intensity, np.nan)
    return QMap2D(
        q_par_per_nm=np.asarray(result.inplane, dtype=np.float64),
        q_perp_per_nm=np.asarray(result.outofplane, dtype=np.float64),
        intensity=np.asarray(intensity, dtype=np.float64),
    )


def _line_q(
    maps: QMaps,
    pixel_index: NDArray[np.intp],
    q_pixel: NDArray[np.float64],
    bin_width_per_nm: float,
) -> NDArray[np.float64]:
    """For each selected pixel, the q_par by which it is binned: its detector line's mean.

    A line is a column where q_par changes less from row to row than from column to
    column (the usual grazing-incidence set-up), else a row; the two sides of the direct
    beam are separate lines. A pixel further from its line's mean q_par than one bin width
    and than half the distance between neighbouring lines (a detector turned so that no
    axis follows q_perp) keeps its own q_par; bins finer than the lines do not split them.
    """
    q_par = maps.q_par_per_nm
    flat_rows, flat_cols = np.unravel_index(pixel_index, q_par.shape)
    by_rows = np.abs(np.gradient(q_par, axis=0)).ravel()[pixel_index]
    by_cols = np.abs(np.gradient(q_par, axis=1)).ravel()[pixel_index]
    line = flat_cols if np.nanmedian(by_rows) <= np.nanmedian(by_cols) else flat_rows
    side = np.signbit(q_par.ravel()[pixel_index])
    _, which = np.unique(2 * line + side, return_inverse=True)
    means = np.bincount(which, weights=q_pixel) / np.bincount(which)
    pitch = float(np.median(np.diff(np.sort(means)))) if means.size > 1 else 0.0
    reach = max(bin_width_per_nm, 0.5 * pitch)
    line_q = means[which]
    return np.where(np.abs(q_pixel - line_q) <= reach, line_q, q_pixel)


def _pixel_normalisation(
    geometry: GIGeometry, shape: tuple[int, int], polarization_factor: float | None
) -> NDArray[np.float64]:
    """Per-pixel solid angle x polarization, exactly as pyFAI's integrators normalise."""
    integrator = geometry.integrator()
    norm = np.asarray(integrator.solidAngleArray(shape, True), dtype=np.float64)
    if polarization_factor is not None:
        norm = norm * np.asarray(integrator.polarization(shape, polarization_factor))
    return norm


def _checked_interval(interval: tuple[float, float], name: str) -> tuple[float, float]:
    """`interval` as two floats lo < hi, or a ValueError naming `name`."""
    lo, hi = (float(value) for value in interval)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        msg = f"{name} must be two finite numbers (lo, hi) with lo < hi, got {interval!r}"
        raise ValueError(msg)
    return lo, hi


def _check_shape(array: NDArray[np.generic], shape: tuple[int, int], name: str) -> None:
    """Raise a ValueError when `array` does not have the detector's frame shape."""
    if np.shape(array) != shape:
        msg = (
            f"{name} has shape {np.shape(array)}, expected the detector's {shape}; check the "
            "detector model and the frame"
        )
        raise ValueError(msg)
