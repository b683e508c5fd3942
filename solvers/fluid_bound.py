"""An aggregated-time ("fluid") LP upper bound on SLO attainment, for thousands of requests.

Model (research/optimization.md section 2.4(b), specialised to ``SlotEngine``)
------------------------------------------------------------------------------
Slots are grouped into buckets of ``bucket_slots`` slots. With the per-request windows of
:func:`~slo_opt.solvers.goodput_milp.request_windows` (``r`` first slot, ``lf`` latest
first-token slot, ``u`` latest finish slot of a met request), request ``i`` has a served
fraction ``y_i in [0, 1]``, prompt tokens ``p_ib >= 0`` in the buckets of ``[r, lf]`` and output
emissions ``q_ib >= 0`` in the buckets of ``[r+1, u]``::

    max  sum_i w_i y_i
    sum_b p_ib = P_i y_i ;   sum_b q_ib = (O_i - 1) y_i
    q_ib <= n_ib y_i                          (one emission per slot; n_ib window slots in b)
    sum_{b' <= b} q_ib' / (O_i - 1) <= sum_{b' <= b} p_ib' / P_i     (decode after prefill)
    sum_i p_ib + q_ib <= B L_b                (token budget of the bucket's L_b slots)
    sum_i (P_i + 1) q_ib <= M L_b             (a slot emitting a decode token holds >= P+1 KV)
    sum_i y_i (P_i (O_i - 1) + O_i (O_i - 1) / 2) <= M T     (total KV-slot volume)

Every met request of any schedule of the slotted engine gives a feasible point with
``y_i = 1`` (its first-attempt prompt tokens and its ``O_i - 1`` later emissions are distinct
tokens in distinct slots of its window), so the optimum is an upper bound on the attainment of
*every* schedule of the slotted engine, preemptive ones included. It is tight when compute
binds and loose when KV binds (the KV-growth x time coupling is only linearised).

Notes
-----
Deviation from research/optimization.md 2.4(b): the engine is the slotted one (constant step
time), so the time row ``alpha N_t + beta sum(...) <= L`` becomes the per-bucket token budget;
the bound certifies the slotted optimum, not a variable-time engine.

References
----------
.. [1] Z. Ao et al., "Optimizing LLM Inference: Fluid-Guided Online Scheduling with Memory
   Constraints", arXiv 2504.11320 (fluid benchmark).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from slo_opt.schedule import Schedule
from slo_opt.solvers.base import Instance, LinearModel
from slo_opt.solvers.goodput_milp import GoodputMILP, Objective, request_windows

__all__ = ["FluidBound"]


@dataclass(frozen=True)
class FluidBound:
    """The bucketed fluid LP (a bound only; never a schedule).

    Parameters
    ----------
    objective : {"attainment", "weighted", "goodput"}
        As :class:`~slo_opt.solvers.goodput_milp.GoodputMILP`.
    bucket_slots : int
        Slots per bucket (1 = per-slot fluid LP; larger = smaller model, weaker bound).
    max_columns : int
        Refuse (``ValueError``, one line, before allocating anything) to build a model with more
        columns than this. Windows of requests without a TPOT/e2e target span the whole horizon,
        so the column count is ``n x horizon / bucket_slots``: 1,000 real-length requests with
        no TPOT target would need 1.6e8 columns (the 12.6 GB blow-up of issue 14). The default
        keeps the model under about 1 GB.
    """

    name: ClassVar[str] = "fluid_bound"
    SENSE: ClassVar[Literal["max", "min"]] = "max"
    EXACT: ClassVar[bool] = False
    MIP: ClassVar[bool] = False
    objective: Objective = "attainment"
    bucket_slots: int = 8
    max_columns: int = 3_000_000

    def __post_init__(self) -> None:
        if int(self.bucket_slots) < 1:
            raise ValueError(f"bucket_slots must be >= 1, got {self.bucket_slots}")
        if int(self.max_columns) < 1:
            raise ValueError(f"max_columns must be >= 1, got {self.max_columns}")
        GoodputMILP(objective=self.objective)  # validates the objective

    def build(self, inst: Instance) -> LinearModel:
        """Encode the fluid LP (vectorised over requests; a few seconds for 10^4 requests)."""
        L = int(self.bucket_slots)
        T = int(inst.num_slots)
        w, e = inst.workload, inst.engine
        weight, offset = GoodputMILP(objective=self.objective).weights(inst)
        win = request_windows(inst)
        model = LinearModel(sense="max", obj_offset=offset,
                            info={"name": self.name, "lp_solver": "ipm"})
        if T == 0 or inst.n == 0:
            return model
        nb = -(-T // L)
        B, M = float(e.max_batch_tokens), float(e.kv_capacity_tokens)
        idx = np.flatnonzero(win["servable"])
        P = np.asarray(w.prompt_tokens, float)[idx]
        O = np.asarray(w.output_tokens, float)[idx]
        r, lf, u = win["r"][idx], win["lf"][idx], win["u"][idx]
        k = idx.size
        ncols = k + int((lf // L - r // L + 1).sum()) + int(
            np.where(O > 1, u // L - (r + 1) // L + 1, 0).sum())
        if ncols > int(self.max_columns):
            span = int((u - r).max(initial=0))
            need = L * -(-ncols // int(self.max_columns))
            raise ValueError(
                f"FluidBound: {ncols:,} columns > max_columns={int(self.max_columns):,} (request "
                f"windows up to {span:,} slots of a {T:,}-slot horizon); use bucket_slots >= "
                f"{need}, a TPOT/e2e target, a shorter num_slots, or LagrangianBound")
        y = model.add_cols(k, lb=0.0, ub=1.0, cost=weight[idx])
        rows_r, rows_c, rows_v = [], [], []  # per-request rows
        nrow = 0
        bud_r, bud_c, bud_v = [], [], []  # per-bucket rows (budget, kv)
        kv_r, kv_c, kv_v = [], [], []
        # prefill columns: one per (request, bucket in [r//L, lf//L])
        pb0, pb1 = r // L, lf // L
        np_ = pb1 - pb0 + 1
        p_req = np.repeat(np.arange(k), np_)
        p_b = np.repeat(pb0, np_) + (np.arange(np_.sum()) - np.repeat(np.cumsum(np_) - np_, np_))
        pcols = model.add_cols(p_req.size, lb=0.0, ub=np.repeat(P, np_))
        # decode columns: (request, bucket in [(r+1)//L, u//L]) for O > 1
        dec = O > 1
        db0, db1 = (r + 1) // L, u // L
        nd = np.where(dec, db1 - db0 + 1, 0)
        d_req = np.repeat(np.arange(k), nd)
        d_b = np.repeat(db0, nd) + (np.arange(nd.sum()) - np.repeat(np.cumsum(nd) - nd, nd))
        lo = np.maximum(r[d_req] + 1, d_b * L)
        hi = np.minimum(u[d_req], d_b * L + L - 1)
        n_ib = np.maximum(hi - lo + 1, 0).astype(float)
        qcols = model.add_cols(d_req.size, lb=0.0, ub=n_ib)
        # sum_b p = P y
        rows_r += [p_req + nrow, np.arange(k) + nrow]
        rows_c += [pcols, y]
        rows_v += [np.ones(p_req.size), -P]
        lbs, ubs = [np.zeros(k)], [np.zeros(k)]
        nrow += k
        # sum_b q = (O-1) y   (requests with O > 1)
        kd = np.flatnonzero(dec)
        rowid = np.full(k, -1)
        rowid[kd] = np.arange(kd.size) + nrow
        rows_r += [rowid[d_req], rowid[kd]]
        rows_c += [qcols, y[kd]]
        rows_v += [np.ones(d_req.size), -(O[kd] - 1)]
        lbs.append(np.zeros(kd.size))
        ubs.append(np.zeros(kd.size))
        nrow += kd.size
        # q_ib <= n_ib y_i
        m = d_req.size
        rows_r += [np.arange(m) + nrow, np.arange(m) + nrow]
        rows_c += [qcols, y[d_req]]
        rows_v += [np.ones(m), -n_ib]
        lbs.append(np.full(m, -math.inf))
        ubs.append(np.zeros(m))
        nrow += m
        # precedence: cumulative q/(O-1) <= cumulative p/P at every decode bucket b before the
        # request's last prefill bucket (later rows are implied by the two equalities).
        # p_req and d_req are sorted, so each request's columns are contiguous slices.
        pstart = np.searchsorted(p_req, np.arange(k + 1))
        dstart = np.searchsorted(d_req, np.arange(k + 1))
        need = (d_b < pb1[d_req]) & dec[d_req]
        for qc in np.flatnonzero(need).tolist():
            j = int(d_req[qc])
            qs = np.arange(dstart[j], qc + 1)
            pj = np.arange(pstart[j], pstart[j + 1])
            ps = pj[p_b[pj] <= d_b[qc]]
            rows_r.append(np.full(qs.size + ps.size, nrow))
            rows_c.append(np.concatenate([qcols[qs], pcols[ps]]))
            rows_v.append(np.concatenate([np.full(qs.size, 1.0 / (O[j] - 1)),
                                          np.full(ps.size, -1.0 / P[j])]))
            lbs.append(np.array([-math.inf]))
            ubs.append(np.array([0.0]))
            nrow += 1
        model.add_rows(np.concatenate(rows_r), np.concatenate(rows_c), np.concatenate(rows_v),
                       np.concatenate(lbs), np.concatenate(ubs), nrow)
        # per-bucket token budget and KV
        Lb = np.minimum(L, T - np.arange(nb) * L).astype(float)
        bud_r += [p_b, d_b]
        bud_c += [pcols, qcols]
        bud_v += [np.ones(p_b.size), np.ones(d_b.size)]
        model.add_rows(np.concatenate(bud_r), np.concatenate(bud_c), np.concatenate(bud_v),
                       -math.inf, B * Lb, nb)
        kv_r.append(d_b)
        kv_c.append(qcols)
        kv_v.append(P[d_req] + 1)
        model.add_rows(np.concatenate(kv_r), np.concatenate(kv_c), np.concatenate(kv_v),
                       -math.inf, M * Lb, nb)
        vol = P * (O - 1) + O * (O - 1) / 2
        model.add_rows(np.zeros(k, np.int64), y, vol, -math.inf, M * T, 1)
        model.info.update(windows=win)
        return model

    def fix(self, model: LinearModel, schedule: Schedule, inst: Instance) -> None:
        """Not supported: the fluid LP has no per-slot decisions to pin."""
        raise NotImplementedError("FluidBound is a bound; pin schedules into GoodputMILP")

    def extract(self, model: LinearModel, values: np.ndarray, inst: Instance) -> Schedule:
        """Not supported (``EXACT = False``)."""
        raise NotImplementedError("FluidBound gives a bound, never a schedule")
