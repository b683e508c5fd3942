"""Admission windows: many arrivals, admissions, decodes and completions in one vectorised pass.

Private helper of :mod:`slo_opt.sim.simulator` for policies that give the FCFS-admission promise
(:class:`~slo_opt.schedulers.base.AdmitPromise`, e.g. vLLM). Under that promise the batch of
every step is a function of the step at which each request is admitted: a request admitted at
step ``s`` computes its whole prompt at ``s`` and one decode token at each step up to
``s + output_tokens - 1``; a running request finishes after its remaining tokens. So, given
admission steps, the batch shapes of all steps are closed-form (difference arrays), the step
times are one vectorised engine call and the start times one sequential sum; and given the
start times, each admission step is the first step whose start sees the arrival. The window
solves that fixed point by iteration, from a first guess made event by event
(:func:`~.window_guess.guess_admission_steps`: between two admissions or completions the decode step time is affine in
the step index, so the step at which the next arrival becomes visible solves a quadratic); with
that guess one or two iterations suffice.

Exactness: the start time of step ``j`` depends only on admissions at steps ``< j``. If two
successive iterates agree on every admission before step ``j0``, the times of steps
``0 .. j0`` are those of step-by-step simulation, so steps ``[0, j0)`` are committed even when
the iteration has not converged. Every condition of the promise (token budget, sequence cap,
KV blocks with a conservative bound, a non-empty batch, no rejection on arrival, the promise
horizon, ``max_steps``, and Orca's reservations when the promise carries them) is checked
per step on the committed prefix; the window stops before the first step where one fails and
the policy is asked again. The result is identical to stepping, bit for bit
(``tests/sim/test_admit_window.py`` compares both, including arrivals placed on step starts).

Not covered (the simulator falls back to its per-event path): online co-simulation (arrivals
are pushed, not known ahead), slot-aligned engines, engines without ``batch_step_times_s``,
and prompts that must be chunked (a waiting prompt larger than what the budget leaves): those
steps call the scheduler.
"""

from __future__ import annotations

import math

import numpy as np

from slo_opt.schedulers.base import reserved_blocks
from slo_opt.sim.state import RUNNING, EngineState
from slo_opt.sim.window_guess import guess_admission_steps

__all__ = ["run_admit_window"]

#: Future arrivals considered per window.
WINDOW_ARRIVALS = 128
#: Steps one window looks ahead at most (bounds its arrays when arrivals are sparse).
MAX_WINDOW_STEPS = 1 << 16
#: Fixed-point iterations per window before committing the consistent prefix.
MAX_ITERATIONS = 6



def _cum(starts: np.ndarray, ends: np.ndarray, weights: np.ndarray | None, size: int
         ) -> np.ndarray:
    """Per-step sums of intervals ``[start, end)`` (optionally weighted), steps ``0..size-1``."""
    if weights is None:
        d = np.bincount(starts, minlength=size + 1) - np.bincount(ends, minlength=size + 1)
        return np.cumsum(d[:size])
    d = (np.bincount(starts, weights=weights, minlength=size + 1)
         - np.bincount(ends, weights=weights, minlength=size + 1))
    return np.rint(np.cumsum(d[:size])).astype(np.int64)


