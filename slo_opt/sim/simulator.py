"""Iteration-level single-engine simulator with paged KV, preemption and fast-forward.

Each iteration the scheduler sees an :class:`~slo_opt.schedulers.base.EngineView` and returns a
:class:`~slo_opt.schedulers.base.StepPlan`. The simulator validates the plan (token budget, KV
fit in blocks, known and arrived ids, token counts), charges the step time given by the engine
model, and records a :class:`~slo_opt.schedule.Schedule`.

Cost grows with events, not tokens: when the policy promises (``StepPlan.repeat_until_s``) that
a pure-decode plan stays the same, the simulator advances through all decode iterations up to
the next arrival, completion, KV-block shortage or promise horizon at once, with vectorised
step times. With the continuous-batching promise ``StepPlan.decode_all_until_s`` (vLLM, Orca,
continuous FCFS) it also runs on after the promising step (e.g. a prefill) and across
completions, while nothing waits: the batch shrinks at each completion, and the step times of
each constant-batch segment are one vectorised call. The policy is asked again at the next
arrival, KV-block shortage or horizon. With the FCFS-admission promise ``StepPlan.admit_all``
(the same policies) arrivals no longer end a run: whole windows of arrivals, admissions, decodes
and completions run as one vectorised fixed point (:mod:`slo_opt.sim.window`), offline, on
engines with ``batch_step_times_s``. The result is identical to stepping one iteration at a
time, bit for bit (tested).

This module holds the entry points (:func:`simulate`, :func:`replay`); the parts live in
:mod:`.loop` (the loop), :mod:`.state` (requests, queues, clock), :mod:`.kv` (KV blocks),
:mod:`.queue` (the waiting queue), :mod:`.records` (record buffers), :mod:`.executor` (plan
checks and one step), :mod:`.fastforward` and :mod:`.window` (promises), :mod:`.view` (the
scheduler's view) and :mod:`.online` (the loop driven incrementally, :class:`Simulation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slo_opt.engine import EngineModel
from slo_opt.request import Workload
from slo_opt.schedule import ARRIVAL_EPS_S, EventKind, Schedule, compress_allocs
from slo_opt.schedulers.base import EngineView, StepPlan
from slo_opt.sim.executor import InvalidPlan
from slo_opt.sim.loop import Loop, SchedulerStalled
from slo_opt.sim.online import Simulation

__all__ = ["ARRIVAL_EPS_S", "InvalidPlan", "SchedulerStalled", "Simulation", "compress_allocs",
           "replay", "simulate"]


def simulate(
    workload: Workload,
    engine: EngineModel,
    scheduler: Any,
    *,
    fast_forward: bool = True,
    max_steps: int | None = None,
    progress: bool = False,
) -> Schedule:
    """Run ``scheduler`` on ``engine`` over ``workload`` and return the executed schedule.

    Parameters
    ----------
    workload : Workload
        Requests (validated, sorted by arrival).
    engine : EngineModel
        Step-time and KV model.
    scheduler : Scheduler
        Policy object (``reset()`` is called first).
    fast_forward : bool
        Advance promised pure-decode stretches at once (exactly equal results; faster).
    max_steps : int, optional
        Safety cap on iterations; exceeding it raises :class:`SchedulerStalled`.
    progress : bool
        Show a progress bar (tqdm) over finished requests.

    Raises
    ------
    InvalidPlan
        The scheduler's plan breaks a rule (message names scheduler, step and reason).
    SchedulerStalled
        The scheduler stops making progress.
    """
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    return Loop(workload, engine, scheduler, fast_forward, max_steps, progress).run()


class _Replay:
    """Scheduler that re-issues a schedule's allocations and events, step by step."""

    name = "replay"

    def __init__(self, schedule: Schedule, workload: Workload) -> None:
        self.sched = schedule
        step, req, tok = schedule.allocs.expand()
        self.by_step: dict[int, dict[int, int]] = {}
        for s, r, t in zip(step.tolist(), req.tolist(), tok.tolist()):
            self.by_step.setdefault(s, {})[r] = t
        ev = schedule.events
        self.ev_by_step: dict[int, list[tuple[int, int]]] = {}
        for s, r, k in zip(ev.step.tolist(), ev.request.tolist(), ev.kind.tolist()):
            self.ev_by_step.setdefault(s, []).append((r, k))
        self.steps = sorted(set(self.by_step) | set(self.ev_by_step))
        self.arr = workload.arrival_s
        self.rej = set(np.flatnonzero(schedule.rejected).tolist())
        self.reset()

    def reset(self) -> None:
        self.i = 0
        self.rejected_done = False

    def plan(self, view: EngineView) -> StepPlan:
        rej: frozenset[int] = frozenset()
        if not self.rejected_done:
            rej = frozenset(int(r) for r in view.waiting if int(r) in self.rej)
            if len(rej) == len(self.rej) or not self.rej:
                self.rejected_done = True
            else:
                self.rej -= set(rej)
        if self.i >= len(self.steps):
            return StepPlan({}, reject=rej)
        s = self.steps[self.i]
        toks = self.by_step.get(s, {})
        need = max((self.arr[r] for r in toks), default=0.0)
        if need > view.now_s + ARRIVAL_EPS_S:
            return StepPlan({}, reject=rej, wait_until_s=float(need))
        evs = self.ev_by_step.get(s, [])
        self.i += 1
        return StepPlan(
            dict(toks),
            preempt=frozenset(r for r, k in evs if k == EventKind.PREEMPT_RECOMPUTE),
            swap_out=frozenset(r for r, k in evs if k == EventKind.SWAP_OUT),
            reject=rej,
        )


def replay(schedule: Schedule, workload: Workload, engine: EngineModel) -> Schedule:
    """Re-time ``schedule``'s allocations on ``engine`` (same steps, same batches, in order).

    Each step starts when the previous one ends, but not before its requests have arrived.
    The result is validated by the simulator like any plan, so an allocation that does not fit
    ``engine`` (token budget, KV) raises :class:`InvalidPlan`. Used to report the MILP optimum
    "under model mismatch" on a realistic engine.
    """
    return simulate(workload, engine, _Replay(schedule, workload), fast_forward=False)
