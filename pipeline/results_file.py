"""The one owner of ``results.h5``: layout, names, units, writer, appender, reader, journal.

It also keeps the crash-safe journal of a watched run.

Layout (NeXus, so that silx view and h5web plot it with no settings; every dataset grows
along its first axis, so that a watched run appends to the same layout a batch writes)::

    /@default="entry"   /entry@default="first_rod" (or "peak200")
    /entry/first_rod     NXdata  q1 (+q1_errors) against time, in nm^-1; spacing (nm),
                                 spacing_hex, spacing_square, gamma (deg), reduced_chi2,
                                 rod_positions [n, 4] (nm^-1), symmetry, fit_ok, file, frame
    /entry/peak200       NXdata  fwhm (+fwhm_errors) against time, in nm^-1; fwhm_corr, center
                                 (+center_errors), instrument_fwhm, domain (+domain_errors, nm),
                                 reduced_chi2, fit_ok, file, frame
    /entry/gisaxs_cuts   NXdata  intensity (+intensity_errors) [n_frames, n_q] (counts per
                                 pixel) on time x q_par; @q_perp_band
    /entry/giwaxs_cuts   NXdata  the same for GIWAXS
    /entry/summary       NXcollection  one dataset per summary.csv column (rows in the
                                 order they were written: time order in a batch, arrival
                                 order in watch mode; :func:`read_results` sorts them)
    /entry/journal       NXcollection  what was appended: detector, file, frame,
                                 file_identity, reason ("" for a good frame), dataset
                                 (HDF5 dataset of the frame, "" for a one-image file)
    /entry/reduction     NXprocess  program, version, date, config (NXnote, TOML), inputs
                                    (NXnote: file names + sha256), package versions, settings
                                    (with each detector's settings fingerprint)

Strings are stored with a fixed length (:data:`STRING_BYTES`, UTF-8) because SWMR readers
cannot follow variable-length strings; a longer flag is cut there (``summary.csv`` and the
journal keep it whole).

In watch mode the file is opened for SWMR writing after its datasets are created; each
frame is appended and flushed, and another process can read it meanwhile with
``h5py.File(path, "r", swmr=True)`` (refreshing the datasets). The truth of a watched run
is its journal (:class:`Journal`, one length-prefixed record per frame, appended before
the HDF5 file): a watcher killed at any moment rebuilds ``results.h5`` from it on restart.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np
from numpy.typing import NDArray

from detectors.errors import FrameReadError
from pipeline.checks import is_input_problem
from pipeline.config import Config, Kind
from pipeline.lattice import order_label
from pipeline.reduce import FrameResult, ReductionPlan
from pipeline.reducer import Reduced
from pipeline.timeseries import COLUMNS, SeriesRow, chronological, row_from_result

#: File name of the results inside an output folder.
RESULTS_NAME = "results.h5"

#: Bytes of each fixed-length string field (UTF-8; longer values are cut).
STRING_BYTES = {
    "detector": 16,
    "symmetry": 32,
    "scherrer_method": 32,
    "rod_orders": 128,
    "file": 512,
    "dataset": 256,
    "flags": 1024,
    "identity": 96,
}

#: Rows per HDF5 chunk along the frame axis.
_CHUNK_ROWS = 64

_STRING_COLUMNS = ("detector", "file", "dataset", "symmetry", "scherrer_method", "flags")

# name, units, value of a rod fit (None: no rod)
_ROD_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("q1", "1/nm", "q1_per_nm"),
    ("q1_errors", "1/nm", "q1_err_per_nm"),
    ("spacing", "nm", "spacing_nm"),
    ("spacing_hex", "nm", "spacing_hex_nm"),
    ("spacing_square", "nm", "spacing_square_nm"),
    ("gamma", "deg", "gamma_deg"),
    ("reduced_chi2", "", "redchi"),
)
_PEAK_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("fwhm_peak_fit", "1/nm", "fwhm_per_nm"),
    ("fwhm_peak_fit_errors", "1/nm", "fwhm_err_per_nm"),
    ("center", "1/nm", "center_per_nm"),
    ("center_errors", "1/nm", "center_err_per_nm"),
    ("reduced_chi2", "", "redchi"),
)
# the {200} widths of the Scherrer method's line model (the fitted cube line by default)
_RESULT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("fwhm", "1/nm", "fwhm_per_nm"),
    ("fwhm_errors", "1/nm", "fwhm_err_per_nm"),
    ("fwhm_corr", "1/nm", "fwhm_corr_per_nm"),
    ("breadth", "1/nm", "breadth_per_nm"),
    ("breadth_errors", "1/nm", "breadth_err_per_nm"),
    ("breadth_corr", "1/nm", "breadth_corr_per_nm"),
    ("breadth_corr_errors", "1/nm", "breadth_corr_err_per_nm"),
    ("instrument_fwhm", "1/nm", "instrument_fwhm_per_nm"),
    ("domain", "nm", "domain_nm"),
    ("domain_errors", "nm", "domain_err_nm"),
)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One frame a watched run wrote, with what identifies its file.

    Attributes
    ----------
    reduced : Reduced
        The frame's result and its place on the time axis.
    file : str
        The file as shown in the output (relative to the run's folder where inside it).
    identity : str
        What identifies the file's content: its SHA-256 for single-frame files, its device
        and inode for HDF5 stacks that grow.
    checksum : str
        SHA-256 of the file for the inputs list ("" when not taken).
    """

    reduced: Reduced
    file: str
    identity: str
    checksum: str = ""

    @property
    def key(self) -> tuple[str, str, int, str]:
        """(file, dataset, frame index, file identity): a frame is in the output once per key.

        The dataset counts: frame 0 of scan /2.1 is another frame than frame 0 of /1.1.
        """
        result = self.reduced.result
        return (result.path, result.dataset, result.frame_index, self.identity)

    @property
    def reason(self) -> str:
        """Why the frame is bad: its input-problem flags ("" for a usable frame)."""
        return "; ".join(f for f in self.reduced.result.flags if is_input_problem((f,)))

    def row(self) -> SeriesRow:
        """The frame's summary row."""
        row = row_from_result(
            self.reduced.result, self.reduced.time_s, from_order=self.reduced.from_order
        )
        return _with_file(row, self.file)


