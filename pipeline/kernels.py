"""Ahead-of-time compilation of the numba per-frame kernels, with one line of notice.

The kernels (:mod:`pipeline.varpro` for rods and peaks, :mod:`pipeline.cube_line` for
the cube line, and the small ones of the cut, the frame checks, the incidence check and
the first-rod search) are compiled on first use and cached on disk by numba next to
their modules. Right after install that first use takes some 15-20 s: the CLI calls
:func:`prepare_kernels` before a run, so that worker processes load the cache instead
of compiling at the same time, and so that a progress display does not sit at 0 % in
silence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import numpy as np

from calibration import incidence
from pipeline import checks, cube_line, integrate, rods, varpro
from pipeline.lineshapes import FOUR_LN2


def kernels_cached() -> bool:
    """Whether numba's on-disk cache holds the compiled fit kernels of this installation.

    Returns
    -------
    bool
        False right after install (or after a change of a kernel's source): the first
        fit then compiles them, which takes some 15-20 s; True otherwise (and where numba's
        cache layout is not the one known here).
    """
    dispatchers: tuple[Any, ...] = (
        varpro._lm_kernel,
        varpro._covariance_kernel,
        cube_line._cube_lm_kernel,
        integrate._cut_kernel,
        rods._lattice_scores,
    )
    try:
        indexes = [Path(d._cache._cache_file._index_path) for d in dispatchers]
    except AttributeError:
        return True
    return all(index.exists() for index in indexes)


def prepare_kernels(stream: TextIO | None = None) -> None:
    """Compile the fit kernels (or load them from numba's cache) before the first frame.

    Parameters
    ----------
    stream : text stream, optional
        Where to say, in one line, that the kernels are being compiled, when they are
        not cached yet (e.g. ``sys.stderr``); None: say nothing.
    """
    if stream is not None and not kernels_cached():
        print(
            "gixs: compiling the fit kernels (once after install, then cached; ~15-20 s)...",
            file=stream,
            flush=True,
        )
    q = np.linspace(1.0, 2.0, varpro.MIN_POINTS + 4)
    y = 10.0 + np.exp(-FOUR_LN2 * ((q - 1.5) / 0.2) ** 2)
    profile = varpro.prepare_profile(q, y, np.ones_like(q), None, 1)
    if isinstance(profile, str):  # pragma: no cover - fixed input
        raise RuntimeError(profile)
    model = varpro.SeparableModel(
        mode=varpro.MODE_PEAKS,
        shape="pseudo_voigt",
        power_law=False,
        param_names=("center0", "fwhm0"),
        families=np.zeros((1, 2)),
    )
    theta = np.array([1.5, 0.2])
    refined = varpro.levenberg_marquardt(
        model, profile, theta, theta - 0.1, theta + 0.1, max_nfev=5
    )
    varpro.stderr(varpro.fit_statistics(refined.evaluation, profile.n, 2, "bic"), 0)
    varpro.evaluate_kernel(theta, *varpro.model_args(model, profile), False)
    cube_line.compile_kernels()
    _compile_frame_kernels()


def _compile_frame_kernels() -> None:
    """The small per-frame kernels, on inputs of the types a reduction gives them.

    The incidence check's band profile is compiled for int32 frames (Pilatus CBF); other
    pixel types compile on their first frame (well under a second).
    """
    values = np.ones(4)
    valid = np.ones(4, dtype=bool)
    indptr, indices = np.array([0, 4], dtype=np.intp), np.arange(4, dtype=np.intp)
    integrate._cut_kernel(values, valid, indptr, indices, values, indptr, indices, values)
    checks._band_counts(values, valid, ~valid)
    columns = np.arange(2, dtype=np.intp)
    no_mask = np.zeros((0, 0), dtype=bool)
    incidence._band_profile_kernel(
        np.ones((3, 2), dtype=np.int32), 0, 3, columns, np.zeros((3, 2), dtype=bool), 9.0, no_mask
    )
    incidence._most_prominent_peak(np.array([0.0, 1.0, 0.0]), np.ones(3, dtype=bool))
    grid = np.linspace(0.5, 1.5, 5)
    rods._lattice_scores(np.ones((1, 2)), grid, np.ones(5), 0.1, 1.5)
