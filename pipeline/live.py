"""The live view of a watched run: a Bokeh server page on 127.0.0.1.

``gixs watch --serve [PORT]`` starts it beside the watcher. The page shows q1 and the
lattice spacing against time with the phases shaded, the {200} FWHM and the Scherrer
domain size against time, the latest q_par cuts of both detectors and the latest GISAXS
frame remapped onto (q_par, q_perp) by pyFAI's ``FiberIntegrator`` (through
:func:`pipeline.integrate.map_2d`). It is refreshed every second from the watcher's
results, so a new frame shows within a few seconds. Bokeh's JavaScript is served by the
server from the Python package: the page loads nothing from outside the machine.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.errors import ConfigError
from pipeline.integrate import map_2d

if TYPE_CHECKING:
    from pipeline.results_file import JournalEntry
    from pipeline.watch import Watcher

#: Colours of the phases (those of :data:`pipeline.plots.SYMMETRY_COLOURS`, as hex).
PHASE_COLOURS = {
    "none": "#999999",
    "unknown": "#9467bd",
    "hexagonal": "#1f77b4",
    "pseudo-hexagonal": "#ff7f0e",
    "square": "#d62728",
}

#: Refresh interval of the page, in ms.
REFRESH_MS = 1000


@dataclass(frozen=True, slots=True)
class LiveServer:
    """A running live-view server.

    Attributes
    ----------
    port : int
        Port on 127.0.0.1.
    """

    port: int
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        """Stop the server and its thread."""
        loop = self._server.io_loop
        loop.add_callback(self._server.stop)
        loop.add_callback(loop.stop)
        self._thread.join(timeout=5)


def phase_spans(times_s: list[float], symmetries: list[str]) -> dict[str, list[Any]]:
    """Contiguous runs of one symmetry, as (left, right, colour, phase) columns.

    Parameters
    ----------
    times_s : list of float
        Frame times in s, increasing.
    symmetries : list of str
        Each frame's symmetry.

    Returns
    -------
    dict
        Columns ``left``, ``right`` (s), ``colour`` and ``phase``; a run reaches halfway to
        the neighbouring frames.

    Examples
    --------
    >>> phase_spans([0.0, 10.0, 20.0], ["hexagonal", "hexagonal", "square"])["right"]
    [15.0, 25.0]
    """
    cols: dict[str, list[Any]] = {"left": [], "right": [], "colour": [], "phase": []}
    pairs = [(t, s) for t, s in zip(times_s, symmetries, strict=True) if math.isfinite(t)]
    for i, (t, sym) in enumerate(pairs):
        left = t - (t - pairs[i - 1][0]) / 2 if i else t - 5.0
        right = (pairs[i + 1][0] + t) / 2 if i + 1 < len(pairs) else t + 5.0
        if cols["phase"] and cols["phase"][-1] == sym:
            cols["right"][-1] = right
            continue
        cols["left"].append(left)
        cols["right"].append(right)
        cols["colour"].append(PHASE_COLOURS.get(sym, "#cccccc"))
        cols["phase"].append(sym)
    return cols


def _series(entries: list[JournalEntry]) -> dict[str, dict[str, list[Any]]]:
    rows = sorted(
        (e.row() for e in entries if e.reduced.result.input_ok),
        key=lambda r: (r.time_s, r.detector),
    )
    rod = [r for r in rows if r.detector == "gisaxs"]
    peak = [r for r in rows if r.detector == "giwaxs"]
    nan = float("nan")

    def finite(v: float) -> float:
        return v if math.isfinite(v) else nan

    return {
        "rods": {
            "time_s": [r.time_s for r in rod],
            "q1": [finite(r.q1_per_nm) for r in rod],
            "spacing": [finite(r.spacing_nm) for r in rod],
            "colour": [PHASE_COLOURS.get(r.symmetry, "#cccccc") for r in rod],
            "symmetry": [r.symmetry for r in rod],
        },
        "phases": phase_spans([r.time_s for r in rod], [r.symmetry for r in rod]),
        "peaks": {
            "time_s": [r.time_s for r in peak],
            "fwhm": [finite(r.fwhm200_per_nm) for r in peak],
            "fwhm_corr": [finite(r.fwhm200_corr_per_nm) for r in peak],
            "domain": [finite(r.domain_nm) for r in peak],
        },
    }


def make_document(watcher: Watcher) -> Any:
    """A Bokeh application handler function for `watcher`'s run."""
    from bokeh.layouts import column, gridplot
    from bokeh.models import ColumnDataSource, Div, LinearColorMapper  # type: ignore[attr-defined]
    from bokeh.plotting import figure

    def build(doc: Any) -> None:
        series = {
            name: ColumnDataSource(data=data, name=f"{name}_source")
            for name, data in _series([]).items()
        }
        cut_sources = {
            kind: ColumnDataSource(data={"q_par": [], "intensity": []}, name=f"{kind}_cut_source")
            for kind in ("gisaxs", "giwaxs")
        }
        map_source = ColumnDataSource(
            data={"image": [], "x": [], "y": [], "dw": [], "dh": []}, name="map_source"
        )
        status = Div(text="waiting for frames", name="status")
        width = 560

        def panel(title: str, y_label: str, *, x_label: str = "time (s)", **kw: Any) -> figure:
            return figure(
                title=title, height=250, width=width, x_axis_label=x_label,
                y_axis_label=y_label, **kw,
            )  # fmt: skip

        f_q1 = panel("first rod q1", "q1 (1/nm)")
        f_a = panel("nearest-neighbour spacing", "a (nm)", x_range=f_q1.x_range)
        for fig in (f_q1, f_a):
            fig.quad(
                left="left",
                right="right",
                bottom=-1e6,
                top=1e6,
                color="colour",
                alpha=0.12,
                source=series["phases"],
                legend_field="phase",
            )
        dots = f_q1.scatter(
            "time_s", "q1", color="colour", size=7, source=series["rods"], name="q1"
        )
        f_q1.y_range.renderers = [dots]  # type: ignore[attr-defined]  # not the phase bands
        dots = f_a.scatter("time_s", "spacing", color="colour", size=7, source=series["rods"])
        f_a.y_range.renderers = [dots]  # type: ignore[attr-defined]
        f_w = panel("{200} FWHM", "FWHM (1/nm)")
        f_w.scatter("time_s", "fwhm", size=7, source=series["peaks"], legend_label="fitted")
        f_w.scatter(
            "time_s",
            "fwhm_corr",
            size=7,
            color="#d62728",
            source=series["peaks"],
            legend_label="instrument removed",
        )
        f_d = panel("Scherrer domain size", "D (nm)", x_range=f_w.x_range)
        f_d.scatter("time_s", "domain", size=7, source=series["peaks"])
        f_cuts = [
            panel(f"latest {kind.upper()} q_par cut", "intensity (counts)", x_label="q_par (1/nm)")
            for kind in ("gisaxs", "giwaxs")
        ]
        for fig, kind in zip(f_cuts, ("gisaxs", "giwaxs"), strict=True):
            fig.line("q_par", "intensity", source=cut_sources[kind])
        mapper = LinearColorMapper(palette="Viridis256", nan_color="white")
        f_map = figure(
            title="latest GISAXS frame on (q_par, q_perp)",
            height=300,
            width=2 * width,
            x_axis_label="q_par (1/nm)",
            y_axis_label="q_perp (1/nm)",
        )
        f_map.image(  # type: ignore[call-arg]
            image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=mapper, source=map_source
        )
        doc.add_root(
            column(status, gridplot([[f_q1, f_w], [f_a, f_d], f_cuts]), f_map)  # type: ignore[list-item]
        )
        doc.title = "gixs watch"
        state = {"version": -1, "map_path": "", "map_at": 0.0}

        def refresh() -> None:
            with watcher.shared.lock:
                version = watcher.shared.version
                entries = list(watcher.shared.entries)
            progress = watcher.progress()
            status.text = f"<b>gixs watch</b> &mdash; {progress.line()}"
            if version == state["version"]:
                return
            state["version"] = version
            for name, data in _series(entries).items():
                series[name].data = data
            for kind in ("gisaxs", "giwaxs"):
                last = next(
                    (
                        e
                        for e in reversed(entries)
                        if e.reduced.result.kind == kind and e.reduced.result.input_ok
                    ),
                    None,
                )
                if last is not None and kind in watcher.plans:
                    q = watcher.plans[kind].q_par_per_nm
                    cut_sources[kind].data = {
                        "q_par": q.tolist(),
                        "intensity": _nan_to_none(last.reduced.result.intensity),
                    }
            _refresh_map(watcher, entries, map_source, mapper, state)

        doc.add_periodic_callback(refresh, REFRESH_MS)

    return build


