"""Files of the simulator: run HDF5 files, the measured rods of `gixs reduce`, figures.

Run file layout (NeXus, so ``silx view`` plots it with no settings)::

    /@default="entry"
    /entry                  NXentry  @default="structure_factor"  @complete=True (written last)
        program_name, version, seed
        settings            NXparameters  one scalar per setting (patch_ratio, eps_kT, ...)
        trajectory          NXdata  per-sweep engine records, @signal="energy_per_particle_kT"
                            @axes="sweep"
        snapshots           NXdata  sweep (F,), positions (F, N, 2) @units="L",
                            angles (F, N) @units="rad", box (F, 2) @units="L", and the
                            observables of each snapshot (psi4_local, ..., phase),
                            @signal="psi4_local" @auxiliary_signals=["psi6_local"]
        structure_factor    NXdata  q (n_q,) @units="1/L", S (n_q,), @signal="S"
        final               NXcollection  observables, phase, label_codes (N,),
                            rods (3,) @units="1/L", rods_errors, rods_ok, rods_message

A file is written to ``<name>.tmp`` and renamed when complete, so an interrupted sweep
leaves no file that looks finished (`is_complete_run`).
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from numpy.typing import NDArray

from detectors.errors import FrameReadError, SimulationError
from simulation.compare import MeasuredCuts, MeasuredRods
from simulation.observables import (
    PHASES,
    Classification,
    Phase,
    Rods,
    SimulatedRun,
    StateObservables,
    StructureFactor,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_SCALARS = (
    "packing_fraction",
    "energy_per_particle_kT",
    "bonds_per_particle",
    "psi4_local",
    "psi6_local",
    "psi4_global",
    "psi6_global",
)
_FRACTIONS = (
    "fraction_square",
    "fraction_hexagonal",
    "fraction_pseudo_hexagonal",
    "fraction_disordered",
)
_STR = h5py.string_dtype()


def package_version() -> str:
    """Installed version of insitu-gixs, or ``"unknown"`` when run from a source tree."""
    try:
        return version("insitu-gixs")
    except PackageNotFoundError:
        return "unknown"


def _nxgroup(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _field(group: h5py.Group, name: str, data: Any, units: str | None = None) -> None:
    dataset = group.create_dataset(name, data=data)
    if units is not None:
        dataset.attrs["units"] = units


def write_run(path: str | os.PathLike[str], run: SimulatedRun) -> Path:
    """Write a state-point run to an HDF5 file, atomically.

    Parameters
    ----------
    path : path-like
        Output file; its folder is created if missing.
    run : SimulatedRun
        The run.

    Returns
    -------
    Path
        The file written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with h5py.File(tmp, "w") as fh:
        fh.attrs["default"] = "entry"
        entry = _nxgroup(fh, "entry", "NXentry")
        entry.attrs["default"] = "structure_factor"
        entry["program_name"] = "insitu-gixs simulate"
        entry["version"] = run.version
        entry["seed"] = np.int64(run.seed)
        settings = _nxgroup(entry, "settings", "NXparameters")
        for key, value in run.settings.items():
            settings[key] = value
        _write_trajectory(entry, run)
        _write_snapshots(entry, run)
        sq = _nxgroup(entry, "structure_factor", "NXdata")
        sq.attrs.update({"signal": "S", "axes": ["q"]})
        _field(sq, "q", run.structure_factor.q_per_L, "1/L")
        _field(sq, "S", run.structure_factor.s)
        sq.attrs["q_min_valid"] = run.structure_factor.q_min_valid_per_L
        sq.attrs["n_configurations"] = run.structure_factor.n_configurations
        _write_final(entry, run)
        entry.attrs["complete"] = True
    os.replace(tmp, out)
    return out


