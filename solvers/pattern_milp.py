"""Formulation A: the pattern (first-token slot x decode stride) MILP on the slotted engine.

Model (research/optimization.md sections 2.2 and 5(a))
------------------------------------------------------
For request ``i`` (prompt ``P``, output ``O``, first computable slot ``r_i`` from
:func:`~slo_opt.solvers.base.first_slots`) a *pattern* ``q = (s, k)`` fixes the whole trajectory:

* prefill: the prompt in ``c = ceil(P / B)`` consecutive slots ``s-c+1 .. s``, chunk ``j``
  computing ``min(B, P - jB)`` tokens (``c = 1``, the whole prompt in slot ``s``, whenever
  ``P <= B``); the first output token is emitted in slot ``s``;
* decode: one token in each slot ``s + jk``, ``j = 1 .. O-1`` (stride ``k`` from ``strides``),
  so the request finishes in slot ``f = s + k(O-1)``;
* KV (token-exact, exactly as :func:`slo_opt.checks.violations` with ``kv_block_tokens=1``):
  the computed tokens are held from the slot that computes them until the end of the finishing
  slot: ``min(P, (j+1)B)`` in prefill chunk ``j``, ``P + floor((t-s)/k)`` for
  ``s <= t <= f``, nothing after ``f``.

Only patterns meeting the request's SLO are generated, with the deadline arithmetic of
:func:`~slo_opt.solvers.base.slot_deadlines` (the metrics module's definitions on the slot
grid): ``r_i + c - 1 <= s <= ttft_i``, ``f <= e2e_i``, ``k(O-1) <= gap_i`` (mean TPOT) and
``f <= T-1`` (horizon). With ``x_iq`` binary::

    max  sum_i w_i sum_q x_iq
    sum_q x_iq <= 1                               (per request; "= 1" with must_serve)
    sum_iq tokens_q(t) x_iq <= B                  (per slot)
    sum_iq kv_q(t) x_iq <= M                      (per slot)
    sum_iq [q computes in t] x_iq <= max_seqs     (per slot, optional)

``w_i`` is :meth:`GoodputMILP.weights` (attainment, utility-weighted attainment or goodput), so
``extract`` gives a schedule whose metric equals the objective exactly (replay check).

Notes
-----
* **A restriction, not a relaxation.** Patterns forbid decode stalls other than a constant
  stride, split prefills only into full consecutive chunks and forbid preemption, so the
  pattern optimum is a *feasible* value (a primal: every extracted schedule is accepted by the
  checker) and ``<=`` the per-slot optimum of :class:`~slo_opt.solvers.goodput_milp.GoodputMILP`.
  Its LP relaxation (``solve(..., relax=True)``) and its MIP dual bound bound only the
  pattern-restricted problem and are **not** upper bounds for the general slotted problem;
  :func:`slo_opt.study.certificate.solve_with_certificate` therefore takes bounds only from the per-slot MILP, its LP
  relaxation and :class:`~slo_opt.solvers.fluid_bound.FluidBound`.
* Why it exists: its time-indexed set-packing LP is tight (research 2.2: 1-3 % on binding
  instances), so HiGHS finds near-optimal incumbents at sizes (n = 100-400) where the per-slot
  MILP's weak LP leaves it stuck at the warm start.
* Prompts longer than the budget ``B`` get chunked-prefill patterns of ``ceil(P/B)`` full
  chunks ending at ``s`` (research 2.2 "Chunked prefill" variant with ``C = B``); other chunk
  splits are not enumerated.
* ``max_seqs`` is an extra modelling restriction: :class:`~slo_opt.models.slot.SlotEngine` has
  no sequence cap, so the checker does not enforce one.

References
----------
.. [1] P. Jaillet et al., "Online Scheduling for LLM Inference with KV Cache Constraints",
   arXiv 2502.07115 (the hindsight IP is this model with ``B = inf``, ``k = 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from slo_opt._moved import forward
from slo_opt.metrics import request_metrics
from slo_opt.schedule import EventKind, Schedule
from slo_opt.solvers.base import (
    Instance,
    LinearModel,
    NotRepresentable,
    first_slots,
    slot_deadlines,
)
from slo_opt.solvers.goodput_milp import (
    GoodputMILP,
    Objective,
    _schedule_from_slots,
    _step_slots,
)

__all__ = ["PatternMILP", "greedy_pattern_schedule"]


@dataclass(frozen=True)
class PatternMILP:
    """Maximise SLO attainment over start-slot x stride patterns (formulation A).

    Parameters
    ----------
    objective : {"attainment", "weighted", "goodput"}
        As :class:`~slo_opt.solvers.goodput_milp.GoodputMILP`.
    strides : tuple of int
        Decode strides ``k`` (``(1,)``: contiguous decode; SLICE-style rate control uses
        ``(1, 2, 3, 4)``).
    chunked_prefill : bool
        Give prompts longer than the budget chunked-prefill patterns (``False``: such requests
        get no pattern and score 0).
    max_seqs : int or None
        Optional cap on sequences computing per slot (not an engine constraint).
    must_serve : bool
        Every request must meet its SLO (``INFEASIBLE`` when a request has no pattern).
    """

    name: ClassVar[str] = "pattern_milp"
    SENSE: ClassVar[Literal["max", "min"]] = "max"
    EXACT: ClassVar[bool] = True
    MIP: ClassVar[bool] = True
    objective: Objective = "attainment"
    strides: tuple[int, ...] = (1,)
    chunked_prefill: bool = True
    max_seqs: int | None = None
    must_serve: bool = False

    def __post_init__(self) -> None:
        GoodputMILP(objective=self.objective)  # validates the objective
        ks = tuple(sorted({int(k) for k in self.strides}))
        if not ks or ks[0] < 1:
            raise ValueError(f"strides must be a non-empty set of ints >= 1, got {self.strides!r}")
        object.__setattr__(self, "strides", ks)
        if self.max_seqs is not None and int(self.max_seqs) < 1:
            raise ValueError(f"max_seqs must be >= 1 or None, got {self.max_seqs!r}")

    # -------------------------------------------------------------------------------------
    def patterns(self, inst: Instance) -> dict[str, Any]:
        """Enumerate the SLO-meeting patterns.

        Returns
        -------
        dict
            Per column: ``req``, ``start`` (first-token slot), ``stride``, ``chunks``; and the
            per-column resource profiles as triplets ``tok_slot/tok_col/tok_val``,
            ``kv_slot/kv_col/kv_val`` (slot, column, amount).
        """
        w, e, T = inst.workload, inst.engine, int(inst.num_slots)
        B, M = int(e.max_batch_tokens), int(e.kv_capacity_tokens)
        P_all = np.asarray(w.prompt_tokens, np.int64)
        O_all = np.asarray(w.output_tokens, np.int64)
        r = first_slots(w, float(e.step_s))
        ttft, e2e, gap = slot_deadlines(w, float(e.step_s))
        req, start, stride, chunks = [], [], [], []
        ts, tc, tv, ks_, kc, kv = [], [], [], [], [], []
        ncol = 0
        for i in range(inst.n):
            P, O = int(P_all[i]), int(O_all[i])
            c = -(-P // B)
            if P + O - 1 > M or (c > 1 and not self.chunked_prefill):
                continue
            # prefill template (offsets relative to s, <= 0)
            j = np.arange(c)
            pf_off = j - (c - 1)
            pf_tok = np.minimum(B, P - j * B)
            pf_kv = np.minimum(P, (j + 1) * B)
            for k in (self.strides if O > 1 else self.strides[:1]):
                span = k * (O - 1)
                if O > 1 and span > gap[i]:
                    continue
                s_lo = int(r[i]) + c - 1
                s_hi = int(min(ttft[i], T - 1, e2e[i] - span, T - 1 - span))
                if s_hi < s_lo:
                    continue
                s = np.arange(s_lo, s_hi + 1, dtype=np.int64)
                cols = ncol + np.arange(s.size, dtype=np.int64)
                ncol += s.size
                d_off = k * np.arange(1, O, dtype=np.int64)
                t_off = np.concatenate([pf_off, d_off])
                t_val = np.concatenate([pf_tok, np.ones(O - 1, np.int64)])
                k_off = np.concatenate([pf_off[:-1], np.arange(span + 1)])
                k_val = np.concatenate([pf_kv[:-1], P + np.arange(span + 1) // k])
                ts.append((s[:, None] + t_off[None, :]).ravel())
                tc.append(np.repeat(cols, t_off.size))
                tv.append(np.tile(t_val, s.size))
                ks_.append((s[:, None] + k_off[None, :]).ravel())
                kc.append(np.repeat(cols, k_off.size))
                kv.append(np.tile(k_val, s.size))
                req.append(np.full(s.size, i, np.int64))
                start.append(s)
                stride.append(np.full(s.size, k, np.int64))
                chunks.append(np.full(s.size, c, np.int64))

        def cat(x: list[np.ndarray], dt: Any = np.int64) -> np.ndarray:
            return np.concatenate(x).astype(dt) if x else np.zeros(0, dt)

        return {"req": cat(req), "start": cat(start), "stride": cat(stride),
                "chunks": cat(chunks), "tok_slot": cat(ts), "tok_col": cat(tc),
                "tok_val": cat(tv, float), "kv_slot": cat(ks_), "kv_col": cat(kc),
                "kv_val": cat(kv, float)}

    def build(self, inst: Instance) -> LinearModel:
        """Encode ``inst`` (see the module docstring)."""
        T = int(inst.num_slots)
        e = inst.engine
        weight, offset = GoodputMILP(objective=self.objective).weights(inst)
        pat = self.patterns(inst)
        model = LinearModel(sense="max", obj_offset=offset, info={"name": self.name})
        q = pat["req"].size
        x = model.add_cols(q, lb=0.0, ub=1.0, cost=weight[pat["req"]] if q else 0.0,
                           integer=True)
        # one row per request with at least one pattern: sum_q x <= 1 (= 1 if must_serve)
        has, row_of = np.unique(pat["req"], return_inverse=True)
        model.add_rows(row_of, x, 1.0, 1.0 if self.must_serve else -math.inf, 1.0, has.size)
        tok_rows = model.add_rows(pat["tok_slot"], x[pat["tok_col"]], pat["tok_val"],
                                  -math.inf, float(e.max_batch_tokens), T)
        kv_rows = model.add_rows(pat["kv_slot"], x[pat["kv_col"]], pat["kv_val"],
                                 -math.inf, float(e.kv_capacity_tokens), T)
        seq_rows = np.zeros(0, np.int64)
        if self.max_seqs is not None:
            seq_rows = model.add_rows(pat["tok_slot"], x[pat["tok_col"]], 1.0, -math.inf,
                                      float(self.max_seqs), T)
        model.info.update(patterns=pat, cols=x, tok_rows=tok_rows, kv_rows=kv_rows,
                          seq_rows=seq_rows, objective=self.objective)
        if self.must_serve and has.size < inst.n:
            bad = np.setdiff1d(np.arange(inst.n), has)[:5].tolist()
            model.info["infeasible"] = f"must_serve: requests {bad} have no SLO-meeting pattern"
        return model

    # -------------------------------------------------------------------------------------
    def extract(self, model: LinearModel, values: np.ndarray, inst: Instance) -> Schedule:
        """The :class:`Schedule` of an integer solution (steps = non-empty slots)."""
        w, D, n = inst.workload, float(inst.engine.step_s), inst.n
        pat = model.info["patterns"]
        v = np.rint(np.asarray(values, float)[model.info["cols"]]) >= 1
        if np.bincount(pat["req"][v], minlength=n).max(initial=0) > 1:
            raise ValueError("more than one pattern selected for a request")
        sel = np.flatnonzero(v)
        ok_t = np.isin(pat["tok_col"], sel)
        a_slot = pat["tok_slot"][ok_t]
        a_tok = pat["tok_val"][ok_t].astype(np.int64)
        a_req = pat["req"][pat["tok_col"][ok_t]]
        # prefill = slots up to the first-token slot; decode = the later ones
        a_pf = a_slot <= pat["start"][pat["tok_col"][ok_t]]
        first = np.full(n, -1, np.int64)
        fin = np.full(n, -1, np.int64)
        ri = pat["req"][sel]
        first[ri] = pat["start"][sel]
        O = np.asarray(w.output_tokens, np.int64)[ri]
        fin[ri] = pat["start"][sel] + pat["stride"][sel] * (O - 1)
        return _schedule_from_slots(n, D, [a_req], [a_slot], [a_tok], [a_pf], first, fin, w,
                                    meta={"solver": self.name, "objective": self.objective,
                                          "strides": list(self.strides)})

    # -------------------------------------------------------------------------------------
    def fix(self, model: LinearModel, schedule: Schedule, inst: Instance, *,
            drop_preempted: bool = False) -> None:
        """Pin ``schedule``: met requests to the pattern they follow, the others to none.

        Raises :class:`NotRepresentable` when a met request's trajectory is not one of its
        patterns (preemption, other chunk splits, irregular decode stalls), unless
        ``drop_preempted=True`` (used for MIP starts), which pins such requests unserved.
        """
        w, D = inst.workload, float(inst.engine.step_s)
        if schedule.num_requests != inst.n:
            raise NotRepresentable(f"schedule has {schedule.num_requests} requests, instance {inst.n}")
        ev = schedule.events
        if np.any(ev.kind == EventKind.CACHE_HIT):  # the model computes every prompt token
            raise NotRepresentable("schedules with prefix-cache hits (CACHE_HIT) are outside "
                                   "the slot model")
        if np.any(ev.kind != EventKind.PREEMPT_RECOMPUTE) and not drop_preempted:
            raise NotRepresentable("schedules with KV swaps are outside the slot model")
        slot_of = _step_slots(schedule, D) if schedule.num_steps else np.zeros(0, np.int64)
        met = request_metrics(schedule, w)["slo_met"]
        pat = model.info["patterns"]
        x = model.info["cols"]
        model.col_ub[x] = 0.0
        model.col_lb[x] = 0.0
        s_exp, r_exp, t_exp = schedule.allocs.expand()
        order = np.lexsort((s_exp, r_exp))
        s_exp, r_exp, t_exp = s_exp[order], r_exp[order], t_exp[order]
        bounds = np.searchsorted(r_exp, np.arange(inst.n + 1))
        by_req = np.searchsorted(pat["req"], np.arange(inst.n + 1))  # req is sorted
        preempted = set(ev.request.tolist())
        tslot, tcol, tval = pat["tok_slot"], pat["tok_col"], pat["tok_val"]
        tb = np.searchsorted(tcol, np.arange(x.size + 1))  # tok_col is sorted
        for i in np.flatnonzero(met).tolist():
            sl = slot_of[s_exp[bounds[i]:bounds[i + 1]]]
            tk = t_exp[bounds[i]:bounds[i + 1]]
            found = -1
            if i not in preempted:
                for q in range(by_req[i], by_req[i + 1]):
                    ps, pv = tslot[tb[q]:tb[q + 1]], tval[tb[q]:tb[q + 1]]
                    if ps.size == sl.size and np.array_equal(ps, sl) and np.array_equal(pv, tk):
                        found = q
                        break
            if found < 0:
                if drop_preempted:
                    continue
                raise NotRepresentable(f"request {i} meets its SLO on a trajectory that is not a "
                                       f"pattern (slots {sl.tolist()}, tokens {tk.tolist()})")
            model.col_lb[x[found]] = model.col_ub[x[found]] = 1.0


# ---------------------------------------------------------------------------------------------
def greedy_pattern_schedule(inst: Instance, f: PatternMILP) -> tuple[Schedule, float]:
    """A feasible pattern schedule by earliest-deadline-first packing (a cheap MIP start).

    Requests in order of their latest pattern start (then less work first) take their
    earliest-starting pattern (smallest stride first) that fits the residual token and KV
    capacity. Returns the schedule and its objective.
    """
    model = f.build(inst)
    pat = model.info["patterns"]
    T = int(inst.num_slots)
    e = inst.engine
    tok = np.zeros(T + 1)
    kv = np.zeros(T + 1)
    seq = np.zeros(T + 1)
    values = np.zeros(model.num_cols)
    if pat["req"].size == 0:
        return f.extract(model, values, inst), float(model.obj_offset)
    tcol, kcol = pat["tok_col"], pat["kv_col"]
    tb = np.searchsorted(tcol, np.arange(pat["req"].size + 1))
    kb = np.searchsorted(kcol, np.arange(pat["req"].size + 1))
    by_req = np.searchsorted(pat["req"], np.arange(inst.n + 1))
    latest = np.full(inst.n, np.iinfo(np.int64).max)
    np.minimum.at(latest, pat["req"], -pat["start"])  # -max start
    work = np.asarray(inst.workload.work_tokens)
    order = np.lexsort((work, -latest))
    B, M = float(e.max_batch_tokens), float(e.kv_capacity_tokens)
    cap_s = math.inf if f.max_seqs is None else float(f.max_seqs)
    for i in order.tolist():
        qs = np.arange(by_req[i], by_req[i + 1])
        if qs.size == 0:
            continue
        qs = qs[np.lexsort((pat["stride"][qs], pat["start"][qs]))]
        for q in qs.tolist():
            ts, tv = pat["tok_slot"][tb[q]:tb[q + 1]], pat["tok_val"][tb[q]:tb[q + 1]]
            ks, kvv = pat["kv_slot"][kb[q]:kb[q + 1]], pat["kv_val"][kb[q]:kb[q + 1]]
            if np.any(tok[ts] + tv > B) or np.any(kv[ks] + kvv > M) or np.any(seq[ts] + 1 > cap_s):
                continue
            tok[ts] += tv
            kv[ks] += kvv
            seq[ts] += 1
            values[model.info["cols"][q]] = 1.0
            break
    return f.extract(model, values, inst), float(model.c @ values + model.obj_offset)


# solve_with_certificate and Certificate moved to slo_opt.study.certificate (a study compares
# schedulers with solvers; a formulation does not depend on heuristics)
__getattr__ = forward(__name__, {"Certificate": "slo_opt.study.certificate",
                                 "solve_with_certificate": "slo_opt.study.certificate"})
