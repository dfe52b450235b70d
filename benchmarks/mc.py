"""Monte Carlo engine throughput: trial moves per second, one and two cores, cost per sweep.

Run from the repository root::

    python benchmarks/mc.py

Trial moves are single-particle translations and rotations attempted (rejected ones
included), for the regular octagon (the RESULT keys the issue names) and for the study
runs' particle (c = 0.1 L, `simulation.sweep.STUDY_CORNER_LEG_C`, the ``_c0.1`` keys).
Each case is warmed up (JIT) and its step sizes tuned first; the timer wraps
only the compiled sweeps (``simulation._kernels.run_sweeps``), median of 3. Cluster moves
are off while timing so that the figure is the single-move rate. The last line is
``RESULT moves_per_s_hard=... moves_per_s_patchy=... moves_per_s_patchy_2cores=...
sweep_cost_ratio_16384_over_1024=...``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulation import _kernels as k
from simulation.mc import MCModel, MCSettings, count_bonds, initial_state, run_mc
from simulation.shape import Patches, TruncatedSquare
from simulation.sweep import STUDY_CORNER_LEG_C

PACKING = 0.6


def _prepare(n: int, model: MCModel, tune_sweeps: int = 300):
    state = initial_state(n, PACKING, model, rng=1)
    tuned = run_mc(
        state,
        model,
        tune_sweeps,
        settings=MCSettings(tune_sweeps=tune_sweeps, cluster_move_every=0),
        rng=2,
        record_every=tune_sweeps,
    )
    return tuned


def _time_sweeps(tuned, model: MCModel, n_sweeps: int, repeats: int = 3) -> tuple[float, dict]:
    st = tuned.state
    g = model._geometry()
    prm = np.zeros(k.P_SIZE)
    prm[k.P_DT] = tuned.translation_step_L
    prm[k.P_DR] = tuned.rotation_step_rad
    prm[k.P_VOLUME_EVERY] = 1
    times = []
    last = None
    for rep in range(repeats + 1):  # the first call is a warm-up
        x = st.positions_L[:, 0].copy()
        y = st.positions_L[:, 1].copy()
        th = st.angles_rad.copy()
        co, si = np.cos(th), np.sin(th)
        box = st.box_L.copy()
        nb = np.array([count_bonds(st, model)], dtype=np.int64)
        stats = np.empty((n_sweeps, k.S_SIZE))
        t0 = time.perf_counter()
        k.run_sweeps(n_sweeps, 10_000 * rep, np.uint64(7), x, y, th, co, si, box, g, prm, nb, stats)
        elapsed = time.perf_counter() - t0
        if rep:
            times.append(elapsed)
        last = stats.sum(axis=0)
    assert last is not None
    moves = last[k.S_T_ATT] + last[k.S_R_ATT]
    info = {
        "acc_trans": last[k.S_T_ACC] / last[k.S_T_ATT],
        "acc_rot": last[k.S_R_ACC] / last[k.S_R_ATT],
        "step_L": tuned.translation_step_L,
        "step_rad": tuned.rotation_step_rad,
    }
    return moves / statistics.median(times), info


def _line(label: str, rate: float, info: dict) -> str:
    return (
        f"{label:38s} {rate / 1e6:7.2f} M trial moves/s   acceptance trans {info['acc_trans']:.3f}"
        f" rot {info['acc_rot']:.3f}   steps {info['step_L']:.4f} L, {info['step_rad']:.4f} rad"
    )


def _one_core_and_two(label: str, model: MCModel) -> tuple[float, float]:
    """Trial moves per second of `model` on one core and on two (after a warm-up)."""
    tuned = _prepare(1024, model)
    numba.set_num_threads(1)
    rate1, info1 = _time_sweeps(tuned, model, 400)
    print(_line(f"{label}, 1 core", rate1, info1))
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    rate2, info2 = _time_sweeps(tuned, model, 400)
    print(_line(f"{label}, {numba.get_num_threads()} cores", rate2, info2))
    numba.set_num_threads(1)
    return rate1, rate2


def main() -> None:
    threads_available = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    print(f"N = 1024, packing {PACKING}, numba threads available: {threads_available}")
    patches = Patches(ratio=0.1, eps_kT=6.0)
    regular = TruncatedSquare()
    study = TruncatedSquare(corner_leg_c=STUDY_CORNER_LEG_C)
    rate_hard, _ = _one_core_and_two("regular octagon, hard", MCModel(regular))
    rate_patchy, rate_patchy2 = _one_core_and_two(
        "regular octagon, Px/Fx 0.1 eps 6", MCModel(regular, patches)
    )
    rate_hard_study, _ = _one_core_and_two("c = 0.1 L, hard", MCModel(study))
    rate_patchy_study, _ = _one_core_and_two("c = 0.1 L, Px/Fx 0.1 eps 6", MCModel(study, patches))

    hard = MCModel(regular)
    print("cost per sweep, hard regular octagon, 1 core:")
    per_sweep = {}
    for n in (256, 1024, 4096, 16384):
        tuned = _prepare(n, hard, tune_sweeps=100)
        sweeps = max(20, 400_000 // n)
        rate, _ = _time_sweeps(tuned, hard, sweeps)
        per_sweep[n] = n / rate
        print(f"  N = {n:6d}: {per_sweep[n] * 1e3:8.3f} ms/sweep  ({rate / 1e6:.2f} M moves/s)")
    ratio = per_sweep[16384] / per_sweep[1024]
    print(f"  ratio 16384/1024 = {ratio:.1f} (16 for linear scaling)")
    print(
        f"RESULT moves_per_s_hard={rate_hard:.4g} moves_per_s_patchy={rate_patchy:.4g} "
        f"moves_per_s_patchy_2cores={rate_patchy2:.4g} sweep_cost_ratio_16384_over_1024={ratio:.3g}"
        f" moves_per_s_hard_c0.1={rate_hard_study:.4g}"
        f" moves_per_s_patchy_c0.1={rate_patchy_study:.4g}"
    )


if __name__ == "__main__":
    main()