def _with_file(row: SeriesRow, file: str) -> SeriesRow:
    from dataclasses import replace

    return replace(row, file=file)


class Journal:
    """Append-only, crash-safe record of a watched run's frames (length-prefixed pickles).

    A record cut short by a kill is dropped when the journal is opened again (and the file
    truncated to its last whole record), so every frame in it is there exactly once.

    Parameters
    ----------
    path : Path
        The journal file (created when absent).
    fingerprints : mapping of kind to str
        The run's settings fingerprints; a journal written with other settings is an error.

    Raises
    ------
    FrameReadError
        If the journal was written with other settings (the fix: another ``--out``).
    """

    _HEADER = struct.Struct("<Q")

    def __init__(self, path: Path, fingerprints: Mapping[Kind, str]) -> None:
        self.path = Path(path)
        self.entries: list[JournalEntry] = []
        good = 0
        if self.path.exists():
            data = self.path.read_bytes()
            offset = 0
            stored: dict[str, str] | None = None
            while offset + self._HEADER.size <= len(data):
                (size,) = self._HEADER.unpack_from(data, offset)
                end = offset + self._HEADER.size + size
                if end > len(data):
                    break
                try:
                    record = pickle.loads(data[offset + self._HEADER.size : end])
                except (pickle.UnpicklingError, EOFError, AttributeError, ValueError):
                    break
                if stored is None:
                    stored = record
                else:
                    self.entries.append(record)
                offset = good = end
            if stored is not None and dict(stored) != dict(fingerprints) and not self.entries:
                good = 0  # no frame written yet: the folder takes the new settings
            elif stored is not None and dict(stored) != dict(fingerprints):
                msg = (
                    f"{self.path}: this output folder holds a run reduced with other settings "
                    f"(fingerprints differ); give another --out, or remove the folder"
                )
                raise FrameReadError(msg)
        self._fh = open(self.path, "ab")
        self._fh.truncate(good)
        self._fh.seek(good)
        if good == 0:
            self._write(dict(fingerprints))

    def append(self, entry: JournalEntry) -> None:
        """Append one frame's record and push it to the operating system."""
        self._write(entry)
        self.entries.append(entry)

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def _write(self, obj: object) -> None:
        blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self._fh.write(self._HEADER.pack(len(blob)) + blob)
        self._fh.flush()


