"""Frames per second of reading alone and of the whole per-frame reduction, on the demo run.

For each detector: read-only rate (read_frame over every frame), the single-process
reduction rate (read, integrate, fit, write a checkpoint), and their ratio; then the batch
rate of GISAXS with two worker processes. The demo's frames are repeated ``--repeat``
times so that the figures are not start-up dominated. Each trial times reading and then
reducing the same frames back to back, and the ratio reported is the median of the
trials' ratios: on a shared machine the load drifts between trials, and a ratio taken
within one trial is far steadier than the best read over the best reduction.

Run: ``python benchmarks/throughput.py [--repeat 10]``. Ends with one ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from detectors.io import read_frame
from pipeline.batch import CHUNK_FRAMES, reduce_chunks
from pipeline.io import expand_frames, load_config, load_plan

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo" / "demo.toml"


def _best_rate(n_frames: int, seconds: list[float]) -> float:
    return n_frames / min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="times the demo frames repeat")
    parser.add_argument("--trials", type=int, default=5, help="timed trials")
    args = parser.parse_args()
    config = load_config(DEMO)
    figures: dict[str, float] = {}
    for settings in config.detectors:
        kind = settings.kind
        plan = load_plan(settings, config)
        refs = expand_frames(settings, shape=plan.geometry.detector.shape) * args.repeat
        shape = plan.geometry.detector.shape
        read_s, reduce_s = [], []
        for _ in range(args.trials):
            start = time.perf_counter()
            for ref in refs:
                read_frame(ref, shape=shape)
            read_s.append(time.perf_counter() - start)
            with tempfile.TemporaryDirectory() as tmp:
                work = [
                    (kind, i // CHUNK_FRAMES, tuple(refs[i : i + CHUNK_FRAMES]), "benchmark")
                    for i in range(0, len(refs), CHUNK_FRAMES)
                ]
                start = time.perf_counter()
                reduce_chunks(work, {kind: plan}, Path(tmp), jobs=1)
                reduce_s.append(time.perf_counter() - start)
        read_fps, reduce_fps = _best_rate(len(refs), read_s), _best_rate(len(refs), reduce_s)
        ratios = [r / d for r, d in zip(read_s, reduce_s, strict=True)]
        ratio = statistics.median(ratios)
        figures[f"read_fps_{kind}"] = read_fps
        figures[f"reduce_fps_{kind}"] = reduce_fps
        figures[f"reduce_over_read_{kind}"] = ratio
        print(
            f"{kind}: {len(refs)} frames; read {read_fps:.0f} frames/s "
            f"(median {len(refs) / statistics.median(read_s):.0f}); "
            f"reduce {reduce_fps:.0f} frames/s "
            f"(median {len(refs) / statistics.median(reduce_s):.0f}); "
            f"ratio reduce/read {ratio:.2f} (median of {len(ratios)} trials, "
            f"range {min(ratios):.2f}-{max(ratios):.2f})"
        )
        if kind == "gisaxs":
            jobs_s = []
            for _ in range(args.trials):
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    reduce_chunks(work, {kind: plan}, Path(tmp), jobs=2)
                    jobs_s.append(time.perf_counter() - start)
            figures["jobs2_fps_gisaxs"] = _best_rate(len(refs), jobs_s)
            print(
                f"gisaxs, 2 processes: {figures['jobs2_fps_gisaxs']:.0f} frames/s "
                f"({figures['jobs2_fps_gisaxs'] / reduce_fps:.2f}x one process)"
            )
    keys = (
        "read_fps_gisaxs",
        "reduce_fps_gisaxs",
        "read_fps_giwaxs",
        "reduce_fps_giwaxs",
        "jobs2_fps_gisaxs",
        "reduce_over_read_gisaxs",
        "reduce_over_read_giwaxs",
    )
    print("RESULT " + " ".join(f"{k}={figures[k]:.2f}" for k in keys if k in figures))


if __name__ == "__main__":
    main()
