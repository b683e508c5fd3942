"""Online simulation of one engine: requests pushed one by one, time advanced on demand.

Used by the multi-site co-simulation (:mod:`slo_opt.edge.simulation`): a dispatcher pushes
each request to a site after its network transfer and reads the site's load between pushes.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from slo_opt.engine import EngineModel
from slo_opt.request import Workload
from slo_opt.schedule import Schedule
from slo_opt.sim.loop import Loop
from slo_opt.sim.state import DONE, REJECTED

__all__ = ["Simulation"]


class Simulation:
    """Incremental (online) simulation of one engine, for multi-site co-simulation.

    Requests become visible only when :meth:`push`-ed (e.g. by a dispatcher, after a network
    transfer); :meth:`run_until` executes the iterations that start before a time;
    :meth:`finish` drains the engine and returns the :class:`Schedule` (requests never pushed
    stay unserved: ``first_token_step == finish_step == -1`` and not rejected).

    Examples
    --------
    >>> sim = Simulation(workload, engine, make("vllm"))          # doctest: +SKIP
    >>> for rid in range(len(workload)):                          # doctest: +SKIP
    ...     sim.run_until(workload.arrival_s[rid])
    ...     sim.push(rid, workload.arrival_s[rid] + transfer_s)
    >>> schedule = sim.finish()                                   # doctest: +SKIP
    """

    def __init__(self, workload: Workload, engine: EngineModel, scheduler: Any, *,
                 fast_forward: bool = True, max_steps: int | None = None) -> None:
        if not isinstance(workload, Workload):
            raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
        self._sim = Loop(workload, engine, scheduler, fast_forward, max_steps, False, online=True)
        self._sim.start_run()
        self._t0 = time.perf_counter()
        self._done: Schedule | None = None

    def push(self, rid: int, release_s: float | None = None) -> None:
        """Make request ``rid`` arrive at this engine at ``release_s`` (default: its arrival)."""
        if self._done is not None:
            raise RuntimeError("simulation already finished")
        t = float(self._sim.arr[rid]) if release_s is None else float(release_s)
        self._sim.push(int(rid), t)

    def run_until(self, t_s: float) -> None:
        """Execute every iteration that starts before ``t_s``."""
        if self._done is not None:
            raise RuntimeError("simulation already finished")
        self._sim.advance(float(t_s), drain=False)

    def finish(self) -> Schedule:
        """Run to completion of every pushed request and return the schedule."""
        if self._done is None:
            self._sim.advance(math.inf, drain=True)
            self._done = self._sim.finish(time.perf_counter() - self._t0)
        return self._done

    # -- read-only state for dispatchers ------------------------------------------------
    @property
    def now_s(self) -> float:
        """Current simulated time of this engine."""
        return self._sim.now

    @property
    def num_waiting(self) -> int:
        """Visible requests without resident KV."""
        return len(self._sim.waiting)

    @property
    def num_running(self) -> int:
        """Requests with resident KV."""
        return len(self._sim.running)

    @property
    def num_open(self) -> int:
        """Pushed requests not yet finished or rejected (including not-yet-released ones)."""
        return self._sim.num_pushed - self._sim.num_closed

    @property
    def kv_free_blocks(self) -> int:
        """Free KV blocks."""
        return self._sim.kv.free_blocks

    def outstanding_tokens(self) -> int:
        """Tokens still to compute for every open pushed request (prefill + decode)."""
        s = self._sim
        ids = np.fromiter(s.pushed, np.int64, len(s.pushed))
        if ids.size == 0:
            return 0
        open_ = (s.state[ids] != DONE) & (s.state[ids] != REJECTED)
        ids = ids[open_]
        return int((s.P[ids] + s.O[ids] - 1 - s.computed[ids] + 0).sum())

    def finish_time_s(self, rid: int) -> float:
        """Completion time of ``rid`` so far (NaN if not finished)."""
        return float(self._sim.finish_time_s[rid])

    def first_token_time_s(self, rid: int) -> float:
        """First-token time of ``rid`` so far (NaN if none)."""
        return float(self._sim.first_token_time_s[rid])

    def is_rejected(self, rid: int) -> bool:
        """Whether ``rid`` was rejected here."""
        return bool(self._sim.state[rid] == REJECTED)