class ResultsWriter:
    """Create ``results.h5`` with empty, growing datasets and append frames to it.

    Parameters
    ----------
    path : Path or binary file object
        The file (overwritten), or a file object (an in-memory image, say).
    plans : mapping of kind to ReductionPlan
        Each detector's plan (q grid, band, geometry, resolution).
    config : Config
        The run's settings, written in full.
    fingerprints : mapping of kind to str
        Each detector's settings fingerprint.
    now : datetime or None
        Time stamp of the reduction (tests pin it).
    swmr : bool
        Open for SWMR writing once the layout exists, so that other processes can read the
        file while frames are appended.
    """

    def __init__(
        self,
        path: Path | IO[bytes],
        plans: Mapping[Kind, ReductionPlan],
        config: Config,
        *,
        fingerprints: Mapping[Kind, str] | None = None,
        now: datetime | None = None,
        swmr: bool = False,
    ) -> None:
        now = now or datetime.now(UTC)
        self.path = Path(path) if isinstance(path, str | Path) else None
        self._fh = h5py.File(path, "w", libver="latest")
        _create_layout(self._fh, plans, config, fingerprints or {}, now)
        self._fh.flush()
        if swmr:
            self._fh.swmr_mode = True
        self._datasets: dict[str, h5py.Dataset] = {}

    def append(
        self, entries: Iterable[JournalEntry], *, flush: bool = True, summary: bool = True
    ) -> None:
        """Append frames (fits, cuts, journal, inputs and, if `summary`, their summary rows).

        Parameters
        ----------
        entries : iterable of JournalEntry
            The frames, in acquisition order.
        flush : bool
            Flush when done (what makes them visible to SWMR readers).
        summary : bool
            Append their summary rows too (False: the caller appends them in another order
            with :meth:`append_summary`).
        """
        columns = _Columns()
        for entry in entries:
            result = entry.reduced.result
            row = entry.row()
            kind = result.kind
            if kind == "gisaxs":
                _rod_columns(columns, entry, row)
            else:
                _peak_columns(columns, entry, row)
            cuts = f"entry/{kind}_cuts"
            columns.add(f"{cuts}/intensity", result.intensity)
            columns.add(f"{cuts}/intensity_errors", result.sigma)
            columns.add(f"{cuts}/time", row.time_s)
            columns.add("entry/journal/detector", _fixed(kind, "detector"))
            columns.add("entry/journal/file", _fixed(result.path, "file"))
            columns.add("entry/journal/frame", result.frame_index)
            columns.add("entry/journal/file_identity", _fixed(entry.identity, "identity"))
            columns.add("entry/journal/reason", _fixed(entry.reason, "flags"))
            columns.add("entry/journal/dataset", _fixed(result.dataset, "dataset"))
            if entry.checksum:
                columns.add("entry/reduction/inputs/file_name", _fixed(result.path, "file"))
                columns.add("entry/reduction/inputs/checksum", _fixed(entry.checksum, "identity"))
            if summary:
                _summary_columns(columns, [row])
        self._write(columns)
        if flush:
            self._fh.flush()

    def append_summary(self, rows: Iterable[SeriesRow]) -> None:
        """Append rows to ``/entry/summary`` (not flushed)."""
        columns = _Columns()
        _summary_columns(columns, rows)
        self._write(columns)

    def _write(self, columns: _Columns) -> None:
        """Grow each dataset once by all its new rows (one resize and one write each)."""
        for name, values in columns.values.items():
            dataset = self._datasets.get(name)
            if dataset is None:
                dataset = self._datasets[name] = self._fh[name]
            n = dataset.shape[0]
            dataset.resize(n + len(values), axis=0)
            dataset[n:] = np.asarray(values, dtype=dataset.dtype)

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_results(
    target: Path | IO[bytes],
    entries: Sequence[JournalEntry],
    plans: Mapping[Kind, ReductionPlan],
    config: Config,
    *,
    fingerprints: Mapping[Kind, str] | None = None,
    now: datetime | None = None,
) -> None:
    """Write a whole run's ``results.h5`` into a file or a binary file object.

    The batch writes into memory and then onto disk through a temporary name and an
    atomic rename (:func:`pipeline.io.write_nexus`): HDF5 that meets a full disk while it
    writes can crash the process instead of raising.

    Parameters
    ----------
    target : Path or binary file object
        Output file (replaced), or a file object such as ``io.BytesIO``.
    entries : sequence of JournalEntry
        The frames, each detector's in acquisition order; the summary is written in time
        order.
    plans, config, fingerprints, now
        As :class:`ResultsWriter`.
    """
    with ResultsWriter(target, plans, config, fingerprints=fingerprints, now=now) as writer:
        writer.append(entries, flush=False, summary=False)
        writer.append_summary(chronological([entry.row() for entry in entries]))