def _write_trajectory(entry: h5py.Group, run: SimulatedRun) -> None:
    trajectory = _nxgroup(entry, "trajectory", "NXdata")
    signal = "energy_per_particle_kT" if "energy_per_particle_kT" in run.records else None
    columns = [key for key in run.records if key != "sweep"]
    trajectory.attrs.update({"signal": signal or (columns[0] if columns else "sweep")})
    trajectory.attrs["axes"] = ["sweep"]
    for key, values in run.records.items():
        trajectory[key] = np.asarray(values)


def _write_snapshots(entry: h5py.Group, run: SimulatedRun) -> None:
    snaps = _nxgroup(entry, "snapshots", "NXdata")
    present = run.snapshot_observables
    signal = "psi4_local" if "psi4_local" in present else "sweep"
    snaps.attrs.update({"signal": signal, "axes": ["sweep"]})
    if "psi6_local" in present and signal == "psi4_local":
        snaps.attrs["auxiliary_signals"] = ["psi6_local"]
    _field(snaps, "sweep", run.snapshot_sweeps)
    snaps.create_dataset("positions", data=run.snapshot_positions_L, compression="gzip").attrs[
        "units"
    ] = "L"
    snaps.create_dataset("angles", data=run.snapshot_angles_rad, compression="gzip").attrs[
        "units"
    ] = "rad"
    _field(snaps, "box", run.snapshot_box_L, "L")
    for key, values in run.snapshot_observables.items():
        array = np.asarray(values)
        snaps[key] = array.astype(_STR) if array.dtype.kind in "US" else array


def _write_final(entry: h5py.Group, run: SimulatedRun) -> None:
    final = _nxgroup(entry, "final", "NXcollection")
    for key in _SCALARS:
        final[key] = getattr(run.final, key)
    classification = run.final.classification
    final["phase"] = classification.phase
    final["coexistence"] = classification.coexistence
    for key in _FRACTIONS:
        final[key] = getattr(classification, key)
    final["label_codes"] = run.final_label_codes
    _field(final, "rods", run.rods.q_per_L, "1/L")
    _field(final, "rods_errors", run.rods.q_err_per_L, "1/L")
    final["rods_ok"] = run.rods.ok
    final["rods_message"] = run.rods.message


