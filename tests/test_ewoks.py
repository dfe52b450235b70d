"""The ewoks tasks and graphs, run by ewoks' own local engine, against `gixs reduce`."""

import math
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
from ewoks import execute_graph

from pipeline.ewoks_tasks import persistent_reducer, workflow_path
from pipeline.io import load_config
from pipeline.results_file import read_results
from tests.watch_helpers import DEMO, make_run_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """18 frames a detector (two batch chunks) and their `gixs reduce` output."""
    root = tmp_path_factory.mktemp("ewoks")
    config = make_run_folder(root / "run")
    for kind in ("gisaxs", "giwaxs"):
        for i in range(18):
            shutil.copy(DEMO / kind / f"{kind}_{i:05d}.cbf", config.parent / kind)
    out = root / "reduced"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "reduce",
        str(config),
        "--out",
        str(out),
        "--quiet",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return config, read_results(out / "results.h5")


def same(record: dict, row) -> None:
    def plain(values: dict) -> dict:
        return {k: (math.nan if v is None else v) for k, v in values.items()}

    expected = plain(row.as_record())
    texts = {k for k, v in expected.items() if isinstance(v, str)}
    assert {k: record[k] for k in texts} == {k: expected[k] for k in texts}
    numbers = {k: v for k, v in expected.items() if k not in texts}
    assert {k: v for k, v in plain(record).items() if k not in texts} == pytest.approx(
        numbers, nan_ok=True
    )


def test_reduce_scan_graph_equals_gixs_reduce(run, tmp_path):
    config, reference = run
    inputs = [
        {"id": "reduce", "name": "config", "value": str(config)},
        {"id": "reduce", "name": "output", "value": str(tmp_path / "ewoks")},
    ]
    result = execute_graph(str(workflow_path("reduce_scan")), inputs=inputs)
    assert (result["n_frames"], result["n_bad"]) == (36, 0)
    assert len(result["records"]) == len(reference.rows)
    for record, row in zip(result["records"], reference.rows, strict=True):
        same(record, row)
    written = read_results(tmp_path / "ewoks" / "results.h5").rows
    for mine, row in zip(written, reference.rows, strict=True):
        same(mine.as_record(), row)


def test_reduce_frame_graph_equals_gixs_reduce_on_cold_frames(run):
    config, reference = run
    rows = {(r.detector, r.file): r for r in reference.rows}

    def reduce(name: str, t0: float | None) -> dict:
        inputs = [
            {"id": "reduce", "name": "config", "value": str(config)},
            {"id": "reduce", "name": "file", "value": str(config.parent / name)},
        ]
        if t0 is not None:
            inputs.append({"id": "reduce", "name": "t0_epoch_s", "value": t0})
        return execute_graph(str(workflow_path("reduce_frame")), inputs=inputs)

    first = reduce("gisaxs/gisaxs_00000.cbf", None)
    t0 = first["result"].epoch_s - rows[("gisaxs", "gisaxs/gisaxs_00000.cbf")].time_s
    # the batch starts each chunk of 16 frames cold: frames 0 and 16 of each detector
    for name in ("gisaxs/gisaxs_00000.cbf", "gisaxs/gisaxs_00016.cbf", "giwaxs/giwaxs_00000.cbf",
                 "giwaxs/giwaxs_00016.cbf"):  # fmt: skip
        record = reduce(name, t0)["record"]
        same(record, rows[(name[:6], name)])


def test_worker_cache_is_keyed_by_the_settings(run):
    config = load_config(run[0])
    a = persistent_reducer(config, "gisaxs")
    assert persistent_reducer(load_config(run[0]), "gisaxs") is a
    other = replace(config, scherrer=replace(config.scherrer, k_factor=0.9))
    assert persistent_reducer(other, "gisaxs") is not a
    assert persistent_reducer(other, "giwaxs").plan.kind == "giwaxs"