def entries_from_batch(
    rows: Sequence[SeriesRow],
    results: Mapping[Kind, Sequence[FrameResult]],
    checksums: Mapping[str, str],
) -> list[JournalEntry]:
    """A batch's results as journal entries (detector by detector, acquisition order).

    Parameters
    ----------
    rows : sequence of SeriesRow
        The batch's rows (:func:`pipeline.timeseries.build_rows`: detector by detector, in
        acquisition order).
    results : mapping of kind to sequence of FrameResult
        Each detector's results in acquisition order.
    checksums : mapping of str to str
        SHA-256 of each input file (by path).
    """
    entries: list[JournalEntry] = []
    by_kind = {kind: iter(list(rs)) for kind, rs in results.items()}
    index = dict.fromkeys(results, 0)
    for row in rows:
        result = next(by_kind[row.detector])
        from_order = "time_from_order" in row.flags.split("; ")
        reduced = Reduced(result, index[row.detector], row.time_s, from_order)
        index[row.detector] += 1
        checksum = checksums.get(result.path, "") if result.frame_index == 0 else ""
        entries.append(JournalEntry(reduced, row.file, checksum, checksum))
    return entries


@dataclass(frozen=True, slots=True)
class ResultsData:
    """What :func:`read_results` returns.

    Attributes
    ----------
    rows : list of SeriesRow
        Every frame's summary row, in time order (then detector, then file and frame).
    cuts : dict of kind to (q_par, time, intensity, intensity_errors)
        Each detector's cuts: q_par [n_q] in nm^-1, time [n] in s, intensity and its
        errors [n, n_q], in acquisition (append) order.
    journal : list of (detector, file, frame, file_identity, reason, dataset)
        What was appended, in append order (dataset: the HDF5 dataset, "" for a one-image
        file; frame counts within it).
    """

    rows: list[SeriesRow]
    cuts: dict[str, tuple[NDArray[np.float64], ...]]
    journal: list[tuple[str, str, int, str, str, str]]


