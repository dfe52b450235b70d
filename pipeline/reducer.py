"""One per-frame reducer for every mode: batch, watch and the ewoks tasks.

A :class:`FrameReducer` is built once from a detector's settings (its plan: geometry, cut
matrices, fit settings, instrumental resolution), carries the fingerprint of all of them,
and is then fed one frame at a time. It keeps what a run needs between frames: the warm
start of the fits (the previous frame's result) and the run's time zero, held by a
:class:`RunClock` shared by the run's detectors. The time zero is fixed by the first frame
that carries a time stamp (or given); later frames extend the axis, so the time of a frame
never needs the whole run.

The batch (:func:`pipeline.batch.reduce_chunk`) makes one reducer per chunk of
:data:`pipeline.batch.CHUNK_FRAMES` frames, whose first fit starts cold; watch mode keeps
one reducer for the whole run with ``cold_every=CHUNK_FRAMES``, so that it starts cold at
the same frames and gives the same numbers as ``gixs reduce`` for the same frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from detectors.errors import FrameReadError
from detectors.io import Frame, FrameRef
from pipeline.config import Config, DetectorSettings, Kind
from pipeline.fingerprint import settings_fingerprint
from pipeline.reduce import FrameResult, ReductionPlan, reduce_frame, unreadable_frame
from pipeline.timeseries import FLAG_TIME_FROM_ORDER


@dataclass(slots=True)
class RunClock:
    """The run's time axis: time zero fixed by the first time-stamped frame, or given.

    Attributes
    ----------
    t0_epoch_s : float or None
        Epoch of time zero, s since 1970 UTC (None until a time-stamped frame is seen).
    period_s : dict of kind to float or None
        Each detector's exposure period from the settings, for frames without time stamps.
    """

    t0_epoch_s: float | None = None
    period_s: dict[Kind, float | None] = field(default_factory=dict)

    def time_s(self, result: FrameResult, index: int) -> tuple[float, bool]:
        """Time of a frame, in s since time zero, and whether it came from the order.

        Parameters
        ----------
        result : FrameResult
            The frame's result (its header time stamp, its period).
        index : int
            Its position among its detector's frames of the run (0-based).

        Returns
        -------
        time_s : float
            ``epoch - t0``; or ``index * period`` for a frame without a time stamp
            (NaN for an unreadable frame before any period is known).
        from_order : bool
            True when the time comes from the order and the period.

        Examples
        --------
        >>> clock = RunClock()
        >>> clock.t0_epoch_s is None
        True
        """
        if result.epoch_s is not None:
            if self.t0_epoch_s is None:
                self.t0_epoch_s = result.epoch_s
            return result.epoch_s - self.t0_epoch_s, False
        period = self.period_s.get(result.kind)
        if period is None:
            period = result.period_s
        if not result.read_ok and self.t0_epoch_s is not None:
            return math.nan, False
        return (index * period if period is not None else math.nan), result.read_ok


@dataclass(frozen=True, slots=True)
class Reduced:
    """One reduced frame and its place on the run's time axis.

    Attributes
    ----------
    result : FrameResult
        The frame's result (flagged when it could not be read).
    index : int
        Position among its detector's frames (0-based).
    time_s : float
        Time since the run's time zero, in s.
    from_order : bool
        True when `time_s` came from the order and the period, not a time stamp.
    """

    result: FrameResult
    index: int
    time_s: float
    from_order: bool

    @property
    def flags(self) -> tuple[str, ...]:
        """The result's flags, with the time-from-order flag where it applies."""
        extra = (FLAG_TIME_FROM_ORDER,) if self.from_order else ()
        return self.result.flags + extra


class FrameReducer:
    """Reduce one detector's frames one at a time, keeping the warm start and the clock.

    Parameters
    ----------
    plan : ReductionPlan
        The detector's plan (:func:`pipeline.io.load_plan`).
    fingerprint : str
        Fingerprint of the settings the plan was built from
        (:func:`pipeline.fingerprint.settings_fingerprint`; "" when unknown).
    clock : RunClock or None
        The run's time axis, shared by its detectors (a new one when None).
    cold_every : int or None
        Start the fit cold every `cold_every` frames (as the batch's chunks do); None:
        warm-start every frame from the last readable one.

    Examples
    --------
    >>> from pathlib import Path
    >>> from pipeline.io import load_config
    >>> config = load_config(Path("sample_data/demo/demo.toml"))
    >>> reducer = FrameReducer.from_settings(config.settings("gisaxs"), config)
    >>> step = reducer.reduce_ref(FrameRef(Path("sample_data/demo/gisaxs/gisaxs_00033.cbf")))
    >>> step.result.rod.symmetry, round(step.result.rod.q1_per_nm, 2), step.time_s
    ('square', 0.83, 0.0)
    """

    def __init__(
        self,
        plan: ReductionPlan,
        *,
        fingerprint: str = "",
        clock: RunClock | None = None,
        cold_every: int | None = None,
    ) -> None:
        self.plan = plan
        self.fingerprint = fingerprint
        self.clock = clock if clock is not None else RunClock()
        self.cold_every = cold_every
        self.previous: FrameResult | None = None
        self.n_frames = 0

    @classmethod
    def from_settings(
        cls,
        settings: DetectorSettings,
        config: Config,
        *,
        clock: RunClock | None = None,
        cold_every: int | None = None,
    ) -> FrameReducer:
        """Build the plan from a detector's settings (reads PONI, mask, resolution).

        Raises
        ------
        ConfigError, GeometryError
            For settings or geometry files that are bad.
        """
        from pipeline.io import load_plan, package_version  # pipeline.io imports reduce

        clock = clock if clock is not None else RunClock()
        clock.period_s.setdefault(settings.kind, settings.exposure_period_s)
        return cls(
            load_plan(settings, config),
            fingerprint=settings_fingerprint(settings, config, version=package_version()),
            clock=clock,
            cold_every=cold_every,
        )

    @property
    def kind(self) -> Kind:
        """The detector kind of the plan."""
        return self.plan.kind

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape (rows, cols) the plan expects."""
        return self.plan.geometry.detector.shape

    def reduce(self, frame: Frame) -> Reduced:
        """Reduce the next frame of the run (a frame of unusable data is flagged, not fitted)."""
        if self.cold_every is not None and self.n_frames % self.cold_every == 0:
            self.previous = None
        result = reduce_frame(frame, self.plan, previous=self.previous)
        self.previous = result if result.input_ok else None
        return self._place(result)

    def reduce_ref(self, ref: FrameRef) -> Reduced:
        """Read and reduce the next frame; one that cannot be read becomes a flagged row."""
        from detectors.io import read_frame

        try:
            frame = read_frame(ref, shape=self.shape)
        except FrameReadError as err:
            return self.flag(ref, str(err))
        return self.reduce(frame)

    def flag(self, ref: FrameRef, message: str) -> Reduced:
        """Record a frame that could not be reduced; the next fit starts cold."""
        self.previous = None
        return self._place(unreadable_frame(ref, self.plan, message))

    def restore(self, reduced: Reduced) -> None:
        """Take up a run again after `reduced`, its last frame already in the output."""
        self.n_frames = reduced.index + 1
        self.previous = reduced.result if reduced.result.input_ok else None
        if reduced.result.epoch_s is not None and self.clock.t0_epoch_s is None:
            self.clock.t0_epoch_s = reduced.result.epoch_s - reduced.time_s

    def _place(self, result: FrameResult) -> Reduced:
        index = self.n_frames
        self.n_frames += 1
        time_s, from_order = self.clock.time_s(result, index)
        return Reduced(result, index, time_s, from_order)