def is_complete_run(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a run file that was written to the end.

    Parameters
    ----------
    path : path-like
        A candidate run file.

    Returns
    -------
    bool
        False for a missing, unreadable or unfinished file.
    """
    try:
        with h5py.File(path, "r") as fh:
            return bool(fh.get("entry") is not None and fh["entry"].attrs.get("complete", False))
    except OSError:
        return False


def _need(group: h5py.Group, name: str, path: Path) -> Any:
    if name not in group:
        msg = (
            f"{path}: missing dataset {group.name.rstrip('/')}/{name}; "
            "expected a file written by `gixs simulate run`/`sweep` (rerun it)"
        )
        raise SimulationError(msg)
    return group[name][()]


def read_run(path: str | os.PathLike[str]) -> SimulatedRun:
    """Read a run file written by `write_run`.

    Parameters
    ----------
    path : path-like
        The run file.

    Returns
    -------
    SimulatedRun

    Raises
    ------
    FrameReadError
        If the file cannot be opened as HDF5.
    SimulationError
        If it is not a complete run file (naming the missing dataset).
    """
    source = Path(path)
    try:
        fh = h5py.File(source, "r")
    except OSError as err:
        msg = f"{source}: cannot open as HDF5 ({err}); expected a `gixs simulate run` file"
        raise FrameReadError(msg) from err
    with fh:
        entry = fh.get("entry")
        if entry is None or not entry.attrs.get("complete", False):
            msg = f"{source}: not a complete simulation run file (no /entry@complete); rerun it"
            raise SimulationError(msg)
        settings = {key: _plain(entry["settings"][key][()]) for key in entry["settings"]}
        records = {key: np.asarray(entry["trajectory"][key][()]) for key in entry["trajectory"]}
        snaps = entry["snapshots"]
        fixed = {"sweep", "positions", "angles", "box"}
        snapshot_observables = {key: _array(snaps[key][()]) for key in snaps if key not in fixed}
        final = entry["final"]
        classification = Classification(
            phase=_phase(_need(final, "phase", source), source),
            coexistence=bool(_need(final, "coexistence", source)),
            **{key: float(_need(final, key, source)) for key in _FRACTIONS},
        )
        observables = StateObservables(
            **{key: float(_need(final, key, source)) for key in _SCALARS},
            classification=classification,
        )
        sq = entry["structure_factor"]
        return SimulatedRun(
            settings=settings,
            seed=int(_need(entry, "seed", source)),
            version=str(_plain(_need(entry, "version", source))),
            records=records,
            snapshot_sweeps=np.asarray(_need(snaps, "sweep", source), dtype=np.int64),
            snapshot_positions_L=np.asarray(_need(snaps, "positions", source), dtype=np.float64),
            snapshot_angles_rad=np.asarray(_need(snaps, "angles", source), dtype=np.float64),
            snapshot_box_L=np.asarray(_need(snaps, "box", source), dtype=np.float64),
            snapshot_observables=snapshot_observables,
            final=observables,
            final_label_codes=np.asarray(_need(final, "label_codes", source), dtype=np.int8),
            structure_factor=StructureFactor(
                q_per_L=np.asarray(_need(sq, "q", source), dtype=np.float64),
                s=np.asarray(_need(sq, "S", source), dtype=np.float64),
                q_min_valid_per_L=float(sq.attrs.get("q_min_valid", np.nan)),
                n_configurations=int(sq.attrs.get("n_configurations", 1)),
            ),
            rods=Rods(
                q_per_L=np.asarray(_need(final, "rods", source), dtype=np.float64),
                q_err_per_L=np.asarray(_need(final, "rods_errors", source), dtype=np.float64),
                ok=bool(_need(final, "rods_ok", source)),
                message=str(_plain(_need(final, "rods_message", source))),
            ),
        )


def _phase(value: Any, source: Path) -> Phase:
    for phase in PHASES:
        if _plain(value) == phase:
            return phase
    msg = f"{source}: /entry/final/phase is {_plain(value)!r}, expected one of {PHASES}"
    raise SimulationError(msg)


def _plain(value: Any) -> Any:
    """An HDF5 scalar as a Python str/bool/int/float."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _array(values: Any) -> NDArray[Any]:
    array = np.asarray(values)
    return array.astype(str) if array.dtype.kind in "OS" else array


def read_measured_rods(path: str | os.PathLike[str]) -> MeasuredRods:
    """Read the rods of a ``gixs reduce`` results file (NeXus HDF5).

    Reads /entry/first_rod: ``time`` (s), ``q1`` and ``q1_errors`` (nm^-1),
    ``symmetry`` (str), ``spacing`` (nm) and ``rod_positions`` (n, 4) (nm^-1, NaN-padded).
    A missing ``q1_errors``/``spacing`` becomes NaN; a missing ``rod_positions`` becomes
    q1 alone.

    Parameters
    ----------
    path : path-like
        The results file.

    Returns
    -------
    MeasuredRods

    Raises
    ------
    FrameReadError
        If the file is missing or not HDF5.
    SimulationError
        If /entry/first_rod or one of ``time``, ``q1``, ``symmetry`` is missing, or the
        columns disagree in length.
    """
    source = Path(path)
    with _open_reduced(source) as fh:
        group = fh.get("entry/first_rod")
        if not isinstance(group, h5py.Group):
            msg = (
                f"{source}: no /entry/first_rod group; expected the NeXus output of "
                "`gixs reduce` on GISAXS frames"
            )
            raise SimulationError(msg)

        def need(name: str) -> Any:
            if name not in group:
                msg = (
                    f"{source}: missing dataset /entry/first_rod/{name} (written by `gixs reduce`)"
                )
                raise SimulationError(msg)
            return group[name][()]

        time_s = np.asarray(need("time"), dtype=np.float64).ravel()
        q1 = np.asarray(need("q1"), dtype=np.float64).ravel()
        symmetry = _array(need("symmetry")).ravel().astype(str)
        n = time_s.size
        nan = np.full(n, np.nan)
        errors = np.asarray(group["q1_errors"][()], float).ravel() if "q1_errors" in group else nan
        spacing = np.asarray(group["spacing"][()], float).ravel() if "spacing" in group else nan
        if "rod_positions" in group:
            rods = np.asarray(group["rod_positions"][()], dtype=np.float64)
        else:
            rods = q1.reshape(-1, 1)
    if (
        rods.ndim != 2
        or rods.shape[0] != n
        or any(a.size != n for a in (q1, symmetry, errors, spacing))
    ):
        msg = (
            f"{source}: /entry/first_rod columns disagree in length (time {n}, q1 {q1.size}, "
            f"symmetry {symmetry.size}, rod_positions {rods.shape}); the file is damaged"
        )
        raise SimulationError(msg)
    symmetry = np.where(symmetry == "", "none", symmetry)
    return MeasuredRods(
        time_s=time_s,
        q1_per_nm=q1,
        q1_errors_per_nm=errors,
        symmetry=symmetry,
        spacing_nm=spacing,
        rod_positions_per_nm=rods,
        source=str(source),
    )


def read_measured_cuts(path: str | os.PathLike[str]) -> MeasuredCuts:
    """Read the GISAXS q_par cuts of a ``gixs reduce`` results file (NeXus HDF5).

    Reads /entry/gisaxs_cuts: ``time`` (s), ``q_par`` (nm^-1), ``intensity`` and
    ``intensity_errors`` (time x q_par).

    Parameters
    ----------
    path : path-like
        The results file.

    Returns
    -------
    MeasuredCuts

    Raises
    ------
    FrameReadError
        If the file is missing or not HDF5.
    SimulationError
        If /entry/gisaxs_cuts or one of its datasets is missing, or their shapes disagree.
    """
    source = Path(path)
    with _open_reduced(source) as fh:
        group = fh.get("entry/gisaxs_cuts")
        if not isinstance(group, h5py.Group):
            msg = (
                f"{source}: no /entry/gisaxs_cuts group; expected the NeXus output of "
                "`gixs reduce` on GISAXS frames (or use --match positions)"
            )
            raise SimulationError(msg)
        values = {}
        for name in ("time", "q_par", "intensity", "intensity_errors"):
            if name not in group:
                msg = (
                    f"{source}: missing dataset /entry/gisaxs_cuts/{name} "
                    "(written by `gixs reduce`)"
                )
                raise SimulationError(msg)
            values[name] = np.asarray(group[name][()], dtype=np.float64)
    time_s, q_par = values["time"].ravel(), values["q_par"].ravel()
    intensity, errors = values["intensity"], values["intensity_errors"]
    if intensity.shape != (time_s.size, q_par.size) or errors.shape != intensity.shape:
        msg = (
            f"{source}: /entry/gisaxs_cuts shapes disagree (time {time_s.size}, q_par "
            f"{q_par.size}, intensity {intensity.shape}, errors {errors.shape}); "
            "the file is damaged"
        )
        raise SimulationError(msg)
    return MeasuredCuts(
        time_s=time_s,
        q_par_per_nm=q_par,
        intensity=intensity,
        intensity_errors=errors,
        source=str(source),
    )


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Save a matplotlib figure as PNG (folder created if missing) and close it.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        The figure.
    path : path-like
        Output file.
    dpi : int, optional
        Resolution.

    Returns
    -------
    Path
        The file written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=dpi)
    figure.clear()
    return out


def _open_reduced(source: Path) -> h5py.File:
    """Open the ``results.h5`` of a `gixs reduce` run for reading, naming a bad file."""
    try:
        return h5py.File(source, "r")
    except OSError as err:
        msg = f"{source}: cannot open as HDF5 ({err}); expected the output of `gixs reduce`"
        raise FrameReadError(msg) from err
