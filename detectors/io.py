"""Frame files in and out: CBF, EDF and TIFF through fabio; HDF5 stacks through h5py.

A frame is an array (rows, cols) as stored, row 0 first, plus its metadata: source file,
index within the file, header time stamp (s since 1970, UTC), exposure time and period,
and the sample-position index. Every failure is a :class:`~detectors.errors.FrameReadError`
whose one-line message names the file.

Pilatus CBF headers written by :func:`write_cbf` (and by the detector) look like::

    # Detector: PILATUS 300K-W
    # 2026-11-25T10:00:00.000
    # Exposure_time 9.99 s
    # Exposure_period 10.0 s
    # Position_index 7

The time stamp carries no zone and is taken as UTC; ``Position_index`` is this project's
convention for the sample-position index; ``Count_cutoff`` gives the saturation. TIFF files
from camserver carry the same lines in their ImageDescription, and the ``DateTime`` tag
(``2026:11:25 10:00:00``) where the lines have no time stamp. EDF headers are searched for
the usual ESRF/LIMA keys (``time_of_day`` as s since 1970 or as a date, ``time``/``date``,
``acq_expo_time``/``count_time``, ...).

HDF5 files are read lazily, one frame slice a read (the file is opened per read, or once
per :func:`iter_frames`), never the whole stack. With no dataset path given, the frames are
the detector's data, found by walking the file (following soft and external links):

1. NeXus roles first: ``data`` of an ``NXdetector``, the ``signal`` of an ``NXdata``;
2. then BLISS, LIMA and Dectris names (``/1.1/measurement/<det>``,
   ``/1.1/instrument/<det>/data``, ``/entry_0000/measurement/data``,
   ``/entry/data/data_000001``), then any other numeric stack (n, rows, cols) of the
   detector's frame shape. A 2-D dataset is one frame only where it has the detector's
   shape and is no mask, flatfield, dark or ``detectorSpecific`` array.
3. The same dataset in every scan (``/1.1``, ``/2.1``, ``/10.1``) or every Dectris data
   file is one series, read whole in acquisition order: by first time stamp where every
   stack has one, else by scan or file number read as a number (never string order).
4. Several candidates of equal standing (``data`` and ``dark`` with no NeXus role) are an
   error listing them; ``h5_dataset`` (a path, a list or a pattern) chooses.

A dangling external link of the chosen series, or a virtual dataset whose source file is
missing or shorter than the frames it maps, is an error naming the file: HDF5 itself would
read zeros. Per-frame time stamps are taken from a BLISS ``measurement/epoch`` (or
``epoch_trig``) dataset next to the frames (else from a Dectris ``data_collection_date``
or NeXus ``start_time`` plus the frame number times ``frame_time``), exposure times from
``acq_parameters/acq_expo_time`` (BLISS), ``acquisition/exposure_time`` (LIMA) or
``instrument/detector/count_time`` (NeXus, Dectris), and the detector's own mask from a
``pixel_mask`` of the detector's shape next to them (``detectorSpecific/pixel_mask``,
``NXdetector/pixel_mask``; nonzero = masked), returned as ``Frame.pixel_mask``.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import fabio
import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters of LIMA/BLISS files)
import numpy as np
from fabio.cbfimage import CbfImage
from numpy.typing import NDArray

from detectors.errors import FrameReadError

#: File name suffixes read with h5py; other files are sniffed for the HDF5 signature.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5")
#: File name suffixes read with fabio without sniffing.
FABIO_SUFFIXES = (".cbf", ".edf", ".tif", ".tiff", ".gz", ".bz2")

#: Numbers below this are relative times, not absolute stamps (s since 1970; 1973-03-03).
MIN_EPOCH_S = 1e8

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CBF_MAGIC = b"###CBF"
_CBF_BINARY_START = b"\x0c\x1a\x04\xd5"
_HEAD_BYTES = 65_536
_MESSAGE_CHARS = 160
_LISTED_DATASETS = 8
_MAX_H5_DEPTH = 12

# Pilatus header lines, anywhere in a header text (CBF header_contents, TIFF description).
_ISO_STAMP = re.compile(
    r"^#\s*(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s*$",
    re.MULTILINE,
)
# Older camserver stamps: "# 2011/Jun/08 14:26:20.375" or "# 2011-Jun-08T14:26:20.375".
_CAMSERVER_STAMP = re.compile(
    r"^#\s*(\d{4})[/-]([A-Za-z]{3})[/-](\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*$",
    re.MULTILINE,
)
_PILATUS_NUMBERS = {
    "exposure_s": re.compile(r"^#\s*Exposure_time\s+([-+0-9.eE]+)", re.MULTILINE),
    "period_s": re.compile(r"^#\s*Exposure_period\s+([-+0-9.eE]+)", re.MULTILINE),
    "position": re.compile(r"^#\s*Position_index\s+(\d+)", re.MULTILINE),
    "saturation": re.compile(r"^#\s*Count_cutoff\s+([-+0-9.eE]+)", re.MULTILINE),
}

# Header keys (case-insensitive) of EDF files and HDF5 datasets, in order of preference.
_EPOCH_KEYS = ("time_of_day", "epoch", "epoch_trig", "timestamp", "time_stamp", "time_of_frame")
_DATE_KEYS = ("time_of_day", "date", "time", "datetime", "start_time")
_EXPOSURE_KEYS = ("count_time", "acq_expo_time", "exposure_time", "exposuretime", "expo_time")
_PERIOD_KEYS = ("exposure_period", "acq_period", "period")
_LATENCY_KEYS = ("acq_latency_time", "latency_time")
_POSITION_KEYS = ("position_index", "position")
# ctime (EDF), slashed dates, and the TIFF DateTime tag ("2026:11:25 10:00:00", camserver)
_DATE_FORMATS = (
    "%a %b %d %H:%M:%S %Y",
    "%a %b %d %H:%M:%S.%f %Y",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S.%f",
    "%d/%m/%Y %H:%M:%S",
    "%Y:%m:%d %H:%M:%S",
    "%Y:%m:%d %H:%M:%S.%f",
)

# Groups next to a frame dataset where BLISS and LIMA keep per-frame and scan values.
_H5_META_GROUPS = (
    "measurement",
    "acquisition",
    "acq_parameters",
    "parameters",
    "instrument/detector",
    "instrument/detector/detectorSpecific",
    "detectorSpecific",
)
_H5_PREFERRED = re.compile(r"(^|/)measurement/[^/]+$|(^|/)instrument/[^/]+/data$")


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
        Absolute time stamp from the header, s since 1970 UTC; None when the file has none.
    exposure_s, period_s : float or None
        Exposure time and period, in s, where the file gives them.
    position : int or None
        Sample-position index, where known.
    dataset : str or None
        HDF5 dataset the frame was read from (`frame_index` counts within it); None for
        other files. Record it in the output's provenance.
    saturation_counts : float or None
        Counts at or above which the file says the detector saturates (Pilatus
        ``Count_cutoff``, NeXus ``saturation_value``, Dectris
        ``countrate_correction_count_cutoff``); None where the file does not say.
    """

    path: Path
    frame_index: int
    epoch_s: float | None = None
    exposure_s: float | None = None
    period_s: float | None = None
    position: int | None = None
    dataset: str | None = None
    saturation_counts: float | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame and its metadata.

    Attributes
    ----------
    data : ndarray of shape (rows, cols)
        Counts as stored (int32 for Pilatus CBF); row 0 is the first stored row.
    meta : FrameMeta
        Where the frame comes from and its header values.
    pixel_mask : ndarray of bool, shape (rows, cols), or None
        The detector's own mask stored with the frames (Dectris ``detectorSpecific/
        pixel_mask``, NeXus ``NXdetector/pixel_mask``), True = masked; read-only and shared
        by the frames of a file. None where the file holds none.
    """

    data: NDArray[Any]
    meta: FrameMeta
    pixel_mask: NDArray[np.bool_] | None = None


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where one frame lives: cheap and picklable, one unit of work for a batch.

    Attributes
    ----------
    path : Path
        The file.
    frame_index : int
        Index of the frame within the file.
    h5_dataset : str, tuple of str or None
        HDF5 dataset holding the frame (as :func:`list_frames` gives it: `frame_index`
        counts within it). A list of paths, a pattern (``"/*.1/measurement/pilatus"``) or
        None (search the file) name a series of stacks, which `frame_index` counts through
        in acquisition order.
    """

    path: Path
    frame_index: int = 0
    h5_dataset: str | tuple[str, ...] | None = None

    @property
    def dataset(self) -> str | None:
        """The one HDF5 dataset this reference names, or None (not HDF5, or a series)."""
        if isinstance(self.h5_dataset, str) and not _is_pattern(self.h5_dataset):
            return self.h5_dataset
        return None


