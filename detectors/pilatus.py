"""Detector models and masks: Pilatus 300K / 300K-W and any detector pyFAI knows.

Masks follow pyFAI's convention: True (nonzero) = masked. The static mask (module gaps
and a user mask) is built once per geometry; :func:`frame_mask` adds a frame's own bad
pixels (negative: gaps and dead pixels as Pilatus writes them; saturated; NaN in float
frames) and runs on every frame, so it is a few vectorised comparisons.

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


def frame_mask(
    data: NDArray[Any],
    static: NDArray[np.bool_],
    *,
    saturation_counts: float = SATURATION_COUNTS,
) -> NDArray[np.bool_]:
    """Static mask plus a frame's own bad pixels, True = masked.

    A pixel is masked where the static mask is set, where the frame is negative (Pilatus
    writes -1 in gaps and -2 in dead pixels), at or above `saturation_counts`, or NaN.

    Parameters
    ----------
    data : ndarray of shape (rows, cols)
        The frame as read, in counts.
    static : ndarray of bool, shape (rows, cols)
        The static mask (:func:`static_mask`).
    saturation_counts : float
        Counts at which a pixel is taken as saturated.

    Returns
    -------
    ndarray of bool, shape (rows, cols)

    Examples
    --------
    >>> frame = np.array([[5, -1], [1_048_573, 7]])
    >>> frame_mask(frame, np.array([[False, False], [False, True]])).tolist()
    [[False, True], [True, True]]
    """
    mask = static | (data < 0)
    mask |= data >= saturation_counts
    if data.dtype.kind in "fc":
        mask |= np.isnan(data)
    return mask


def _loose(name: str) -> str:
    return _SEPARATORS.sub("", name.strip().lower())


def _pyfai_mask(detector: Detector) -> NDArray[np.bool_]:
    mask = detector.mask
    if mask is None:
        return np.zeros(detector.shape, dtype=bool)
    return np.asarray(mask) != 0
