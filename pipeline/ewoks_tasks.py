"""The reduction as ewoks tasks, for a facility's workflow workers (optional ``ewoks`` extra).

Two task classes wrap the same per-frame reducer as ``gixs reduce`` and ``gixs watch``:

- :class:`ReduceFrame` reduces one frame. The plan (geometry, cut matrices, fit settings)
  is built once per worker process and kept in a cache keyed by the settings'
  fingerprint, as ewoksxrpd's ``persistent_worker`` does: a worker that reduces frame after
  frame of a run pays for the plan once, and a change of any setting (or of the PONI, mask
  or resolution file) builds a new one.
- :class:`ReduceScan` reduces a whole scan, exactly as ``gixs reduce`` does.

The workflow graphs ``reduce_frame.json`` and ``reduce_scan.json`` ship in
``pipeline/workflows`` (:func:`workflow_path`); run them with ewoks' own engine::

    from ewoks import execute_graph
    execute_graph(workflow_path("reduce_frame"),
                  inputs=[{"id": "reduce", "name": "config", "value": "run.toml"},
                          {"id": "reduce", "name": "file", "value": "gisaxs_00001.cbf"}])
"""

from __future__ import annotations

import threading
from fnmatch import fnmatch
from pathlib import Path

from ewokscore import Task

from detectors.errors import ConfigError
from detectors.io import FrameRef
from pipeline.config import Config, Kind
from pipeline.fingerprint import settings_fingerprint
from pipeline.io import package_version
from pipeline.reducer import FrameReducer, RunClock

#: Plans kept per worker process, keyed by (kind, settings fingerprint).
MAX_CACHED_PLANS = 4

_CACHE: dict[tuple[Kind, str], FrameReducer] = {}
_CACHE_LOCK = threading.Lock()


def workflow_path(name: str) -> Path:
    """Path of a shipped workflow graph: "reduce_frame" or "reduce_scan"."""
    path = Path(__file__).with_name("workflows") / f"{name}.json"
    if not path.exists():
        msg = f"no workflow {name!r}; shipped: reduce_frame, reduce_scan"
        raise ConfigError(msg)
    return path


def persistent_reducer(config: Config, kind: Kind) -> FrameReducer:
    """The worker's reducer for `kind`, built once per settings fingerprint.

    Parameters
    ----------
    config : Config
        The run's settings.
    kind : {"gisaxs", "giwaxs"}
        The detector.

    Returns
    -------
    FrameReducer
        A cached reducer (its plan is shared; its warm start is reset by the caller).

    Raises
    ------
    ConfigError
        If the config has no table for `kind`.
    """
    settings = config.settings(kind)
    if settings is None:
        msg = f"{config.source}: no [{kind}] table"
        raise ConfigError(msg)
    key = (kind, settings_fingerprint(settings, config, version=package_version()))
    with _CACHE_LOCK:
        reducer = _CACHE.get(key)
        if reducer is None:
            if len(_CACHE) >= MAX_CACHED_PLANS:
                _CACHE.pop(next(iter(_CACHE)))
            reducer = FrameReducer.from_settings(settings, config)
            _CACHE[key] = reducer
    return reducer


def kind_of_file(config: Config, path: Path) -> Kind:
    """The detector whose ``frames`` globs match `path`.

    Raises
    ------
    ConfigError
        If no detector's globs match (give the kind explicitly).
    """
    name = str(Path(path).resolve())
    for settings in config.detectors:
        if any(fnmatch(name, str(Path(p).resolve())) for p in settings.frames):
            return settings.kind
    msg = f"{path}: no [gisaxs]/[giwaxs] frames glob of {config.source} matches; give `kind`"
    raise ConfigError(msg)


class ReduceFrame(  # type: ignore[call-arg]
    Task,
    input_names=["config", "file"],
    optional_input_names=["frame_index", "kind", "t0_epoch_s"],
    output_names=["record", "time_s", "result"],
):
    """Reduce one frame (cold start), with the worker's cached plan.

    Inputs: ``config`` (TOML path), ``file`` (frame file); optional ``frame_index`` (in an
    HDF5 stack, default 0), ``kind`` ("gisaxs"/"giwaxs", default: from the globs) and
    ``t0_epoch_s`` (the run's time zero, s since 1970; default: this frame).
    Outputs: ``record`` (the summary.csv row as a dict), ``time_s`` and ``result`` (the
    :class:`~pipeline.reduce.FrameResult`).
    """

    def run(self) -> None:
        """Reduce the frame."""
        from pipeline.io import load_config
        from pipeline.timeseries import row_from_result

        config = load_config(Path(self.inputs.config))
        path = Path(self.inputs.file)
        kind = self.get_input_value("kind", None) or kind_of_file(config, path)
        cached = persistent_reducer(config, kind)
        reducer = FrameReducer(
            cached.plan,
            fingerprint=cached.fingerprint,
            clock=RunClock(t0_epoch_s=self.get_input_value("t0_epoch_s", None)),
        )
        step = reducer.reduce_ref(FrameRef(path, int(self.get_input_value("frame_index", 0))))
        base = config.source.parent if config.source is not None else None
        row = row_from_result(step.result, step.time_s, base_dir=base, from_order=step.from_order)
        self.outputs.record = row.as_record()
        self.outputs.time_s = step.time_s
        self.outputs.result = step.result


class ReduceScan(  # type: ignore[call-arg]
    Task,
    input_names=["config", "output"],
    optional_input_names=["jobs"],
    output_names=["nexus", "n_frames", "n_bad", "records"],
):
    """Reduce every frame of a scan and write its outputs, as ``gixs reduce`` does.

    Inputs: ``config`` (TOML path), ``output`` (folder); optional ``jobs`` (processes).
    Outputs: ``nexus`` (path of results.h5), ``n_frames``, ``n_bad`` and ``records`` (the
    summary rows as dicts, in time order).
    """

    def run(self) -> None:
        """Reduce the scan."""
        from pipeline.batch import reduce_run
        from pipeline.io import load_config
        from pipeline.timeseries import chronological

        config = load_config(Path(self.inputs.config))
        outputs = reduce_run(
            config,
            Path(self.inputs.output),
            jobs=int(self.get_input_value("jobs", 1)),
            progress=False,
        )
        self.outputs.nexus = str(outputs.nexus)
        self.outputs.n_frames = outputs.n_frames
        self.outputs.n_bad = outputs.n_bad
        self.outputs.records = [row.as_record() for row in chronological(outputs.rows)]