def list_frames(
    path: Path | str,
    *,
    shape: tuple[int, int] | None = None,
    h5_dataset: str | Sequence[str] | None = None,
    keep_missing: bool = False,
) -> list[FrameRef]:
    """References to every frame of a file, in acquisition order.

    A CBF file is one frame and is not opened (it is checked when read). EDF and TIFF
    headers are read to count their frames. HDF5 files are opened to find the frame
    stack(s): a run split over several scans of a BLISS file (``/1.1``, ``/2.1``, ...) or
    over the data files of a Dectris master (``/entry/data/data_000001``, ...) is listed
    whole, stack after stack in the order of their first time stamps (else of their scan
    or file numbers, read as numbers: ``/10.1`` after ``/2.1``).

    Parameters
    ----------
    path : Path or str
        The file.
    shape : tuple of int or None
        Detector frame shape (rows, cols): picks the HDF5 dataset whose frames have it,
        and makes a dataset of another shape an error.
    h5_dataset : str, sequence of str or None
        HDF5 frame dataset(s), (n, rows, cols) or (rows, cols): a path, a list of paths,
        or a pattern matched against every dataset path (``"/*.1/measurement/pilatus"``,
        ``"/entry/data/data_*"``); None to search for the detector's data (NeXus
        ``NXdetector/data`` or ``NXdata`` signal first, then BLISS, LIMA and Dectris names).
    keep_missing : bool
        What a run needs from a file of several parts: the frames that are there. With
        True, a part that is missing (a data file a link points to, the source file of
        some frames of a virtual dataset) or empty (a scan aborted before its first
        frame) does not make the whole file an error: the frames that exist are listed,
        an empty part is skipped, and a missing linked part is one reference that
        :func:`read_frame` refuses, naming the missing file (a frame of a missing virtual
        source is refused the same way). With False, any of these is an error.

    Returns
    -------
    list of FrameRef
        One per frame; HDF5 references name the one dataset holding the frame.

    Raises
    ------
    FrameReadError
        If the file is missing or empty, cannot be read, has no frame dataset or no frame,
        its frames do not have `shape`, several stacks could be the detector's data (the
        message lists them), or an external link or virtual dataset lacks its source file
        (the message names it).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_cbf(folder / "f0001.cbf", np.zeros((4, 5)), timestamp=None, exposure_s=1.0,
    ...           period_s=None, position=None)
    >>> [(ref.path.name, ref.frame_index) for ref in list_frames(folder / "f0001.cbf")]
    [('f0001.cbf', 0)]
    """
    path = Path(path)
    _check_file(path)
    if _is_hdf5(path):
        with _open_h5(path) as fh:
            stacks, missing = _find_stacks(
                fh, path, shape=shape, h5_dataset=_h5_names(h5_dataset), partial=keep_missing
            )
            refs = [FrameRef(path, i, s.name) for s in stacks for i in range(s.n_frames)]
            return refs + [FrameRef(path, 0, name) for name, _ in missing]
    if path.suffix.lower() == ".cbf":
        return [FrameRef(path, 0, None)]
    n_frames = _fabio_frame_count(path)
    return [FrameRef(path, i, None) for i in range(n_frames)]


def read_frame(ref: FrameRef | Path | str, *, shape: tuple[int, int] | None = None) -> Frame:
    """Read one frame.

    Parameters
    ----------
    ref : FrameRef, Path or str
        The frame (a path means frame 0 of that file). Where the reference names no
        single HDF5 dataset, its index counts through the file's stacks in acquisition
        order, as :func:`list_frames` lists them.
    shape : tuple of int or None
        Expected frame shape (rows, cols); a frame of another shape is an error.

    Returns
    -------
    Frame
        The data as stored, its metadata and the detector's own pixel mask if the file
        holds one.

    Raises
    ------
    FrameReadError
        For a missing, empty, truncated or unreadable file, a frame of the wrong shape,
        an HDF5 file without frame dataset or with several candidates, a frame whose
        source file (external link, virtual dataset) is missing or short, or an index out
        of range; the message names the file.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "f0001.cbf"
    >>> write_cbf(path, np.arange(6).reshape(2, 3), timestamp=datetime(2026, 11, 25, 10),
    ...           exposure_s=9.99, period_s=10.0, position=7)
    >>> frame = read_frame(path, shape=(2, 3))
    >>> frame.data.tolist(), frame.meta.epoch_s, frame.meta.exposure_s, frame.meta.position
    ([[0, 1, 2], [3, 4, 5]], 1795600800.0, 9.99, 7)
    """
    if not isinstance(ref, FrameRef):
        ref = FrameRef(Path(ref))
    path = Path(ref.path)
    _check_file(path)
    if _is_hdf5(path):
        with _open_h5(path) as fh:
            # a frame of a virtual dataset is checked on its own: the others of a stack
            # whose other source files are missing still read
            stacks, _ = _find_stacks(
                fh, path, shape=shape, h5_dataset=_h5_names(ref.h5_dataset), check_sources=False
            )
            index = ref.frame_index
            for stack in stacks[:-1]:
                if index < stack.n_frames:
                    break
                index -= stack.n_frames
            else:
                stack = stacks[-1]
                if len(stacks) > 1 and not 0 <= index < stack.n_frames:
                    total = sum(s.n_frames for s in stacks)
                    msg = (
                        f"{path}: frame {ref.frame_index} out of range, its "
                        f"{len(stacks)} frame stacks hold {total} frame(s)"
                    )
                    raise FrameReadError(msg)
            return stack.frame(index)
    frame = _read_fabio(path, ref.frame_index)
    _check_shape(path, frame.data.shape, shape)
    return frame


