"""The step executor: check a scheduler's plan, apply its evictions, run the step, update state.

A plan is checked against the engine's rules before anything changes (known, arrived and
schedulable ids, ``1 <= tokens <= next_tokens``, the token budget, KV blocks); the first broken
rule raises :class:`InvalidPlan` naming the scheduler, the step and the smallest offending id.
The step's time comes from the engine model (plus any KV transfer time); a pure-decode plan the
policy promised to repeat (``StepPlan.repeat_until_s``) runs as many identical steps as
:func:`~.fastforward.fast_forward_len` allows, and a continuous-batching promise
(``StepPlan.decode_all_until_s``) continues in :func:`~.fastforward.decode_all_run`.
"""

from __future__ import annotations

import math

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.schedule import ARRIVAL_EPS_S, EventKind
from slo_opt.schedulers.base import StepPlan
from slo_opt.sim._ops import max_ as _max
from slo_opt.sim._ops import min_ as _min
from slo_opt.sim._ops import nz as _nz
from slo_opt.sim._ops import sum_ as _sum
from slo_opt.sim.fastforward import decode_all_run, fast_forward_len
from slo_opt.sim.state import DONE, NOT_ARRIVED, REJECTED, RUNNING, SWAPPED, WAITING, EngineState

__all__ = ["InvalidPlan", "apply_evictions", "execute", "fail"]


class InvalidPlan(RuntimeError):
    """A scheduler returned a plan that violates the engine's rules."""

    def __init__(self, scheduler: str, step: int, reason: str) -> None:
        super().__init__(f"scheduler {scheduler!r} returned an invalid plan at step {step}: {reason}")
        self.scheduler = scheduler
        self.step = step
        self.reason = reason


def fail(st: EngineState, reason: str) -> None:
    """Raise the :class:`InvalidPlan` of the current step."""
    raise InvalidPlan(st.sname, st.step, reason)


def apply_evictions(st: EngineState, plan: StepPlan) -> bool:
    """Apply the plan's rejections, recompute preemptions and swap-outs; whether any."""
    if not (plan.reject or plan.preempt or plan.swap_out):
        return False
    st.views[0] = st.views[1] = st.views[2] = None
    kv = st.kv
    ev = st.rec.events
    changed = False
    if plan.reject:
        rej = sorted(plan.reject)
        for rid in rej:
            if not (0 <= rid < st.n) or st.state[rid] != WAITING:
                fail(st, f"reject of request {rid} which is not waiting")
            st.state[rid] = REJECTED
        st.waiting.remove(np.array(rej, dtype=np.int64))
        st.num_closed += len(rej)
        changed = True
    both = set(plan.preempt) & set(plan.swap_out)
    if both:
        fail(st, f"requests {sorted(both)} both preempted and swapped out")
    cache = kv.cache
    if cache is not None and plan.preempt:  # vLLM frees victims newest first
        pos = {r: i for i, r in enumerate(st.running)}
    for rid in sorted(plan.preempt):
        if not (0 <= rid < st.n) or st.state[rid] != RUNNING:
            fail(st, f"preempt of request {rid} which is not running")
        st.running.remove(rid)
        ev.append((st.step, rid, int(EventKind.PREEMPT_RECOMPUTE), int(st.computed[rid])))
        if cache is None:
            kv.release_one(rid)
        st.computed[rid] = 0
        st.nt[rid] = st.P[rid] + st.generated[rid]
        st.state[rid] = WAITING
        st.waiting.add(rid)
        changed = True
    if cache is not None and plan.preempt:
        for rid in sorted(plan.preempt, key=pos.__getitem__, reverse=True):
            kv.release_one(rid)
    for rid in sorted(plan.swap_out):
        if not (0 <= rid < st.n) or st.state[rid] != RUNNING:
            fail(st, f"swap_out of request {rid} which is not running")
        st.running.remove(rid)
        c = int(st.computed[rid])
        ev.append((st.step, rid, int(EventKind.SWAP_OUT), c))
        st.pending_swap_s += kv.transfer_s(c)
        kv.release_one(rid)
        st.state[rid] = SWAPPED
        st.swapped.append(rid)
        changed = True
    return changed


