"""Helpers of the watch-mode tests: a run folder, frames written at a rate, the watcher."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "sample_data" / "demo"
GIXS = [sys.executable, "-m", "pipeline.cli"]


def make_run_folder(root: Path) -> Path:
    """The demo's config, geometry and resolution, with empty frame folders."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("demo.toml", "gisaxs.poni", "giwaxs.poni", "resolution_giwaxs.json"):
        shutil.copy(DEMO / name, root / name)
    (root / "gisaxs").mkdir()
    (root / "giwaxs").mkdir()
    return root / "demo.toml"


def demo_frames(first: int, last: int) -> list[Path]:
    """Demo frames in acquisition order (the GISAXS and GIWAXS frame of each step)."""
    return [
        DEMO / kind / f"{kind}_{i:05d}.cbf"
        for i in range(first, last)
        for kind in ("gisaxs", "giwaxs")
    ]


def write_slowly(source: Path, target: Path, *, chunk: int = 4096, pause_s: float = 0.004) -> None:
    """Write a file in place a few KB at a time, with a long stall half way (a slow NFS)."""
    data = source.read_bytes()
    with open(target, "wb") as fh:
        for start in range(0, len(data), chunk):
            fh.write(data[start : start + chunk])
            fh.flush()
            time.sleep(0.6 if start <= len(data) // 2 < start + chunk else pause_s)


def write_at_rate(
    frames: list[Path], root: Path, *, rate_hz: float, slow: set[int] = frozenset()
) -> None:
    for i, source in enumerate(frames):
        target = root / source.parent.name / source.name
        if i in slow:
            write_slowly(source, target)
        else:
            target.write_bytes(source.read_bytes())
        time.sleep(1.0 / rate_hz)


def watch(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    """Start `gixs watch`; its output goes to a log file (a pipe could fill and block it)."""
    log = open(out.parent / f"watch-{time.monotonic_ns()}.log", "w+")
    proc = subprocess.Popen(
        [*GIXS, "watch", str(config), "--out", str(out), "--poll-s", "0.2", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    """Wait for the watcher and return what it printed."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log.seek(0)
        text = proc.log.read()
        proc.log.close()
    return text


def wait_until_watching(proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Wait for the watcher's first progress line (plans built, folders followed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if "seen " in Path(proc.log.name).read_text():
            return
        time.sleep(0.1)
    raise TimeoutError(Path(proc.log.name).read_text())
