"""Latency of `gixs watch`: from a frame's file being complete to its result in results.h5.

A `gixs watch` subprocess (default polling, --poll-s 0.5) follows an empty run folder; this
script writes demo CBF frames into it (in place, as a detector does) and reads
results.h5 with SWMR every 20 ms, noting when each file appears in its journal.

Two cadences:
- slow: the study's cadence is one GISAXS and one GIWAXS frame every 10 s. Each frame
  then finds the watcher idle; the latency of such an isolated frame does not depend on
  the gap once the gap exceeds the polling interval plus a reduction, so the run is
  scaled down to one frame every 2.5 s (8 frames, 20 s) instead of 0.1 per s.
- fast: 20 frames per s for 2 s (40 frames), which is faster than one core reduces the
  GISAXS frames: the backlog shows in the latencies; `dropped` counts frames never written.

Ends with one line: RESULT p50_s_slow=... p99_s_slow=... p50_s_fast=... p99_s_fast=...
dropped=...
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sample_data" / "demo"


def make_run(root: Path) -> Path:
    for name in ("demo.toml", "gisaxs.poni", "giwaxs.poni", "resolution_giwaxs.json"):
        shutil.copy(DEMO / name, root / name)
    (root / "gisaxs").mkdir()
    (root / "giwaxs").mkdir()
    return root / "demo.toml"


class JournalReader(threading.Thread):
    """Polls results.h5 (SWMR) and notes the first time each file is in its journal."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with h5py.File(self.path, "r", swmr=True) as fh:
                    files = fh["entry/journal/file"][()]
                now = time.monotonic()
                for name in files:
                    self.seen.setdefault(Path(name.decode()).name, now)
            except (OSError, KeyError):
                pass
            time.sleep(0.02)


def write_frames(root: Path, n: int, interval_s: float, tag: int) -> dict[str, float]:
    """Write n frames (alternating GISAXS, GIWAXS) in place; return when each was complete."""
    complete: dict[str, float] = {}
    start = time.monotonic()
    for i in range(n):
        kind = ("gisaxs", "giwaxs")[i % 2]
        source = DEMO / kind / f"{kind}_{20 + (i // 2) % 14:05d}.cbf"
        name = f"{kind}_{tag}{i:04d}.cbf"
        with open(root / kind / name, "wb") as fh:
            fh.write(source.read_bytes())
        complete[name] = time.monotonic()
        time.sleep(max(0.0, start + (i + 1) * interval_s - time.monotonic()))
    return complete


def latencies(complete: dict[str, float], reader: JournalReader, timeout_s: float) -> list[float]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(n in reader.seen for n in complete):
        time.sleep(0.1)
    return [reader.seen[n] - t for n, t in complete.items() if n in reader.seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--poll-s", type=float, default=0.5)
    parser.add_argument("--slow-n", type=int, default=8)
    parser.add_argument("--slow-interval-s", type=float, default=2.5)
    parser.add_argument("--fast-n", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = make_run(root)
        out = root / "out"
        cmd = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "watch",
            str(config),
            "--out",
            str(out),
            "--poll-s",
            str(args.poll_s),
            "--quiet",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not (out / "results.h5").exists():
                time.sleep(0.1)
            time.sleep(3.0)  # plans built and fit kernels loaded (the watcher warms up)
            reader = JournalReader(out / "results.h5")
            reader.start()
            slow = write_frames(root, args.slow_n, args.slow_interval_s, 1)
            lat_slow = latencies(slow, reader, 30)
            fast = write_frames(root, args.fast_n, 1 / 20, 2)
            lat_fast = latencies(fast, reader, 60)
            reader.stop.set()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    dropped = (len(slow) - len(lat_slow)) + (len(fast) - len(lat_fast))
    print(
        f"slow: {len(lat_slow)} frames, one every {args.slow_interval_s} s (scaled down "
        f"from 10 s); fast: {len(lat_fast)} frames at 20 per s; poll {args.poll_s} s"
    )
    p = {
        f"{q}_{name}": float(np.percentile(lat, pct)) if lat else float("nan")
        for name, lat in (("slow", lat_slow), ("fast", lat_fast))
        for q, pct in (("p50_s", 50), ("p99_s", 99))
    }
    print(
        f"RESULT p50_s_slow={p['p50_s_slow']:.3f} p99_s_slow={p['p99_s_slow']:.3f} "
        f"p50_s_fast={p['p50_s_fast']:.3f} p99_s_fast={p['p99_s_fast']:.3f} dropped={dropped}"
    )


if __name__ == "__main__":
    main()
