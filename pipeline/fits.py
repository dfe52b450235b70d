"""Fits of 1-D q_par profiles: superlattice rods (GISAXS) and the {200} reflection (GIWAXS).

The fitting code is split by concept, as lmfit splits it:

- :mod:`pipeline.lineshapes`: the peak shapes (pure maths, one definition of each);
- :mod:`pipeline.varpro`: the variable-projection / Levenberg-Marquardt engine, which
  knows nothing of peaks, and its convergence status;
- :mod:`pipeline.rods`: the GISAXS rod model (:func:`fit_rods`);
- :mod:`pipeline.peak200`: the GIWAXS {200} model (:func:`fit_peak200`).

This module re-exports their public names, so ``from pipeline.fits import fit_rods``
keeps working.
"""

from __future__ import annotations

from pipeline.peak200 import (
    Q111_PBSE_PER_NM,
    Q200_PBSE_PER_NM,
    Q220_PBSE_PER_NM,
    RATIO_111_TO_200,
    RATIO_220_TO_200,
    PeakFit,
    PeakFitSettings,
    fit_peak200,
)
from pipeline.rods import GAMMA_RANGE_DEG, RodFit, RodFitSettings, fit_rods
from pipeline.varpro import InformationCriterion

__all__ = [
    "GAMMA_RANGE_DEG",
    "Q111_PBSE_PER_NM",
    "Q200_PBSE_PER_NM",
    "Q220_PBSE_PER_NM",
    "RATIO_111_TO_200",
    "RATIO_220_TO_200",
    "InformationCriterion",
    "PeakFit",
    "PeakFitSettings",
    "RodFit",
    "RodFitSettings",
    "fit_peak200",
    "fit_rods",
]