def execute(st: EngineState, plan: StepPlan, limit_s: float = math.inf) -> None:
    """Run the plan's step (and the steps its promises cover) from ``st.now``."""
    tk = plan.tokens
    m = len(tk)
    rids = np.fromiter(tk.keys(), np.int64, m)
    toks = np.fromiter(tk.values(), np.int64, m)
    # rows stay in plan order (the records are sorted at the end); a bad plan is
    # re-checked in id order so that the message names the smallest offending id
    if _min(rids) < 0 or _max(rids) >= st.n:
        _plan_error(st, rids, toks)
    sta = st.state[rids]
    smin = int(_min(sta))
    smax = int(_max(sta))
    if smin < WAITING or smax > SWAPPED:
        _plan_error(st, rids, toks)
    comp = st.computed[rids]
    gen_old = st.generated[rids]
    nxt = st.nt[rids]  # == P + generated - computed
    if _min(toks) < 1 or _nz(toks > nxt):
        _plan_error(st, rids, toks)
    total = int(_sum(toks))
    if total > st.max_batch_tokens:
        fail(st, f"{total} tokens exceed the engine's max_batch_tokens {st.e.max_batch_tokens}")
    # KV: swapped-in requests bring their blocks back (they hold none); everyone may grow.
    kv = st.kv
    b = kv.block_tokens
    cache = kv.cache
    hitv = None
    if cache is not None and smin == WAITING:
        # prefix caching: waiting rows reuse their longest cached prefix, in plan order
        hitv, need = _cache_hits(st, rids, toks, sta)
        comp = comp + hitv
        nxt = nxt - hitv
        if _nz(toks > nxt):
            i = int(np.flatnonzero(toks > nxt)[0])
            fail(st, f"request {int(rids[i])}: {int(toks[i])} tokens > next_tokens "
                     f"{int(nxt[i])} after a prefix-cache hit of {int(hitv[i])} tokens")
    newc = comp + toks
    new_held = -(-newc // b)
    held = kv.held[rids]  # 0 for waiting and swapped requests
    if hitv is None:
        need = int(_sum(new_held)) - int(_sum(held))
    if need > kv.free_blocks:
        fail(st, f"KV overflow: needs {need} blocks, {kv.free_blocks} free")
    swap_s = st.pending_swap_s
    st.pending_swap_s = 0.0
    swapped_in = False
    if st.swapped:
        sw = sta == SWAPPED
        if _nz(sw):
            swapped_in = True
            st.views[2] = None
            for r in np.sort(rids[sw]).tolist():
                c = int(st.computed[r])
                st.rec.events.append((st.step, r, int(EventKind.SWAP_IN), c))
                swap_s += kv.transfer_s(c)
                st.swapped.remove(r)
    # batch shape
    is_dec = (toks == 1) & (nxt == 1) & (gen_old >= 1)
    n_dec = int(np.count_nonzero(is_dec))
    pure = n_dec == m
    if pure:
        ctx_dec = int(_sum(comp)) + m
        shape = BatchShape(decode_seqs=m, decode_context_tokens=ctx_dec)
    else:
        pf = ~is_dec
        shape = BatchShape(
            prefill_tokens=int(_sum(toks[pf])),
            decode_seqs=n_dec,
            decode_context_tokens=int(_sum(comp[is_dec])) + n_dec,
            prefill_seqs=m - n_dec,
            prefill_context_tokens=int(_sum(newc[pf])),
        )
    start = st.align(st.now) if st.align is not None else st.now
    dt = float(st.e.step_time_s(shape))
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"engine {st.e.name!r} returned step time {dt!r} for {shape}")
    end = start + dt + swap_s

    # fast-forward a pure-decode plan the policy promised to repeat
    step = st.step
    k = 1
    # (a step that carries KV-transfer time is never fast-forwarded: the vectorised step
    # times do not include it)
    if (st.ff and pure and plan.repeat_until_s > start and swap_s == 0.0
            and not plan.preempt and not plan.swap_out and not swapped_in):
        k = fast_forward_len(st, rids, comp, gen_old, start, dt,
                             min(plan.repeat_until_s, limit_s))
    rec = st.rec
    if k > 1:
        starts, ends, ctx0 = st.ff_times
        i = rec.steps.reserve(k)
        sc = rec.steps.cols
        j = i + k
        sc[0][i:j] = starts
        sc[1][i:j] = ends
        sc[2][i:j] = 0
        sc[3][i:j] = m
        sc[4][i:j] = np.arange(ctx0, ctx0 + m * k, m, dtype=np.int64)
        sc[5][i:j] = 0.0
        st.last_end = float(ends[-1])
        rec.record_allocs(rids, None, step, k)
    else:
        rec.add_step(start, end, shape.prefill_tokens, shape.decode_seqs, shape.context_tokens,
                     swap_s)
        st.last_end = end
        if pure:
            rec.record_allocs(rids, None, step, 1)
        else:
            rec.record_allocs(rids, toks, step, 1, (toks == 1) & (nxt == 1))
    if cache is not None:
        _cache_apply(st, rids, comp, toks, hitv, k)
    # state update (k tokens of decode per request, or one step of the plan)
    if smin != RUNNING or smax != RUNNING:
        pm = sta != RUNNING
        promoted = rids[pm]
        fs = st.first_scheduled_s[promoted]
        st.first_scheduled_s[promoted[np.isnan(fs)]] = start
        ps_ = np.sort(promoted) if promoted.size > 1 else promoted
        st.waiting.remove(ps_[st.state[ps_] == WAITING])
        st.running.extend(ps_.tolist())
        st.state[promoted] = RUNNING
        st.views[0] = st.views[1] = None
    last_step = step + k - 1
    if k == 1:
        if pure:
            gen = gen_old + 1
        else:
            emit = toks == nxt
            gen = gen_old + emit
            first = emit & (gen_old == 0)
            if _nz(first):
                fr = rids[first]
                st.first_token_step[fr] = last_step
                st.first_token_time_s[fr] = st.last_end
    else:
        newc = comp + k
        new_held = -(-newc // b)
        gen = gen_old + k
    st.computed[rids] = newc
    extra = need if k == 1 else int(_sum(new_held)) - int(_sum(held))
    if cache is not None:
        kv.sync_cache(rids, new_held, extra)
    else:
        kv.set_held(rids, new_held, extra)
    st.generated[rids] = gen
    ntn = st.P[rids] + gen - newc
    if k > 1 or not pure or hitv is not None:  # a pure decode step leaves next_tokens at 1
        st.nt[rids] = ntn
    done = gen == st.O[rids]
    n_done = int(_nz(done))
    if n_done:
        st.close_finished(rids[done], last_step, st.last_end)
    st.step += k
    st.now = float(st.last_end)
    # a decode-all promise holds only if every running request was in this plan
    if (st.ff and plan.decode_all_until_s > -math.inf and not plan.preempt
            and not plan.swap_out and len(st.running) == m - n_done):
        st.promise_until = plan.decode_all_until_s
        if st.windows and plan.admit_all is not None:
            st.admit = plan.admit_all  # the loop runs an admission window next
            return
        # continue right away under the promise (the checks of the loop, fused)
        if (st.running and not st.waiting and not st.swapped
                and (st.max_steps is None or st.step < st.max_steps)
                and st.next_arrival_s() > st.now + ARRIVAL_EPS_S):
            nstart = st.align(st.now) if st.align is not None else st.now
            if nstart < limit_s and nstart < st.promise_until:
                if n_done:
                    keep = ~done
                    rids, newc, gen, ntn = rids[keep], newc[keep], gen[keep], ntn[keep]
                decode_all_run(st, nstart, limit_s, rids, newc, gen, ntn)


def _cache_hits(st: EngineState, rids: np.ndarray, toks: np.ndarray, sta: np.ndarray
                ) -> tuple[np.ndarray, int]:
    """Prefix-cache hits of the plan's waiting rows and the free blocks the plan takes, as
    applying it in plan order will find them (a scratch plan: nothing changes)."""
    cache = st.kv.cache
    assert cache is not None
    cp = cache.plan()
    hitv = np.zeros(rids.size, np.int64)
    for i, (r, t, s) in enumerate(zip(rids.tolist(), toks.tolist(), sta.tolist())):
        if s == WAITING:
            h = cp.lookup(r)[0]
            hitv[i] = h
            if t <= int(st.nt[r]) - h:
                cp.admit(r, h, t)
        else:
            cp.grow(r, t)
    return hitv, cp.used


def _cache_apply(st: EngineState, rids: np.ndarray, comp: np.ndarray, toks: np.ndarray,
                 hitv: np.ndarray | None, k: int) -> None:
    """Apply the step's (or the ``k`` fast-forwarded decode steps') cache operations in plan
    order: admissions with their hits (``CACHE_HIT`` events), allocations, block names."""
    cache = st.kv.cache
    assert cache is not None
    if k > 1:
        cache.decode_run(rids, comp, k)
        return
    b = cache.b
    if hitv is not None:
        ev = st.rec.events
        kind = int(EventKind.CACHE_HIT)
        for r, c, t, h in zip(rids.tolist(), comp.tolist(), toks.tolist(), hitv.tolist()):
            if st.state[r] == WAITING:
                got = cache.admit(r, t)
                if got != h:
                    raise RuntimeError(f"prefix cache: request {r} hit {got} tokens, "
                                       f"the plan's scratch copy predicted {h}")
                if h:
                    ev.append((st.step, r, kind, h))
            else:
                cache.grow(r, c + t)
        return
    newc = comp + toks
    held = -(-comp // b)
    moves = np.flatnonzero((-(-newc // b) > held) | (newc // b > comp // b)
                           | (st.state[rids] == SWAPPED))
    if moves.size:
        for i in moves.tolist():
            cache.grow(int(rids[i]), int(newc[i]))


def _plan_error(st: EngineState, rids: np.ndarray, toks: np.ndarray) -> None:
    """Raise the :class:`InvalidPlan` of the first bad row in id order."""
    order = rids.argsort(kind="stable")
    rids = rids[order]
    toks = toks[order]
    if rids[0] < 0 or rids[-1] >= st.n:
        fail(st, f"unknown request id in {rids.tolist()}")
    sta = st.state[rids]
    bad = (sta != WAITING) & (sta != RUNNING) & (sta != SWAPPED)
    if _nz(bad):
        r = int(rids[np.flatnonzero(bad)[0]])
        why = {NOT_ARRIVED: "has not arrived", DONE: "is finished",
               REJECTED: "was rejected"}.get(int(st.state[r]), "is not schedulable")
        fail(st, f"request {r} {why}")
    if _min(toks) < 1:
        r = int(rids[np.flatnonzero(toks < 1)[0]])
        fail(st, f"request {r}: tokens must be >= 1")
    nxt = st.nt[rids]
    over = toks > nxt
    i = int(np.flatnonzero(over)[0])
    fail(st, f"request {int(rids[i])}: {int(toks[i])} tokens > next_tokens {int(nxt[i])}")
