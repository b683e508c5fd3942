"""Shared pieces of the reproductions: checked simulation, confidence intervals, progress.

* :func:`simulate_checked` -- every schedule an experiment produces goes through
  :func:`slo_opt.checks.violations`; a violation aborts the run (a reported number from an
  infeasible schedule would be worthless). :data:`CHECKS` counts the schedules checked.
* :func:`check_site_schedules` -- the same for the per-site schedules of a multi-site run,
  plus: nothing is computed at a site before its upload ends or for a request sent elsewhere.
* :func:`ci95` -- mean and 95 % Student-t half-width over seeds.
* :class:`Progress` -- one line per finished unit on stderr with elapsed time and an ETA.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["CHECKS", "Progress", "check_site_schedules", "ci95", "simulate_checked"]

#: schedules checked by :func:`violations` in this process (reported in config.json)
CHECKS = {"schedules": 0}


class InfeasibleSchedule(RuntimeError):
    """A simulated schedule failed :func:`slo_opt.checks.violations`."""


def _check(schedule: Any, workload: Any, engine: Any, what: str) -> None:
    from slo_opt.checks import violations

    v = violations(schedule, workload, engine)
    if v:
        raise InfeasibleSchedule(f"{what}: {len(v)} violation(s), first: {v[0]}")
    CHECKS["schedules"] += 1


def simulate_checked(workload: Any, engine: Any, scheduler: Any, **kw: Any) -> Any:
    """:func:`slo_opt.sim.simulator.simulate`, then :func:`violations` (raises if any)."""
    from slo_opt.sim.simulator import simulate

    s = simulate(workload, engine, scheduler, **kw)
    _check(s, workload, engine, f"{getattr(scheduler, 'name', scheduler)} on {engine.name}")
    return s


def check_site_schedules(result: Any, workload: Any, cluster: Any) -> None:
    """Check every site's schedule of a ``ClusterResult``: :func:`violations` against the
    workload, plus no allocation to a request before its release at the site (arrival +
    upload) and none to a request dispatched elsewhere."""
    rel = np.asarray(result.records["release_s"], float)
    site_of = np.asarray(result.records["site"])
    for j, (name, sch) in enumerate(result.schedules.items()):
        _check(sch, workload, cluster.site(name).engine, f"site {name}")
        a = sch.allocs
        if len(a):
            start = sch.steps.start_s[a.step]
            if np.any(site_of[a.request] != j):
                raise InfeasibleSchedule(f"site {name}: allocation to a request sent elsewhere")
            early = start < rel[a.request] - 1e-9
            if early.any():
                i = int(np.flatnonzero(early)[0])
                raise InfeasibleSchedule(
                    f"site {name}: request {int(a.request[i])} computed at {start[i]} before "
                    f"its release {rel[a.request[i]]}")


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, half-width)`` of a 95 % Student-t interval (half-width NaN for one value)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    from scipy import stats

    h = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return float(x.mean()), h


class Progress:
    """``[k/n] label  elapsed  ETA`` lines on stderr (one per :meth:`step`)."""

    def __init__(self, total: int, what: str, quiet: bool = False) -> None:
        self.total = max(int(total), 1)
        self.done = 0
        self.what = what
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def step(self, label: str = "") -> None:
        self.done += 1
        if self.quiet:
            return
        el = time.perf_counter() - self.t0
        eta = el / self.done * (self.total - self.done)
        print(f"[{self.what} {self.done}/{self.total}] {label}  {el:6.0f} s elapsed, "
              f"~{eta:5.0f} s left", file=sys.stderr, flush=True)
