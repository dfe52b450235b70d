"""Fingerprints: one digest of everything that determines a result.

A checkpoint is reused only when its fingerprint matches the one the run computes now:
the settings (the whole detector table, the Scherrer and fit settings, the instrumental
resolution), the geometry (the PONI's contents, the incidence and tilt angles, the sample
orientation), the mask's contents, the input files' identity (size, modification time
and SHA-256) and the package version. Change any of them and the frames it touches are
reduced again.

The batch keys its checkpoints by :func:`plan_fingerprint` and :func:`chunk_fingerprint`;
a :class:`~pipeline.reducer.FrameReducer` (watch mode's journal, the ewoks workers' plan
cache) by :func:`settings_fingerprint`, which needs no plan and so can key the plan's own
cache. Apart from :func:`settings_fingerprint`, which reads the files the settings name,
everything here is pure: callers read the files (:func:`pipeline.io.file_identity`) and
pass what they hold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from detectors.io import FrameRef
from pipeline.config import Config, DetectorSettings
from pipeline.reduce import ReductionPlan

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Who an input file is: if any of these change, its frames are reduced again.

    Attributes
    ----------
    path : str
        The file, as the run names it.
    size : int
        Size in bytes.
    mtime_ns : int
        Modification time, ns since 1970.
    sha256 : str
        SHA-256 hex digest of its bytes.
    """

    path: str
    size: int
    mtime_ns: int
    sha256: str


def canonical(obj: object) -> Any:
    """A JSON-able, order-independent form of `obj` for hashing.

    Dataclasses become their type name and fields, arrays their dtype, shape and SHA-256,
    floats their exact ``repr`` (so NaN and -0.0 are kept apart), mappings are sorted by
    key. Objects that are none of these are described by their ``get_config()`` (pyFAI
    detectors) or else their ``repr`` without memory addresses.

    Examples
    --------
    >>> canonical((1, 0.5, "a", None))
    [1, '0.5', 'a', None]
    >>> canonical(np.zeros((2, 3), dtype=np.uint8))["shape"]
    [2, 3]
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, np.generic):
        return canonical(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        data = np.ascontiguousarray(obj)
        return {
            "dtype": data.dtype.str,
            "shape": list(data.shape),
            "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
        }
    if sparse.issparse(obj):
        csr = sparse.csr_array(obj)
        return {
            "sparse": list(csr.shape),
            "data": canonical(csr.data),
            "indices": canonical(csr.indices),
            "indptr": canonical(csr.indptr),
        }
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"__type__": type(obj).__name__, **fields}
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        return [canonical(v) for v in items]
    config = getattr(obj, "get_config", None)
    if callable(config):
        return {"__type__": type(obj).__name__, "config": canonical(config())}
    return _ADDRESS.sub("", repr(obj))


def fingerprint(*parts: object) -> str:
    """SHA-256 hex digest of the canonical form of `parts`.

    Examples
    --------
    >>> fingerprint(1.0, "a") == fingerprint(1.0, "a") != fingerprint(1.0, "b")
    True
    >>> fingerprint(float('nan')) == fingerprint(float('nan'))
    True
    """
    text = json.dumps(canonical(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def settings_fingerprint(settings: DetectorSettings, config: Config, *, version: str) -> str:
    """Digest of everything a detector's plan is built from, without building it.

    The detector table's values (not its frame globs: which frames are reduced does not
    change how), the Scherrer settings, the bytes of the files the table names (PONI,
    mask, resolution) and the package version: two reducers with equal fingerprints give
    equal results.

    Parameters
    ----------
    settings : DetectorSettings
        The detector's settings.
    config : Config
        The run (for the Scherrer settings).
    version : str
        Version of the package that reduces.

    Returns
    -------
    str
        SHA-256 hex digest (64 hexadecimal digits).

    Examples
    --------
    >>> from pipeline.config import config_from_dict
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.poni").write_text("Distance: 0.5")
    >>> cfg = config_from_dict({"schema_version": 1, "gisaxs": {"frames": ["*.cbf"],
    ...     "poni": "a.poni", "incidence_angle_deg": 0.3}}, base_dir=folder, source="a.toml")
    >>> key = settings_fingerprint(cfg.detectors[0], cfg, version="1.0")
    >>> len(key), key == settings_fingerprint(cfg.detectors[0], cfg, version="1.0")
    (64, True)
    """
    files: list[str] = []
    for path in (settings.poni, settings.mask, settings.resolution):
        if path is not None:
            try:
                files.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())
            except OSError:
                files.append(f"missing:{path}")
    table = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    table.pop("frames")
    return fingerprint("settings", version, table, config.scherrer, files)


def plan_fingerprint(plan: ReductionPlan, settings: DetectorSettings, *, version: str) -> str:
    """Digest of everything but the frames that a detector's results depend on.

    Parameters
    ----------
    plan : ReductionPlan
        The detector's plan: geometry (PONI contents and angles), static mask (gaps and
        the user mask's contents), the cut, the rod and peak fit settings, the
        instrumental resolution and the Scherrer settings.
    settings : DetectorSettings
        The whole detector table as configured. The frame globs are left out: which
        frames a result belongs to is keyed by :func:`chunk_fingerprint`.
    version : str
        Version of the package that reduces.

    Returns
    -------
    str
        SHA-256 hex digest.
    """
    return fingerprint(
        "plan",
        version,
        {
            f.name: getattr(settings, f.name)
            for f in dataclasses.fields(settings)
            if f.name != "frames"
        },
        plan.kind,
        plan.geometry,
        plan.static_mask,
        plan.cut.q_perp_band_per_nm,
        plan.cut.q_par_range_per_nm,
        plan.cut.q_par_per_nm,
        plan.cut.pixel_index,
        plan.cut.polarization_factor,
        plan.rod_settings,
        plan.peak_settings,
        plan.resolution,
        plan.scherrer,
    )


def chunk_fingerprint(
    plan_key: str, refs: Sequence[FrameRef], files: Mapping[str, FileIdentity | None]
) -> str:
    """Digest of a run of frames reduced with one plan.

    Parameters
    ----------
    plan_key : str
        :func:`plan_fingerprint` of the detector.
    refs : sequence of FrameRef
        The frames, in the order they are reduced (a chunk warm-starts each fit from the
        frame before).
    files : mapping of str to FileIdentity or None
        Identity of each file of `refs`, keyed by ``str(ref.path)``; None for a file
        that could not be read (its chunk then never matches a stored one).

    Returns
    -------
    str
        SHA-256 hex digest; "" when a file has no identity (never reuse).
    """
    identities = []
    for name in sorted({str(ref.path) for ref in refs}):
        identity = files.get(name)
        if identity is None:
            return ""
        identities.append(identity)
    return fingerprint("chunk", plan_key, list(refs), identities)
