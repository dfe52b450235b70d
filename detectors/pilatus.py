"""Detector models and masks: Pilatus 300K / 300K-W and any detector pyFAI knows.

Masks follow pyFAI's convention: True (nonzero) = masked. The static mask (module gaps
and a user mask) is built once per geometry; :func:`frame_mask` adds a frame's own bad
pixels and runs on every frame, so it is a few vectorised comparisons.

Which values are invalid follows the frame's data type, for any detector
(:func:`valid_counts`): the largest value of an integer type (65535 in 16-bit Eiger,
Lambda or Pilatus4 data, 2**32 - 1 in 32-bit data, where Dectris writes gaps and bad
pixels), negative values (Pilatus writes -1 in gaps and -2 in dead pixels), NaN and
infinities in float frames, and counts at or above the detector's own saturation where
it is known (the file's ``Count_cutoff`` / ``saturation_value``, else
:data:`SATURATION_COUNTS` for a Pilatus, see :func:`detector_saturation_counts`).

The two study detectors (SCIENCE.md), 172 um pixels, three 195 x 487 modules each:

- ``Pilatus300k``: shape (619, 487), modules stacked, two 17-row gaps (16558 pixels);
- ``Pilatus300kw``: shape (195, 1475), modules side by side, two 7-column gaps (2730).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyFAI.detectors
from numpy.typing import NDArray
from pyFAI.detectors import Detector

from detectors.errors import GeometryError

#: Saturation of the 20-bit Pilatus counters, in counts (a pixel at or above it is masked).
SATURATION_COUNTS = 1_048_573

#: pyFAI names of the two study detectors.
PILATUS_300K = "Pilatus300k"
PILATUS_300KW = "Pilatus300kw"

_SEPARATORS = re.compile(r"[\s_\-]+")


@dataclass(frozen=True, slots=True)
class DetectorModel:
    """The fixed properties of a detector model.

    Attributes
    ----------
    name : str
        pyFAI's canonical class name (``"Pilatus300kw"``).
    shape : tuple of int
        Frame shape (rows, cols) as stored.
    pixel_row_m, pixel_col_m : float
        Pixel size along rows (pyFAI's pixel1, vertical) and columns (pixel2), in m.
    n_gap_px : int
        Number of pixels pyFAI masks by construction (module gaps), in pixels.
    """

    name: str
    shape: tuple[int, int]
    pixel_row_m: float
    pixel_col_m: float
    n_gap_px: int


def canonical_detector_name(name: str) -> str:
    """PyFAI's class name of a detector given in any case or spelling.

    Parameters
    ----------
    name : str
        A pyFAI detector name or alias, case-insensitive; spaces, ``_`` and ``-`` are
        ignored (``"pilatus300kw"``, ``"Pilatus 300K-W"``, ``"eiger2_4m"``).

    Returns
    -------
    str
        The name of pyFAI's detector class, which ``detector_factory`` accepts.

    Raises
    ------
    GeometryError
        If pyFAI knows no such detector; the message lists close matches.

    Examples
    --------
    >>> canonical_detector_name("PILATUS300KW"), canonical_detector_name("eiger2_4m")
    ('Pilatus300kw', 'Eiger2_4M')
    >>> canonical_detector_name("Pilatus 300K-W")
    'Pilatus300kw'
    """
    exact = {key.lower(): cls for key, cls in pyFAI.detectors.ALL_DETECTORS.items()}
    cls = exact.get(name.strip().lower())
    if cls is None:
        loose = {_loose(key): c for key, c in pyFAI.detectors.ALL_DETECTORS.items()}
        cls = loose.get(_loose(name))
        if cls is None:
            close = difflib.get_close_matches(_loose(name), loose, n=6, cutoff=0.6)
            names = list(dict.fromkeys(loose[c].__name__ for c in close))
            hint = f"; did you mean {', '.join(names)}?" if names else ""
            msg = (
                f"pyFAI knows no detector called {name!r}{hint} "
                "(names are pyFAI's, e.g. Pilatus300k, Pilatus300kw, Eiger2_4M)"
            )
            raise GeometryError(msg)
    return str(cls.__name__)


def pyfai_detector(name: str) -> Detector:
    """A fresh pyFAI detector object for a name in any case.

    Raises
    ------
    GeometryError
        If pyFAI knows no such detector or cannot build it without a file.
    """
    canonical = canonical_detector_name(name)
    try:
        detector = pyFAI.detectors.detector_factory(canonical)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        msg = f"pyFAI cannot build detector {canonical!r} from its name alone ({err})"
        raise GeometryError(msg) from err
    if detector.shape is None:
        msg = (
            f"detector {canonical!r} has no fixed frame shape; name a detector model "
            "(e.g. Pilatus300k) or give a PONI file with the detector's shape"
        )
        raise GeometryError(msg)
    return detector


def detector_model(name: str) -> DetectorModel:
    """Shape, pixel size and gap count of a detector model.

    Raises
    ------
    GeometryError
        If pyFAI knows no such detector.

    Examples
    --------
    >>> model = detector_model("pilatus300kw")
    >>> model.shape, round(model.pixel_row_m * 1e6), model.n_gap_px
    ((195, 1475), 172, 2730)
    """
    detector = pyfai_detector(name)
    rows, cols = detector.shape
    return DetectorModel(
        name=str(type(detector).__name__),
        shape=(int(rows), int(cols)),
        pixel_row_m=float(detector.pixel1),
        pixel_col_m=float(detector.pixel2),
        n_gap_px=int(np.count_nonzero(_pyfai_mask(detector))),
    )


def gap_mask(detector: str) -> NDArray[np.bool_]:
    """Module gaps (and pyFAI's other built-in bad pixels) of a detector, True = masked.

    Parameters
    ----------
    detector : str
        pyFAI detector name, any case.

    Returns
    -------
    ndarray of bool, shape (rows, cols)
        A new array: True on pixels that see no X-rays by construction.

    Raises
    ------
    GeometryError
        If pyFAI knows no such detector.
    """
    return _pyfai_mask(pyfai_detector(detector))


def static_mask(detector: str, *, user_mask: NDArray[Any] | None = None) -> NDArray[np.bool_]:
    """Module gaps combined with an optional user mask, True = masked.

    Parameters
    ----------
    detector : str
        pyFAI detector name, any case.
    user_mask : ndarray of shape (rows, cols) or None
        Extra pixels to mask: nonzero = masked (as read by ``detectors.io.read_mask_file``).

    Returns
    -------
    ndarray of bool, shape (rows, cols)

    Raises
    ------
    GeometryError
        If the detector is unknown or the user mask's shape is not the detector's.

    Examples
    --------
    >>> int(static_mask("Pilatus300k").sum())
    16558
    """
    mask = gap_mask(detector)
    if user_mask is not None:
        if np.shape(user_mask) != mask.shape:
            msg = (
                f"user mask of shape {np.shape(user_mask)} does not fit detector "
                f"{canonical_detector_name(detector)} of shape {mask.shape}; "
                "draw the mask on a frame of this detector"
            )
            raise GeometryError(msg)
        mask |= np.asarray(user_mask) != 0
    return mask


def detector_saturation_counts(detector: str) -> float | None:
    """Counts at which a detector model saturates, where it is known from the model alone.

    Parameters
    ----------
    detector : str
        pyFAI detector name, any case.

    Returns
    -------
    float or None
        :data:`SATURATION_COUNTS` for a Pilatus (20-bit counters); None for others, whose
        limit is the largest value of their data type (:func:`valid_counts`).

    Examples
    --------
    >>> detector_saturation_counts("Pilatus300kw"), detector_saturation_counts("Eiger2_1M")
    (1048573, None)
    """
    return SATURATION_COUNTS if _loose(detector).startswith("pilatus") else None


def valid_counts(
    values: NDArray[Any], *, saturation_counts: float | None = None
) -> NDArray[np.bool_]:
    """Which pixel values are real counts, by the data type and the detector's saturation.

    Invalid: negative values; the largest value of an integer type (an unsigned 16-bit
    pixel at 65535 is a gap, a bad pixel or an overflow, never a count); NaN and
    infinities; values at or above `saturation_counts`.

    Parameters
    ----------
    values : ndarray
        Pixel values as read (any shape, integer or float).
    saturation_counts : float or None
        Counts at or above which the detector saturates; None for no limit but the type's.

    Returns
    -------
    ndarray of bool, same shape as `values`
        True for valid counts.

    Examples
    --------
    >>> valid_counts(np.array([0, 7, 65534, 65535], dtype=np.uint16)).tolist()
    [True, True, True, False]
    >>> valid_counts(np.array([5.0, -1.0, np.nan, 2e6]), saturation_counts=1e6).tolist()
    [True, False, False, False]
    """
    kind = values.dtype.kind
    if kind == "u":
        valid = values < np.iinfo(values.dtype).max
    elif kind == "i":
        valid = (values >= 0) & (values < np.iinfo(values.dtype).max)
    elif kind == "b":
        valid = np.ones(values.shape, dtype=bool)
    else:
        valid = np.isfinite(values)
        valid &= values >= 0
    if saturation_counts is not None:
        valid &= values < saturation_counts
    return valid


def frame_mask(
    data: NDArray[Any],
    static: NDArray[np.bool_],
    *,
    saturation_counts: float | None = SATURATION_COUNTS,
    pixel_mask: NDArray[np.bool_] | None = None,
) -> NDArray[np.bool_]:
    """Static mask plus a frame's own bad pixels, True = masked.

    A pixel is masked where the static mask or the detector's `pixel_mask` is set, or
    where its value is no valid count (:func:`valid_counts`: negative, the type's largest
    value, NaN, at or above `saturation_counts`).

    Parameters
    ----------
    data : ndarray of shape (rows, cols)
        The frame as read, in counts.
    static : ndarray of bool, shape (rows, cols)
        The static mask (:func:`static_mask`).
    saturation_counts : float or None
        Counts at which a pixel is taken as saturated; None for the data type's limit only.
    pixel_mask : ndarray of bool, shape (rows, cols), or None
        The detector's own mask read with the frame (``Frame.pixel_mask``), True = masked.

    Returns
    -------
    ndarray of bool, shape (rows, cols)

    Examples
    --------
    >>> frame = np.array([[5, -1], [1_048_573, 7]])
    >>> frame_mask(frame, np.array([[False, False], [False, True]])).tolist()
    [[False, True], [True, True]]
    >>> eiger = np.array([[5, 65535], [3, 7]], dtype=np.uint16)
    >>> frame_mask(eiger, np.zeros((2, 2), bool), saturation_counts=None,
    ...            pixel_mask=np.array([[False, False], [True, False]])).tolist()
    [[False, True], [True, False]]
    """
    mask = static | ~valid_counts(np.asarray(data), saturation_counts=saturation_counts)
    if pixel_mask is not None:
        mask |= np.asarray(pixel_mask, dtype=bool)
    return mask


def _loose(name: str) -> str:
    return _SEPARATORS.sub("", name.strip().lower())


def _pyfai_mask(detector: Detector) -> NDArray[np.bool_]:
    mask = detector.mask
    if mask is None:
        return np.zeros(detector.shape, dtype=bool)
    return np.asarray(mask) != 0
