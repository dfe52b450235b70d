"""Frame times: one frame without a time stamp does not turn a detector to file order."""

import numpy as np
import pytest

from pipeline.reduce import FrameResult
from pipeline.timeseries import (
    FLAG_TIME_FROM_ORDER,
    FLAG_TIME_INTERPOLATED,
    build_rows,
    frame_times_s,
)

T0 = 1_795_000_000.0


def result(epoch_s: float | None, *, index: int = 0, period_s: float | None = None) -> FrameResult:
    nan = np.full(3, np.nan)
    return FrameResult(
        kind="gisaxs",
        path=f"f{index:03d}.cbf",
        frame_index=0,
        epoch_s=epoch_s,
        exposure_s=None,
        period_s=period_s,
        position=None,
        intensity=nan,
        sigma=nan,
    )


@pytest.mark.parametrize("missing", [0, 3, 7, 9])
def test_one_frame_without_a_stamp_is_placed_between_its_neighbours(missing):
    # 10 s frames with a 60 s pause after frame 5: the pause stays on the time axis
    epochs = [T0 + 10 * i + (60 if i > 5 else 0) for i in range(10)]
    results = [
        result(None if i == missing else e, index=i, period_s=10.0) for i, e in enumerate(epochs)
    ]
    times, flags = frame_times_s(results, t0_epoch_s=T0, period_s=None)
    for i, (t, flag) in enumerate(zip(times, flags, strict=True)):
        if i == missing:
            assert flag == FLAG_TIME_INTERPOLATED
            assert t == pytest.approx(epochs[i] - T0)
        else:
            assert flag is None
            assert t == epochs[i] - T0
    assert times == sorted(times)


def test_interpolated_frame_is_flagged_alone_in_the_rows():
    results = [result(T0 + 10 * i if i != 2 else None, index=i) for i in range(4)]
    rows = build_rows({"gisaxs": results}, period_s={"gisaxs": None})
    assert [r.time_s for r in rows] == [0.0, 10.0, 20.0, 30.0]
    assert [FLAG_TIME_INTERPOLATED in r.flags for r in rows] == [False, False, True, False]
    assert not any(FLAG_TIME_FROM_ORDER in r.flags for r in rows)


@pytest.mark.parametrize(("period_s", "header_period_s"), [(5.0, None), (None, 2.5)])
def test_no_stamp_at_all_falls_back_on_the_order_and_says_so(period_s, header_period_s):
    results = [result(None, index=i, period_s=header_period_s) for i in range(3)]
    rows = build_rows({"gisaxs": results}, period_s={"gisaxs": period_s})
    step = period_s or header_period_s
    assert [r.time_s for r in rows] == [0.0, step, 2 * step]
    assert all(FLAG_TIME_FROM_ORDER in r.flags for r in rows)
