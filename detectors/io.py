"""Frame files in and out: CBF, EDF and TIFF through fabio; HDF5 stacks through h5py.

A frame is an array (rows, cols) as stored, row 0 first, plus its metadata: source file,
index within the file, header time stamp (s since 1970, UTC), exposure time and period,
and the sample-position index. HDF5 stacks, plain ``(n, rows, cols)`` datasets or the
BLISS/LIMA layout, are read lazily, one frame slice a read.

Pilatus CBF headers written by :func:`write_cbf` (and by the detector) look like::

    # Detector: PILATUS 300K-W
    # 2026-11-25T10:00:00.000
    # Exposure_time 9.99 s
    # Exposure_period 10.0 s
    # Position_index 7          (ours: the sample-position index)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import fabio
import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters of LIMA files)
import numpy as np
from fabio.cbfimage import CbfImage
from numpy.typing import NDArray

from detectors.errors import FrameReadError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")

#: Names under which BLISS/LIMA files keep per-frame epoch time stamps, in s.
_EPOCH_NAMES = ("epoch", "epoch_trig", "timestamp", "time_stamp")

_ISO_TIME = re.compile(r"#\s*(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)")
_HEADER_NUMBER = {
    "exposure_s": re.compile(r"#\s*Exposure_time\s+([-+0-9.eE]+)"),
    "period_s": re.compile(r"#\s*Exposure_period\s+([-+0-9.eE]+)"),
    "position": re.compile(r"#\s*Position_index\s+(\d+)"),
}


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """Metadata of one frame.

    Attributes
    ----------
    path : Path
        Source file.
    frame_index : int
        Index within the file (0 for single-frame files).
    epoch_s : float or None
        Header time stamp, s since 1970 UTC; None when the file has none.
    exposure_s, period_s : float or None
        Exposure time and period, in s, where the file gives them.
    position : int or None
        Sample-position index, where known.
    """

    path: Path
    frame_index: int
    epoch_s: float | None = None
    exposure_s: float | None = None
    period_s: float | None = None
    position: int | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: `data` of shape (rows, cols) as stored, and its metadata."""

    data: NDArray[np.generic]
    meta: FrameMeta


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where one frame lives: cheap and picklable, one unit of work for a batch."""

    path: Path
    frame_index: int = 0
    h5_dataset: str | None = None


def list_frames(
    path: Path, *, shape: tuple[int, int] | None = None, h5_dataset: str | None = None
) -> list[FrameRef]:
    """References to every frame of a file.

    Single-image files (CBF, EDF, TIFF) are not opened: one reference, checked when read.
    HDF5 files are opened to find the frame dataset and count its frames.

    Raises
    ------
    FrameReadError
        If an HDF5 file cannot be opened or has no frame dataset.
    """
    path = Path(path)
    if path.suffix.lower() not in HDF5_SUFFIXES:
        return [FrameRef(path, 0, None)]
    with _open_h5(path) as fh:
        name = _find_dataset(fh, path, shape=shape, h5_dataset=h5_dataset)
        dataset = fh[name]
        n = 1 if dataset.ndim == 2 else int(dataset.shape[0])
    if n == 0:
        msg = f"{path}: dataset {name} holds no frames"
        raise FrameReadError(msg)
    return [FrameRef(path, i, name) for i in range(n)]


def read_frame(ref: FrameRef | Path, *, shape: tuple[int, int] | None = None) -> Frame:
    """Read one frame.

    Parameters
    ----------
    ref : FrameRef or Path
        The frame (a path means frame 0 of that file).
    shape : tuple of int or None
        Expected (rows, cols); a frame of another shape is an error.

    Returns
    -------
    Frame
        The data as stored and its metadata.

    Raises
    ------
    FrameReadError
        For a missing, empty, truncated or unreadable file, a frame of the wrong shape,
        an HDF5 file without frame dataset, or an index out of range; the message names
        the file.
    """
    if not isinstance(ref, FrameRef):
        ref = FrameRef(Path(ref))
    path = Path(ref.path)
    if not path.exists():
        msg = f"{path}: no such file"
        raise FrameReadError(msg)
    if path.stat().st_size == 0:
        msg = f"{path}: the file is empty (0 bytes)"
        raise FrameReadError(msg)
    if path.suffix.lower() in HDF5_SUFFIXES:
        frame = _read_h5(path, ref.frame_index, shape=shape, h5_dataset=ref.h5_dataset)
    else:
        frame = _read_fabio(path, ref.frame_index)
    if shape is not None and frame.data.shape != tuple(shape):
        msg = (
            f"{path}: expected a frame of shape {tuple(shape)} for this detector, got "
            f"{frame.data.shape}; check the detector of the PONI file or the config"
        )
        raise FrameReadError(msg)
    return frame


def iter_frames(
    path: Path, *, shape: tuple[int, int] | None = None, h5_dataset: str | None = None
) -> Iterator[Frame]:
    """Every frame of a file, read lazily one at a time."""
    for ref in list_frames(path, shape=shape, h5_dataset=h5_dataset):
        yield read_frame(ref, shape=shape)


def write_cbf(
    path: Path,
    data: NDArray[np.generic],
    *,
    timestamp: datetime | None,
    exposure_s: float | None,
    period_s: float | None,
    position: int | None,
    detector_label: str = "PILATUS",
) -> None:
    """Write a Pilatus-style mini-CBF (byte-offset compressed) with its header lines.

    Parameters
    ----------
    path : Path
        File to write.
    data : ndarray of shape (rows, cols)
        Counts (written as int32).
    timestamp : datetime or None
        Start of the exposure (naive times are taken as UTC).
    exposure_s, period_s : float or None
        Exposure time and period, in s.
    position : int or None
        Sample-position index.
    detector_label : str
        Text of the ``# Detector:`` line.
    """
    lines = [f"# Detector: {detector_label}"]
    if timestamp is not None:
        lines.append(f"# {timestamp.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}")
    if exposure_s is not None:
        lines.append(f"# Exposure_time {exposure_s:.7g} s")
    if period_s is not None:
        lines.append(f"# Exposure_period {period_s:.7g} s")
    if position is not None:
        lines.append(f"# Position_index {int(position)}")
    header = {"_array_data.header_contents": "\r\n".join(lines)}
    CbfImage(data=np.asarray(data, dtype=np.int32), header=header).write(str(path))


def read_mask_file(path: Path, *, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """A user mask (EDF, TIFF, CBF or NPY), nonzero = masked.

    Raises
    ------
    FrameReadError
        If the file cannot be read or its shape is not the detector's.
    """
    path = Path(path)
    try:
        data = np.load(path) if path.suffix.lower() == ".npy" else fabio.open(str(path)).data
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        msg = f"{path}: cannot read the mask file ({err})"
        raise FrameReadError(msg) from None
    if data.shape != tuple(shape):
        msg = f"{path}: mask of shape {data.shape} does not fit the detector's {tuple(shape)}"
        raise FrameReadError(msg)
    return np.asarray(data) != 0


def _read_fabio(path: Path, index: int) -> Frame:
    try:
        image = fabio.open(str(path))
        if index:
            image = image.getframe(index)
        data = image.data
    # fabio signals some corrupt files with AssertionError (a failed internal check)
    except (
        OSError,
        ValueError,
        KeyError,
        IndexError,
        RuntimeError,
        EOFError,
        AssertionError,
    ) as err:
        reason = str(err) or "the data do not match the header: truncated or corrupt"
        msg = f"{path}: cannot read frame {index} ({reason})"
        raise FrameReadError(msg) from None
    if data is None or data.ndim != 2 or data.size == 0:
        msg = f"{path}: holds no 2-D frame (truncated or not an image file)"
        raise FrameReadError(msg)
    header = {str(k): str(v) for k, v in image.header.items()}
    _check_complete(path, data, header)
    return Frame(data, _fabio_meta(path, index, header))


def _check_complete(path: Path, data: NDArray[np.generic], header: dict[str, str]) -> None:
    """A truncated CBF decodes to too few values, or fabio pads it: catch both."""
    expected = header.get("X-Binary-Number-of-Elements")
    if expected is not None and int(expected) != data.size:
        msg = f"{path}: truncated CBF: {data.size} of {expected} pixel values"
        raise FrameReadError(msg)
    size = header.get("X-Binary-Size")
    if size is not None and path.suffix.lower() == ".cbf":
        raw = path.read_bytes()
        start = raw.find(b"\x0c\x1a\x04\xd5")
        if start < 0 or len(raw) - (start + 4) < int(size):
            msg = f"{path}: truncated CBF: the binary section is shorter than {size} bytes"
            raise FrameReadError(msg)


def _fabio_meta(path: Path, index: int, header: dict[str, str]) -> FrameMeta:
    text = "\n".join(header.values())
    numbers: dict[str, float | None] = {}
    for key, pattern in _HEADER_NUMBER.items():
        match = pattern.search(text)
        numbers[key] = float(match.group(1)) if match else None
    epoch = None
    iso = _ISO_TIME.search(text)
    if iso:
        epoch = datetime.fromisoformat(iso.group(1)).replace(tzinfo=UTC).timestamp()
    else:
        epoch = _edf_time(header)
    if numbers["exposure_s"] is None:
        numbers["exposure_s"] = _first_float(
            header, ("count_time", "acq_expo_time", "exposure_time", "ExposureTime")
        )
    position = numbers["position"]
    if position is None:
        position = _first_float(header, ("position_index", "position"))
    return FrameMeta(
        path=path,
        frame_index=index,
        epoch_s=epoch,
        exposure_s=numbers["exposure_s"],
        period_s=numbers["period_s"],
        position=None if position is None else int(position),
    )


def _edf_time(header: dict[str, str]) -> float | None:
    value = _first_float(header, ("time_of_frame", "epoch", "time_stamp"))
    if value is not None:
        return value
    for key in ("date", "time"):
        if key in header:
            try:
                stamp = datetime.fromisoformat(header[key].strip())
            except ValueError:
                continue
            return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return None


def _first_float(header: dict[str, str], keys: tuple[str, ...]) -> float | None:
    lower = {k.lower(): v for k, v in header.items()}
    for key in keys:
        if key.lower() in lower:
            try:
                return float(lower[key.lower()].split()[0])
            except (ValueError, IndexError):
                continue
    return None


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        msg = f"{path}: not a readable HDF5 file ({err})"
        raise FrameReadError(msg) from None


def _find_dataset(
    fh: h5py.File, path: Path, *, shape: tuple[int, int] | None, h5_dataset: str | None
) -> str:
    if h5_dataset is not None:
        if h5_dataset not in fh or not isinstance(fh[h5_dataset], h5py.Dataset):
            msg = f"{path}: no dataset {h5_dataset!r}; give the frames' dataset path"
            raise FrameReadError(msg)
        return h5_dataset
    candidates: list[str] = []
    seen: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            seen.append(f"{name} {obj.shape}")
            fits = obj.ndim == 3 and (shape is None or obj.shape[1:] == tuple(shape))
            if fits and obj.dtype.kind in "iuf":
                candidates.append(name)

    fh.visititems(visit)
    if not candidates:
        wanted = f"(n, {shape[0]}, {shape[1]})" if shape else "(n, rows, cols)"
        listed = "; ".join(seen[:6]) + ("; ..." if len(seen) > 6 else "") or "none"
        msg = f"{path}: no frame dataset of shape {wanted}; datasets: {listed}"
        raise FrameReadError(msg)
    preferred = [c for c in candidates if re.search(r"measurement|/data$|instrument", c)]
    return "/" + (preferred or candidates)[0].lstrip("/")


def _read_h5(
    path: Path, index: int, *, shape: tuple[int, int] | None, h5_dataset: str | None
) -> Frame:
    with _open_h5(path) as fh:
        name = _find_dataset(fh, path, shape=shape, h5_dataset=h5_dataset)
        dataset = fh[name]
        n = 1 if dataset.ndim == 2 else dataset.shape[0]
        if not 0 <= index < n:
            msg = f"{path}: frame {index} out of range, {name} holds {n} frames"
            raise FrameReadError(msg)
        try:
            data = dataset[()] if dataset.ndim == 2 else dataset[index]
        except OSError as err:
            msg = f"{path}: cannot read frame {index} of {name} ({err})"
            raise FrameReadError(msg) from None
        meta = FrameMeta(
            path=path,
            frame_index=index,
            epoch_s=_h5_value(fh, name, _EPOCH_NAMES, index),
            exposure_s=_h5_value(fh, name, ("count_time", "acq_expo_time", "exposure_time"), 0),
            period_s=_h5_value(fh, name, ("acq_latency_time_period", "period"), 0),
        )
    return Frame(np.asarray(data), meta)


def _h5_value(fh: h5py.File, dataset: str, names: tuple[str, ...], index: int) -> float | None:
    """A per-frame (or scalar) number stored next to the frames, searched up the tree."""
    group = fh[dataset].parent
    while True:
        for sub in (group, group.get("acquisition"), group.get("parameters")):
            if not isinstance(sub, h5py.Group):
                continue
            for name in names:
                item = sub.get(name)
                if isinstance(item, h5py.Dataset) and item.dtype.kind in "iuf":
                    values = np.atleast_1d(item[()])
                    if values.size:
                        return float(values[min(index, values.size - 1)])
        if group.name == "/":
            return None
        group = group.parent
