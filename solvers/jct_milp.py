"""Exact minimum mean JCT on the slotted engine (batched, chunked prefill, KV), small ``n``.

Model
-----
The schedule space of :class:`~slo_opt.solvers.goodput_milp.GoodputMILP` (non-preemptive
schedules of :class:`~slo_opt.models.slot.SlotEngine`: chunked prefill, at most one decode token
per request per slot, arbitrary decode stalls, per-slot token budget ``B`` and KV capacity
``M``), every request served (``must_serve``), and the objective replaced by the mean JCT
``(1/n) sum_i (f_i + 1) D - a_i`` (``f_i`` the finishing slot; JCT = e2e =
:func:`slo_opt.metrics.request_metrics`' ``e2e_s``). With ``F_it`` the binary "finished by the
end of slot ``t``" on ``[.., u_i]``, ``f_i = u_i + 1 - sum_t F_it``, so the objective is linear:
``(1/n) sum_i ((u_i + 2) D - a_i) - (D/n) sum_it F_it``. The workload's SLOs are ignored.

This is the batched, KV-constrained analogue of the hindsight-optimal benchmark of Jaillet et
al. [1]_ (their section 3: total latency of a non-preemptive schedule; one batch per time unit
and KV growing one token per decode): ours adds the per-slot token budget and chunked prefill,
and measures latency from the arrival instant rather than the arrival round.

Horizons
--------
Each request's latest finishing slot ``u_i`` is derived, not guessed: if some non-preemptive
schedule finishes all requests with total finishing slot ``U`` (the serial schedule below, or a
caller's ``sum_finish_bound_slots``), the optimum has ``sum_j f_j <= U``, and every ``f_j`` is at
least ``fmin_j = r_j + ceil(P_j / B) + O_j - 2`` (prefill at the full budget, then one decode per
slot), so ``f_i <= U - sum_{j != i} fmin_j``. The serial schedule serves requests one at a time
in arrival order (prefill in ``ceil(P/B)`` slots, then ``O - 1`` decodes), feasible when each
request fits the KV cache alone.

References
----------
.. [1] P. Jaillet, J. Jiang, K. Mellou, M. Molinaro, C. Podimata, Z. Zhou, "Online Scheduling
   for LLM Inference with KV Cache Constraints", arXiv 2502.07115 (2025).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from slo_opt.request import Workload
from slo_opt.schedule import Schedule
from slo_opt.solvers.base import Instance, LinearModel, first_slots
from slo_opt.solvers.goodput_milp import GoodputMILP

__all__ = ["MeanJCTMILP", "earliest_finish_slots", "serial_finish_slots"]


def earliest_finish_slots(workload: Workload, step_s: float, max_batch_tokens: int) -> np.ndarray:
    """Per request, the earliest slot it can finish in with the engine to itself."""
    r = first_slots(workload, step_s)
    P = np.asarray(workload.prompt_tokens, np.int64)
    O = np.asarray(workload.output_tokens, np.int64)
    return r + -(-P // int(max_batch_tokens)) + O - 2


def serial_finish_slots(workload: Workload, step_s: float, max_batch_tokens: int) -> np.ndarray:
    """Finishing slots of the serial schedule (one request at a time, arrival order)."""
    r = first_slots(workload, step_s)
    P = np.asarray(workload.prompt_tokens, np.int64)
    O = np.asarray(workload.output_tokens, np.int64)
    proc = -(-P // int(max_batch_tokens)) + O - 1
    fin = np.zeros(len(workload), np.int64)
    free_at = 0  # first slot the server is free
    for i in np.argsort(r, kind="stable").tolist():
        start = max(free_at, int(r[i]))
        fin[i] = start + int(proc[i]) - 1
        free_at = int(fin[i]) + 1
    return fin


@dataclass(frozen=True)
class MeanJCTMILP:
    """Minimise mean JCT over non-preemptive schedules of ``SlotEngine`` serving every request.

    Parameters
    ----------
    sum_finish_bound_slots : int or None
        Sum of finishing slots of a known non-preemptive schedule that serves every request on
        the instance's engine (for instance a heuristic's simulated schedule without preemption);
        it tightens every request's horizon (module docstring). ``None``: the serial schedule's.
        A value below the optimum's makes the model infeasible (never a wrong optimum).

    Notes
    -----
    ``Instance.num_slots`` is ignored: the horizon of each request is derived (module
    docstring). Requests longer than the KV cache make the instance ``INFEASIBLE``.
    """

    name: ClassVar[str] = "mean_jct_milp"
    SENSE: ClassVar[Literal["max", "min"]] = "min"
    EXACT: ClassVar[bool] = True
    MIP: ClassVar[bool] = True
    sum_finish_bound_slots: int | None = None
    cuts: bool = True

    def horizons(self, inst: Instance) -> np.ndarray:
        """Latest finishing slot ``u_i`` of every request in some optimal schedule."""
        e = inst.engine
        D, B = float(e.step_s), int(e.max_batch_tokens)
        fmin = earliest_finish_slots(inst.workload, D, B)
        U = int(serial_finish_slots(inst.workload, D, B).sum())
        if self.sum_finish_bound_slots is not None:
            U = min(U, int(self.sum_finish_bound_slots))
        return U - (int(fmin.sum()) - fmin)

    def _inner(self, inst: Instance) -> tuple[GoodputMILP, Instance]:
        """The must-serve attainment model whose e2e deadlines are the horizons."""
        w, D = inst.workload, float(inst.engine.step_s)
        u = self.horizons(inst)
        e2e = (u + 1) * D - np.asarray(w.arrival_s, float)  # latest finish slot u (metrics' rule)
        w2 = Workload.from_arrays(w.arrival_s, w.prompt_tokens, w.output_tokens, e2e_slo_s=e2e)
        T = int(u.max()) + 1 if len(w) else 0
        return GoodputMILP(must_serve=True), Instance(w2, inst.engine, max(T, 0))

    def build(self, inst: Instance) -> LinearModel:
        """Encode ``inst`` (module docstring); ``info["inner"]`` keeps the attainment model."""
        g, inst2 = self._inner(inst)
        model = g.build(inst2)
        n, D = inst.n, float(inst.engine.step_s)
        model.sense = "min"
        c = model.c
        c[:] = 0.0
        offset = 0.0
        a = np.asarray(inst.workload.arrival_s, float)
        for i, rq in enumerate(model.info["req"]):
            if rq is None:  # not servable: build already marked the model infeasible
                continue
            c[rq["F"]] = -D / n
            offset += ((rq["u"] + 2) * D - a[i]) / n
        model.obj_offset = float(offset)
        if self.cuts:
            self._add_cuts(model, inst)
        model.info.update(name=self.name, objective="mean_jct", inner=(g, inst2))
        return model

    @staticmethod
    def _add_cuts(model: LinearModel, inst: Instance) -> None:
        """``F_t <= G_{t-(O-1)}``: finished by ``t`` needs the first token ``O - 1`` slots earlier
        (valid for every integer solution; tightens the LP, whose ``F`` otherwise follows
        ``C / (O - 1)``)."""
        O_all = np.asarray(inst.workload.output_tokens, np.int64)
        rr, cc, vv = [], [], []
        k = 0
        for i, rq in enumerate(model.info["req"]):
            if rq is None or O_all[i] <= 1:
                continue
            r, lf, u = rq["r"], rq["lf"], rq["u"]
            t = np.arange(r + 1, u + 1)  # slots of F
            src = t - (O_all[i] - 1)
            F = rq["F"]
            zero = src < r
            if zero.any():  # cannot have finished yet
                model.col_ub[F[zero]] = 0.0
            ok = (src >= r) & (src <= lf)
            if ok.any():
                m = int(ok.sum())
                rr.append(np.repeat(np.arange(k, k + m), 2))
                cc.append(np.stack([F[ok], rq["G"][src[ok] - r]], 1).reshape(-1))
                vv.append(np.tile([1.0, -1.0], m))
                k += m
        if k:
            model.add_rows(np.concatenate(rr), np.concatenate(cc), np.concatenate(vv),
                           -np.inf, 0.0, k)

    def extract(self, model: LinearModel, values: np.ndarray, inst: Instance) -> Schedule:
        """The schedule of an integer solution (the attainment model's extraction)."""
        g, inst2 = model.info["inner"]
        s = g.extract(model, values, inst2)
        return dataclasses.replace(s, meta={"solver": self.name, "objective": "mean_jct"})

    def fix(self, model: LinearModel, schedule: Schedule, inst: Instance, *,
            drop_preempted: bool = False) -> None:
        """Pin ``schedule`` (see :meth:`GoodputMILP.fix`); it must finish every request within
        its horizon, or the pinned model is infeasible."""
        g, inst2 = model.info["inner"]
        g.fix(model, schedule, inst2, drop_preempted=drop_preempted)
