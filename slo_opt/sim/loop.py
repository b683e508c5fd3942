"""The simulator's loop: ask the scheduler, apply its plan, advance time, until all is done.

Each pass makes the released requests visible, lets an active promise run
(:func:`~.window.run_admit_window`, :func:`~.fastforward.decode_all_run`) or asks the scheduler
for a plan on a fresh view (:func:`~.view.build_view`), applies its evictions and executes its
step (:mod:`.executor`). An empty plan waits for the next arrival or the plan's wake-up time; a
scheduler that neither computes nor waits while requests remain is a stall.
"""

from __future__ import annotations

import math
import time
from dataclasses import fields, is_dataclass
from typing import Any

from slo_opt.engine import EngineModel
from slo_opt.request import Workload
from slo_opt.schedule import ARRIVAL_EPS_S, Schedule
from slo_opt.schedulers.base import StepPlan
from slo_opt.sim.executor import apply_evictions, execute, fail
from slo_opt.sim.fastforward import decode_all_run
from slo_opt.sim.state import REJECTED, EngineState
from slo_opt.sim.view import build_view
from slo_opt.sim.window import run_admit_window

__all__ = ["Loop", "SchedulerStalled"]


class SchedulerStalled(RuntimeError):
    """The scheduler makes no progress although requests remain and nothing else can happen."""


def _params(s: Any) -> dict[str, Any]:
    """A policy's hyper-parameters: its init fields (per-run state such as caches is not)."""
    if is_dataclass(s) and not isinstance(s, type):
        out = {}
        for f in fields(s):
            if not f.init or f.name.startswith("_"):
                continue
            v = getattr(s, f.name)
            out[f.name] = v if isinstance(v, int | float | str | bool | None) else repr(v)
        return out
    return {}


class Loop(EngineState):
    """One run: the engine state plus the loop (the public API is :func:`~.simulator.simulate`
    and :class:`~.online.Simulation`)."""

    def __init__(self, workload: Workload, engine: EngineModel, scheduler: Any,
                 fast_forward: bool, max_steps: int | None, progress: bool,
                 online: bool = False) -> None:
        super().__init__(workload, engine, scheduler, fast_forward, max_steps, online)
        self.progress = progress
        self.bar: Any = None
        self.last_closed = 0

    def run(self) -> Schedule:
        t0 = time.perf_counter()
        self.start_run()
        self.advance(math.inf, drain=True)
        return self.finish(time.perf_counter() - t0)

    def start_run(self) -> None:
        self.bar = None
        self.last_closed = 0
        if self.progress:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=self.n, desc=f"simulate {self.sname}", unit="req", leave=False)
            except ImportError:  # pragma: no cover
                self.bar = None
        reset = getattr(self.s, "reset", None)
        if reset is not None:
            reset()

    def advance(self, limit_s: float, *, drain: bool) -> None:
        """Run iterations that start before ``limit_s``.

        ``drain``: no request will be pushed any more; an idle engine with open requests and
        nothing to wait for is a stall. Otherwise (online) it simply waits for pushes.
        """
        idle_loops = 0
        plan_fn = self.s.plan
        while True:
            self.admit_arrivals()
            if self.all_closed():
                if self.online and not drain and self.now < limit_s:
                    self.now = limit_s if math.isfinite(limit_s) else self.now
                break
            if self.max_steps is not None and self.step >= self.max_steps:
                raise SchedulerStalled(
                    f"scheduler {self.sname!r}: max_steps={self.max_steps} reached with "
                    f"{self.n - self.num_closed} requests unfinished"
                )
            start = self.align(self.now) if self.align is not None else self.now
            if start >= limit_s:
                break
            if ((self.admit is not None and self.admit.until_s > start and not self.swapped
                 and run_admit_window(self, start, limit_s, ARRIVAL_EPS_S))
                    or (self.promise_until > start and not self.waiting and not self.swapped
                        and self.running and decode_all_run(self, start, limit_s))):
                if self.bar is not None and self.num_closed != self.last_closed:
                    self.bar.update(self.num_closed - self.last_closed)
                    self.last_closed = self.num_closed
                continue
            self.promise_until = -math.inf
            self.admit = None
            plan = plan_fn(build_view(self))
            if not isinstance(plan, StepPlan):
                fail(self, f"plan() must return a StepPlan, got {type(plan).__name__}")
            changed = apply_evictions(self, plan)
            if not plan.tokens:
                target = self.next_arrival_s()
                if plan.wait_until_s is not None and plan.wait_until_s > self.now:
                    target = min(target, float(plan.wait_until_s))
                if math.isfinite(target) and target > self.now:
                    if target >= limit_s:
                        self.now = max(self.now, limit_s)
                        break
                    self.now = target
                    idle_loops = 0
                    continue
                if changed:
                    idle_loops += 1
                    if idle_loops <= 2 * self.n + 10:
                        continue
                if self.online and not drain:
                    if math.isfinite(limit_s):
                        self.now = max(self.now, limit_s)
                    break
                raise SchedulerStalled(
                    f"scheduler {self.sname!r} stalled at step {self.step}, t={self.now:.6g}s: "
                    f"empty plan with {len(self.waiting)} waiting, {len(self.running)} running, "
                    f"{len(self.swapped)} swapped and no future arrival"
                )
            idle_loops = 0
            execute(self, plan, limit_s)
            if self.bar is not None and self.num_closed != self.last_closed:
                self.bar.update(self.num_closed - self.last_closed)
                self.last_closed = self.num_closed

    def finish(self, wall_s: float) -> Schedule:
        if self.bar is not None:
            self.bar.update(self.num_closed - self.last_closed)
            self.bar.close()
            self.bar = None
        steps, allocs, events = self.rec.tables()
        return Schedule(
            num_requests=self.n, steps=steps, allocs=allocs, events=events,
            first_token_step=self.first_token_step, finish_step=self.finish_step,
            rejected=self.state == REJECTED,
            meta={"scheduler": self.sname, "params": _params(self.s), "engine": self.e.name,
                  "workload": self.w.name, "wall_s": wall_s, "fast_forward": self.ff,
                  **({"prefix_cache": self.kv.cache.stats()} if self.kv.cache is not None
                     else {})},
        )
