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
  a request that was preempted is pinned as an extra column with its exact token and KV
  profile (formulation A's "pattern as a column" idiom). Swaps lengthen a step beyond the slot
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

from slo_opt.metrics import request_metrics
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
        for i, rq in enumerate(model.info["req"]):
            if rq is None:
                continue
            if "pinned" in rq:  # a pinned preempted trajectory (fix-and-solve)
                if v[rq["pinned"]] >= 1:
                    s, t, p = rq["traj"]
                    a_req.append(np.full(s.size, i))
                    a_slot.append(s)
                    a_tok.append(t)
                    a_pf.append(p)
                    first[i], fin[i] = rq["traj_first"], rq["traj_fin"]
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
        """Pin ``schedule`` (a simulated or extracted one) into ``model``.

        Requests that miss their SLO under :func:`slo_opt.metrics.request_metrics` are pinned
        unserved (their allocations only use capacity); met requests are pinned to their exact
        token paths, or, if they were preempted, to an extra column carrying their exact token
        and KV profile. Raises :class:`NotRepresentable` for swaps, steps off the slot grid,
        or a met request outside its model window (a metric/model disagreement).
        ``drop_preempted=True`` pins preempted requests unserved instead (no extra columns:
        used for MIP starts).
        """
        w, D, T = inst.workload, float(inst.engine.step_s), int(inst.num_slots)
        if schedule.num_requests != inst.n:
            raise NotRepresentable(f"schedule has {schedule.num_requests} requests, instance {inst.n}")
        ev = schedule.events
        if np.any(ev.kind == EventKind.CACHE_HIT):  # the model computes every prompt token
            raise NotRepresentable("schedules with prefix-cache hits (CACHE_HIT) are outside "
                                   "the slot model")
        if np.any(ev.kind != EventKind.PREEMPT_RECOMPUTE):
            raise NotRepresentable("schedules with KV swaps are outside the slot model "
                                   "(a swap lengthens its step beyond one slot)")
        slot_of = _step_slots(schedule, D)
        met = request_metrics(schedule, w)["slo_met"]
        s_exp, r_exp, t_exp = schedule.allocs.expand()
        order = np.lexsort((s_exp, r_exp))
        s_exp, r_exp, t_exp = s_exp[order], r_exp[order], t_exp[order]
        bounds = np.searchsorted(r_exp, np.arange(inst.n + 1))
        preempted = set(ev.request.tolist())
        dropped = []
        for i, rq in enumerate(model.info["req"]):
            sl = slot_of[s_exp[bounds[i]:bounds[i + 1]]]
            tk = t_exp[bounds[i]:bounds[i + 1]]
            if not met[i] or (drop_preempted and i in preempted):
                if rq is not None:
                    model.col_ub[rq["m"]] = 0.0
                continue
            if sl.size and sl.max() > T - 1:
                dropped.append(i)  # finishes beyond the horizon: only slots < T are pinned
                if rq is not None:
                    model.col_ub[rq["m"]] = 0.0
                continue
            if rq is None:
                raise NotRepresentable(f"request {i} meets its SLO in the schedule but is not "
                                       "servable in the model (deadline arithmetic disagrees)")
            if i in preempted:
                self._pin_column(model, i, rq, schedule, sl, tk, slot_of, inst)
                continue
            P, O = int(w.prompt_tokens[i]), int(w.output_tokens[i])
            cum = np.cumsum(tk)
            pf = cum <= P
            r, lf, u = rq["r"], rq["lf"], rq["u"]
            pf_sl, dec_sl = sl[pf], sl[~pf]
            if (pf_sl.size and (pf_sl.min() < r or pf_sl.max() > lf)) or \
                    (dec_sl.size and (dec_sl.min() <= r or dec_sl.max() > u)):
                raise NotRepresentable(f"request {i} meets its SLO but computes outside its model "
                                       f"window (prefill {pf_sl.tolist()} vs [{r}, {lf}], decode "
                                       f"{dec_sl.tolist()} vs [{r + 1}, {u}])")
            Xp = np.zeros(lf - r + 1)
            np.add.at(Xp, pf_sl - r, tk[pf])
            Xp = np.cumsum(Xp)
            model.col_lb[rq["X"]] = Xp
            model.col_ub[rq["X"]] = Xp
            if O > 1:
                Cp = np.zeros(u - r)
                np.add.at(Cp, dec_sl - r - 1, 1.0)
                Cp = np.cumsum(Cp)
                model.col_lb[rq["C"]] = Cp
                model.col_ub[rq["C"]] = Cp
        model.info["fix_dropped"] = dropped

    def _pin_column(self, model: LinearModel, i: int, rq: dict[str, Any], schedule: Schedule,
                    sl: np.ndarray, tk: np.ndarray, slot_of: np.ndarray, inst: Instance) -> None:
        """Replace request ``i``'s variables by one column with its pinned trajectory."""
        P = int(inst.workload.prompt_tokens[i])
        first_s = int(slot_of[schedule.first_token_step[i]])
        fin_s = int(slot_of[schedule.finish_step[i]])
        ok = rq["r"] <= first_s <= rq["lf"] and fin_s <= rq["u"] and fin_s - first_s <= rq["gap"]
        if not ok:
            raise NotRepresentable(f"request {i}: pinned trajectory (first slot {first_s}, finish "
                                   f"{fin_s}) violates the model's deadlines")
        # KV profile: per slot from the first allocation to the finish slot
        ev = schedule.events
        pre = np.sort(slot_of[ev.step[ev.request == i]])
        lo = int(min(sl.min(), pre.min() if pre.size else sl.min()))
        span = np.arange(lo, fin_s + 1)
        tok_slot = np.zeros(span.size)
        np.add.at(tok_slot, sl - lo, tk)
        held = np.zeros(span.size)
        comp = 0.0
        pre_list = pre.tolist()
        for k, t in enumerate(span.tolist()):
            while pre_list and pre_list[0] == t:
                comp = 0.0
                pre_list.pop(0)
            comp += tok_slot[k]
            held[k] = comp
        A = model.matrix("csc")
        col = A[:, rq["m"]]
        rows_m, vals_m = col.indices, col.data
        # zero the request's own path, add the pinned column with -(m's coefficients) so that
        # m = v in every linking row, cancel m's KV entries and add the true profiles
        for key in ("X", "G", "C", "F"):
            model.col_ub[rq[key]] = 0.0
        v = int(model.add_cols(1, lb=1.0, ub=1.0, integer=True)[0])
        tok_rows, kv_rows = model.info["tok_rows"], model.info["kv_rows"]
        rr = [rows_m, tok_rows[span], kv_rows[span]]
        vv = [-vals_m, tok_slot, held]
        model.add_entries(np.concatenate(rr), np.full(sum(x.size for x in rr), v),
                          np.concatenate(vv))
        s_exp = sl
        pf = np.zeros(s_exp.size, bool)
        # classify prefill vs decode like the simulator: a decode is 1 token with gen >= 1 and
        # next_tokens == 1; reconstruct generated/computed along the run
        comp = gen = 0
        ev_sl = sorted(slot_of[ev.step[ev.request == i]].tolist())
        for k, (t, x) in enumerate(zip(sl.tolist(), tk.tolist())):
            while ev_sl and ev_sl[0] <= t:
                comp = 0
                ev_sl.pop(0)
            need = P + gen - comp
            pf[k] = not (x == 1 and need == 1 and gen >= 1)
            comp += x
            if comp == P + gen:
                gen += 1
        rq["pinned"] = v
        rq["traj"] = (sl, tk, pf)
        rq["traj_first"], rq["traj_fin"] = first_s, fin_s


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