def run_admit_window(sim: EngineState, start: float, limit_s: float, eps_s: float) -> bool:
    """Run one admission window from ``start`` (the simulator's clock); ``False`` if none.

    ``sim`` is the simulator's state (:class:`~slo_opt.sim.state.EngineState`) with an active
    ``AdmitPromise`` in ``sim.admit``; the caller checked that fast-forward is on, the run is
    offline, the engine has ``batch_step_times_s`` and start times are not slot-aligned.
    ``eps_s`` is the simulator's arrival tolerance (an arrival at ``a`` is visible to a step
    starting at ``t`` iff ``a <= t + eps_s``).
    """
    promise = sim.admit
    assert promise is not None
    budget = int(promise.token_budget)
    max_seqs = int(promise.max_seqs)
    b = sim.kv.block_tokens
    P, O, A = sim.P, sim.O, sim.arr
    # --- the batch now: running requests (all in decode) and fresh waiting requests
    rids = sim.running_ids()
    m = int(rids.size)
    wq = sim.waiting.array()
    nw = int(wq.size)
    if m + nw > max_seqs:
        return False
    if nw:
        pw = P[wq]
        if m + int(pw.sum()) > budget or np.count_nonzero(sim.computed[wq]) or \
                np.count_nonzero(sim.generated[wq]):
            return False
    elif m == 0:
        return False
    resv_out = promise.reserve_output_tokens
    if resv_out is not None:  # Orca: reserved blocks of every running and admitted request
        resv_r = reserved_blocks(P[rids], O[rids], resv_out, b)
        resv_w = reserved_blocks(P[wq], O[wq], resv_out, b)
        if int(resv_r.sum()) + int(resv_w.sum()) > sim.kv.capacity_blocks:
            return False
    comp0 = sim.computed[rids]
    gen0 = sim.generated[rids]
    if m and (int(gen0.min()) < 1 or np.count_nonzero(sim.nt[rids] != 1)):
        return False
    rem0 = O[rids] - gen0
    # --- step 0's batch is known (one decode token per running request, the whole prompt of
    # every waiting one; later arrivals join at step 1 or later): when it already breaks the
    # conservative KV bound checked per step below, the window would commit nothing, so skip
    # the guess and the fixed point (on KV-tight engines most windows end here)
    cap_tokens = sim.kv.capacity_blocks * b
    if (int(comp0.sum()) + m + (int(pw.sum()) if nw else 0) + (b - 1) * (m + nw)
            > cap_tokens):
        return False
    # --- candidates: the waiting requests (admitted at step 0) and the next future arrivals
    a0 = sim.next_arrival
    a1 = min(sim.n, a0 + WINDOW_ARRIVALS)
    fut = np.arange(a0, a1, dtype=np.int64)
    cids = np.concatenate((wq, fut))
    Pc, Oc = P[cids], O[cids]
    Af = A[a0:a1]
    nf = int(fut.size)
    # --- a first guess of the admission steps (event-level, closed-form decode sums), then
    # the horizon: the window ends at the last candidate's step unless no arrival follows
    if nf:
        s_fut = guess_admission_steps(sim, start, eps_s, rem0, comp0, Pc[:nw], Oc[:nw], Af, Pc[nw:],
                             Oc[nw:])
        if s_fut[-1] >= MAX_WINDOW_STEPS:  # sparse arrivals: keep the arrays bounded
            keep = int(s_fut.searchsorted(MAX_WINDOW_STEPS)) + 1  # + the first one beyond
            if keep < nf:
                nf = keep
                a1 = a0 + keep
                cids, Pc, Oc = cids[:nw + keep], Pc[:nw + keep], Oc[:nw + keep]
                Af, s_fut = Af[:keep], s_fut[:keep]
        H = int(s_fut[-1]) + 2
    else:
        s_fut = np.zeros(0, np.int64)
        H = 0
    if a1 == sim.n:  # no arrival after this window: run until the batch drains
        H = max(H, int(rem0.max()) if m else 0, int((Oc[:nw]).max()) + 1 if nw else 0) + 1
    H = min(H, MAX_WINDOW_STEPS)
    if sim.max_steps is not None:
        H = min(H, sim.max_steps - sim.step)
        if H < 1:
            return False
    np.minimum(s_fut, H, out=s_fut)
    # fixed parts of the difference arrays: the running requests decode at steps [0, rem0)
    r_start = np.zeros(m, np.int64)
    r_end = np.minimum(rem0, H)
    r_w = (comp0 + 1).astype(np.float64)  # context of step j: comp0 + 1 + j
    dec2 = Oc >= 2
    steps_j = np.arange(H, dtype=np.int64)
    eps = eps_s
    f = sim.e.batch_step_times_s  # type: ignore[attr-defined]
    until = min(promise.until_s, limit_s)
    if nf:
        # an arrival that must be rejected (its peak KV, or its reservation, exceeds the
        # cache) ends the window
        peak_bad = -(-(Pc[nw:] + Oc[nw:] - 1) // b) > sim.kv.capacity_blocks
        if resv_out is not None:
            resv_f = reserved_blocks(Pc[nw:], Oc[nw:], resv_out, b)
            peak_bad |= resv_f > sim.kv.capacity_blocks
            # reservations held at steps [0, rem0) and [s, s + output)
            resv_c = np.concatenate((resv_w, resv_f)).astype(np.float64)
        rej = np.flatnonzero(peak_bad)
    elif resv_out is not None:
        resv_c = resv_w.astype(np.float64)
    it = 0
    while True:
        s_c = np.concatenate((np.zeros(nw, np.int64), s_fut))
        adm = s_c < H
        dm = adm & dec2
        sd = s_c[dm]
        starts = np.concatenate((r_start, sd + 1))
        ends = np.concatenate((r_end, np.minimum(sd + Oc[dm], H)))
        n_dec = _cum(starts, ends, None, H)
        w = np.concatenate((r_w, (Pc[dm] - sd).astype(np.float64)))
        dctx = _cum(starts, ends, w, H) + steps_j * n_dec
        sa = s_c[adm]
        pf = np.bincount(sa, weights=Pc[adm], minlength=H)[:H].astype(np.int64)
        ps = np.bincount(sa, minlength=H)[:H]
        dts = f(pf, n_dec, dctx, ps, pf)
        T = np.empty(H + 1)
        T[0] = start
        T[1:] = dts
        np.add.accumulate(T, out=T)
        # the first step where the promise's conditions fail (exact if before j0 below)
        nseq = n_dec + ps
        bad = ((n_dec + pf > budget) | (nseq > max_seqs) | (nseq == 0)
               | (dctx + pf + (b - 1) * nseq > cap_tokens))
        if until < math.inf:
            bad |= T[:H] >= until
        if resv_out is not None:
            held = _cum(np.concatenate((r_start, sa)),
                        np.concatenate((r_end, np.minimum(sa + Oc[adm], H))),
                        np.concatenate((resv_r.astype(np.float64), resv_c[adm])), H)
            bad |= held > sim.kv.capacity_blocks
        J = int(np.argmax(bad)) if np.count_nonzero(bad) else H
        if nf:
            if rej.size:
                J = min(J, int(s_fut[rej].min()))
            if a1 < sim.n:  # the arrival after the last candidate may join at the last one's step
                J = min(J, int(s_fut[-1]))
            # admission steps implied by these start times: agree on every step before J?
            Th = T[:H] + eps
            s_new = Th.searchsorted(Af)  # first step whose start sees the arrival
            diff = (s_new != s_fut) & (np.minimum(s_new, s_fut) < J)
            if np.count_nonzero(diff):
                j0 = int(np.minimum(s_new, s_fut)[diff].min())
                it += 1
                if it < MAX_ITERATIONS:
                    # next guess: an arrival admitted too early saw start times inflated by
                    # its own prompt after its admission step; search again without it
                    late = diff & (s_new > s_fut)
                    if np.count_nonzero(late):
                        k = np.flatnonzero(late)
                        sk = s_fut[k]
                        pk = Pc[nw + k]
                        rest = pf[sk] - pk
                        own = dts[sk] - f(rest, n_dec[sk], dctx[sk], ps[sk] - 1, rest)
                        s_new[k] = Th.searchsorted(Af[k] + own)
                    s_fut = s_new
                    continue
                J = j0  # the prefix before the first disagreement is exact
        break
    if J < 1:
        return False
    _commit(sim, J, T, dts, n_dec, dctx, pf, rids, comp0, gen0, rem0, cids, s_c, Pc, Oc, nw, a0)
    return True


def _commit(sim: EngineState, J: int, T: np.ndarray, dts: np.ndarray, n_dec: np.ndarray,
            dctx: np.ndarray, pf: np.ndarray, rids: np.ndarray, comp0: np.ndarray,
            gen0: np.ndarray, rem0: np.ndarray, cids: np.ndarray, s_c: np.ndarray,
            Pc: np.ndarray, Oc: np.ndarray, nw: int, a0: int) -> None:
    """Write steps ``[0, J)`` of the window to the records and the request state."""
    b = sim.kv.block_tokens
    S0 = sim.step
    # step rows
    i = sim.rec.steps.reserve(J)
    c = sim.rec.steps.cols
    j = i + J
    c[0][i:j] = T[:J]
    c[1][i:j] = T[1:J + 1]
    c[2][i:j] = pf[:J]
    c[3][i:j] = n_dec[:J]
    c[4][i:j] = dctx[:J] + pf[:J]
    c[5][i:j] = 0.0
    # running requests at the start: one decode token per step until done or the window ends
    fin, fin_step = [], []
    if rids.size:
        ki = np.minimum(rem0, J)
        sim.rec.record_allocs(rids, None, S0, ki)
        newc = comp0 + ki
        new_held = -(-newc // b)
        sim.kv.free_blocks -= int(new_held.sum()) - int(sim.kv.held[rids].sum())
        sim.kv.held[rids] = new_held
        sim.computed[rids] = newc
        sim.generated[rids] = gen0 + ki
        done = rem0 <= J
        fin.append(rids[done])
        fin_step.append(rem0[done] - 1)
    # admitted candidates
    cm = s_c < J
    ids = cids[cm]
    s = s_c[cm]
    p = Pc[cm]
    o = Oc[cm]
    keep: list[int] = []
    if ids.size:
        st = S0 + s
        fsched = sim.first_scheduled_s[ids]
        new = np.isnan(fsched)
        sim.first_scheduled_s[ids[new]] = T[s[new]]
        sim.first_token_step[ids] = st
        sim.first_token_time_s[ids] = T[s + 1]
        last = np.minimum(s + o - 1, J - 1)  # last step computed in the window
        d = last - s  # decode tokens in the window
        comp = p + d
        gen = 1 + d
        sim.computed[ids] = comp
        sim.generated[ids] = gen
        sim.nt[ids] = 1
        # allocations: the prompt (one row; a one-token prompt starts the decode run), then one
        # run of decode tokens
        multi = p > 1
        if np.count_nonzero(multi):
            sim.rec.emit(ids[multi], st[multi], 1, p[multi])
        one = ~multi
        run = one | (d >= 1)
        if np.count_nonzero(run):
            r_ids = ids[run]
            sim.rec.run_start[r_ids] = np.where(one[run], st[run], st[run] + 1)
            sim.rec.run_end[r_ids] = S0 + last[run] + 1
        held = -(-comp // b)
        sim.kv.held[ids] = held
        sim.kv.free_blocks -= int(held.sum())
        sim.state[ids] = RUNNING
        done = gen == o
        fin.append(ids[done])
        fin_step.append(s[done] + o[done] - 1)
        keep = ids[~done].tolist()
    # completions (frees their blocks, leaves the running list), then the queues
    fr = np.concatenate(fin) if fin else np.zeros(0, np.int64)
    if fr.size:
        fs = np.concatenate(fin_step)
        sim.close_finished(fr, S0 + fs, T[fs + 1])
    if nw:
        sim.waiting.clear()
    sim.running.extend(keep)
    sim.next_arrival = a0 + int(np.count_nonzero(cm[nw:]))
    sim.views[0] = sim.views[1] = None
    sim.step = S0 + J
    sim.now = sim.last_end = float(T[J])
    sim.dt_dec = float(dts[J - 1])
    sim.promise_until = sim.admit.until_s  # type: ignore[union-attr]
