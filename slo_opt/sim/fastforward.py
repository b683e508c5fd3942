"""Fast-forward: many decode steps at once, exactly as stepping one at a time would run them.

Two promises of the scheduler contract (:class:`~slo_opt.schedulers.base.StepPlan`):

* ``repeat_until_s`` (:func:`fast_forward_len`): a pure-decode plan stays the same; the batch is
  constant until its first completion, the next arrival, a KV-block shortage or the horizon,
  and the step times of the whole stretch are one vectorised engine call.
* ``decode_all_until_s`` (:func:`decode_all_run`): every running request decodes while nothing
  waits, across completions; the batch shrinks at each completion and the step times of each
  constant-batch segment are one vectorised call.

Start times are sequential sums ``end = start + dt`` (or the slot grid of an aligned engine),
the same floating-point operations as step by step, so the records are identical bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from slo_opt.engine import BatchShape, decode_step_times_s
from slo_opt.schedule import ARRIVAL_EPS_S
from slo_opt.sim._ops import max_ as _max
from slo_opt.sim._ops import min_ as _min
from slo_opt.sim._ops import nz as _nz
from slo_opt.sim._ops import sum_ as _sum
from slo_opt.sim.state import EngineState

__all__ = ["decode_all_run", "fast_forward_len"]


def fast_forward_len(st: EngineState, rids: np.ndarray, comp: np.ndarray, gen: np.ndarray,
                     start: float, dt0: float, repeat_until_s: float) -> int:
    """Number of identical pure-decode steps that can run before the next event.

    Sets ``st.ff_times = (starts, ends, ctx0)`` for the returned ``k > 1`` steps.
    """
    k = int(_min(st.O[rids] - gen))  # up to and incl. first completion
    if k <= 1:
        return 1
    # KV: block acquisitions (step numbers 1..k) per request; stop before the (F+1)-th.
    k = st.kv.decode_steps_fitting(comp, k)
    if k <= 1:
        return 1
    if st.max_steps is not None:
        k = min(k, st.max_steps - st.step)
    # time: steps starting before the next arrival and before the promise horizon run
    limit = min(st.next_arrival_s() - ARRIVAL_EPS_S, repeat_until_s)
    n = int(rids.size)
    ctx0 = int(_sum(comp)) + n
    if math.isinf(limit):
        chunk = k
    else:  # most runs end at an arrival: compute about as many steps as fit before it
        chunk = min(k, max(16, int((limit - start) / dt0) + 2)) if limit > start else 2
    parts_s: list[np.ndarray] = []
    parts_e: list[np.ndarray] = []
    pos = 0
    carry = start
    idx0 = round(start / st.slot_s) if (st.align is not None and st.slot_s) else 0
    while True:
        dts = decode_step_times_s(st.e, n, ctx0 + pos * n, chunk)
        if st.align is not None:
            starts = (idx0 + pos + np.arange(chunk)) * st.slot_s
            ends = starts + dts
        else:
            ends = np.add.accumulate(np.concatenate(([carry], dts)))[1:]
            starts = np.concatenate(([carry], ends[:-1]))
        late = starts >= limit
        if pos == 0:
            late[0] = False
        if _nz(late):
            cut = int(np.argmax(late))
            parts_s.append(starts[:cut])
            parts_e.append(ends[:cut])
            pos += cut
            break
        parts_s.append(starts)
        parts_e.append(ends)
        pos += chunk
        if pos >= k:
            break
        carry = float(ends[-1])
        chunk = min(k - pos, 2 * chunk)
    if pos <= 1:
        return 1
    if len(parts_s) == 1:
        st.ff_times = (parts_s[0], parts_e[0], ctx0)
    else:
        st.ff_times = (np.concatenate(parts_s), np.concatenate(parts_e), ctx0)
    return pos


def decode_all_run(st: EngineState, start: float, limit_s: float,
                   rids: np.ndarray | None = None, comp: np.ndarray | None = None,
                   gen: np.ndarray | None = None, nt: np.ndarray | None = None) -> bool:
    """Run steps under a ``decode_all_until_s`` promise, across completions.

    Every running request computes one decode token per step; a request leaves the batch
    after its last token. Stops before the first step that starts at or after the next
    arrival, the promise horizon or ``limit_s``, and before the first step whose new KV
    blocks do not fit (then the policy is asked). It may also stop earlier (it computes
    about as many steps as fit before the next arrival): the next call simply continues.
    Returns ``False`` (nothing run) when the promise's conditions do not hold now.
    ``rids`` (every running request, any order) and their ``comp``, ``gen`` and ``nt``
    may be passed by the caller that has them at hand.
    """
    if rids is None:
        rids = st.running_ids()
        gen = st.generated[rids]
        nt = st.nt[rids]
        comp = st.computed[rids]
    assert comp is not None and gen is not None and nt is not None
    m = int(rids.size)
    if m > st.max_batch_tokens or _min(gen) < 1 or _nz(nt != 1):
        return False
    rem = st.O[rids] - gen  # >= 1: finished requests are not running
    K = int(_max(rem))
    c_all = int(_sum(comp))
    limit = min(st.next_arrival_s() - ARRIVAL_EPS_S, st.promise_until, limit_s)
    if limit < math.inf:  # steps that fit before the limit (estimate + margin)
        dt0 = st.dt_dec
        if dt0 <= 0.0:
            dt0 = float(st.e.step_time_s(
                BatchShape(decode_seqs=m, decode_context_tokens=c_all + m)))
        K = min(K, int((limit - start) / dt0 * 1.25) + 4)
    if st.max_steps is not None:
        K = min(K, st.max_steps - st.step)
    kv = st.kv
    b = kv.block_tokens
    if kv.cache is not None:  # with a prefix cache, a run ends at its first completions
        K = min(K, int(_min(rem)))  # (frees and evictions then interleave as stepping does)
    # KV: request i needs a new block at steps s (0-based) with (comp_i + s) % b == 0,
    # s < rem_i; it frees ceil((comp_i + rem_i) / b) blocks after step rem_i - 1.
    K = kv.decode_run_steps_fitting(comp, rem, K)
    if K < 1:
        return False
    # segments of constant batch: the batch shrinks after each completion inside the run
    rmin = int(_min(rem))
    segs = [(0, m, c_all)]  # (first step, batch size, sum of comp over the batch)
    if rmin < K:
        early = rem < K
        n_left, c_left = m, c_all
        prev = -1
        for r, cv in sorted(zip(rem[early].tolist(), comp[early].tolist())):
            n_left -= 1
            c_left -= cv
            if r == prev:
                segs[-1] = (r, n_left, c_left)
            else:
                segs.append((r, n_left, c_left))
            prev = r
    aligned = st.align is not None
    idx0 = round(start / st.slot_s) if (aligned and st.slot_s) else 0
    carry = start
    step = st.step
    rec = st.rec
    i0 = rec.steps.reserve(K)
    c = rec.steps.cols
    k = 0
    last_end = start
    for q, (a, nn, cc) in enumerate(segs):
        z = segs[q + 1][0] if q + 1 < len(segs) else K
        ln = z - a
        dts = st.dst(nn, cc + nn * (a + 1), ln)
        i = i0 + a
        s0 = c[0][i:i + ln]  # written in place in the step buffers (rows past the cut
        e1 = c[1][i:i + ln]  # are given back below)
        if aligned:
            np.multiply(np.arange(idx0 + a, idx0 + a + ln), st.slot_s, out=s0)
            np.add(s0, dts, out=e1)
        else:  # sequential sums, as step by step: end = start + dt
            e1[:] = dts
            e1[0] += carry
            np.add.accumulate(e1, out=e1)
            s0[0] = carry
            s0[1:] = e1[:-1]
        # starts increase: the first step starting at or after the limit is not run
        cut = int(s0.searchsorted(limit)) if s0[-1] >= limit else ln
        if a == 0 and cut == 0:
            cut = 1
        if cut:
            j = i + cut
            c[3][i:j] = nn
            c[4][i:j] = np.arange(cc + nn * (a + 1), cc + nn * (a + cut) + 1, nn)
            last_end = float(e1[cut - 1])
        k = a + cut
        if cut < ln:
            break
        carry = last_end
    rec.steps.n = i0 + k  # give back the rows not run
    c[2][i0:i0 + k] = 0
    c[5][i0:i0 + k] = 0.0
    st.last_end = last_end
    ends = c[1][i0:i0 + k]
    st.dt_dec = float(ends[-1] - c[0][i0 + k - 1])  # next run's step-count estimate
    # allocations and state
    ki = np.minimum(rem, k)
    rec.record_allocs(rids, None, step, ki)
    newc = comp + ki
    new_held = -(-newc // b)
    if kv.cache is not None:
        kv.cache.decode_run(rids, comp, k)  # k <= every rem: all ran k steps
        kv.sync_cache(rids, new_held, kv.extra_blocks(rids, new_held))
    else:
        kv.set_held(rids, new_held, kv.extra_blocks(rids, new_held))
    st.computed[rids] = newc
    st.generated[rids] = gen + ki
    if k >= rmin:
        done = rem <= k
        fsteps = rem[done] - 1
        st.close_finished(rids[done], step + fsteps, ends[fsteps])
    st.step += k
    st.now = st.last_end
    return True
