"""Monte Carlo engine throughput: trial moves per second, one and two cores, cost per sweep.

Run from the repository root::

    python benchmarks/mc.py

Trial moves are single-particle translations and rotations attempted (rejected ones
included), for the study's particle (c = 0.1 L, `simulation.sweep.STUDY_CORNER_LEG_C`)
and, on extra lines, the regular octagon. Each case is warmed up (JIT) and its step sizes
tuned first; the timer wraps
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
        f"{label:34s} {rate / 1e6:7.2f} M trial moves/s   acceptance trans {info['acc_trans']:.3f}"
        f" rot {info['acc_rot']:.3f}   steps {info['step_L']:.4f} L, {info['step_rad']:.4f} rad"
    )


def main() -> None:
    study = TruncatedSquare(corner_leg_c=STUDY_CORNER_LEG_C)
    hard = MCModel(study)
    patchy = MCModel(study, Patches(ratio=0.1, eps_kT=6.0))
    threads_available = numba.config.NUMBA_NUM_THREADS
    print(f"N = 1024, packing {PACKING}, numba threads available: {threads_available}")

    numba.set_num_threads(1)
    regular = TruncatedSquare()
    for kind, model in (("hard", MCModel(regular)), ("patchy", MCModel(regular, patchy.patches))):
        rate, info = _time_sweeps(_prepare(1024, model), model, 400)
        print(_line(f"regular octagon, {kind}, 1 core", rate, info))
    tuned_hard = _prepare(1024, hard)
    tuned_patchy = _prepare(1024, patchy)
    rate_hard, info_hard = _time_sweeps(tuned_hard, hard, 400)
    print(_line("c = 0.1 L, hard, 1 core", rate_hard, info_hard))
    rate_patchy, info_patchy = _time_sweeps(tuned_patchy, patchy, 400)
    print(_line("c = 0.1 L, Px/Fx 0.1 eps 6, 1 core", rate_patchy, info_patchy))

    numba.set_num_threads(min(2, threads_available))
    rate_hard2, info_hard2 = _time_sweeps(tuned_hard, hard, 400)
    print(_line(f"hard, {numba.get_num_threads()} cores", rate_hard2, info_hard2))
    rate_patchy2, info_patchy2 = _time_sweeps(tuned_patchy, patchy, 400)
    print(_line(f"patchy, {numba.get_num_threads()} cores", rate_patchy2, info_patchy2))

    numba.set_num_threads(1)
    print("cost per sweep, hard, 1 core:")
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
    )


if __name__ == "__main__":
    main()
