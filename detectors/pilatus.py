"""Detector models and masks: Pilatus 300K / 300K-W and any detector pyFAI knows.

Masks follow pyFAI's convention: True (nonzero) = masked. The static mask (module gaps
and a user mask) is built once per geometry; :func:`frame_mask` adds a frame's own bad
pixels (negative: gaps and dead pixels as Pilatus writes them; saturated) and runs on every
frame, so it is a few vectorised comparisons.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import pyFAI.detectors
from numpy.typing import NDArray

from detectors.errors import GeometryError

#: Saturation of the 20-bit Pilatus counters, in counts.
SATURATION_COUNTS = 1_048_573

#: pyFAI names of the two study detectors.
PILATUS_300K = "Pilatus300k"
PILATUS_300KW = "Pilatus300kw"


def canonical_detector_name(name: str) -> str:
    """PyFAI's name of a detector given in any case ("pilatus300kw" -> "Pilatus300kw").

    Raises
    ------
    GeometryError
        If pyFAI knows no such detector; the message lists close matches.

    Examples
    --------
    >>> canonical_detector_name("PILATUS300KW"), canonical_detector_name("eiger2_4m")
    ('Pilatus300kw', 'Eiger2_4M')
    """
    known = {key.lower(): cls for key, cls in pyFAI.detectors.ALL_DETECTORS.items()}
    cls = known.get(name.lower().replace(" ", "").replace("-", "_"))
    if cls is None:
        close = difflib.get_close_matches(name.lower(), known, n=4)
        hint = f"; did you mean {', '.join(known[c].__name__ for c in close)}?" if close else ""
        msg = f"pyFAI knows no detector called {name!r}{hint}"
        raise GeometryError(msg)
    return str(cls.__name__)


def gap_mask(detector: str) -> NDArray[np.bool_]:
    """Module gaps (and pyFAI's other built-in bad pixels) of a detector, True = masked."""
    det = pyFAI.detectors.detector_factory(canonical_detector_name(detector))
    mask = det.mask
    if mask is None:
        return np.zeros(det.shape, dtype=bool)
    return np.asarray(mask, dtype=bool)


def static_mask(detector: str, *, user_mask: NDArray[np.bool_] | None = None) -> NDArray[np.bool_]:
    """Module gaps combined with an optional user mask, shape (rows, cols), True = masked.

    Raises
    ------
    GeometryError
        If the user mask's shape is not the detector's.
    """
    mask = gap_mask(detector)
    if user_mask is not None:
        if user_mask.shape != mask.shape:
            msg = (
                f"user mask of shape {user_mask.shape} does not fit detector {detector} "
                f"of shape {mask.shape}"
            )
            raise GeometryError(msg)
        mask = mask | user_mask.astype(bool)
    return mask


def frame_mask(
    data: NDArray[Any],
    static: NDArray[np.bool_],
    *,
    saturation_counts: float = SATURATION_COUNTS,
) -> NDArray[np.bool_]:
    """Static mask plus a frame's own bad pixels: negative or saturated (True = masked).

    Examples
    --------
    >>> frame = np.array([[5, -1], [1_048_573, 7]])
    >>> frame_mask(frame, np.array([[False, False], [False, True]])).tolist()
    [[False, True], [True, True]]
    """
    return static | (data < 0) | (data >= saturation_counts)