def read_results(path: Path, *, swmr: bool = True) -> ResultsData:
    """Read ``results.h5`` (written by a batch, or by a watcher that is still appending).

    Parameters
    ----------
    path : Path
        The file.
    swmr : bool
        Open for SWMR reading (safe while a watcher appends).

    Returns
    -------
    ResultsData
        Rows, cuts and journal.

    Raises
    ------
    FrameReadError
        If the file cannot be opened or lacks the layout of this module.
    """
    try:
        fh = h5py.File(path, "r", swmr=swmr, locking=False)
    except OSError as err:
        msg = f"{path}: cannot open the results file ({err}); is it a results.h5 of gixs?"
        raise FrameReadError(msg) from None
    with fh:
        try:
            entry = fh["entry"]
            summary = entry["summary"]
            columns = {name: summary[name][()] for name in COLUMNS if name != "dataset"}
            n = min(len(v) for v in columns.values())
            # files written before the dataset column: frames of single-dataset files
            columns["dataset"] = summary["dataset"][()] if "dataset" in summary else [b""] * n
            rows = [_row_from_columns(columns, i) for i in range(n)]
            cuts: dict[str, tuple[NDArray[np.float64], ...]] = {}
            for kind in ("gisaxs", "giwaxs"):
                if f"{kind}_cuts" in entry:
                    group = entry[f"{kind}_cuts"]
                    m = min(group["time"].shape[0], group["intensity"].shape[0])
                    cuts[kind] = (
                        group["q_par"][()],
                        group["time"][:m],
                        group["intensity"][:m],
                        group["intensity_errors"][:m],
                    )
            j = entry["journal"]
            m = min(j[name].shape[0] for name in j)
            journal = [
                (
                    _text(j["detector"][i]),
                    _text(j["file"][i]),
                    int(j["frame"][i]),
                    _text(j["file_identity"][i]),
                    _text(j["reason"][i]),
                    _text(j["dataset"][i]) if "dataset" in j else "",
                )
                for i in range(m)
            ]
        except KeyError as err:
            msg = f"{path}: not a results file of this version (missing {err})"
            raise FrameReadError(msg) from None
    rows = sorted(
        rows,
        key=lambda r: (
            math.inf if math.isnan(r.time_s) else r.time_s,
            r.detector,
            r.file,
            r.dataset,
            r.frame,
        ),
    )
    return ResultsData(rows=rows, cuts=cuts, journal=journal)


def _row_from_columns(columns: Mapping[str, NDArray[Any]], i: int) -> SeriesRow:
    # SeriesRow's fields are the summary columns, in order (SeriesRow.as_record)
    values: dict[str, Any] = {}
    for field, column in zip(fields(SeriesRow), COLUMNS, strict=True):
        raw = columns[column][i]
        if column in _STRING_COLUMNS:
            values[field.name] = _text(raw)
        elif column == "frame":
            values[field.name] = int(raw)
        elif column == "position":
            values[field.name] = None if math.isnan(float(raw)) else int(raw)
        else:
            values[field.name] = float(raw)
    return SeriesRow(**values)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _fixed(text: str, field: str) -> bytes:
    raw = text.encode("utf-8")[: STRING_BYTES[field]]
    return raw.decode("utf-8", "ignore").encode("utf-8")


# --- layout -----------------------------------------------------------------------


