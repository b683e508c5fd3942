"""Lagrangian upper bounds on SLO attainment that scale to whole traces (10^4-10^5 requests).

Slotted engine (:func:`slot_lagrangian_bound`)
----------------------------------------------
Price the per-slot token budget (``pi_t >= 0`` per token) and KV capacity (``mu_t >= 0`` per
token held). For any schedule of the :class:`~slo_opt.models.slot.SlotEngine` with met set
``A`` and per-slot use ``tok_t <= B``, ``kv_t <= M``::

    sum_{i in A} w_i <= sum_{i in A} w_i + sum_t pi_t (B - tok_t) + mu_t (M - kv_t)
                     <= sum_t (pi_t B + mu_t M) + sum_i max(0, w_i - cost_i(pi, mu))     (L)

whenever ``cost_i`` is at most the priced resources the met request ``i`` itself uses. Every
price vector gives a valid bound; projected subgradient steps (Polyak step sizes) tighten it.
``cost_i`` is a lower bound over *every* trajectory that meets request ``i``'s SLO, written
with the windows of :func:`~slo_opt.solvers.goodput_milp.request_windows` (``r`` first
computable slot, ``lf`` latest first-token slot, ``u`` latest finish slot, ``c = ceil(P/B)``):

* its prompt: ``P`` tokens computed in slots ``[r, lf]`` (every token of the first attempt
  precedes the first token), at most ``B`` per slot: the cheapest fractional filling;
* the first-token slot ``s`` in ``[r + c - 1, lf]`` holds ``>= P`` KV tokens:
  ``P min mu`` over that range;
* its ``O - 1`` decode tokens are emitted in ``O - 1`` *distinct* slots of ``(r + c - 1, u]``
  (after ``s``, at most one token per slot, by the TPOT/e2e/horizon deadline), one budget token
  each; the slot emitting decode ``j`` holds ``>= P + j`` KV tokens (the checker's token-exact
  convention, also after a recompute), so the decode cost is at least the sum of the ``O - 1``
  smallest ``pi_t + P mu_t`` in that window plus ``min mu x O (O - 1) / 2``.

Nothing here assumes patterns, contiguity, a fixed stride, a chunk split or no preemption, so
(L) bounds **every schedule accepted by** :func:`slo_opt.checks.violations` on the slotted
engine (token-exact KV), preemptive ones included, within the instance's horizon. Requests
that cannot meet their SLO even alone (``servable`` False: KV, deadlines, horizon) add nothing.

Variable-time engine (:func:`time_lagrangian_bound`)
----------------------------------------------------
For a :class:`~slo_opt.models.linear.LinearEngineModel` (or any engine with
:func:`~slo_opt.solvers.engine_bounds.step_planes`), time is cut into cells of ``cell_s``
seconds. Spreading each step's plane work (at most its duration) uniformly over the step, the
work done in a cell is at most its length (:mod:`~slo_opt.solvers.window_fluid`). With a price
``lam_c >= 0`` per second of cell ``c`` and plane ``p``::

    sum_{i in A} w_i <= sum_p sum_c lam_pc len_c + sum_i max(0, w_i - sum_p work_pi min_c lam_pc)

where the min is over the cells that meet the window ``[a_i, a_i + L_i]`` (``L_i`` = the
latest finish of a met request: ``min(e2e, TTFT + TPOT (O - 1))`` plus the metric tolerance)
and requests whose window is shorter than
:func:`~slo_opt.solvers.engine_bounds.min_inference_s` count 0. This is the Lagrangian dual of
the window fluid LP, so it is never tighter than that LP; it scales because a price update is
one pass over the requests.

Notes
-----
Deviation from research/optimization.md 5(b): the research note proposes the Lagrangian of
the *pattern* formulation (columns = start slot x stride). That formulation is a restriction
(patterns forbid stalls, other chunk splits and preemption), so its Lagrangian bounds only the
pattern-restricted optimum, not the slotted engine. Here each request prices a *relaxed*
trajectory set that contains every SLO-meeting trajectory, which is what makes (L) a bound of
the engine. ``valid_for`` of every result names the engine and the schedule class.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from slo_opt.solvers.base import Instance
from slo_opt.solvers.goodput_milp import GoodputMILP, Objective, request_windows

__all__ = ["LagrangianResult", "slot_lagrangian_bound", "slot_valid_for",
           "time_lagrangian_bound"]


@dataclass(frozen=True)
class LagrangianResult:
    """A proven upper bound and how it was obtained.

    Attributes
    ----------
    bound : float
        Upper bound on the objective (attainment fraction, weighted attainment or goodput
        tokens, as :class:`~slo_opt.solvers.goodput_milp.GoodputMILP`) of every schedule in
        ``valid_for``.
    iterations : int
        Subgradient iterations run (each one's value is a valid bound; ``bound`` is the best).
    wall_s : float
    valid_for : str
        The engine and schedule class the bound holds for.
    stop : str
        Why the iterations ended (``"time_limit"``, ``"max_iter"``, ``"target"``, ``"empty"``,
        ``"stalled"``).
    history : list of float
        The bound after each iteration (its first entry: zero prices, the count of servable
        requests).
    servable : int
        Requests that can meet their SLO with the engine to themselves.
    """

    bound: float
    iterations: int
    wall_s: float
    valid_for: str
    stop: str
    history: list[float] = field(default_factory=list)
    servable: int = 0


def slot_valid_for(engine: object) -> str:
    """The ``valid_for`` text of a slotted-engine bound."""
    return (f"SlotEngine(step_s={float(engine.step_s):.6g}, "  # type: ignore[attr-defined]
            f"max_batch_tokens={int(engine.max_batch_tokens)}, "  # type: ignore[attr-defined]
            f"kv_capacity_tokens={int(engine.kv_capacity_tokens)}): every schedule accepted by "  # type: ignore[attr-defined]
            "checks.violations (token-exact KV, preemption allowed) within the horizon")


def _range_min(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and argmin of ``v[lo..hi]`` (inclusive, ``lo <= hi``) by a sparse table."""
    n = v.size
    levels = [np.arange(n)]
    j = 1
    while (1 << j) <= n:
        prev = levels[-1]
        h = 1 << (j - 1)
        a, b = prev[: n - (1 << j) + 1], prev[h: h + n - (1 << j) + 1]
        levels.append(np.where(v[b] < v[a], b, a))
        j += 1
    length = hi - lo + 1
    k = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    out = np.empty(lo.size, np.int64)
    for kk in np.unique(k).tolist():
        m = k == kk
        a = levels[kk][lo[m]]
        b = levels[kk][hi[m] - (1 << kk) + 1]
        out[m] = np.where(v[b] < v[a], b, a)
    return v[out], out


@dataclass
class _Groups:
    """Requests grouped by decode-window length, with gather indices (built once)."""

    members: list[np.ndarray]
    slots: list[np.ndarray]  # (m, width) slot ids, padded with the sentinel slot T
    k: list[np.ndarray]  # decodes per member


def _groups(d_lo: np.ndarray, d_hi: np.ndarray, k: np.ndarray, T: int) -> _Groups:
    length = d_hi - d_lo + 1
    has = (k > 0) & (length > 0)
    idx = np.flatnonzero(has)
    width = np.zeros(0, np.int64)
    if idx.size:
        ex = np.ceil(2 * np.log2(np.maximum(length[idx], 1)))  # widths: powers of sqrt(2)
        width = np.maximum(np.ceil(2 ** (ex / 2)).astype(np.int64), length[idx])
    g = _Groups([], [], [])
    for wv in np.unique(width).tolist():
        mem = idx[width == wv]
        # bound the gather size per group (memory): at most ~4M entries per chunk
        step = max(1, 4_000_000 // int(wv))
        for c0 in range(0, mem.size, step):
            mm = mem[c0:c0 + step]
            off = np.arange(int(wv))[None, :]
            sl = d_lo[mm][:, None] + off
            sl = np.where(off < length[mm][:, None], sl, T)
            g.members.append(mm)
            g.slots.append(sl)
            g.k.append(k[mm])
    return g


def slot_lagrangian_bound(inst: Instance, *, objective: Objective = "attainment",
                          time_limit_s: float = 60.0, max_iter: int = 1000,
                          target: float | None = None,
                          progress: object | None = None) -> LagrangianResult:
    """Best Lagrangian bound (L) of the slotted engine found within the limits.

    Parameters
    ----------
    inst : Instance
        Workload, :class:`~slo_opt.models.slot.SlotEngine` and horizon.
    objective : {"attainment", "weighted", "goodput"}
    time_limit_s : float
        Wall-clock limit (``0``: the zero-price bound, the servable requests' weight).
    max_iter : int
        Subgradient iterations at most.
    target : float, optional
        A value known to be attainable (e.g. the best schedule's), used in the Polyak step
        ``(L - target) / |g|^2``; without it ``0.9 x`` the best bound so far. Never affects
        validity, only speed.
    progress : callable, optional
        ``progress(iteration, best_bound)`` every 10 iterations.
    """
    t0 = time.perf_counter()
    if not (time_limit_s >= 0):
        raise ValueError(f"time_limit_s must be >= 0, got {time_limit_s!r}")
    if int(max_iter) < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter!r}")
    e = inst.engine
    T = int(inst.num_slots)
    weight, offset = GoodputMILP(objective=objective).weights(inst)
    valid = slot_valid_for(e)
    win = request_windows(inst)
    idx = np.flatnonzero(win["servable"])
    if idx.size == 0 or T == 0:
        return LagrangianResult(float(offset), 0, time.perf_counter() - t0, valid, "empty",
                                [float(offset)], 0)
    B, M = float(e.max_batch_tokens), float(e.kv_capacity_tokens)
    T = int(win["u"][idx].max()) + 1  # slots after every window add only their own prices
    w = inst.workload
    P = np.asarray(w.prompt_tokens, float)[idx]
    O = np.asarray(w.output_tokens, np.int64)[idx]
    wt = weight[idx]
    r, lf, u = win["r"][idx], win["lf"][idx], win["u"][idx]
    c = np.ceil(P / B).astype(np.int64)
    s_lo = r + c - 1
    kdec = np.where(O > 1, O - 1, 0)
    d_lo, d_hi = s_lo + 1, np.where(O > 1, u, s_lo)
    tri = (O * (O - 1) / 2.0).astype(float)
    groups = _groups(d_lo, d_hi, kdec, T)
    # prefill windows [r, lf] are short (TTFT): gather them too
    pw = lf - r + 1
    pwid = int(pw.max())
    poff = np.arange(pwid)[None, :]
    pslots = np.where(poff < pw[:, None], r[:, None] + poff, T)
    nfull = np.floor(P / B).astype(np.int64)  # full-B slots of the cheapest filling
    rem = P - nfull * B
    total_w = float(wt.sum())
    # normalised prices: p_t = pi_t B, m_t = mu_t M (rows scaled to "<= 1")
    p = np.zeros(T + 1)
    m = np.zeros(T + 1)
    hist = [total_w + offset]
    best = total_w + offset
    lam = 1.0
    since = 0
    stop = "max_iter"
    it = 0
    while it < int(max_iter):
        if time.perf_counter() - t0 >= time_limit_s:
            stop = "time_limit"
            break
        it += 1
        pi = p / B
        mu = m / M
        pi[T] = mu[T] = math.inf  # sentinel slot (padding)
        mu_s, mu_arg = _range_min(mu[:T], s_lo, lf)
        # prefill: cheapest fractional filling of P tokens, <= B per slot, over [r, lf]
        pv = pi[pslots]
        order = np.argsort(pv, axis=1, kind="stable")
        sv = np.take_along_axis(pv, order, axis=1)
        csum = np.cumsum(np.where(np.isfinite(sv), sv, 0.0), axis=1)
        rows = np.arange(idx.size)
        full_cost = np.where(nfull > 0, B * csum[rows, np.maximum(nfull - 1, 0)], 0.0)
        rem_cost = np.where(rem > 0, rem * sv[rows, np.minimum(nfull, pwid - 1)], 0.0)
        cost = full_cost + rem_cost + P * mu_s
        # decode: sum of the k smallest (pi + P mu) over (s_lo, u], + min mu x O(O-1)/2
        dmu = np.zeros(idx.size)
        dmu_arg = np.zeros(idx.size, np.int64)
        has = kdec > 0
        if has.any():
            dmu[has], dmu_arg[has] = _range_min(mu[:T], d_lo[has], d_hi[has])
        dec_sel: list[tuple[np.ndarray, np.ndarray]] = []
        for mem, sl, kk in zip(groups.members, groups.slots, groups.k):
            v = pi[sl] + P[mem][:, None] * mu[sl]
            o = np.argsort(v, axis=1, kind="stable")
            sv2 = np.take_along_axis(v, o, axis=1)
            take = np.arange(sl.shape[1])[None, :] < kk[:, None]
            cost[mem] += np.where(take, sv2, 0.0).sum(axis=1)
            dec_sel.append((mem, np.where(take, np.take_along_axis(sl, o, axis=1), -1)))
        cost += dmu * tri
        gain = wt - cost
        act = gain > 0
        val = float(p[:T].sum() + m[:T].sum() + gain[act].sum()) + offset
        hist.append(val)
        if val < best - 1e-12:
            best, since = val, 0
        else:
            since += 1
            if since >= 10:
                lam, since = lam / 2, 0
        if progress is not None and it % 10 == 0:
            progress(it, best)  # type: ignore[operator]
        if lam < 1e-6:
            stop = "stalled"
            break
        goal = target if target is not None else 0.9 * best
        if best <= goal + 1e-9:
            stop = "target"
            break
        # subgradient of L: d/dp_t = 1 - tok_t / B, d/dm_t = 1 - kv_t / M
        tok = np.zeros(T + 1)
        kv = np.zeros(T + 1)
        a = np.flatnonzero(act)
        if a.size:
            ords = order[a]
            psl = np.take_along_axis(pslots[a], ords, axis=1)
            amt = np.zeros(psl.shape)
            col = np.arange(pwid)[None, :]
            amt = np.where(col < nfull[a][:, None], B, amt)
            amt = np.where(col == nfull[a][:, None], rem[a][:, None], amt)
            np.add.at(tok, psl.ravel(), amt.ravel())
            np.add.at(kv, mu_arg[a], P[a])
            np.add.at(kv, dmu_arg[a], tri[a])
            for mem, sel in dec_sel:
                ok = act[mem]
                if not ok.any():
                    continue
                s2 = sel[ok]
                pk = np.broadcast_to(P[mem][ok][:, None], s2.shape)
                good = s2 >= 0
                tok += np.bincount(s2[good], minlength=T + 1)
                kv += np.bincount(s2[good], weights=pk[good], minlength=T + 1)
        gp = 1.0 - tok[:T] / B
        gm = 1.0 - kv[:T] / M
        # projected direction: a price at 0 with a positive derivative stays at 0
        gp = np.where((p[:T] <= 0) & (gp > 0), 0.0, gp)
        gm = np.where((m[:T] <= 0) & (gm > 0), 0.0, gm)
        nrm = float(gp @ gp + gm @ gm)
        if nrm <= 1e-18:
            stop = "stalled"
            break
        step = lam * max(val - goal, 1e-6 * max(abs(val), 1e-9)) / nrm
        p[:T] = np.maximum(0.0, p[:T] - step * gp)
        m[:T] = np.maximum(0.0, m[:T] - step * gm)
    bound = min(best, total_w + offset)
    return LagrangianResult(float(bound), it, time.perf_counter() - t0, valid, stop, hist,
                            int(idx.size))


def time_lagrangian_bound(workload: object, engine: object, *, objective: Objective = "attainment",
                          cell_s: float = 0.5, max_seqs: int = 256, time_limit_s: float = 60.0,
                          max_iter: int = 2000, target: float | None = None,
                          ) -> LagrangianResult:
    """Lagrangian bound of the window fluid LP on a variable-time engine (module docstring).

    Parameters
    ----------
    workload : Workload
    engine : EngineModel
        Any engine :func:`~slo_opt.solvers.engine_bounds.step_planes` accepts (linear,
        roofline, table, slot).
    cell_s : float
        Time-cell width in seconds (smaller = tighter, more cells).
    max_seqs : int
        Decode sequences per step at most (the scheduler's cap; the planes amortise the
        per-step constant over it).
    """
    from slo_opt.metrics import SLO_TOL_S
    from slo_opt.request import Workload
    from slo_opt.schedule import ARRIVAL_EPS_S
    from slo_opt.solvers.engine_bounds import min_inference_s, request_work_s, step_planes
    from slo_opt.solvers.window_fluid import cell_edges

    t0 = time.perf_counter()
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    if not (time_limit_s >= 0):
        raise ValueError(f"time_limit_s must be >= 0, got {time_limit_s!r}")
    planes = step_planes(engine, int(max_seqs))
    valid = (f"{type(engine).__name__}({getattr(engine, 'name', '')}): every schedule with at "
             f"most {int(max_seqs)} decode sequences per step, any order, batching or "
             "preemption (step-time lower planes, engine_bounds)")
    n = len(workload)
    if n == 0:
        return LagrangianResult(1.0 if objective != "goodput" else 0.0, 0,
                                time.perf_counter() - t0, valid, "empty", [], 0)
    inst_w = np.full(n, 1.0 / n)
    if objective == "goodput":
        inst_w = np.asarray(workload.output_tokens, float)
    elif objective == "weighted":
        ut = np.asarray(workload.utility, float)
        inst_w = ut / ut.sum() if ut.sum() > 0 else np.zeros(n)
    a = np.asarray(workload.arrival_s, float)
    P = np.asarray(workload.prompt_tokens, float)
    O = np.asarray(workload.output_tokens, float)
    ttft = np.asarray(workload.ttft_slo_s, float)
    tpot = np.asarray(workload.tpot_slo_s, float)
    e2e = np.asarray(workload.e2e_slo_s, float)
    tol = SLO_TOL_S
    lat = np.minimum(e2e + tol, ttft + tol + np.where(O > 1, (tpot + tol) * (O - 1), 0.0))
    kvcap = float(getattr(engine, "kv_capacity_tokens", math.inf))
    ok = np.isfinite(lat) & (lat >= min_inference_s(engine, P, O)) & (kvcap >= P + O - 1)
    ok &= np.isfinite(a)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return LagrangianResult(0.0, 0, time.perf_counter() - t0, valid, "empty", [0.0], 0)
    lo, hi = a[idx] - ARRIVAL_EPS_S, a[idx] + lat[idx]
    edges = cell_edges(lo, hi, cell_s)
    ncell = edges.size - 1
    c0 = np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, ncell - 1)
    c1 = np.maximum(np.clip(np.searchsorted(edges, hi, side="left") - 1, 0, ncell - 1), c0)
    length = np.diff(edges)
    work = np.stack([request_work_s(pl, P[idx], O[idx]) for pl in planes])  # (planes, k)
    wt = inst_w[idx]
    total_w = float(wt.sum())
    prices = np.zeros((len(planes), ncell))
    best = total_w
    hist = [best]
    lam, since, it, stop = 1.0, 0, 0, "max_iter"
    while it < int(max_iter):
        if time.perf_counter() - t0 >= time_limit_s:
            stop = "time_limit"
            break
        it += 1
        cost = np.zeros(idx.size)
        args = []
        for pl in range(len(planes)):
            mn, arg = _range_min(prices[pl], c0, c1)
            cost += work[pl] * mn
            args.append(arg)
        gain = wt - cost
        act = gain > 0
        val = float((prices * length[None, :]).sum() + gain[act].sum())
        hist.append(val)
        if val < best - 1e-12:
            best, since = val, 0
        else:
            since += 1
            if since >= 10:
                lam, since = lam / 2, 0
        if lam < 1e-6:
            stop = "stalled"
            break
        goal = target if target is not None else 0.9 * best
        if best <= goal + 1e-9:
            stop = "target"
            break
        g = np.empty_like(prices)
        for pl in range(len(planes)):
            used = np.bincount(args[pl][act], weights=work[pl][act], minlength=ncell)
            g[pl] = length - used
        g = np.where((prices <= 0) & (g > 0), 0.0, g)
        nrm = float((g * g).sum())
        if nrm <= 1e-18:
            stop = "stalled"
            break
        step = lam * max(val - goal, 1e-6 * max(abs(val), 1e-9)) / nrm
        prices = np.maximum(0.0, prices - step * g)
    return LagrangianResult(float(min(best, total_w)), it, time.perf_counter() - t0, valid, stop,
                            hist, int(idx.size))
