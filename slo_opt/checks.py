"""The one feasibility oracle: :func:`violations` of a :class:`~slo_opt.schedule.Schedule`.

Every producer of schedules (the simulator, the MILP extractors, user code) is checked by this
module and nothing else. It re-derives the token accounting from the allocation and event
tables, so a schedule is feasible only if it could have been executed on the engine.
"""

from __future__ import annotations

import math

import numpy as np

from slo_opt.engine import BatchShape, EngineModel
from slo_opt.request import Workload
from slo_opt.schedule import EventKind, Schedule

__all__ = ["is_feasible", "violations"]

_TIME_TOL = 1e-9


def violations(
    schedule: Schedule,
    workload: Workload,
    engine: EngineModel,
    *,
    check_step_times: bool = True,
    max_messages: int = 50,
) -> list[str]:
    """All rule violations of ``schedule`` (an empty list means feasible).

    Checked: table shapes; steps ordered and non-overlapping; allocations reference existing
    steps and requests, at most one per (step, request), tokens >= 1; no allocation before the
    request arrives; per-step tokens <= ``engine.max_batch_tokens``; per-request token accounting
    (tokens never exceed what is needed for the next output token, decode steps give exactly one
    token, events only on resident requests) and the recorded first-token / finish steps; no
    allocation after completion; a rejected request neither finishes nor keeps resident KV
    (it may have been served before a recompute preemption or a swap-out that preceded its
    rejection, nothing after); prefix-cache hits (``CACHE_HIT``:
    non-resident, whole blocks, at most ``num_tokens - 1``, no more than the request computed
    before or shares through ``workload.prefix_ids``); KV blocks held at every step <=
    capacity (a block shared through a cache hit counts once per holder: an upper bound, so a
    schedule with shared hits that this bound rejects is reported as unverifiable); each step's
    swap time re-derived from the swap events (see Notes) equals the recorded ``swap_s``; and,
    if ``check_step_times``, each step lasts ``engine.step_time_s`` of its batch shape plus
    that re-derived swap time.

    Notes
    -----
    Swap time is re-derived from the engine model, not read from the schedule: every
    ``SWAP_OUT`` and ``SWAP_IN`` event of ``c`` tokens at step ``s`` (and an allocation to a
    swapped-out request without a ``SWAP_IN`` event, an implicit swap-in of its resident
    tokens) charges ``c * engine.kv_bytes_per_token / engine.host_bandwidth_bytes_per_s``
    seconds to step ``s``, the transfer model documented in :mod:`slo_opt.schedule` and
    ``EngineModel.host_bandwidth_bytes_per_s``. A schedule whose swaps were made free
    therefore fails both the ``swap_s`` check and the step-duration check.
    """
    out: list[str] = []

    def bad(msg: str) -> bool:
        out.append(msg)
        return len(out) >= max_messages

    n = len(workload)
    if schedule.num_requests != n:
        return [f"schedule has {schedule.num_requests} requests, workload has {n}"]
    steps = schedule.steps
    T = len(steps)
    st, en = steps.start_s, steps.end_s
    if T:
        if not np.all(np.isfinite(st)) or not np.all(np.isfinite(en)):
            return ["step times must be finite"]
        if st[0] < -_TIME_TOL:
            bad(f"step 0 starts at {st[0]} < 0")
        neg = np.flatnonzero(en < st - _TIME_TOL)
        if neg.size:
            bad(f"step {int(neg[0])} ends before it starts")
        ov = np.flatnonzero(st[1:] < en[:-1] - _TIME_TOL * np.maximum(1.0, np.abs(en[:-1])))
        if ov.size:
            bad(f"step {int(ov[0]) + 1} starts at {st[ov[0] + 1]} before step {int(ov[0])} ends at {en[ov[0]]}")

    a = schedule.allocs
    if len(a):
        if (a.step < 0).any() or (a.step + a.num_steps > T).any():
            return out + ["allocation refers to a step outside the step table"]
        if (a.request < 0).any() or (a.request >= n).any():
            return out + ["allocation refers to an unknown request"]
        if (a.tokens < 1).any() or (a.num_steps < 1).any():
            bad("allocation with tokens < 1 or num_steps < 1")
    s_exp, r_exp, t_exp = a.expand()
    if s_exp.size:
        dup = (s_exp[1:] == s_exp[:-1]) & (r_exp[1:] == r_exp[:-1])
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            bad(f"request {int(r_exp[i])} has two allocations in step {int(s_exp[i])}")
        early = st[s_exp] < workload.arrival_s[r_exp] - _TIME_TOL
        if early.any():
            i = int(np.flatnonzero(early)[0])
            bad(f"request {int(r_exp[i])} computes in step {int(s_exp[i])} (t={st[s_exp[i]]:.6g}s) "
                f"before its arrival at {workload.arrival_s[r_exp[i]]:.6g}s")
    tok_per_step = np.bincount(s_exp, weights=t_exp, minlength=T).astype(np.int64)
    over = np.flatnonzero(tok_per_step > engine.max_batch_tokens)
    if over.size:
        bad(f"step {int(over[0])} computes {int(tok_per_step[over[0]])} tokens > "
            f"max_batch_tokens {engine.max_batch_tokens}")

    # -- per-request token accounting, KV timeline and batch shapes -----------------------
    b = int(engine.kv_block_tokens)
    cap_blocks = int(engine.kv_capacity_tokens) // b
    kv_delta = np.zeros(T + 1, np.int64)
    pf_tok = np.zeros(T, np.int64)
    pf_ctx = np.zeros(T, np.int64)
    dec = np.zeros(T, np.int64)
    dec_ctx = np.zeros(T, np.int64)
    # seconds of host<->device KV transfer charged to each step (index T: after the last step)
    swap_need = np.zeros(T + 1)
    sec_per_tok = float(engine.kv_bytes_per_token) / float(engine.host_bandwidth_bytes_per_s)
    P, O = workload.prompt_tokens, workload.output_tokens
    ev = schedule.events
    order_a = np.lexsort((a.step, a.request))
    order_e = np.lexsort((ev.step, ev.request))
    a_starts = np.searchsorted(a.request[order_a], np.arange(n + 1))
    e_starts = np.searchsorted(ev.request[order_e], np.arange(n + 1))
    fts, fin, rej = schedule.first_token_step, schedule.finish_step, schedule.rejected
    pid = workload.prefix_ids
    shared_tok = pid.tokens if pid is not None else None
    n_hits = 0
    for rid in range(n):
        ai = order_a[a_starts[rid]:a_starts[rid + 1]]
        ei = order_e[e_starts[rid]:e_starts[rid + 1]]
        if ai.size == 0 and ei.size == 0:
            if fts[rid] >= 0 or fin[rid] >= 0:
                bad(f"request {rid} has a first-token/finish step but no allocations")
            continue
        # merge allocation runs and events in step order (events first within a step)
        items = sorted(
            [(int(a.step[i]), 1, int(a.num_steps[i]), int(a.tokens[i])) for i in ai]
            + [(int(ev.step[i]), 0, int(ev.kind[i]), int(ev.tokens[i])) for i in ei]
        )
        comp = gen = 0
        where = "device"  # or "host"
        first = finish = -1
        held = 0
        seen = 0  # most tokens computed so far (a private block can only be hit again)
        prev_end = -1
        p, o = int(P[rid]), int(O[rid])
        for step, is_alloc, x, y in items:
            if finish >= 0:
                bad(f"request {rid} has activity at step {step} after finishing at step {finish}")
                break
            if not is_alloc:
                kind = EventKind(x)
                if kind in (EventKind.PREEMPT_RECOMPUTE, EventKind.SWAP_OUT):
                    if where != "device" or (held == 0 and comp == 0):
                        bad(f"request {rid}: {kind.name} at step {step} while not resident")
                    if y != comp:
                        bad(f"request {rid}: {kind.name} at step {step} records {y} tokens, has {comp}")
                    kv_delta[step] -= held
                    held = 0
                    if kind == EventKind.PREEMPT_RECOMPUTE:
                        comp = 0
                    else:
                        where = "host"
                        swap_need[step] += comp * sec_per_tok
                elif kind == EventKind.CACHE_HIT:  # prefix caching (see _cache_hit_ok)
                    why = _cache_hit_ok(y, where, held, comp, p + gen, seen, b,
                                        shared_tok[rid] if shared_tok is not None else 0)
                    if why:
                        bad(f"request {rid}: CACHE_HIT of {y} tokens at step {step} {why}")
                    comp = y
                    held = y // b
                    kv_delta[step] += held
                    n_hits += 1
                else:  # SWAP_IN
                    if where != "host":
                        bad(f"request {rid}: SWAP_IN at step {step} while not swapped out")
                    elif y != comp:
                        bad(f"request {rid}: SWAP_IN at step {step} records {y} tokens, "
                            f"swapped out {comp}")
                    where = "device"
                    swap_need[step] += comp * sec_per_tok
                continue
            num, tok = x, y
            if step < prev_end:
                bad(f"request {rid}: overlapping allocations at step {step}")
            if where == "host":
                where = "device"  # implicit swap-in by the first allocation
                swap_need[step] += comp * sec_per_tok
            need = p + gen - comp
            if num > 1 and not (tok == 1 and need == 1):
                bad(f"request {rid}: multi-step run at step {step} that is not one token per step")
                break
            if tok > need:
                bad(f"request {rid}: {tok} tokens at step {step} but only {need} needed "
                    f"for its next output token")
                break
            if num == 1:
                is_dec = tok == 1 and need == 1 and gen >= 1
                if is_dec:
                    dec[step] += 1
                    dec_ctx[step] += comp + 1
                else:
                    pf_tok[step] += tok
                    pf_ctx[step] += comp + tok
                new_comp = comp + tok
                new_held = -(-new_comp // b)
                kv_delta[step] += new_held - held
                held = new_held
                comp = new_comp
                if comp == p + gen:
                    gen += 1
                    if gen == 1:
                        first = step
                    if gen == o:
                        finish = step
            else:
                steps_idx = step + np.arange(num)
                ctx = comp + 1 + np.arange(num)
                if gen == 0:  # the run starts with the last prompt token (1-token prefill)
                    pf_tok[step] += 1
                    pf_ctx[step] += comp + 1
                    dec[steps_idx[1:]] += 1
                    dec_ctx[steps_idx[1:]] += ctx[1:]
                else:
                    dec[steps_idx] += 1
                    dec_ctx[steps_idx] += ctx
                # blocks acquired during the run
                new_comp = comp + num
                tot_blocks = -(-(comp + np.arange(1, num + 1)) // b)
                inc = np.diff(np.concatenate(([held], tot_blocks)))
                np.add.at(kv_delta, steps_idx, inc)
                held = int(tot_blocks[-1])
                comp = new_comp
                if gen == 0:
                    first = step
                gen += num
                if gen > o:
                    bad(f"request {rid}: generates {gen} tokens > output_tokens {o}")
                    break
                if gen == o:
                    finish = step + num - 1
            prev_end = step + num
            seen = max(seen, comp)
            if gen > o:
                bad(f"request {rid}: generates more than {o} output tokens")
                break
        if finish >= 0:
            kv_delta[finish + 1] -= held
        if first != fts[rid]:
            bad(f"request {rid}: recorded first_token_step {int(fts[rid])}, allocations give {first}")
        if finish != fin[rid]:
            bad(f"request {rid}: recorded finish_step {int(fin[rid])}, allocations give {finish}")
        if rej[rid] and finish >= 0:
            bad(f"request {rid} is marked rejected but finishes")
        elif rej[rid] and where == "device" and comp > 0:
            bad(f"request {rid} is marked rejected but still has allocations "
                f"({comp} tokens of resident KV at the end)")
        if len(out) >= max_messages:
            return out

    kv = np.cumsum(kv_delta)[:T]
    over = np.flatnonzero(kv > cap_blocks)
    if over.size:
        bad(f"KV overflow at step {int(over[0])}: {int(kv[over[0]])} blocks held > capacity {cap_blocks}"
            + (" (counting a prefix block once per request holding it: the checker cannot "
               "tell which cache hits shared a block, so it cannot verify this schedule's KV)"
               if n_hits and pid is not None else ""))

    rec = (steps.prefill_tokens, steps.decode_seqs)
    if T and (not np.array_equal(rec[0], pf_tok) or not np.array_equal(rec[1], dec)):
        i = int(np.flatnonzero((rec[0] != pf_tok) | (rec[1] != dec))[0])
        bad(f"step {i}: recorded batch shape (prefill {int(rec[0][i])}, decode {int(rec[1][i])}) "
            f"differs from allocations (prefill {int(pf_tok[i])}, decode {int(dec[i])})")
    if T:
        sw_bad = np.flatnonzero(~np.isclose(steps.swap_s, swap_need[:T], rtol=1e-9, atol=1e-12))
        if sw_bad.size:
            i = int(sw_bad[0])
            bad(f"step {i}: recorded swap time {float(steps.swap_s[i]):.9g}s, its swap events "
                f"need {float(swap_need[i]):.9g}s at the engine's host bandwidth")
    if check_step_times and T:
        for i in range(T):
            if pf_tok[i] == 0 and dec[i] == 0:
                continue
            shape = BatchShape(prefill_tokens=int(pf_tok[i]), decode_seqs=int(dec[i]),
                               decode_context_tokens=int(dec_ctx[i]),
                               prefill_seqs=0, prefill_context_tokens=int(pf_ctx[i]))
            shape = _with_prefill_seqs(shape, s_exp, r_exp, t_exp, i)
            want = float(engine.step_time_s(shape)) + float(swap_need[i])
            got = float(en[i] - st[i])
            if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12) and bad(
                    f"step {i} lasts {got:.9g}s but the engine gives {want:.9g}s for {shape}"):
                return out
    return out


def _cache_hit_ok(y: int, where: str, held: int, comp: int, num_tokens: int, seen: int,
                  b: int, shared_tokens: int) -> str:
    """Why a ``CACHE_HIT`` of ``y`` tokens is impossible ('' if it is possible).

    A hit goes to a request without resident KV, is whole blocks, leaves at least one token
    to compute (``y <= num_tokens - 1``), and covers only tokens that can be in the cache:
    the request's own earlier computed tokens or the leading tokens its ``prefix_ids``
    share with other requests (whole blocks of them).
    """
    if where != "device" or held or comp:
        return "while KV is resident or swapped out"
    if y < b or y % b:
        return f"is not a positive multiple of the block size {b}"
    if y > num_tokens - 1:
        return f"leaves nothing to compute ({num_tokens} tokens)"
    if y > max(seen, shared_tokens // b * b):
        return (f"exceeds what the cache can hold for it ({seen} own tokens computed, "
                f"{shared_tokens} shared prefix tokens)")
    return ""


def _with_prefill_seqs(shape: BatchShape, s_exp: np.ndarray, r_exp: np.ndarray,
                       t_exp: np.ndarray, step: int) -> BatchShape:
    lo, hi = np.searchsorted(s_exp, [step, step + 1])
    seqs = int(hi - lo) - shape.decode_seqs
    return BatchShape(shape.prefill_tokens, shape.decode_seqs, shape.decode_context_tokens,
                      seqs, shape.prefill_context_tokens)


def is_feasible(schedule: Schedule, workload: Workload, engine: EngineModel) -> bool:
    """``violations(...) == []``."""
    return not violations(schedule, workload, engine, max_messages=1)