def _create_layout(
    fh: h5py.File,
    plans: Mapping[Kind, ReductionPlan],
    config: Config,
    fingerprints: Mapping[Kind, str],
    now: datetime,
) -> None:
    fh.attrs.update({"default": "entry", "creator": "insitu-gixs", "file_time": now.isoformat()})
    entry = _group(fh, "entry", "NXentry")
    entry["program_name"] = "insitu-gixs"
    entry["start_time"] = now.isoformat()
    entry.attrs["default"] = "first_rod" if "gisaxs" in plans else "peak200"
    if "gisaxs" in plans:
        group = _nxdata(entry, "first_rod", signal="q1", axes=["time"])
        group.attrs["auxiliary_signals"] = ["spacing"]
        _grow(group, "time", units="s")
        for name, units, _ in _ROD_FIELDS:
            _grow(group, name, units=units)
        _grow(group, "rod_positions", width=4, units="1/nm")
        _grow(group, "symmetry", text="symmetry")
        _grow(group, "rod_orders", text="rod_orders")
        _grow(group, "fit_ok", dtype=np.bool_)
        _grow(group, "file", text="file")
        _grow(group, "frame", dtype=np.int64)
    if "giwaxs" in plans:
        group = _nxdata(entry, "peak200", signal="fwhm", axes=["time"])
        group.attrs["auxiliary_signals"] = ["fwhm_corr"]
        _grow(group, "time", units="s")
        for name, units, _ in (*_PEAK_FIELDS, *_RESULT_FIELDS):
            _grow(group, name, units=units)
        group["domain"].attrs["scherrer_method"] = config.scherrer.method
        group["domain"].attrs["scherrer_k"] = config.scherrer.k
        _grow(group, "fit_ok", dtype=np.bool_)
        _grow(group, "file", text="file")
        _grow(group, "frame", dtype=np.int64)
    for kind, plan in plans.items():
        group = _nxdata(entry, f"{kind}_cuts", signal="intensity", axes=["time", "q_par"])
        group.attrs["time_indices"] = 0
        group.attrs["q_par_indices"] = 1
        n_q = plan.q_par_per_nm.size
        _grow(group, "intensity", width=n_q, units="counts")
        _grow(group, "intensity_errors", width=n_q, units="counts")
        _grow(group, "time", units="s")
        group.create_dataset("q_par", data=plan.q_par_per_nm).attrs["units"] = "1/nm"
        lo, hi = plan.cut.q_perp_band_per_nm
        group.attrs["q_perp_band"] = [lo, hi]
        group.attrs["q_perp_band_units"] = "1/nm"
    summary = _group(entry, "summary", "NXcollection")
    for name in COLUMNS:
        if name in _STRING_COLUMNS:
            _grow(summary, name, text=name)
        else:
            _grow(summary, name)
    journal = _group(entry, "journal", "NXcollection")
    _grow(journal, "detector", text="detector")
    _grow(journal, "file", text="file")
    _grow(journal, "frame", dtype=np.int64)
    _grow(journal, "file_identity", text="identity")
    _grow(journal, "reason", text="flags")
    _grow(journal, "dataset", text="dataset")
    _write_process(entry, config, plans, fingerprints, now)


def _write_process(
    entry: h5py.Group,
    config: Config,
    plans: Mapping[Kind, ReductionPlan],
    fingerprints: Mapping[Kind, str],
    now: datetime,
) -> None:
    from pipeline.io import _jsonable, package_version, package_versions

    process = _group(entry, "reduction", "NXprocess")
    process["program"] = "insitu-gixs"
    process["version"] = package_version()
    process["date"] = now.isoformat()
    process["sequence_index"] = 1
    note = _group(process, "config", "NXnote")
    note["type"] = "application/toml"
    note["file_name"] = str(config.source or "")
    note["data"] = config.text
    inputs = _group(process, "inputs", "NXnote")
    _grow(inputs, "file_name", text="file")
    _grow(inputs, "checksum", text="identity")
    inputs["algorithm"] = "sha256"
    versions = _group(process, "versions", "NXnote")
    versions["type"] = "application/json"
    versions["data"] = json.dumps(package_versions())
    settings = _group(process, "settings", "NXparameters")
    settings["k_factor"] = config.scherrer.k
    settings["scherrer_method"] = config.scherrer.method
    settings["scherrer_size_spread"] = config.scherrer.size_spread
    for kind, plan in plans.items():
        sub = _group(settings, kind, "NXparameters")
        geo = plan.geometry
        sub["detector"] = geo.detector.detector
        sub["poni"] = json.dumps(geo.detector.pyfai_config())
        sub["incidence_angle"] = geo.incidence_angle_deg
        sub["incidence_angle"].attrs["units"] = "deg"
        sub["sample_orientation"] = geo.sample_orientation
        sub["q_perp_band"] = list(plan.cut.q_perp_band_per_nm)
        sub["q_perp_band"].attrs["units"] = "1/nm"
        sub["q_par_range"] = list(plan.cut.q_par_range_per_nm)
        sub["q_par_range"].attrs["units"] = "1/nm"
        sub["peak_shape"] = plan.peak_settings.peak_shape
        sub["wavelength"] = geo.detector.wavelength_m * 1e9
        sub["wavelength"].attrs["units"] = "nm"
        fit = plan.rod_settings if kind == "gisaxs" else plan.peak_settings
        sub["rod_fit" if kind == "gisaxs" else "peak_fit"] = json.dumps(_jsonable(fit))
        own = config.settings(kind)
        if own is not None and own.mask is not None:
            sub["mask"] = str(own.mask)
            sub["mask_invert"] = own.mask_invert
        if kind in fingerprints:
            sub["fingerprint"] = fingerprints[kind]
        if plan.resolution is not None:
            sub["instrument_resolution"] = json.dumps(_jsonable(plan.resolution))


