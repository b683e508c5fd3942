"""The SLO-attainment MILP on the slotted engine: the exact offline optimum of ``SlotEngine``.

Model (time-indexed, one slot = one engine iteration; DESIGN.md section 4)
---------------------------------------------------------------------------
Slot ``t`` covers ``[tD, (t+1)D)``. Request ``i`` (arrival ``a_i``, prompt ``P``, output ``O``,
work ``W = P + O - 1``) may compute from slot ``r_i`` (:func:`~slo_opt.solvers.base.first_slots`).
Its SLOs become slot deadlines (:func:`~slo_opt.solvers.base.slot_deadlines`): first token by
slot ``lf_i``, last token by slot ``le_i``, and ``finish - first <= g_i`` (mean TPOT).
A request that meets its SLO is fully served inside its window ``[r_i, u_i]``,
``u_i = min(T-1, le_i, lf_i + g_i)``; its first-token slot is at most
``lf'_i = min(lf_i, u_i - (O-1))``. Variables of a servable request:

* ``m_i`` binary: meets its SLO (the objective's indicator);
* ``X_it`` integer, ``t in [r, lf']``: prompt tokens computed up to the end of slot ``t``
  (chunked prefill: any non-decreasing integer path; ``X_{lf'} = P m``);
* ``G_it`` binary: prefill complete by the end of ``t`` (``P G <= X <= P G + P - 1``, exact);
* ``C_it`` integer, ``t in [r+1, u]``: decode tokens up to the end of ``t``;
  ``0 <= C_t - C_{t-1} <= G_{t-1}`` (at most one decode token per slot, only after the first
  token, any gaps allowed), ``C_u = (O-1) m``;
* ``F_it`` binary: finished by the end of ``t`` (``(O-1) F <= C``; ``F_u = m``).

Rows per slot: tokens ``sum_i (X_t - X_{t-1}) + (C_t - C_{t-1}) <= B`` and KV
``sum_i X_t + C_t - W F_{t-1} <= M`` (the KV of a finished request is freed after its finishing
slot, as in :func:`slo_opt.checks.violations`). TPOT: ``C_{t+g} >= (O-1) G_t``.

Unmet requests get no tokens at all in this *admission form*: dropping a request's allocations
only frees capacity, so the optimum equals the optimum over all non-preemptive schedules of the
slotted engine (chunked prefill, arbitrary decode stalls) and ``extract`` gives a schedule whose
:func:`slo_opt.metrics.attainment` equals the objective exactly.

Notes
-----
* Recompute preemption and swapping are not decision options of the optimiser (the optimum is
  over non-preemptive schedules). ``fix`` nevertheless pins any simulated schedule without swaps:
  every request's allocations become a fixed column with its exact token and KV profile
  (formulation A's "pattern as a column" idiom) and the model's deadline rows decide which
  requests are met (no metric is read: fix-and-solve compares two computations). Swaps lengthen a step beyond the slot
  grid and raise :class:`~slo_opt.solvers.base.NotRepresentable`.
* ``must_serve=True`` requires every request to meet its SLO; a horizon too short for that is
  ``INFEASIBLE``. In the default form a too-short horizon just scores those requests 0.
* Research/optimization.md's formulation B (per-slot counters) with the admission form and an
  exact first-token indicator; formulation A (patterns) cannot express chunked prefill and
  decode stalls, so it is a restriction of the slotted optimum, not the optimum itself.

References
----------
.. [1] P. Jaillet et al., "Online Scheduling for LLM Inference with KV Cache Constraints",
   arXiv 2502.07115 (hindsight IP: start binaries, KV growth, one batch per time unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from slo_opt.schedule import AllocTable, EventKind, Schedule, StepTable, compress_allocs
from slo_opt.solvers.base import (
    Instance,
    LinearModel,
    NotRepresentable,
    first_slots,
    slot_deadlines,
)

__all__ = ["GoodputMILP", "Objective", "request_windows"]

Objective = Literal["attainment", "weighted", "goodput"]


def request_windows(inst: Instance) -> dict[str, np.ndarray]:
    """Per-request slot windows of a met request: ``r, lf, u`` and ``servable``.

    ``lf`` is the latest first-token slot and ``u`` the latest finish slot of a request that
    meets its SLO within the horizon; ``servable`` is False when no such schedule exists even
    with the engine to itself (deadline before arrival, KV too small, or horizon too short).
    """
    w, e, T = inst.workload, inst.engine, int(inst.num_slots)
    D = float(e.step_s)
    r = first_slots(w, D)
    ttft, e2e, gap = slot_deadlines(w, D)
    O = np.asarray(w.output_tokens, np.int64)
    big = np.iinfo(np.int64).max // 4
    u = np.minimum(np.minimum(e2e, T - 1), np.where(gap >= big, big, np.minimum(ttft, big) + gap))
    u = np.minimum(u, big)
    lf = np.minimum(np.minimum(ttft, T - 1), u - (O - 1))
    u = np.where(O == 1, lf, u)  # a one-token request finishes with its first token
    P = np.asarray(w.prompt_tokens, np.int64)
    min_prefill_slots = -(-P // int(e.max_batch_tokens))
    servable = ((lf >= r + min_prefill_slots - 1) & (w.work_tokens <= int(e.kv_capacity_tokens))
                & (r <= T - 1) & ((O == 1) | (gap >= O - 1)))
    return {"r": r, "lf": lf, "u": u, "gap": gap, "servable": servable}


@dataclass
class _Rows:
    """Triplet accumulator for one family of rows."""

    model: LinearModel
    rows: list[np.ndarray]
    cols: list[np.ndarray]
    vals: list[np.ndarray]
    lb: list[np.ndarray]
    ub: list[np.ndarray]
    n: int = 0

    @classmethod
    def new(cls, model: LinearModel) -> _Rows:
        return cls(model, [], [], [], [], [])

    def block(self, cols: np.ndarray, vals: Any, lb: Any, ub: Any) -> None:
        """Add ``cols.shape[0]`` rows with ``cols.shape[1]`` entries each."""
        cols = np.atleast_2d(np.asarray(cols, np.int64))
        k, width = cols.shape
        if k == 0:
            return
        self.rows.append(np.repeat(np.arange(self.n, self.n + k), width))
        self.cols.append(cols.reshape(-1))
        self.vals.append(np.broadcast_to(np.asarray(vals, float), (k, width)).reshape(-1))
        self.lb.append(np.broadcast_to(np.asarray(lb, float), (k,)))
        self.ub.append(np.broadcast_to(np.asarray(ub, float), (k,)))
        self.n += k

    def flush(self) -> np.ndarray:
        if not self.n:
            return np.zeros(0, np.int64)
        out = self.model.add_rows(np.concatenate(self.rows), np.concatenate(self.cols),
                                  np.concatenate(self.vals), np.concatenate(self.lb),
                                  np.concatenate(self.ub), self.n)
        self.rows, self.cols, self.vals, self.lb, self.ub, self.n = [], [], [], [], [], 0
        return out


def _increments(rows: list, cols: list, vals: list, slots: np.ndarray,
                cum: np.ndarray) -> None:
    """Coefficients of ``cum[t] - cum[t-1]`` (the per-slot increment of a cumulative counter)
    in the rows ``slots``: ``+1`` on ``cum[k]`` at ``slots[k]``, ``-1`` on ``cum[k-1]``."""
    rows.append(slots)
    cols.append(cum)
    vals.append(np.ones(slots.size))
    rows.append(slots[1:])
    cols.append(cum[:-1])
    vals.append(-np.ones(slots.size - 1))


@dataclass(frozen=True)
class GoodputMILP:
    """Maximise SLO attainment (or utility-weighted attainment, or goodput) on ``SlotEngine``.

    Parameters
    ----------
    objective : {"attainment", "weighted", "goodput"}
        ``attainment``: fraction of requests meeting their SLO (metrics.attainment);
        ``weighted``: utility-weighted fraction (``attainment(weighted=True)``, SLICE's
        objective); ``goodput``: output tokens of met requests (metrics.goodput_tokens).
    must_serve : bool
        Require every request to meet its SLO (INFEASIBLE when impossible).
    """

    name: ClassVar[str] = "goodput_milp"
    SENSE: ClassVar[Literal["max", "min"]] = "max"
    EXACT: ClassVar[bool] = True
    MIP: ClassVar[bool] = True
    objective: Objective = "attainment"
    must_serve: bool = False

    def __post_init__(self) -> None:
        if self.objective not in ("attainment", "weighted", "goodput"):
            raise ValueError(f"objective must be attainment/weighted/goodput, got {self.objective!r}")

    # -------------------------------------------------------------------------------------
    def weights(self, inst: Instance) -> tuple[np.ndarray, float]:
        """Objective weight per met request and the constant offset (empty workloads)."""
        w, n = inst.workload, inst.n
        if self.objective == "goodput":
            return np.asarray(w.output_tokens, float), 0.0
        if n == 0:
            return np.zeros(0), 1.0
        if self.objective == "weighted":
            tot = float(np.sum(w.utility))
            return (np.asarray(w.utility, float) / tot, 0.0) if tot > 0 else (np.zeros(n), 1.0)
        return np.full(n, 1.0 / n), 0.0

    def build(self, inst: Instance) -> LinearModel:
        """Encode ``inst`` (see the module docstring for the model)."""
        w, e, T = inst.workload, inst.engine, int(inst.num_slots)
        P_all = np.asarray(w.prompt_tokens, np.int64)
        O_all = np.asarray(w.output_tokens, np.int64)
        win = request_windows(inst)
        weight, offset = self.weights(inst)
        model = LinearModel(sense="max", obj_offset=offset, info={"name": self.name})
        B, M = int(e.max_batch_tokens), int(e.kv_capacity_tokens)
        tok_r: list[np.ndarray] = []  # slot ids
        tok_c: list[np.ndarray] = []
        tok_v: list[np.ndarray] = []
        kv_r: list[np.ndarray] = []
        kv_c: list[np.ndarray] = []
        kv_v: list[np.ndarray] = []
        rows = _Rows.new(model)
        reqs: list[dict[str, Any] | None] = []
        for i in range(inst.n):
            if not win["servable"][i]:
                reqs.append(None)
                continue
            P, O = int(P_all[i]), int(O_all[i])
            W = P + O - 1
            r, lf, u, g = int(win["r"][i]), int(win["lf"][i]), int(win["u"][i]), int(win["gap"][i])
            m = int(model.add_cols(1, lb=1.0 if self.must_serve else 0.0, ub=1.0,
                                   cost=weight[i], integer=True)[0])
            nf = lf - r + 1
            X = model.add_cols(nf, lb=0.0, ub=P, integer=True)
            G = model.add_cols(nf, lb=0.0, ub=1.0, integer=True)
            # X monotone; X_lf = P m; G exact; G monotone; G_lf = m
            if nf > 1:
                rows.block(np.stack([X[1:], X[:-1]], 1), [1.0, -1.0], 0.0, math.inf)
                rows.block(np.stack([G[1:], G[:-1]], 1), [1.0, -1.0], 0.0, math.inf)
            rows.block([[X[-1], m]], [1.0, -P], 0.0, 0.0)
            rows.block([[G[-1], m]], [1.0, -1.0], 0.0, 0.0)
            rows.block(np.stack([X, G], 1), [1.0, -P], 0.0, P - 1.0)
            slots_f = np.arange(r, lf + 1)
            # tokens: prefill increments
            _increments(tok_r, tok_c, tok_v, slots_f, X)
            # KV: X_t for t <= lf, P m after
            kv_r.append(slots_f)
            kv_c.append(X)
            kv_v.append(np.ones(nf))
            after = np.arange(lf + 1, u + 1)
            kv_r.append(after)
            kv_c.append(np.full(after.size, m))
            kv_v.append(np.full(after.size, float(P)))
            Cv = np.zeros(0, np.int64)
            F = G  # O == 1: finished == first token
            f_slots = slots_f
            if O > 1:
                nd = u - r  # slots r+1..u
                d_slots = np.arange(r + 1, u + 1)
                Cv = model.add_cols(nd, lb=0.0, ub=O - 1, integer=True)
                F = model.add_cols(nd, lb=0.0, ub=1.0, integer=True)
                f_slots = d_slots
                # G_{t-1} for t in r+1..u (m beyond lf)
                g_idx = np.minimum(d_slots - 1, lf) - r
                gprev_cols = np.where(d_slots - 1 <= lf, G[g_idx], m)
                # 0 <= C_t - C_{t-1} <= G_{t-1}   (C_r := 0)
                rows.block([[Cv[0], gprev_cols[0]]], [1.0, -1.0], -math.inf, 0.0)
                if nd > 1:
                    rows.block(np.stack([Cv[1:], Cv[:-1]], 1), [1.0, -1.0], 0.0, 1.0)
                    rows.block(np.stack([Cv[1:], Cv[:-1], gprev_cols[1:]], 1),
                               [1.0, -1.0, -1.0], -math.inf, 0.0)
                rows.block([[Cv[-1], m]], [1.0, -(O - 1.0)], 0.0, 0.0)
                # F: (O-1) F <= C; monotone; F_u = m
                rows.block(np.stack([F, Cv], 1), [O - 1.0, -1.0], -math.inf, 0.0)
                if nd > 1:
                    rows.block(np.stack([F[1:], F[:-1]], 1), [1.0, -1.0], 0.0, math.inf)
                rows.block([[F[-1], m]], [1.0, -1.0], 0.0, 0.0)
                # TPOT: C_{t+g} >= (O-1) G_t for t in [r, lf] with t + g < u
                tt = slots_f[slots_f + g < u] if g < u else np.zeros(0, np.int64)
                if tt.size:
                    rows.block(np.stack([Cv[tt + g - r - 1], G[tt - r]], 1),
                               [1.0, -(O - 1.0)], 0.0, math.inf)
                # tokens: decode increments
                _increments(tok_r, tok_c, tok_v, d_slots, Cv)
                # KV: + C_t
                kv_r.append(d_slots)
                kv_c.append(Cv)
                kv_v.append(np.ones(nd))
            # KV: - W F_{t-1} for t in (first F slot, u]
            fs = f_slots[f_slots + 1 <= u]
            kv_r.append(fs + 1)
            kv_c.append(F[: fs.size])
            kv_v.append(np.full(fs.size, -float(W)))
            reqs.append({"m": m, "X": X, "G": G, "C": Cv, "F": F, "r": r, "lf": lf, "u": u,
                         "gap": g})
        rows.flush()
        # per-slot token budget and KV rows (one of each per slot 0..T-1)
        def cat(x: list[np.ndarray], dt: Any) -> np.ndarray:
            return np.concatenate(x).astype(dt) if x else np.zeros(0, dt)

        tok_rows = model.add_rows(cat(tok_r, np.int64), cat(tok_c, np.int64), cat(tok_v, float),
                                  -math.inf, float(B), T)
        kv_rows = model.add_rows(cat(kv_r, np.int64), cat(kv_c, np.int64), cat(kv_v, float),
                                 -math.inf, float(M), T)
        model.info.update(req=reqs, tok_rows=tok_rows, kv_rows=kv_rows, windows=win,
                          objective=self.objective)
        if self.must_serve and not bool(np.all(win["servable"])):
            bad = np.flatnonzero(~win["servable"])[:5].tolist()
            model.info["infeasible"] = f"must_serve: requests {bad} cannot meet their SLO"
        return model

    # -------------------------------------------------------------------------------------
    def extract(self, model: LinearModel, values: np.ndarray, inst: Instance) -> Schedule:
        """Build the :class:`Schedule` of an integer solution (steps = non-empty slots)."""
        w, D = inst.workload, float(inst.engine.step_s)
        n = inst.n
        v = np.rint(np.asarray(values, float)).astype(np.int64)
        P_all, O_all = w.prompt_tokens, w.output_tokens
        a_req, a_slot, a_tok, a_pf = [], [], [], []
        first = np.full(n, -1, np.int64)
        fin = np.full(n, -1, np.int64)
        pinned = model.info.get("pinned", {})
        for i, rq in enumerate(model.info["req"]):
            if i in pinned:  # a pinned trajectory (fix-and-solve)
                tr = pinned[i]
                a_req.append(np.full(tr["slots"].size, i))
                a_slot.append(tr["slots"])
                a_tok.append(tr["tokens"])
                a_pf.append(tr["pf"])
                first[i], fin[i] = tr["first"], tr["fin"]
                continue
            if rq is None:
                continue
            r = rq["r"]
            X = np.concatenate(([0], v[rq["X"]]))
            x = np.diff(X)
            s = np.flatnonzero(x > 0)
            a_req.append(np.full(s.size, i))
            a_slot.append(r + s)
            a_tok.append(x[s])
            a_pf.append(np.ones(s.size, bool))
            if X[-1] >= P_all[i]:
                first[i] = r + int(np.flatnonzero(X[1:] >= P_all[i])[0])
                fin[i] = first[i]
            if rq["C"].size:
                C = np.concatenate(([0], v[rq["C"]]))
                d = np.flatnonzero(np.diff(C) > 0)
                a_req.append(np.full(d.size, i))
                a_slot.append(r + 1 + d)
                a_tok.append(np.ones(d.size, np.int64))
                a_pf.append(np.zeros(d.size, bool))
                if C[-1] >= O_all[i] - 1:
                    fin[i] = r + 1 + int(np.flatnonzero(C[1:] >= O_all[i] - 1)[0])
                else:
                    fin[i] = -1
        return _schedule_from_slots(n, D, a_req, a_slot, a_tok, a_pf, first, fin, w,
                                    meta={"solver": self.name, "objective": self.objective})

    # -------------------------------------------------------------------------------------
    def fix(self, model: LinearModel, schedule: Schedule, inst: Instance, *,
            drop_preempted: bool = False) -> None:
        """Pin ``schedule``'s allocations into ``model``; the model decides which requests meet
        their SLO.

        Only the allocations are pinned (which slots and tokens each request gets). Each
        request's trajectory is replayed from the allocation and preemption tables (no metric
        is consulted): its exact per-slot token and KV profile is charged to the token and KV
        rows as a fixed column, and the model's own path variables are tied to the trajectory,
        ``X_t = P [gen_t >= 1] m`` and ``C_t = max(gen_t - 1, 0) m`` (``gen_t``: output tokens
        emitted by the end of slot ``t``). ``m`` stays free, so the model's deadline rows
        (first token by ``lf``, finish by ``u``, TPOT) decide met/unmet; the optimum of the
        pinned model is then the attainment of the schedule *as the model computes it*, an
        independent check of :func:`slo_opt.metrics.attainment`.

        ``drop_preempted=True`` (MIP starts: no extra columns, a start for the unpinned model)
        pins preempted requests unserved and ties the others' path variables the same way,
        without charging the capacity of requests the model leaves unmet (dropping them only
        frees capacity). Raises :class:`NotRepresentable` for swaps or steps off the slot grid.
        """
        w, D, T = inst.workload, float(inst.engine.step_s), int(inst.num_slots)
        if schedule.num_requests != inst.n:
            raise NotRepresentable(f"schedule has {schedule.num_requests} requests, instance {inst.n}")
        ev = schedule.events
        if np.any(ev.kind == EventKind.CACHE_HIT):  # the model computes every prompt token
            raise NotRepresentable("schedules with prefix-cache hits (CACHE_HIT) are outside "
                                   "the slot model")
        if np.any(ev.kind != EventKind.PREEMPT_RECOMPUTE):
            raise NotRepresentable("schedules with KV swaps are outside the slot "
                                   "model (a swap lengthens its step beyond one slot)")
        slot_of = _step_slots(schedule, D) if schedule.num_steps else np.zeros(0, np.int64)
        s_exp, r_exp, t_exp = schedule.allocs.expand()
        order = np.lexsort((s_exp, r_exp))
        s_exp, r_exp, t_exp = s_exp[order], r_exp[order], t_exp[order]
        bounds = np.searchsorted(r_exp, np.arange(inst.n + 1))
        preempted = set(ev.request.tolist())
        A = model.matrix("csc") if not drop_preempted else None
        cap_row = np.zeros(model.num_rows, bool)
        cap_row[model.info["tok_rows"]] = True
        cap_row[model.info["kv_rows"]] = True
        P_all, O_all = w.prompt_tokens, w.output_tokens
        b_rows: list[np.ndarray] = []
        b_cols: list[np.ndarray] = []
        b_vals: list[np.ndarray] = []
        t_rows: list[np.ndarray] = []
        t_cols: list[np.ndarray] = []
        t_vals: list[np.ndarray] = []
        n_tie = 0
        dropped = []
        pinned: dict[int, dict[str, Any]] = {}
        for i, rq in enumerate(model.info["req"]):
            sl = slot_of[s_exp[bounds[i]:bounds[i + 1]]]
            tk = t_exp[bounds[i]:bounds[i + 1]]
            if drop_preempted and i in preempted:
                if rq is not None:
                    model.col_ub[rq["m"]] = 0.0
                continue
            if sl.size == 0:
                if rq is not None:
                    model.col_ub[rq["m"]] = 0.0
                continue
            P, O = int(P_all[i]), int(O_all[i])
            pre = slot_of[ev.step[ev.request == i]] if i in preempted else np.zeros(0, np.int64)
            tr = _replay(sl, tk, pre, P, O, T - 1)
            if sl.max() > T - 1:
                dropped.append(i)  # only slots < T are charged; the model sees it unfinished
            if not drop_preempted:
                # capacity: a fixed column with the exact profile, the request's own variables
                # taken out of the token and KV rows
                lo, hi = tr["lo"], min(tr["hi"], T - 1)
                span = np.arange(lo, hi + 1)
                v = int(model.add_cols(1, lb=1.0, ub=1.0, integer=True)[0])
                rr = [model.info["tok_rows"][span], model.info["kv_rows"][span]]
                vv = [tr["tok"][: span.size], tr["held"][: span.size]]
                if rq is not None:
                    assert A is not None
                    own = np.concatenate([rq["X"], rq["C"], rq["F"], [rq["m"]]]).astype(np.int64)
                    sub = A[:, own].tocoo()
                    keep = cap_row[sub.row]
                    b_rows.append(sub.row[keep])
                    b_cols.append(own[sub.col[keep]])
                    b_vals.append(-sub.data[keep])
                b_rows.extend(rr)
                b_cols.append(np.full(sum(x.size for x in rr), v))
                b_vals.extend(vv)
                pinned[i] = {"v": v, "slots": sl[sl <= T - 1], "tokens": tk[sl <= T - 1],
                             "pf": tr["pf"][sl <= T - 1], "first": tr["first"],
                             "fin": tr["fin"] if tr["fin"] <= T - 1 else -1}
            if rq is None:
                continue
            # tie the path variables to the trajectory: X_t - Xp_t m = 0, C_t - Cp_t m = 0
            r, lf, u = rq["r"], rq["lf"], rq["u"]
            gen = tr["gen_at"]
            Xp = np.where(gen(np.arange(r, lf + 1)) >= 1, float(P), 0.0)
            cols_ = [rq["X"]]
            coef = [Xp]
            if rq["C"].size:
                cols_.append(rq["C"])
                coef.append(np.maximum(gen(np.arange(r + 1, u + 1)) - 1, 0).astype(float))
            for cv, xv in zip(cols_, coef):
                k = cv.size
                t_rows.append(np.repeat(np.arange(n_tie, n_tie + k), 2))
                t_cols.append(np.stack([cv, np.full(k, rq["m"])], 1).reshape(-1))
                t_vals.append(np.stack([np.ones(k), -xv], 1).reshape(-1))
                n_tie += k
        if b_rows:
            model.add_entries(np.concatenate(b_rows), np.concatenate(b_cols),
                              np.concatenate(b_vals))
        if n_tie:
            model.add_rows(np.concatenate(t_rows), np.concatenate(t_cols), np.concatenate(t_vals),
                           0.0, 0.0, n_tie)
        model.info["pinned"] = pinned
        model.info["fix_dropped"] = dropped


def _replay(sl: np.ndarray, tk: np.ndarray, pre: np.ndarray, P: int, O: int,
            last_slot: int) -> dict[str, Any]:
    """Token accounting of one request's pinned trajectory, from its allocations alone.

    ``sl``/``tk``: slots (ascending) and tokens of its allocations; ``pre``: slots of its
    recompute preemptions (applied at the start of the slot). Returns the per-slot token and
    KV profile over ``[lo, hi]``, the prefill flag of each allocation (the simulator's rule: a
    decode is one token with ``gen >= 1`` and one token needed), the first-token and finish
    slots (-1: none) and ``gen_at(slots)``, output tokens emitted by the end of each slot.
    An unfinished request keeps its KV up to ``last_slot``.
    """
    lo = int(min(sl.min(), pre.min() if pre.size else sl.min()))
    hi = int(sl.max())
    if pre.size and int(pre.max()) > hi:
        hi = int(pre.max())
    n = hi - lo + 1
    tok = np.zeros(n)
    held = np.zeros(n)
    gen_end = np.zeros(n, np.int64)
    pf = np.zeros(sl.size, bool)
    comp = gen = 0
    first = fin = -1
    pre_l = sorted(pre.tolist())
    j = 0
    for k in range(n):
        t = lo + k
        while pre_l and pre_l[0] <= t:
            comp = 0
            pre_l.pop(0)
        while j < sl.size and sl[j] == t:
            x = int(tk[j])
            need = P + gen - comp
            pf[j] = not (x == 1 and need == 1 and gen >= 1)
            tok[k] += x
            comp += x
            if comp == P + gen:
                gen += 1
                if gen == 1:
                    first = t
                if gen == O:
                    fin = t
            j += 1
        held[k] = comp
        gen_end[k] = gen
    final = gen
    if fin < 0 and comp > 0 and last_slot > hi:  # unfinished: its KV stays resident
        extra = last_slot - hi
        tok = np.concatenate([tok, np.zeros(extra)])
        held = np.concatenate([held, np.full(extra, float(comp))])
        gen_end = np.concatenate([gen_end, np.full(extra, gen, np.int64)])
        hi, n = last_slot, n + extra

    def gen_at(slots: np.ndarray) -> np.ndarray:
        idx = slots - lo
        out = np.where(idx < 0, 0, gen_end[np.clip(idx, 0, n - 1)])
        return np.where(idx >= n, final, out)

    return {"lo": lo, "hi": hi, "tok": tok, "held": held, "pf": pf, "first": first, "fin": fin,
            "gen_at": gen_at}


def _step_slots(schedule: Schedule, D: float) -> np.ndarray:
    """Slot index of every step; raises if a step is off the grid or longer than a slot."""
    st, en = schedule.steps.start_s, schedule.steps.end_s
    k = np.rint(st / D).astype(np.int64)
    tol = 1e-9 * np.maximum(1.0, np.abs(st))
    off = np.flatnonzero((np.abs(st - k * D) > tol) | (np.abs(en - st - D) > tol))
    if off.size:
        j = int(off[0])
        raise NotRepresentable(f"step {j} [{st[j]:.9g}, {en[j]:.9g}] is not a slot of length {D} on "
                               "the grid (simulate with SlotEngine.align_start_s)")
    return k


def _schedule_from_slots(n: int, D: float, a_req: list[np.ndarray], a_slot: list[np.ndarray],
                         a_tok: list[np.ndarray], a_pf: list[np.ndarray], first: np.ndarray,
                         fin: np.ndarray, workload: Any, meta: dict[str, Any]) -> Schedule:
    """Steps = the non-empty slots; batch shape and context tokens as the simulator records."""
    def cat(x: list[np.ndarray], dt: Any) -> np.ndarray:
        return np.concatenate(x).astype(dt) if x else np.zeros(0, dt)

    req, slot, tok, pf = cat(a_req, np.int64), cat(a_slot, np.int64), cat(a_tok, np.int64), \
        cat(a_pf, bool)
    order = np.lexsort((slot, req))
    req, slot, tok, pf = req[order], slot[order], tok[order], pf[order]
    # computed tokens before each allocation (per request running sum; no preemption here
    # except pinned trajectories, whose context is recomputed below)
    comp_before = np.zeros(req.size, np.int64)
    if req.size:
        starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]])
        cs = np.cumsum(tok)
        base = np.repeat(cs[starts] - tok[starts], np.diff(np.r_[starts, req.size]))
        comp_before = cs - tok - base
    slots = np.unique(slot)
    T = slots.size
    step_of = np.searchsorted(slots, slot)
    pf_tok = np.bincount(step_of, weights=np.where(pf, tok, 0), minlength=T).astype(np.int64)
    dec = np.bincount(step_of, weights=(~pf).astype(float), minlength=T).astype(np.int64)
    ctx = np.bincount(step_of, weights=comp_before + tok, minlength=T).astype(np.int64)
    start = slots * D
    steps = StepTable(start_s=start, end_s=start + D, prefill_tokens=pf_tok, decode_seqs=dec,
                      context_tokens=ctx)
    allocs = compress_allocs(req, step_of, np.ones(req.size, np.int64), tok) if req.size else \
        AllocTable(request=req, step=req, tokens=req)
    smap = {int(s): k for k, s in enumerate(slots.tolist())}
    fts = np.array([smap[int(s)] if s >= 0 else -1 for s in first], np.int64)
    fns = np.array([smap[int(s)] if s >= 0 else -1 for s in fin], np.int64)
    return Schedule(num_requests=n, steps=steps, allocs=allocs, first_token_step=fts,
                    finish_step=fns, rejected=np.zeros(n, bool), meta=dict(meta))