def iter_frames(
    path: Path | str,
    *,
    shape: tuple[int, int] | None = None,
    h5_dataset: str | Sequence[str] | None = None,
) -> Iterator[Frame]:
    """Every frame of a file, read lazily one at a time, in acquisition order.

    An HDF5 file is opened once for the whole iteration (and closed when the iterator
    ends or is closed); other files are read frame by frame. The frames are those of
    :func:`list_frames`, in its order.

    Raises
    ------
    FrameReadError
        As :func:`list_frames` and :func:`read_frame`.
    """
    path = Path(path)
    _check_file(path)
    if not _is_hdf5(path):
        for ref in list_frames(path, shape=shape):
            yield read_frame(ref, shape=shape)
        return
    with _open_h5(path) as fh:
        for stack in _find_stacks(fh, path, shape=shape, h5_dataset=_h5_names(h5_dataset))[0]:
            metadata = stack.all_metadata()
            pixel_mask = stack.pixel_mask()
            for index in range(stack.n_frames):
                yield stack.read(index, metadata[index], pixel_mask)


def _h5_names(h5_dataset: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    """A dataset path or pattern as given, or a list of them as a tuple."""
    if h5_dataset is None or isinstance(h5_dataset, str):
        return h5_dataset
    names = tuple(str(n) for n in h5_dataset)
    return names[0] if len(names) == 1 else names


def write_cbf(
    path: Path | str,
    data: NDArray[Any],
    *,
    timestamp: datetime | None,
    exposure_s: float | None,
    period_s: float | None,
    position: int | None,
    detector_label: str = "PILATUS",
) -> None:
    """Write a Pilatus-style mini-CBF (byte-offset compressed, int32) with its header lines.

    The file appears whole or not at all: it is written under a temporary name in the same
    folder and renamed, so a folder watcher never reads half a file.

    Parameters
    ----------
    path : Path or str
        File to write (replaced if it exists).
    data : ndarray of shape (rows, cols)
        Counts: integers in -2**31 < n < 2**31 (floats must hold whole numbers).
    timestamp : datetime or None
        Start of the exposure; a naive time is taken as UTC, an aware one is converted.
        Written with millisecond precision.
    exposure_s, period_s : float or None
        Exposure time and period, in s.
    position : int or None
        Sample-position index.
    detector_label : str
        Text of the ``# Detector:`` line.

    Raises
    ------
    ValueError
        If `data` is not 2-D or does not hold whole numbers in the int32 range.
    OSError
        If the file cannot be written.
    """
    counts = _as_int32(data)
    lines = [f"# Detector: {detector_label}"]
    if timestamp is not None:
        if timestamp.tzinfo is not None:
            timestamp = timestamp.astimezone(UTC)
        lines.append(f"# {timestamp.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}")
    if exposure_s is not None:
        lines.append(f"# Exposure_time {float(exposure_s)!r} s")
    if period_s is not None:
        lines.append(f"# Exposure_period {float(period_s)!r} s")
    if position is not None:
        lines.append(f"# Position_index {int(position)}")
    header = {
        "_array_data.header_convention": "PILATUS_1.2",
        "_array_data.header_contents": "\r\n".join(lines),
    }
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".write_cbf_") as tmp:
        part = Path(tmp) / path.name  # same name, so the CIF block is data_<stem>
        CbfImage(data=counts, header=header).write(str(part))
        os.replace(part, path)