class _Columns:
    """New rows of each dataset (by its path in the file), gathered before one write each."""

    def __init__(self) -> None:
        self.values: dict[str, list[object]] = {}

    def add(self, name: str, value: object) -> None:
        self.values.setdefault(name, []).append(value)


def _summary_columns(columns: _Columns, rows: Iterable[SeriesRow]) -> None:
    for row in rows:
        for name, value in row.as_record().items():
            path = f"entry/summary/{name}"
            if name in _STRING_COLUMNS:
                columns.add(path, _fixed(str(value), name))
            else:
                columns.add(path, math.nan if value is None else float(value))  # type: ignore[arg-type]


def _rod_columns(columns: _Columns, entry: JournalEntry, row: SeriesRow) -> None:
    rod = entry.reduced.result.rod
    group = "entry/first_rod"
    columns.add(f"{group}/time", row.time_s)
    for name, _, attr in _ROD_FIELDS:
        columns.add(f"{group}/{name}", getattr(rod, attr) if rod is not None else math.nan)
    positions = np.full(4, np.nan)
    if rod is not None:
        found = np.asarray(rod.rod_positions_per_nm, dtype=float)[:4]
        positions[: found.size] = found
    columns.add(f"{group}/rod_positions", positions)
    symmetry = rod.symmetry if rod is not None else ""
    columns.add(f"{group}/symmetry", _fixed(symmetry, "symmetry"))
    orders = " ".join(order_label(r) for r in rod.orders_found) if rod is not None else ""
    columns.add(f"{group}/rod_orders", _fixed(orders, "rod_orders"))
    columns.add(f"{group}/fit_ok", bool(rod is not None and rod.ok))
    columns.add(f"{group}/file", _fixed(entry.file, "file"))
    columns.add(f"{group}/frame", entry.reduced.result.frame_index)


def _peak_columns(columns: _Columns, entry: JournalEntry, row: SeriesRow) -> None:
    result = entry.reduced.result
    peak = result.peak
    group = "entry/peak200"
    columns.add(f"{group}/time", row.time_s)
    for name, _, attr in _PEAK_FIELDS:
        columns.add(f"{group}/{name}", getattr(peak, attr) if peak is not None else math.nan)
    for name, _, attr in _RESULT_FIELDS:
        columns.add(f"{group}/{name}", float(getattr(result, attr)))
    columns.add(f"{group}/fit_ok", bool(peak is not None and peak.ok))
    columns.add(f"{group}/file", _fixed(entry.file, "file"))
    columns.add(f"{group}/frame", result.frame_index)


def _grow(
    group: h5py.Group,
    name: str,
    *,
    width: int | None = None,
    units: str = "",
    dtype: Any = np.float64,
    text: str | None = None,
) -> None:
    if text is not None:
        dtype = h5py.string_dtype("utf-8", STRING_BYTES[text])
    shape: tuple[int, ...] = (0,) if width is None else (0, width)
    maxshape: tuple[int | None, ...] = (None,) if width is None else (None, width)
    chunks = (_CHUNK_ROWS,) if width is None else (max(1, min(_CHUNK_ROWS, 65536 // width)), width)
    dataset = group.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks)
    if units:
        dataset.attrs["units"] = units


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _nxdata(parent: h5py.Group, name: str, *, signal: str, axes: list[str]) -> h5py.Group:
    group = _group(parent, name, "NXdata")
    group.attrs["signal"] = signal
    group.attrs["axes"] = axes
    return group
