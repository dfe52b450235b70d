"""What the GISAXS rod decision costs per frame, and what half the read-only rate leaves it.

On the demo's GISAXS frames, reduced in order as a run reduces them, this counts the
model evaluations of the rod decision by stage (background fits, ranking of the starts,
refinement of the three lattices from their starts, the line-shape and envelope refits of
the model spread), times one evaluation in a compiled loop (no Python in between, with the
Jacobian, at the parameters each refinement ended on), and times reading, the whole
per-frame reduction and the rod decision within it. From these it prints the time the rod
decision may take per frame if the reduction is to run at half the read-only rate
(``benchmarks/throughput.py``'s target), and how many evaluations fit in it.

The stages are told apart by wrapping the rod module's functions for the run; nothing is
replaced, the results are those of the product.

Run: ``python benchmarks/rod_search_cost.py [--repeat 3]``. Ends with one ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

import pipeline.reduce as reduce_module
import pipeline.rods as rods_module
from detectors.io import read_frame
from pipeline.io import expand_frames, load_config, load_plan
from pipeline.reducer import FrameReducer
from pipeline.varpro import evaluate_kernel, model_args

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo" / "demo.toml"
STAGES = ("background", "ranking", "refinement", "model_spread")


@numba.njit(cache=False)
def _evaluate_repeatedly(reps: int, theta: np.ndarray, *args: Any) -> float:
    total = 0.0
    for _ in range(reps):
        total += evaluate_kernel(theta, *args, True)[0][0]
    return total


class _Counter:
    """Evaluations per stage, and the problems the refinements ended on."""

    def __init__(self) -> None:
        self.stage = "background"
        self.evaluations: collections.Counter[str] = collections.Counter()
        self.fits: collections.Counter[str] = collections.Counter()
        self.problems: list[tuple[np.ndarray, tuple[Any, ...]]] = []
        self.rod_seconds = 0.0

    def in_stage(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            outer, self.stage = self.stage, stage
            try:
                return function(*args, **kwargs)
            finally:
                self.stage = outer

        return wrapped

    def levenberg_marquardt(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapped(model: Any, profile: Any, *args: Any, **kwargs: Any) -> Any:
            refined = function(model, profile, *args, **kwargs)
            self.evaluations[self.stage] += refined.nfev
            self.fits[self.stage] += 1
            if self.stage in ("refinement", "model_spread"):
                self.problems.append((refined.evaluation.theta, model_args(model, profile)))
            return refined

        return wrapped

    def evaluate_kernel(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapped(*args: Any) -> Any:
            self.evaluations[self.stage] += 1
            return function(*args)

        return wrapped

    def fit_rods(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.stage = "background"
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.rod_seconds += time.perf_counter() - start

        return wrapped


def _count_stages(counter: _Counter) -> None:
    rods_module._ranked_starts = counter.in_stage("ranking", rods_module._ranked_starts)
    rods_module._refine_lattice = counter.in_stage("refinement", rods_module._refine_lattice)
    rods_module._choose_rod_model = counter.in_stage("model_spread", rods_module._choose_rod_model)
    rods_module.levenberg_marquardt = counter.levenberg_marquardt(rods_module.levenberg_marquardt)
    rods_module.evaluate_kernel = counter.evaluate_kernel(rods_module.evaluate_kernel)


def _evaluation_us(problems: list[tuple[np.ndarray, tuple[Any, ...]]], reps: int) -> float:
    """Median time of one evaluation with its Jacobian, in a compiled loop, in us."""
    times = []
    for theta, args in problems:
        _evaluate_repeatedly(1, theta, *args)
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            _evaluate_repeatedly(reps, theta, *args)
            best = min(best, (time.perf_counter() - start) / reps)
        times.append(best * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="times the demo frames repeat")
    parser.add_argument("--trials", type=int, default=3, help="timed trials")
    args = parser.parse_args()
    config = load_config(DEMO)
    settings = next(s for s in config.detectors if s.kind == "gisaxs")
    plan = load_plan(settings, config)
    shape = plan.geometry.detector.shape
    refs = expand_frames(settings, shape=shape) * args.repeat
    FrameReducer(plan).reduce(read_frame(refs[0], shape=shape))  # compile before timing

    read_s, reduce_s, rod_s = [], [], []
    counter = _Counter()
    reduce_module.fit_rods = counter.fit_rods(reduce_module.fit_rods)
    for _ in range(args.trials):
        start = time.perf_counter()
        for ref in refs:
            read_frame(ref, shape=shape)
        read_s.append(time.perf_counter() - start)
        reducer = FrameReducer(plan)
        counter.rod_seconds = 0.0
        start = time.perf_counter()
        for ref in refs:
            reducer.reduce(read_frame(ref, shape=shape))
        reduce_s.append(time.perf_counter() - start)
        rod_s.append(counter.rod_seconds)
    # medians over the trials, each read and reduced back to back (a shared machine drifts)
    n = len(refs)
    read_ms = statistics.median(read_s) / n * 1e3
    reduce_ms = statistics.median(reduce_s) / n * 1e3 - read_ms
    rod_ms = statistics.median(rod_s) / n * 1e3
    rest_ms = reduce_ms - rod_ms

    _count_stages(counter)  # a last pass, counted (the wrappers' own time is not timed)
    reducer = FrameReducer(plan)
    for ref in refs:
        reducer.reduce(read_frame(ref, shape=shape))
    per_frame = {stage: counter.evaluations[stage] / n for stage in STAGES}
    evaluations = sum(per_frame.values())
    fits = sum(counter.fits.values()) / n
    sample = counter.problems[:: max(len(counter.problems) // 60, 1)]
    evaluation_us = _evaluation_us(sample, reps=300)
    engine_ms = evaluations * evaluation_us / 1e3
    # half the read-only rate: read + rest + rods <= 2 read (no checkpoint written here)
    budget_ms = read_ms - rest_ms
    within = max(budget_ms, 0.0) * 1e3 / evaluation_us

    print(f"{n} GISAXS frames (demo x {args.repeat}), reduced in order as a run does")
    print(f"  read {read_ms:.2f} ms/frame; the reduction besides reading {reduce_ms:.2f} ms/frame:")
    print(f"  rod decision {rod_ms:.2f} ms/frame, the rest (cut, checks) {rest_ms:.2f}")
    print(f"  {evaluations:.1f} model evaluations/frame in {fits:.1f} refinements/frame:")
    for stage in STAGES:
        print(f"    {stage:13s} {per_frame[stage]:5.1f}")
    print(f"  one evaluation (compiled loop, with Jacobian): {evaluation_us:.1f} us (median)")
    print(
        f"  the evaluations alone: {engine_ms:.2f} ms/frame; the rest (mostly the Python "
        f"around them): {rod_ms - engine_ms:.2f} ms/frame"
    )
    print(
        f"  at half the read-only rate the rod decision may take {budget_ms:.2f} ms/frame: "
        f"{within:.0f} evaluations with no Python around them"
    )
    figures = {
        "read_ms": read_ms,
        "reduce_ms": reduce_ms,
        "rod_ms": rod_ms,
        "rest_ms": rest_ms,
        "evaluations_per_frame": evaluations,
        "refinements_per_frame": fits,
        "evaluation_us": evaluation_us,
        "engine_ms": engine_ms,
        "rod_budget_ms_at_half_read_rate": budget_ms,
        "evaluations_within_budget": within,
    }
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
