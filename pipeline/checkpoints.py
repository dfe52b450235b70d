"""Checkpoints as data: frozen dataclasses to JSON text and back, nothing executed.

An output folder may be shared (a beamline's common disk), so a checkpoint must be data
that cannot run code when read: no pickle. This module turns a tree of frozen
dataclasses, tuples, arrays and numbers into JSON text and back, rebuilding only the
dataclasses it is given by name; anything else in the text is refused. NaN and infinities
round-trip, floats exactly (``repr`` precision), arrays with their dtype and shape (their
bytes in base64: exact, and some 10 times faster to write than a list of numbers).
Files are read and written by :mod:`pipeline.io`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Format of the checkpoint text; a different one is not read (the chunk is redone).
CHECKPOINT_FORMAT = "insitu-gixs-checkpoint/2"


class CheckpointFormatError(ValueError):
    """The text is not a checkpoint this version writes (treated as no checkpoint)."""


def encode(obj: object) -> str:
    """JSON text of a tree of dataclasses, tuples, lists, arrays, paths and scalars.

    Raises
    ------
    TypeError
        For an object of another type.

    Examples
    --------
    >>> decode(encode((1, 2.5, None, "a")), types={})
    (1, 2.5, None, 'a')
    """
    return json.dumps({"format": CHECKPOINT_FORMAT, "data": _to_json(obj)}, allow_nan=True)


def decode(text: str, *, types: Mapping[str, type]) -> Any:
    """The object tree of :func:`encode`'s text, rebuilding only the dataclasses in `types`.

    Parameters
    ----------
    text : str
        JSON text written by :func:`encode`.
    types : mapping of str to type
        The dataclasses that may be rebuilt, by class name.

    Returns
    -------
    object
        The tree.

    Raises
    ------
    CheckpointFormatError
        If the text is not JSON of this format, or names a type not in `types`.

    Examples
    --------
    >>> arr = decode(encode(np.arange(3.0)), types={})
    >>> arr.dtype, arr.tolist()
    (dtype('float64'), [0.0, 1.0, 2.0])
    """
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        msg = f"not JSON: {err}"
        raise CheckpointFormatError(msg) from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        msg = f"not a checkpoint of format {CHECKPOINT_FORMAT}"
        raise CheckpointFormatError(msg)
    return _from_json(document.get("data"), types)


#: Types stored as they are (checked by exact type first: most of a tree is these).
_PLAIN = frozenset({float, int, str, bool, type(None)})


def _to_json(obj: object) -> Any:
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    names = _dataclass_fields(kind)
    if names is not None:
        fields = {name: _to_json(getattr(obj, name)) for name in names}
        return {"__dataclass__": kind.__name__, "fields": fields}
    if isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return _to_json(obj.item())
    if isinstance(obj, Path):
        return {"__path__": str(obj)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            msg = f"cannot store an array of dtype {obj.dtype}"
            raise TypeError(msg)
        data = base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode("ascii")
        return {"__array__": obj.dtype.str, "shape": list(obj.shape), "base64": data}
    if isinstance(obj, tuple):
        return {"__tuple__": [_to_json(v) for v in obj]}
    if isinstance(obj, list):
        return [_to_json(v) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            msg = "only mappings with str keys can be stored"
            raise TypeError(msg)
        return {"__dict__": {k: _to_json(v) for k, v in obj.items()}}
    msg = f"cannot store an object of type {type(obj).__name__}"
    raise TypeError(msg)


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _dataclass_fields(kind: type) -> tuple[str, ...] | None:
    """Field names of a dataclass type, in order; None for any other type (memoised)."""
    if kind not in _FIELDS:
        is_dataclass = dataclasses.is_dataclass(kind)
        _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind)) if is_dataclass else None
    return _FIELDS[kind]


def _from_json(value: Any, types: Mapping[str, type]) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_from_json(v, types) for v in value]
    if not isinstance(value, dict):
        msg = f"unexpected JSON value {value!r}"
        raise CheckpointFormatError(msg)
    if "__path__" in value:
        return Path(value["__path__"])
    if "__tuple__" in value:
        return tuple(_from_json(v, types) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _from_json(v, types) for k, v in value["__dict__"].items()}
    if "__array__" in value:
        dtype = np.dtype(value["__array__"])
        if dtype.kind not in "biuf":
            msg = f"array of dtype {dtype} is not stored by this version"
            raise CheckpointFormatError(msg)
        try:
            raw = base64.b64decode(value["base64"], validate=True)
            return np.frombuffer(raw, dtype=dtype).reshape(value["shape"]).copy()
        except (KeyError, TypeError, ValueError) as err:
            msg = f"array not stored as this version stores it ({err})"
            raise CheckpointFormatError(msg) from None
    if "__dataclass__" in value:
        cls = types.get(value["__dataclass__"])
        if cls is None:
            msg = f"type {value['__dataclass__']!r} is not one a checkpoint holds"
            raise CheckpointFormatError(msg)
        fields = {k: _from_json(v, types) for k, v in value["fields"].items()}
        try:
            return cls(**fields)
        except (TypeError, ValueError) as err:
            msg = f"cannot rebuild {cls.__name__}: {err}"
            raise CheckpointFormatError(msg) from None
    msg = f"unexpected JSON object with keys {sorted(value)}"
    raise CheckpointFormatError(msg)
