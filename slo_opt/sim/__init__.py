"""The engine simulator: one engine, iteration by iteration, with paged KV and fast-forward.

* :mod:`.simulator`: :func:`simulate`, :func:`replay` (entry points).
* :mod:`.loop`: the loop (ask the scheduler, apply the plan, advance time).
* :mod:`.state`: requests, queues, clock, arrivals and promises of one run.
* :mod:`.kv`: :class:`~.kv.KVBlockManager` (paged blocks, swap cost).
* :mod:`.queue`: :class:`~.queue.WaitingQueue` (ascending ids in a numpy buffer).
* :mod:`.records`: :class:`~.records.StepRecorder` (step, allocation and event buffers).
* :mod:`.executor`: plan checks and one step (:class:`~.executor.InvalidPlan`).
* :mod:`.fastforward`, :mod:`.window`, :mod:`.window_guess`: the promises (decode runs and
  admission windows).
* :mod:`.view`: the scheduler's :class:`~slo_opt.schedulers.base.EngineView` of the state.
* :mod:`.online`: :class:`~.online.Simulation`, the loop driven incrementally.
"""

from slo_opt.sim.simulator import InvalidPlan, SchedulerStalled, Simulation, replay, simulate

__all__ = ["InvalidPlan", "SchedulerStalled", "Simulation", "replay", "simulate"]