def _nan_to_none(values: np.ndarray) -> list[float]:
    return [float(v) if math.isfinite(v) else float("nan") for v in values]


def _refresh_map(
    watcher: Watcher,
    entries: list[JournalEntry],
    source: Any,
    mapper: Any,
    state: dict[str, Any],
) -> None:
    from detectors.errors import FrameReadError
    from detectors.io import FrameRef, read_frame

    last = next(
        (
            e
            for e in reversed(entries)
            if e.reduced.result.kind == "gisaxs" and e.reduced.result.input_ok
        ),
        None,
    )
    if last is None or "gisaxs" not in watcher.plans:
        return
    path = last.reduced.result.path
    now = time.monotonic()
    if path == state["map_path"] or now - state["map_at"] < 2.0:
        return
    plan = watcher.plans["gisaxs"]
    try:
        frame = read_frame(FrameRef(Path(path), last.reduced.result.frame_index))
    except FrameReadError:
        return
    hi = plan.cut.q_par_range_per_nm[1]
    qmap = map_2d(
        plan.geometry,
        frame.data,
        mask=plan.static_mask | (frame.data < 0),
        npt_par=300,
        npt_perp=120,
        q_par_range_per_nm=(-hi, hi),
    )
    image = np.log10(np.clip(qmap.intensity, 1e-3, None))
    image[~np.isfinite(qmap.intensity)] = np.nan
    qx, qy = qmap.q_par_per_nm, qmap.q_perp_per_nm
    finite = image[np.isfinite(image)]
    if finite.size:
        mapper.low, mapper.high = (
            float(np.percentile(finite, 1)),
            float(np.percentile(finite, 99.5)),
        )
    source.data = {
        "image": [image],
        "x": [float(qx[0])],
        "y": [float(qy[0])],
        "dw": [float(qx[-1] - qx[0])],
        "dh": [float(qy[-1] - qy[0])],
    }
    state["map_path"], state["map_at"] = path, now


