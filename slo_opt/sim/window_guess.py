"""The first guess of an admission window: each future arrival's admission step, event by event.

Under the FCFS-admission promise the batch is constant between two events (an admission or a
completion), and the decode step time is affine in the step index, so the step at which the
next arrival becomes visible solves a quadratic. :mod:`.window` iterates from this guess to
the exact fixed point (one or two iterations usually suffice).
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.sim.state import EngineState

__all__ = ["guess_admission_steps"]


def _decode_affine(sim: EngineState, n: int) -> tuple[float, float]:
    """``(a, c)`` with decode step time ~ ``a + c * context_tokens`` for ``n`` sequences.

    Only a guide for :func:`guess_admission_steps` (exact for the linear engine; the window verifies
    every step with the engine's exact times anyway). Cached per batch size.
    """
    cache = sim.affine
    ac = cache.get(n)
    if ac is None:
        f = sim.e.batch_step_times_s  # type: ignore[attr-defined]
        z = np.zeros(2, np.int64)
        t = f(z, np.array([n, n]), np.array([0, 1 << 20]), z, z)
        ac = cache[n] = (float(t[0]), float(t[1] - t[0]) / (1 << 20))
    return ac


def guess_admission_steps(sim: EngineState, t0: float, eps: float, rem0: np.ndarray, comp0: np.ndarray,
                 p_wait: np.ndarray, o_wait: np.ndarray, arr: np.ndarray, p_fut: np.ndarray,
                 o_fut: np.ndarray) -> np.ndarray:
    """Admission step of each future arrival, simulated event by event (a guess).

    Between events (admission, completion) the batch is constant and the step times are
    affine in the step index, so the time to the next arrival is a quadratic in the number
    of steps, solved in closed form; prefill steps use the engine's exact step time. An empty
    batch (the engine would idle) ends the guess: later arrivals get the step after it.
    """
    e = sim.e
    affine = sim.affine
    ceil, sqrt = math.ceil, math.sqrt
    heap: list[tuple[int, int]] = []  # (first step no longer decoding, context weight)
    n = 0
    wsum = 0
    for r, w in zip(rem0.tolist(), (comp0 + 1).tolist()):
        heap.append((r, w))
        n += 1
        wsum += w
    heapq.heapify(heap)
    out = np.empty(arr.size, np.int64)
    arr_l = arr.tolist()
    pf_l = p_fut.tolist()
    of_l = o_fut.tolist()
    nf = len(arr_l)
    t = t0
    j = 0
    k = 0
    group_p = p_wait.tolist()
    group_o = o_wait.tolist()
    while True:
        while heap and heap[0][0] <= j:
            _, w = heapq.heappop(heap)
            n -= 1
            wsum -= w
        if k < nf and not group_p:
            while k < nf and arr_l[k] <= t + eps:
                out[k] = j
                group_p.append(pf_l[k])
                group_o.append(of_l[k])
                k += 1
        if group_p:  # a prefill step
            pf = sum(group_p)
            dt = e.step_time_s(BatchShape(prefill_tokens=pf, decode_seqs=n,
                                          decode_context_tokens=wsum + j * n,
                                          prefill_seqs=len(group_p), prefill_context_tokens=pf))
            for p, o in zip(group_p, group_o):
                if o >= 2:
                    heapq.heappush(heap, (j + o, p - j))
                    n += 1
                    wsum += p - j
            group_p = []
            group_o = []
            t += dt
            j += 1
            continue
        if k >= nf:
            break
        if n == 0:  # idle engine: not modelled here
            out[k:] = j + 1
            break
        # constant batch until the next completion: the first step whose start sees arr_l[k]
        ac = affine.get(n)
        if ac is None:
            ac = _decode_affine(sim, n)
        a, c = ac
        base = a + c * (wsum + j * n)  # time of step j; step j + x takes base + c * n * x
        cn = c * n
        need = arr_l[k] - eps - t
        if cn > 0.0:
            q = base - 0.5 * cn
            steps = ceil((sqrt(q * q + 2.0 * cn * need) - q) / cn)
        else:
            steps = ceil(need / base)
        if steps < 1:
            steps = 1
        if heap and j + steps > heap[0][0]:
            steps = heap[0][0] - j
        t += steps * base + cn * steps * (steps - 1) * 0.5
        j += steps
    return out
