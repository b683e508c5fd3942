"""The engine simulator: one engine, iteration by iteration, with paged KV and fast-forward.

* :mod:`.simulator`: :func:`simulate`, :func:`replay` (the loop and its state).
* :mod:`.window`: admission windows (whole windows of arrivals under an ``AdmitPromise``).
"""

from slo_opt.sim.simulator import InvalidPlan, SchedulerStalled, Simulation, replay, simulate

__all__ = ["InvalidPlan", "SchedulerStalled", "Simulation", "replay", "simulate"]