def serve(watcher: Watcher, *, port: int = 5006) -> LiveServer:
    """Serve the live view of `watcher` on http://127.0.0.1:PORT/ in a background thread.

    Parameters
    ----------
    watcher : Watcher
        The run to show.
    port : int
        TCP port on 127.0.0.1 (0: any free port).

    Returns
    -------
    LiveServer
        The server (its port, and ``stop()``).

    Raises
    ------
    ConfigError
        If the port cannot be used.
    """
    import asyncio

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        from tornado.ioloop import IOLoop

        try:
            server = Server(
                {"/": Application(FunctionHandler(make_document(watcher)))},
                io_loop=IOLoop.current(),
                address="127.0.0.1",
                port=port,
                allow_websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"],
            )
            server.start()
        except OSError as err:
            holder["error"] = err
            ready.set()
            return
        holder["server"] = server
        ready.set()
        server.io_loop.start()

    thread = threading.Thread(target=run, name="gixs-live-view", daemon=True)
    thread.start()
    ready.wait(timeout=60)
    if "server" not in holder:
        msg = (
            f"cannot serve the live view on 127.0.0.1:{port} ({holder.get('error')}); "
            "give another --serve PORT"
        )
        raise ConfigError(msg)
    return LiveServer(port=port, _server=holder["server"], _thread=thread)
