"""Cost of the per-frame incidence check against the rest of the per-frame reduction.

On the demo run, for each detector: the best time of ``reduce_frame`` without the check
(plan.incidence = None), the best time of the check alone (``frame_incidence_flag``) on
the same frames, and their ratio. Best of several trials, so that a loaded machine
disturbs the figures less than a single pass would.

Run: ``python benchmarks/incidence_check.py [--trials 5]``. Ends with one ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from calibration.incidence import frame_incidence_flag
from detectors.io import read_frame
from pipeline.io import expand_frames, load_config, load_plan
from pipeline.reduce import reduce_frame

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo" / "demo.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="timed trials (best kept)")
    args = parser.parse_args()
    config = load_config(DEMO)
    figures: dict[str, float] = {}
    for settings in config.detectors:
        kind = settings.kind
        plan = load_plan(settings, config)
        assert plan.incidence is not None
        bare = replace(plan, incidence=None)
        frames = [read_frame(ref) for ref in expand_frames(settings)]
        reduce_s, check_s = [], []
        for _ in range(args.trials):
            start = time.perf_counter()
            for frame in frames:
                reduce_frame(frame, bare)
            reduce_s.append((time.perf_counter() - start) / len(frames))
            start = time.perf_counter()
            for frame in frames:
                frame_incidence_flag(frame.data, plan.incidence)
            check_s.append((time.perf_counter() - start) / len(frames))
        figures[f"reduce_ms_{kind}"] = 1e3 * min(reduce_s)
        figures[f"check_ms_{kind}"] = 1e3 * min(check_s)
        figures[f"check_over_reduce_{kind}"] = min(check_s) / min(reduce_s)
        print(
            f"{kind}: {len(frames)} frames; reduce_frame {1e3 * min(reduce_s):.2f} ms, "
            f"incidence check {1e3 * min(check_s):.3f} ms a frame "
            f"({100 * min(check_s) / min(reduce_s):.1f} %)"
        )
    print("RESULT " + " ".join(f"{key}={value:.4g}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