def read_mask_file(path: Path | str, *, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """A user mask file (EDF, TIFF, CBF, NPY or a 2-D HDF5 dataset), nonzero = masked.

    Parameters
    ----------
    path : Path or str
        The mask file.
    shape : tuple of int
        The detector's frame shape (rows, cols).

    Returns
    -------
    ndarray of bool, shape (rows, cols)
        True where the file is nonzero (or NaN).

    Raises
    ------
    FrameReadError
        If the file cannot be read or its shape is not the detector's.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "mask.npy"
    >>> np.save(path, np.array([[0, 1], [0, 0]]))
    >>> read_mask_file(path, shape=(2, 2)).tolist()
    [[False, True], [False, False]]
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            msg = f"{path}: cannot read the mask ({_brief(err)}); save it with numpy.save"
            raise FrameReadError(msg) from None
    elif _is_hdf5(path):
        with _open_h5(path) as fh:
            data = _h5_mask(fh, path, shape=shape)
    else:
        data = read_frame(path).data
    if data.shape != tuple(shape):
        msg = (
            f"{path}: mask of shape {data.shape} does not fit the detector's frames of "
            f"shape {tuple(shape)}; draw the mask on a frame of this detector"
        )
        raise FrameReadError(msg)
    return np.asarray(data) != 0


# --- files -------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        msg = f"{path}: no such file; check the path or glob"
        raise FrameReadError(msg)
    if path.is_dir():
        msg = f"{path}: is a folder, not a frame file"
        raise FrameReadError(msg)
    if path.stat().st_size == 0:
        msg = f"{path}: the file is empty (0 bytes); it was not written, or is still being written"
        raise FrameReadError(msg)


def linked_files(path: Path) -> set[Path]:
    """The other files whose data an HDF5 file reads: external links, virtual datasets.

    A Dectris master reads its frames from its ``data_NNNNNN`` files, a BLISS file from
    its LIMA files; a run that matches both (``*.h5``) must read each frame once, through
    the file that links them.

    Parameters
    ----------
    path : Path
        Any file; one that is not HDF5 or cannot be opened links nothing.

    Returns
    -------
    set of Path
        Resolved paths of the linked files (relative names are taken beside `path`),
        existing or not; `path` itself is left out.
    """
    if not path.is_file() or not _is_hdf5(path):
        return set()
    names: set[str] = set()

    def visit(group: h5py.Group, depth: int) -> None:
        for key in group:
            link = _h5_get_link(group, key)
            if isinstance(link, h5py.ExternalLink):
                names.add(link.filename)
            elif isinstance(link, h5py.HardLink):
                item = _h5_get(group, key)
                if isinstance(item, h5py.Dataset) and item.is_virtual:
                    names.update(source.file_name for source in item.virtual_sources())
                elif isinstance(item, h5py.Group) and depth < _MAX_H5_DEPTH:
                    visit(item, depth + 1)

    try:
        with _open_h5(path) as fh:  # without file locking, as a file being written needs
            visit(fh, 0)
    except (FrameReadError, OSError, ValueError):
        return set()
    own = path.resolve()
    linked = {(path.parent / name).resolve() for name in names if name != "."}
    return linked - {own}


def _is_hdf5(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return True
    if suffix in FABIO_SUFFIXES:
        return False
    with path.open("rb") as fh:
        return fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE


def _check_shape(
    path: Path, found: tuple[int, ...], expected: tuple[int, int] | None, where: str = ""
) -> None:
    if expected is not None and tuple(found) != tuple(expected):
        msg = (
            f"{path}{where}: expected frames of shape {tuple(expected)} (rows, cols) for "
            f"this detector, found {tuple(found)}; check the detector named in the PONI "
            "file or config, or the frame files"
        )
        raise FrameReadError(msg)


def _brief(err: BaseException) -> str:
    """An exception as one short line (fabio's messages can run over many lines)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def _as_int32(data: NDArray[Any]) -> NDArray[np.int32]:
    array = np.asarray(data)
    if array.ndim != 2:
        msg = f"write_cbf needs a 2-D frame (rows, cols), got shape {array.shape}"
        raise ValueError(msg)
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        msg = "write_cbf writes counts: the frame holds non-integer or non-finite values"
        raise ValueError(msg)
    # fabio's byte-offset coder turns -2**31 into 0, so the int32 minimum is refused too
    low, high = np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max
    if array.size and (array.min() < low or array.max() > high):
        msg = (
            f"write_cbf writes int32 counts in {low}..{high}: "
            f"values {array.min()}..{array.max()} overflow"
        )
        raise ValueError(msg)
    return array.astype(np.int32)


# --- CBF, EDF, TIFF through fabio -------------------------------------------------


def _fabio_frame_count(path: Path) -> int:
    _check_cbf(path)
    try:
        n_frames = int(fabio.openheader(str(path)).nframes)
    # fabio signals unknown or corrupt files with many exception types (OSError,
    # AssertionError, AttributeError, KeyError, ...): all mean "cannot read this file".
    except Exception as err:
        msg = f"{path}: not a readable image file ({_brief(err)})"
        raise FrameReadError(msg) from None
    if n_frames < 1:
        msg = f"{path}: the file holds no frames"
        raise FrameReadError(msg)
    return n_frames


def _check_cbf(path: Path) -> None:
    """Refuse a CBF cut short before fabio sees it.

    fabio loops forever on a CBF cut before its binary section and zero-fills or asserts
    on one cut inside it, so the binary section is checked against the file size here.
    """
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if not (head.startswith(_CBF_MAGIC) or path.suffix.lower() == ".cbf"):
        return
    start = head.find(_CBF_BINARY_START)
    if start < 0 and len(head) == _HEAD_BYTES:
        head = path.read_bytes()
        start = head.find(_CBF_BINARY_START)
    if start < 0:
        msg = (
            f"{path}: truncated or not a CBF image: no binary data section; "
            "copy the file again from the detector"
        )
        raise FrameReadError(msg)
    declared = re.search(rb"X-Binary-Size:\s*(\d+)", head[:start])
    have = path.stat().st_size - start - len(_CBF_BINARY_START)
    if declared is not None and have < int(declared.group(1)):
        msg = (
            f"{path}: truncated CBF: {have} of {int(declared.group(1))} bytes of pixel data; "
            "copy the file again from the detector"
        )
        raise FrameReadError(msg)


def _read_fabio(path: Path, index: int) -> Frame:
    _check_cbf(path)
    n_frames = 1 if path.suffix.lower() == ".cbf" else _fabio_frame_count(path)
    if not 0 <= index < n_frames:
        msg = f"{path}: frame {index} out of range, the file holds {n_frames} frame(s)"
        raise FrameReadError(msg)
    try:
        image = fabio.open(str(path))
        if index:
            image = image.getframe(index)
        data = image.data
    # fabio signals unknown or corrupt files with many exception types (OSError,
    # AssertionError, AttributeError, KeyError, ...): all mean "cannot read this file".
    except Exception as err:
        msg = (
            f"{path}: cannot read frame {index}: unknown format, truncated or corrupt "
            f"({_brief(err)})"
        )
        raise FrameReadError(msg) from None
    if data is None:
        msg = (
            f"{path}: no pixel data in frame {index}: truncated or corrupt; "
            "copy the file again from the detector"
        )
        raise FrameReadError(msg)
    if data.ndim != 2 or data.size == 0:
        msg = (
            f"{path}: holds no 2-D frame (found data of shape {data.shape}); not a detector frame?"
        )
        raise FrameReadError(msg)
    # fabio zero-fills the missing end of a file cut short (EDF) and says so here
    if getattr(image, "incomplete_data", False):
        msg = (
            f"{path}: truncated file: frame {index} is incomplete (fabio filled the missing "
            "pixels with zeros); copy the file again from the detector"
        )
        raise FrameReadError(msg)
    header = {str(k): v for k, v in image.header.items()}
    expected = header.get("X-Binary-Number-of-Elements")
    if expected is not None and str(expected).isdigit() and int(expected) != data.size:
        msg = f"{path}: truncated CBF: {data.size} of {expected} pixel values"
        raise FrameReadError(msg)
    return Frame(np.asarray(data), _header_meta(path, index, header))


def _header_meta(path: Path, index: int, header: dict[str, Any]) -> FrameMeta:
    """Metadata from a fabio header: Pilatus lines first, then EDF-style keys."""
    text = "\n".join(v for v in header.values() if isinstance(v, str))
    pilatus: dict[str, float | None] = {}
    for key, pattern in _PILATUS_NUMBERS.items():
        match = pattern.search(text)
        pilatus[key] = float(match.group(1)) if match else None
    keys = {k.lower(): str(v) for k, v in header.items()}
    epoch = _pilatus_epoch(text)
    if epoch is None:
        epoch = _keyed_epoch(keys)
    exposure = pilatus["exposure_s"]
    if exposure is None:
        exposure = _keyed_number(keys, _EXPOSURE_KEYS)
    period = pilatus["period_s"]
    if period is None:
        period = _keyed_number(keys, _PERIOD_KEYS)
    latency = _keyed_number(keys, _LATENCY_KEYS)
    if period is None and exposure is not None and latency is not None:
        period = exposure + latency
    position = pilatus["position"]
    if position is None:
        position = _keyed_number(keys, _POSITION_KEYS)
    saturation = pilatus["saturation"]
    return FrameMeta(
        path=path,
        frame_index=index,
        epoch_s=epoch,
        exposure_s=exposure,
        period_s=period,
        position=_position_index(position),
        saturation_counts=saturation if saturation is not None and saturation > 0 else None,
    )


def _pilatus_epoch(text: str) -> float | None:
    iso = _ISO_STAMP.search(text)
    if iso is not None:
        return _epoch_of(datetime.fromisoformat(iso.group(1).replace(" ", "T")))
    old = _CAMSERVER_STAMP.search(text)
    if old is not None:
        year, month, day, clock = old.groups()
        try:
            stamp = datetime.strptime(f"{year} {month} {day} {clock}", "%Y %b %d %H:%M:%S.%f")
        except ValueError:
            stamp = datetime.strptime(f"{year} {month} {day} {clock}", "%Y %b %d %H:%M:%S")
        return _epoch_of(stamp)
    return None


def _keyed_epoch(keys: dict[str, str]) -> float | None:
    number = _keyed_number(keys, _EPOCH_KEYS, minimum=MIN_EPOCH_S)
    if number is not None:
        return number
    for key in _DATE_KEYS:
        stamp = _parse_date(keys.get(key, ""))
        if stamp is not None:
            return stamp
    return None


def _parse_date(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return _epoch_of(datetime.fromisoformat(text))
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return _epoch_of(datetime.strptime(text, fmt))
        except ValueError:
            continue
    return None


def _keyed_number(
    keys: dict[str, str], names: tuple[str, ...], *, minimum: float | None = None
) -> float | None:
    for name in names:
        words = keys.get(name, "").split()
        if not words:
            continue
        try:
            value = float(words[0])
        except ValueError:
            continue
        if np.isfinite(value) and (minimum is None or value >= minimum):
            return value
    return None


def _position_index(value: float | None) -> int | None:
    """A sample-position index: a whole number >= 0 (a motor position is not one)."""
    if value is None or not (np.isfinite(value) and value >= 0 and float(value).is_integer()):
        return None
    return int(value)


def _epoch_of(stamp: datetime) -> float:
    """Seconds since 1970 of a time stamp; one with no zone is taken as UTC."""
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


# --- HDF5 through h5py ------------------------------------------------------------


def _open_h5(path: Path) -> h5py.File:
    try:
        # no file locking: BLISS/LIMA may hold the file open for writing while we read
        return h5py.File(path, "r", locking=False)
    except OSError as err:
        try:
            # a file that a writer holds open in SWMR mode opens only as an SWMR reader
            return h5py.File(path, "r", swmr=True, locking=False)
        except OSError:
            pass
        msg = f"{path}: not a readable HDF5 file ({_brief(err)})"
        raise FrameReadError(msg) from None


@dataclass(frozen=True, slots=True)
class _H5Stack:
    """One frame dataset of an open HDF5 file and where its metadata live."""

    path: Path
    root: h5py.File  # the file opened (a Dectris master), which may link to the data's
    dataset: h5py.Dataset
    name: str
    anchors: tuple[str, ...]  # dataset paths whose parents hold the metadata

    @classmethod
    def open(
        cls,
        fh: h5py.File,
        path: Path,
        name: str,
        *,
        shape: tuple[int, int] | None,
        aliases: tuple[str, ...] = (),
        check_sources: bool = True,
        allow_empty: bool = False,
    ) -> _H5Stack:
        """The stack at `name`, checked: numbers, 2-D or 3-D, `shape`, sources present.

        `check_sources` False leaves a virtual dataset's source files to the frames read
        from them; `allow_empty` True accepts a stack of 0 frames.
        """
        item = _h5_get(fh, name)
        if not isinstance(item, h5py.Dataset):
            broken = _broken_link(fh, path, name)
            if broken is not None:
                raise FrameReadError(_missing_message(path, [broken]))
            listed = _describe_datasets(_stack_candidates(_walk(fh), shape=None))
            msg = (
                f"{path}: no dataset {name!r}; give the frames' dataset path as h5_dataset "
                f"(frame stacks in the file: {listed})"
            )
            raise FrameReadError(msg)
        if item.ndim not in (2, 3) or item.dtype.kind not in "iuf":
            msg = (
                f"{path}: dataset {name} of shape {item.shape} and type {item.dtype} is not "
                "a frame stack (n, rows, cols) or a frame (rows, cols) of numbers"
            )
            raise FrameReadError(msg)
        _check_shape(path, item.shape[-2:], shape, where=f" {name}")
        anchors = dict.fromkeys((name, *aliases))
        for anchor in list(anchors):
            link = _h5_get_link(fh, anchor)
            if isinstance(link, h5py.SoftLink):
                anchors[link.path] = None
        stack = cls(path, fh, item, name, tuple(anchors))
        if stack.n_frames == 0 and not allow_empty:
            msg = f"{path}: dataset {name} holds no frames (shape {item.shape})"
            raise FrameReadError(msg)
        if item.is_virtual and check_sources:
            missing = sorted({str(s.file) for s in _virtual_maps(item) if not s.file.exists()})
            if missing:
                raise FrameReadError(_missing_message(path, [(name, m) for m in missing]))
        return stack

    @property
    def n_frames(self) -> int:
        return 1 if self.dataset.ndim == 2 else int(self.dataset.shape[0])

    def frame(self, index: int) -> Frame:
        """Frame `index` with its metadata and the detector's pixel mask."""
        return self.read(index, None)

    def read(
        self,
        index: int,
        meta: FrameMeta | None,
        pixel_mask: NDArray[np.bool_] | Literal["find"] | None = "find",
    ) -> Frame:
        """Frame `index` with `meta` (None: read it) and `pixel_mask` (``"find"``: look it up)."""
        if not 0 <= index < self.n_frames:
            msg = (
                f"{self.path}: frame {index} out of range, {self.name} holds "
                f"{self.n_frames} frame(s)"
            )
            raise FrameReadError(msg)
        if self.dataset.is_virtual:
            self._check_virtual_frame(index)
        try:
            data = self.dataset[()] if self.dataset.ndim == 2 else self.dataset[index]
        except (OSError, ValueError) as err:
            msg = f"{self.path}: cannot read frame {index} of {self.name} ({_brief(err)})"
            raise FrameReadError(msg) from None
        meta = self.metadata(index) if meta is None else meta
        mask = self.pixel_mask() if isinstance(pixel_mask, str) else pixel_mask
        return Frame(np.asarray(data), meta, mask)

    def pixel_mask(self) -> NDArray[np.bool_] | None:
        """The detector's own pixel mask stored with the frames (nonzero = masked)."""
        shape = tuple(self.dataset.shape[-2:])
        for group in self._places():
            for name in _PIXEL_MASK_NAMES:
                item = _h5_get(group, name)
                if isinstance(item, h5py.Dataset) and tuple(item.shape) == shape:
                    return _cached_pixel_mask(_file_key(Path(item.file.filename)), item.name)
        return None

    def metadata(self, index: int) -> FrameMeta:
        """Metadata of one frame, reading one element of each per-frame dataset."""
        values = {}
        for field, item in self._metadata_datasets().items():
            values[field] = None if item is None else _h5_number(item, index, self.n_frames)
        return _h5_meta(self.path, index, self._with_start_epoch(values, index), self.name)

    def all_metadata(self) -> list[FrameMeta]:
        """Metadata of every frame, reading each per-frame dataset once."""
        columns = {
            field: None if item is None else _h5_column(item, self.n_frames)
            for field, item in self._metadata_datasets().items()
        }
        return [
            _h5_meta(
                self.path,
                i,
                self._with_start_epoch(
                    {k: None if v is None else float(v[i]) for k, v in columns.items()}, i
                ),
                self.name,
            )
            for i in range(self.n_frames)
        ]

    def _with_start_epoch(
        self, values: dict[str, float | None], index: int
    ) -> dict[str, float | None]:
        """`values`, with the frame's epoch from the series' start time where none is stored.

        A Dectris master keeps one ``detectorSpecific/data_collection_date`` (a NeXus file
        ``start_time``) and the ``frame_time``; frame k of a data file whose first image is
        ``image_nr_low`` then started at start + (image_nr_low - 1 + k) * frame_time.
        """
        period = values["period_s"]
        if values["epoch_s"] is not None or period is None or not period > 0:
            return values
        start = self._start_epoch()
        if start is None:
            return values
        first = self.dataset.attrs.get("image_nr_low", 1)
        first = int(np.ravel(first)[0]) if np.size(first) else 1
        return {**values, "epoch_s": start + (first - 1 + index) * period}

    def _start_epoch(self) -> float | None:
        """Epoch of the series' start (a date string beside the frames), or None."""
        for place in self._places():
            for name in _START_DATE_NAMES:
                item = _h5_get(place, name)
                if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "SOU":
                    continue
                raw = np.ravel(item[()])[0] if item.shape else item[()]
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                epoch = _parse_date(text)
                if epoch is not None and epoch >= MIN_EPOCH_S:
                    return epoch
        return None

    def _places(self) -> list[h5py.Group]:
        """Groups that may hold this stack's metadata, nearest first.

        Up from the frames' group(s): each group and its ``measurement``, ``acquisition``,
        ``acq_parameters``, ``parameters``, ``instrument/detector`` and ``detectorSpecific``
        subgroups; in the file opened, then in the data's own file where a link leads to
        another (a Dectris data file).
        """
        places: list[h5py.Group] = []
        seen: set[tuple[str, str]] = set()
        starts = [(self.root, anchor) for anchor in self.anchors]
        if self.dataset.file.filename != self.root.filename:
            starts.append((self.dataset.file, self.dataset.name))
        for fh, anchor in starts:
            group = _h5_get(fh, anchor.rsplit("/", 1)[0] or "/")
            while isinstance(group, h5py.Group):
                members = set(group)
                for place in (
                    group,
                    *(
                        _h5_get(group, sub)
                        for sub in _H5_META_GROUPS
                        if sub.split("/", 1)[0] in members
                    ),
                ):
                    if not isinstance(place, h5py.Group):
                        continue
                    key = (place.file.filename, place.name)
                    if key not in seen:
                        seen.add(key)
                        places.append(place)
                if group.name == "/":
                    break
                group = group.parent
        return places

    def _metadata_datasets(self) -> dict[str, h5py.Dataset | None]:
        """For each metadata field, the nearest numeric dataset holding it, or None."""
        places = [(place, set(place)) for place in self._places()]
        found: dict[str, h5py.Dataset | None] = {}
        for field, names in _H5_FIELDS.items():
            found[field] = None
            for place, members in places:
                items = [_h5_get(place, name) for name in names if name in members]
                numeric = [
                    i for i in items if isinstance(i, h5py.Dataset) and i.dtype.kind in "iuf"
                ]
                if numeric:
                    found[field] = numeric[0]
                    break
        return found

    def _check_virtual_frame(self, index: int) -> None:
        """Refuse a frame that HDF5 would fill with zeros: no source, or a short one."""
        covering = [s for s in _virtual_maps(self.dataset) if s.first <= index <= s.last]
        where = f"{self.path}: frame {index} of {self.name}"
        if not covering:
            msg = (
                f"{where} is mapped to no source file (HDF5 would read the fill value); "
                "the acquisition may be incomplete"
            )
            raise FrameReadError(msg)
        for source in covering:
            if not source.file.exists():
                raise FrameReadError(_missing_message(self.path, [(self.name, str(source.file))]))
            try:
                with h5py.File(source.file, "r", locking=False) as src:
                    item = src.get(source.dataset)
                    have = None if not isinstance(item, h5py.Dataset) else tuple(item.shape)
            except OSError as err:
                msg = f"{where}: its source file {source.file} cannot be read ({_brief(err)})"
                raise FrameReadError(msg) from None
            if have is None:
                msg = (
                    f"{where}: its source file {source.file} has no dataset "
                    f"{source.dataset} (HDF5 would read zeros)"
                )
                raise FrameReadError(msg)
            needed = source.needed_shape(index, len(have))
            if len(have) != len(needed) or any(h < n for h, n in zip(have, needed, strict=True)):
                msg = (
                    f"{where}: its source {source.file}:{source.dataset} holds shape {have}, "
                    f"short of {needed} (still being written, or cut short; HDF5 would read "
                    "zeros)"
                )
                raise FrameReadError(msg)


@dataclass(frozen=True, slots=True)
class _VirtualSource:
    """One block of a virtual dataset: frames first..last come from file:dataset."""

    file: Path
    dataset: str
    first: int
    last: int
    extent: tuple[int, ...]  # shape of the block in the virtual dataset
    source_end: tuple[int, ...] | None  # last index of a source hyperslab; None: all of it

    def needed_shape(self, index: int, rank: int) -> tuple[int, ...]:
        """Smallest source shape (of `rank` dimensions) that holds frame `index`."""
        if self.source_end is not None:
            return tuple(e + 1 for e in self.source_end)
        if rank == len(self.extent) - 1 and self.extent[0] == 1:  # one 2-D source frame
            return self.extent[1:]
        if rank == len(self.extent) == 3:
            return (index - self.first + 1, *self.extent[1:])
        return self.extent


def _virtual_maps(item: h5py.Dataset) -> list[_VirtualSource]:
    """The mappings of a virtual dataset, with source files resolved as HDF5 does."""
    home = Path(item.file.filename)
    maps = []
    for entry in item.virtual_sources():
        name = entry.file_name
        if name == ".":
            source = home
        else:
            source = Path(name)
            if not source.is_absolute():
                beside = home.parent / source
                source = beside if beside.exists() or not source.exists() else source.resolve()
        vspace = entry.vspace
        if vspace.get_select_type() == h5py.h5s.SEL_HYPERSLABS:
            blocks = vspace.get_select_hyper_blocklist()
            starts = [tuple(int(v) for v in b[0]) for b in blocks]
            ends = [tuple(int(v) for v in b[1]) for b in blocks]
        else:
            dims = tuple(int(d) for d in item.shape)
            starts, ends = [tuple(0 for _ in dims)], [tuple(d - 1 for d in dims)]
        src_end: tuple[int, ...] | None = None
        if entry.src_space.get_select_type() == h5py.h5s.SEL_HYPERSLABS:
            src_blocks = entry.src_space.get_select_hyper_blocklist()
            src_end = tuple(int(v) for v in np.max([b[1] for b in src_blocks], axis=0))
        for start, end in zip(starts, ends, strict=True):
            extent = tuple(e - s + 1 for s, e in zip(start, end, strict=True))
            first, last = (0, 0) if item.ndim == 2 else (start[0], end[0])
            maps.append(_VirtualSource(source, entry.dset_name, first, last, extent, src_end))
    return maps


def _missing_message(path: Path, missing: list[tuple[str, str]]) -> str:
    """One line naming the files that an external link or virtual dataset needs."""
    files = list(dict.fromkeys(file for _, file in missing))
    names = list(dict.fromkeys(name for name, _ in missing))
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"{path}: the frames in {where} live in other files that are missing (or lack the "
        f"linked dataset): {shown}; "
        f"copy them to those paths (HDF5 looks up relative names beside {path.name}), or "
        "choose other frames with h5_dataset"
    )


def _broken_link(fh: h5py.File, path: Path, name: str) -> tuple[str, str] | None:
    """(name, missing file) where `name` is an external link whose file cannot be opened."""
    link = _h5_get_link(fh, name)
    if isinstance(link, h5py.ExternalLink):
        return name, _link_file(path, link)
    return None


def _link_file(path: Path, link: h5py.ExternalLink) -> str:
    """The file an external link needs (with the dataset, where the file is there)."""
    target = Path(link.filename)
    target = target if target.is_absolute() else path.parent / target
    return f"{target}:{link.path}" if target.exists() else str(target)


def _h5_get_link(fh: h5py.File, name: str) -> Any:
    try:
        return fh.get(name, getlink=True)
    except (KeyError, OSError, ValueError):
        return None


# Per-frame fields and the dataset names that hold them (BLISS first, then LIMA, NeXus
# and Dectris).
_H5_FIELDS: dict[str, tuple[str, ...]] = {
    "epoch_s": ("epoch", "epoch_trig", "time_of_day"),
    "exposure_s": _EXPOSURE_KEYS,
    "period_s": (*_PERIOD_KEYS, "frame_time"),
    "latency_s": _LATENCY_KEYS,
    "position": ("position_index",),  # "position" in HDF5 is usually a motor, in mm
    "saturation_counts": ("saturation_value", "countrate_correction_count_cutoff"),
}

# Date strings of a series' start (Dectris detectorSpecific, NeXus NXentry), from which
# per-frame times follow with the frame period where no per-frame time is stored.
_START_DATE_NAMES = ("data_collection_date", "start_time")

# Names of the detector's own pixel mask (Dectris detectorSpecific, NeXus NXdetector).
_PIXEL_MASK_NAMES = ("pixel_mask",)

# 2-D datasets of detector shape that are never frames.
_NOT_FRAMES = re.compile(
    r"(^|/)(detectorSpecific|calibration)/|"
    r"(^|/)[^/]*(mask|flat|dark|background|gain|pedestal|countrate_correction)[^/]*$",
    re.IGNORECASE,
)


def _h5_meta(
    path: Path, index: int, values: dict[str, float | None], dataset: str | None
) -> FrameMeta:
    epoch = values["epoch_s"]
    if epoch is not None and not epoch >= MIN_EPOCH_S:
        epoch = None
    exposure, period, latency = values["exposure_s"], values["period_s"], values["latency_s"]
    if period is None and exposure is not None and latency is not None:
        period = exposure + latency
    saturation = values["saturation_counts"]
    if saturation is not None and not saturation > 0:
        saturation = None
    return FrameMeta(
        path=path,
        frame_index=index,
        epoch_s=epoch,
        exposure_s=exposure,
        period_s=period,
        position=_position_index(values["position"]),
        dataset=dataset,
        saturation_counts=saturation,
    )


def _h5_number(item: h5py.Dataset, index: int, n_frames: int) -> float | None:
    """Element `index` of a per-frame dataset, or its single value; None if neither."""
    size = int(item.size)
    if size == 1:
        return float(np.ravel(item[()])[0])
    if item.ndim == 1 and size == n_frames:
        return float(item[index])
    return None


def _h5_column(item: h5py.Dataset, n_frames: int) -> NDArray[np.float64] | None:
    values = np.ravel(np.asarray(item[()], dtype=np.float64))
    if values.size == 1:
        return np.full(n_frames, values[0])
    if item.ndim == 1 and values.size == n_frames:
        return values
    return None


def _h5_get(group: h5py.Group, name: str) -> Any:
    """``group.get(name)``, None where the name or a link target is missing."""
    try:
        return group.get(name)
    except (KeyError, OSError, ValueError):
        return None


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _cached_pixel_mask(key: tuple[str, int, int], name: str) -> NDArray[np.bool_]:
    """A pixel mask read once per file version (key: path, mtime, size), read-only."""
    with h5py.File(key[0], "r", locking=False) as fh:
        mask = np.asarray(fh[name][()]) != 0
    mask.flags.writeable = False
    return mask


def _h5_mask(fh: h5py.File, path: Path, *, shape: tuple[int, int]) -> NDArray[Any]:
    """The one 2-D dataset of `shape` in a mask file (one named like a mask if several)."""
    walk = _walk(fh)
    found = [
        e
        for e in walk.datasets
        if e.item.ndim == 2 and tuple(e.item.shape) == tuple(shape) and e.item.dtype.kind in "biuf"
    ]
    if len(found) > 1:
        found = [e for e in found if any("mask" in n.rsplit("/", 1)[-1].lower() for n in e.names)]
    if len(found) != 1:
        wanted = f"({shape[0]}, {shape[1]})"
        listed = _describe_all(walk) if not found else _describe_datasets(found)
        msg = (
            f"{path}: no single 2-D mask dataset of shape {wanted} (found: {listed}); "
            "save the mask alone in the file, or as .npy, .edf or .tif"
        )
        raise FrameReadError(msg)
    return np.asarray(found[0].item[()])


# --- finding the frames in an HDF5 file ----------------------------------------------


@dataclass(slots=True)
class _Found:
    """A dataset met while walking a file: every name it has and its best role."""

    item: h5py.Dataset
    names: list[str]
    role: int  # 3: NeXus detector data or NXdata signal, 2: BLISS/LIMA/Dectris names, 1: other


@dataclass(frozen=True, slots=True)
class _Walk:
    datasets: list[_Found]
    broken: list[tuple[str, str]]  # (name, missing file:dataset) of dangling external links


def _nx_class(group: h5py.Group) -> str:
    value = group.attrs.get("NX_class", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _signal(group: h5py.Group) -> str:
    value = group.attrs.get("signal", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _role(group: h5py.Group, key: str, name: str) -> int:
    nx = _nx_class(group)
    if (nx == "NXdetector" and key == "data") or (nx == "NXdata" and key == _signal(group)):
        return 3
    if _H5_PREFERRED.search(name) or (nx == "NXdata" and re.fullmatch(r"data_\d+", key)):
        return 2
    return 1


def _walk(fh: h5py.File) -> _Walk:
    """Every dataset reachable from the root, following soft and external links.

    Groups reached through soft links are not entered (their hard path is), so link
    cycles end; a dataset reached twice is one entry holding all its names.
    """
    found: dict[Any, _Found] = {}
    groups: set[Any] = set()
    broken: list[tuple[str, str]] = []
    path = Path(fh.filename)

    def visit(group: h5py.Group, prefix: str, depth: int) -> None:
        for key in group:
            link = group.get(key, getlink=True)
            item = _h5_get(group, key)
            name = f"{prefix}/{key}"
            if item is None:
                if isinstance(link, h5py.ExternalLink):
                    broken.append((name, _link_file(path, link)))
                continue
            if isinstance(item, h5py.Dataset):
                role = _role(group, key, name)
                if item.id in found:
                    entry = found[item.id]
                    entry.names.append(name)
                    entry.role = max(entry.role, role)
                else:
                    found[item.id] = _Found(item, [name], role)
            elif (
                isinstance(item, h5py.Group)
                and not isinstance(link, h5py.SoftLink)
                and depth < _MAX_H5_DEPTH
                and item.id not in groups
            ):
                groups.add(item.id)
                visit(item, name, depth + 1)

    visit(fh, "", 0)
    return _Walk(list(found.values()), broken)


def _stack_candidates(walk: _Walk, *, shape: tuple[int, int] | None) -> list[_Found]:
    """Datasets that may be frames: numeric stacks (n, rows, cols) of `shape`.

    A 2-D dataset is a candidate only when `shape` is known and it is no mask, flatfield,
    dark or other detector-specific array.
    """
    out = []
    for entry in walk.datasets:
        item = entry.item
        if item.dtype.kind not in "iuf" or item.ndim not in (2, 3):
            continue
        frame_shape = tuple(item.shape[-2:])
        if min(frame_shape) < 2 or (shape is not None and frame_shape != tuple(shape)):
            continue
        if item.ndim == 2 and (
            shape is None or (entry.role < 3 and any(_NOT_FRAMES.search(n) for n in entry.names))
        ):
            continue
        out.append(entry)
    return out


def _series_key(name: str) -> str:
    """The name with the scan number and data-file number left out (`/*.1/.../data_*`)."""
    name = re.sub(r"^/\d+\.(\d+)/", r"/*.\1/", name)
    return re.sub(r"(?<=/)data_\d+$", "data_*", name)


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key reading digit runs as numbers: ``scan_2`` before ``scan_10``.

    Parameters
    ----------
    name : str
        A file name or HDF5 dataset path.

    Returns
    -------
    tuple
        Compares digit runs by value and other text by character.

    Examples
    --------
    >>> sorted(["/10.1/d", "/2.1/d", "/1.1/d"], key=natural_key)
    ['/1.1/d', '/2.1/d', '/10.1/d']
    >>> sorted(["scan_10.cbf", "scan_2.cbf"], key=natural_key)
    ['scan_2.cbf', 'scan_10.cbf']
    """
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part
    )


def _describe_datasets(entries: list[_Found]) -> str:
    if not entries:
        return "none"
    shown = [f"{e.names[0]} {e.item.shape}" for e in entries[:_LISTED_DATASETS]]
    more = len(entries) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _describe_all(walk: _Walk) -> str:
    if not walk.datasets:
        return "no datasets at all"
    shown = [f"{e.names[0]} {e.item.shape}" for e in walk.datasets[:_LISTED_DATASETS]]
    more = len(walk.datasets) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _find_stacks(
    fh: h5py.File,
    path: Path,
    *,
    shape: tuple[int, int] | None,
    h5_dataset: str | tuple[str, ...] | None,
    partial: bool = False,
    check_sources: bool = True,
) -> tuple[list[_H5Stack], list[tuple[str, str]]]:
    """The frame stacks of a file in acquisition order (one, or one per scan / data file).

    With `h5_dataset` a path, the dataset there; a list of paths, those; a pattern (with
    ``*?[``), every dataset whose path matches it. With None, the detector's data:
    NeXus ``NXdetector/data`` or an ``NXdata`` signal first, then BLISS, LIMA and Dectris
    names, the same dataset in every scan (``/1.1``, ``/2.1``, ...) and every Dectris data
    file (``data_000001``, ...). Several stacks of equal standing are an error that lists
    them, as is a dangling link or a virtual dataset whose source file is missing.

    With `partial` (:func:`list_frames` ``keep_missing``), dangling links of a series are
    returned as (name, missing file) instead, a virtual dataset's sources are left to
    its frames, and empty stacks of a series are dropped; `check_sources` False leaves
    the sources to the frames too.
    """
    check = check_sources and not partial
    if isinstance(h5_dataset, str) and not _is_pattern(h5_dataset):
        return [_H5Stack.open(fh, path, h5_dataset, shape=shape, check_sources=check)], []
    if isinstance(h5_dataset, tuple):
        stacks = [
            _H5Stack.open(fh, path, name, shape=shape, check_sources=check, allow_empty=partial)
            for name in h5_dataset
        ]
        return _acquisition_order(_non_empty(stacks), by_name=False), []
    walk = _walk(fh)
    if isinstance(h5_dataset, str):
        pattern = h5_dataset if h5_dataset.startswith("/") else "/" + h5_dataset
        chosen = [e for e in walk.datasets if any(fnmatch.fnmatchcase(n, pattern) for n in e.names)]
        broken = [b for b in walk.broken if fnmatch.fnmatchcase(b[0], pattern)]
        if broken and not (partial and chosen):
            raise FrameReadError(_missing_message(path, broken))
        if not chosen:
            listed = _describe_datasets(_stack_candidates(walk, shape=shape))
            msg = (
                f"{path}: no dataset matches h5_dataset {h5_dataset!r} "
                f"(frame stacks in the file: {listed})"
            )
            raise FrameReadError(msg)
    else:
        chosen, broken = _choose_series(walk, path, shape=shape, partial=partial)
    stacks = [
        _H5Stack.open(
            fh,
            path,
            _display_name(e),
            shape=shape,
            aliases=tuple(e.names),
            check_sources=check,
            allow_empty=partial,
        )
        for e in chosen
    ]
    return _acquisition_order(_non_empty(stacks), by_name=True), broken


def _non_empty(stacks: list[_H5Stack]) -> list[_H5Stack]:
    """The stacks that hold frames; an error naming them where none does."""
    kept = [s for s in stacks if s.n_frames > 0]
    if not kept:
        shown = ", ".join(f"{s.name} {s.dataset.shape}" for s in stacks[:3])
        msg = f"{stacks[0].path}: no frame in {shown}: the datasets hold no frames"
        raise FrameReadError(msg)
    return kept


def _display_name(entry: _Found) -> str:
    """The name to record: the first met (the hard path where a link leads to it)."""
    return entry.names[0]


def _choose_series(
    walk: _Walk, path: Path, *, shape: tuple[int, int] | None, partial: bool = False
) -> tuple[list[_Found], list[tuple[str, str]]]:
    """The datasets of the detector's series, and its dangling links where `partial`."""
    candidates = _stack_candidates(walk, shape=shape)
    wanted = "(n, rows, cols)" if shape is None else f"(n, {shape[0]}, {shape[1]})"
    if not candidates:
        if walk.broken:
            raise FrameReadError(_missing_message(path, walk.broken))
        msg = (
            f"{path}: no frame dataset of shape {wanted} (found: {_describe_all(walk)}); "
            "give the dataset path (h5_dataset) or check the detector"
        )
        raise FrameReadError(msg)
    best = max(e.role for e in candidates)
    series: dict[str, list[_Found]] = {}
    for entry in candidates:
        if entry.role == best:
            series.setdefault(_series_key(_display_name(entry)), []).append(entry)
    if len(series) > 1 and shape is None:
        # no detector given: the biggest frames are the detector's (a camera's are small)
        pixels = {k: max(int(np.prod(e.item.shape[-2:])) for e in v) for k, v in series.items()}
        top = max(pixels.values())
        series = {k: v for k, v in series.items() if pixels[k] == top}
    if len(series) > 1:
        listed = "; ".join(
            ", ".join(f"{e.names[0]} {e.item.shape}" for e in v[:3]) for v in series.values()
        )
        msg = (
            f"{path}: {len(series)} datasets could be the frames {wanted} and none is marked "
            f"as the detector's data (NeXus NXdetector/data or NXdata signal): {listed}; "
            'choose with h5_dataset = "<path>" (or a list, or a pattern like "/*.1/<path>")'
        )
        raise FrameReadError(msg)
    ((key, chosen),) = series.items()
    broken = [b for b in walk.broken if _series_key(b[0]) == key]
    if broken and not partial:
        raise FrameReadError(_missing_message(path, broken))
    return chosen, broken


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def _acquisition_order(stacks: list[_H5Stack], *, by_name: bool) -> list[_H5Stack]:
    """Stacks ordered by their first time stamp where all have one, else by scan number.

    Never by the names' string order: scan ``/10.1`` comes after ``/2.1``.
    """
    if len(stacks) < 2:
        return stacks
    if by_name:
        stacks = sorted(stacks, key=lambda s: natural_key(s.name))
    starts = [s.metadata(0).epoch_s for s in stacks]
    if all(t is not None for t in starts):
        order = sorted(range(len(stacks)), key=lambda i: (starts[i], i))
        stacks = [stacks[i] for i in order]
    return stacks
