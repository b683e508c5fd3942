"""The honest certificate of one instance: best feasible schedule, best proven bound, their gap.

Compares every registered scheduler (simulated) with the offline formulations of
:mod:`slo_opt.solvers` (the pattern MILP's primal, the per-slot MILP, its LP relaxation and the
fluid LP bound). A study on top of both: the formulations do not depend on the heuristics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from slo_opt.metrics import attainment, goodput_tokens
from slo_opt.schedule import EventKind, Schedule
from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.sim.simulator import simulate
from slo_opt.solvers.base import Instance, NotRepresentable, solve
from slo_opt.solvers.fluid_bound import FluidBound
from slo_opt.solvers.goodput_milp import GoodputMILP, Objective
from slo_opt.solvers.pattern_milp import PatternMILP, greedy_pattern_schedule

__all__ = ["Certificate", "solve_with_certificate"]


@dataclass(frozen=True)
class Certificate:
    """Best feasible schedule and best proven bound of one instance (see solve_with_certificate).

    Attributes
    ----------
    value : float
        Objective of ``schedule`` (scored by the metrics module).
    source : str
        Which candidate it came from (``pattern_milp``, ``goodput_milp``, ``heuristic:<name>``,
        ``greedy_pattern``).
    schedule : Schedule
    bound : float
        The smallest proven upper bound among the per-slot MILP's dual bound, its LP
        relaxation and the fluid LP.
    bound_source : str
    gap : float
        ``(bound - value) / max(value, 1e-9)`` (``0`` when proven optimal).
    candidates, bounds : dict
        Every candidate's value and every bound that was computed (``None``: not available).
    wall_s : dict
        Wall time of each stage.
    solves : dict
        Per solver stage (``pattern_milp``, ``goodput_milp``, ``lp``, ``fluid``): status,
        incumbent, bound, mip_gap, wall_s and model size. The ``pattern_milp`` bound is the
        restricted model's own bound (not a bound of the general problem).
    """

    value: float
    source: str
    schedule: Schedule
    bound: float
    bound_source: str
    gap: float
    candidates: dict[str, float | None]
    bounds: dict[str, float | None]
    wall_s: dict[str, float]
    solves: dict[str, dict[str, Any]]


def _summary(res: Any) -> dict[str, Any]:
    return {"status": res.status.value, "incumbent": res.incumbent, "bound": res.bound,
            "mip_gap": res.mip_gap, "wall_s": res.wall_s, "build_s": res.build_s, **res.size}


def _score(schedule: Schedule, inst: Instance, objective: Objective) -> float:
    w = inst.workload
    if objective == "goodput":
        return float(goodput_tokens(schedule, w))
    return float(attainment(schedule, w, weighted=(objective == "weighted")))


def solve_with_certificate(inst: Instance, time_limit_s: float = 60.0, *,
                           objective: Objective = "attainment", strides: tuple[int, ...] = (1,),
                           per_slot_milp: bool = True, lp_bound: bool = True,
                           fluid_bound: bool = True, schedulers: list[str] | None = None,
                           rel_gap: float = 1e-4) -> Certificate:
    """The honest certificate: best feasible schedule, best proven bound, and their gap.

    Stages (each a separate solve with ``time_limit_s``):

    1. every registered scheduler (or ``schedulers``) simulated on ``inst``, and the greedy
       pattern packing (:func:`greedy_pattern_schedule`);
    2. :class:`PatternMILP`, warm-started with the greedy packing (primal only);
    3. :class:`~slo_opt.solvers.goodput_milp.GoodputMILP` (``per_slot_milp``), warm-started
       with the best schedule so far (its incumbent and its dual bound);
    4. the LP relaxation of the per-slot MILP (``lp_bound``) and
       :class:`~slo_opt.solvers.fluid_bound.FluidBound` (``fluid_bound``).

    Every candidate is re-scored by the metrics module (never trusted from a solver). The bound
    is the minimum of the bounds of stages 3-4; the pattern MILP's own LP/dual bound is not a
    bound of the general problem and is never used.

    Notes
    -----
    Scope of the bound: the per-slot MILP and its LP bound non-preemptive schedules of the
    slotted engine finishing within ``inst.num_slots``; the fluid LP bounds preemptive ones
    too. If a preempting heuristic is the best candidate, only the fluid bound certifies it;
    ``bounds`` lists each so the caller can pick the right scope.
    """
    w, e = inst.workload, inst.engine
    cands: dict[str, float | None] = {}
    scheds: dict[str, Schedule] = {}
    walls: dict[str, float] = {}
    t0 = time.perf_counter()
    for name in (sorted(SCHEDULERS) if schedulers is None else schedulers):
        try:
            s = simulate(w, e, make(name), max_steps=10_000_000)
        except Exception:  # a policy that cannot run this instance is just not a candidate
            cands[f"heuristic:{name}"] = None
            continue
        cands[f"heuristic:{name}"] = _score(s, inst, objective)
        scheds[f"heuristic:{name}"] = s
    walls["heuristics"] = time.perf_counter() - t0
    f = PatternMILP(objective=objective, strides=strides)
    t0 = time.perf_counter()
    g_sched, _ = greedy_pattern_schedule(inst, f)
    cands["greedy_pattern"] = _score(g_sched, inst, objective)
    scheds["greedy_pattern"] = g_sched
    walls["greedy_pattern"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = solve(f, inst, time_limit_s=time_limit_s, rel_gap=rel_gap, warm_start=g_sched)
    walls["pattern_milp"] = time.perf_counter() - t0
    solves = {"pattern_milp": _summary(res)}
    if res.schedule is not None:
        cands["pattern_milp"] = _score(res.schedule, inst, objective)
        scheds["pattern_milp"] = res.schedule
    else:
        cands["pattern_milp"] = None
    bounds: dict[str, float | None] = {}
    if per_slot_milp:
        best = max(scheds, key=lambda k: cands[k] or -math.inf)
        start = scheds[best] if best in ("pattern_milp", "greedy_pattern") else None
        if start is None:  # a heuristic: only if it fits the per-slot model (no swaps)
            s = scheds[best]
            start = s if not np.any(s.events.kind != EventKind.PREEMPT_RECOMPUTE) else None
        t0 = time.perf_counter()
        try:
            r2 = solve(GoodputMILP(objective=objective), inst, time_limit_s=time_limit_s,
                       rel_gap=rel_gap, warm_start=start)
        except NotRepresentable:
            r2 = solve(GoodputMILP(objective=objective), inst, time_limit_s=time_limit_s,
                       rel_gap=rel_gap)
        walls["goodput_milp"] = time.perf_counter() - t0
        solves["goodput_milp"] = _summary(r2)
        bounds["goodput_milp"] = r2.bound
        if r2.schedule is not None:
            cands["goodput_milp"] = _score(r2.schedule, inst, objective)
            scheds["goodput_milp"] = r2.schedule
        else:
            cands["goodput_milp"] = None
    if lp_bound:
        t0 = time.perf_counter()
        r3 = solve(GoodputMILP(objective=objective), inst, relax=True, time_limit_s=time_limit_s)
        walls["lp"] = time.perf_counter() - t0
        solves["lp"] = _summary(r3)
        bounds["lp"] = r3.bound if r3.status.value == "optimal" else None
    if fluid_bound:
        t0 = time.perf_counter()
        r4 = solve(FluidBound(objective=objective), inst, time_limit_s=time_limit_s)
        walls["fluid"] = time.perf_counter() - t0
        solves["fluid"] = _summary(r4)
        bounds["fluid"] = r4.bound if r4.status.value == "optimal" else None
    best = max(scheds, key=lambda k: cands[k] or -math.inf)
    value = float(cands[best] or 0.0)
    valid = {k: v for k, v in bounds.items() if v is not None}
    if len(scheds[best].events) > 0:  # a preempting schedule: only the fluid LP covers it
        valid = {k: v for k, v in valid.items() if k == "fluid"}
    if valid:
        bsrc = min(valid, key=lambda k: valid[k])
        bound = float(valid[bsrc])
    else:
        bsrc, bound = "none", math.inf
    gap = max(bound - value, 0.0) / max(abs(value), 1e-9) if math.isfinite(bound) else math.inf
    return Certificate(value=value, source=best, schedule=scheds[best], bound=bound,
                       bound_source=bsrc, gap=gap, candidates=cands, bounds=bounds,
                       wall_s=walls, solves=solves)
