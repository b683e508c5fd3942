"""The mutable state of one simulated engine: requests, queues, clock, arrivals, promises.

One :class:`EngineState` per run, shared by the loop (:mod:`.simulator`), the step executor
(:mod:`.executor`), the fast-forward paths (:mod:`.fastforward`, :mod:`.window`) and the view
builder (:mod:`.view`). It owns its collaborators: the KV blocks (:class:`~.kv.KVBlockManager`),
the waiting queue (:class:`~.queue.WaitingQueue`) and the records (:class:`~.records.StepRecorder`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from slo_opt.engine import EngineModel, decode_step_times_s
from slo_opt.request import Workload
from slo_opt.schedule import ARRIVAL_EPS_S
from slo_opt.schedulers.base import AdmitPromise
from slo_opt.sim.kv import KVBlockManager, PrefixCache
from slo_opt.sim.queue import EMPTY_IDS, WaitingQueue, ids_array
from slo_opt.sim.records import StepRecorder

__all__ = ["DONE", "NOT_ARRIVED", "REJECTED", "RUNNING", "SWAPPED", "WAITING", "EngineState"]

#: Request states (``EngineState.state``).
NOT_ARRIVED, WAITING, RUNNING, SWAPPED, DONE, REJECTED = range(6)


def scheduler_name(s: Any) -> str:
    """A policy's ``name`` (its class name if it has none)."""
    return str(getattr(s, "name", type(s).__name__))


class EngineState:
    """Per-request arrays, queues, clock, arrivals and fast-forward promises of one run.

    Parameters
    ----------
    workload, engine, scheduler
        What runs.
    fast_forward : bool
        Whether promises may skip scheduler calls.
    max_steps : int or None
        Iteration cap.
    online : bool
        Requests become visible only when pushed (multi-site co-simulation).

    Notes
    -----
    ``nt`` caches ``prompt_tokens + num_generated - num_computed`` (the tokens a request must
    compute for its next output token); ``views`` caches the read-only id arrays of the
    waiting, running and swapped queues until they change (``None``: stale).
    """

    def __init__(self, workload: Workload, engine: EngineModel, scheduler: Any,
                 fast_forward: bool, max_steps: int | None, online: bool = False) -> None:
        self.w = workload
        self.e = engine
        self.s = scheduler
        self.sname = scheduler_name(scheduler)
        self.ff = fast_forward
        self.max_steps = max_steps
        n = len(workload)
        self.n = n
        self.P = workload.prompt_tokens
        self.O = workload.output_tokens
        self.arr = workload.arrival_s
        self.computed = np.zeros(n, np.int64)
        self.generated = np.zeros(n, np.int64)
        self.state = np.zeros(n, np.int8)
        self.first_token_step = np.full(n, -1, np.int64)
        self.finish_step = np.full(n, -1, np.int64)
        self.first_scheduled_s = np.full(n, np.nan)
        self.first_token_time_s = np.full(n, np.nan)
        self.finish_time_s = np.full(n, np.nan)
        self.nt = self.P.astype(np.int64, copy=True)  # == P + generated - computed
        self.kv = KVBlockManager(
            n, int(engine.kv_block_tokens), int(engine.kv_capacity_tokens),
            float(getattr(engine, "kv_bytes_per_token", 0)),
            float(getattr(engine, "host_bandwidth_bytes_per_s", math.inf)))
        # vLLM's automatic prefix caching, switched on by the policy's enable_prefix_caching
        if getattr(scheduler, "enable_prefix_caching", False) is True:
            self.kv.cache = PrefixCache(workload, self.kv.block_tokens, self.kv.capacity_blocks,
                                        self.computed, self.generated)
        self.max_batch_tokens = engine.max_batch_tokens
        self.waiting = WaitingQueue()
        self.running: list[int] = []
        self.swapped: list[int] = []
        self.views: list[np.ndarray | None] = [None, None, None]  # waiting, running, swapped
        self.next_arrival = 0
        self.online = online
        self.pending: list[tuple[float, int]] = []  # online: heap of (release_s, rid)
        self.num_pushed = 0
        self.pushed: set[int] = set()
        self.num_closed = 0  # done + rejected
        self.now = 0.0
        self.step = 0
        self.pending_swap_s = 0.0
        self.last_end = 0.0
        self.promise_until = -math.inf  # active StepPlan.decode_all_until_s (fast-forward only)
        self.dt_dec = 0.0  # duration of the last decode-all step (a step-count estimate)
        self.affine: dict[int, tuple[float, float]] = {}  # window.py's decode-time guide
        self.admit: AdmitPromise | None = None  # active StepPlan.admit_all (fast-forward only)
        self.rec = StepRecorder(n)
        # (starts, ends, ctx0) of the steps fastforward.fast_forward_len last returned
        self.ff_times: tuple[np.ndarray, np.ndarray, int] = (EMPTY_IDS, EMPTY_IDS, 0)
        self.align: Callable[[float], float] | None = getattr(engine, "align_start_s", None)
        # admission windows (window.py): offline, unaligned, engine with vectorised shapes,
        # no prefix cache (a window admits whole prompts and does not replay the cache)
        self.windows = (fast_forward and not online and self.align is None
                        and hasattr(engine, "batch_step_times_s") and self.kv.cache is None)
        self.slot_s = float(getattr(engine, "step_s", 0.0))
        fast = getattr(engine, "decode_step_times_s", None)
        self.dst: Callable[[int, int, int], np.ndarray] = (
            fast if fast is not None
            else lambda m, c, k: decode_step_times_s(engine, m, c, k))

    def next_arrival_s(self) -> float:
        """Release time of the next request not yet visible (inf if none)."""
        if self.online:
            return self.pending[0][0] if self.pending else math.inf
        return float(self.arr[self.next_arrival]) if self.next_arrival < self.n else math.inf

    def admit_arrivals(self) -> None:
        """Make every request released by ``now`` visible: waiting, or rejected if its peak KV
        exceeds the whole cache."""
        horizon = self.now + ARRIVAL_EPS_S
        kv = self.kv
        while True:
            if self.online:
                if not self.pending or self.pending[0][0] > horizon:
                    return
                rid = heapq.heappop(self.pending)[1]
            else:
                if self.next_arrival >= self.n or self.arr[self.next_arrival] > horizon:
                    return
                rid = self.next_arrival
                self.next_arrival += 1
            self.promise_until = -math.inf  # an arrival ends a decode-all promise
            peak = int(self.P[rid] + self.O[rid] - 1)
            if not kv.admissible(peak):
                self.state[rid] = REJECTED
                self.num_closed += 1
            else:
                self.state[rid] = WAITING
                self.waiting.add(rid)
                self.views[0] = None

    def push(self, rid: int, release_s: float) -> None:
        """Online mode: request ``rid`` reaches this engine at ``release_s`` (>= its arrival)."""
        if not self.online:
            raise RuntimeError("push() needs online=True")
        if not (0 <= rid < self.n) or self.state[rid] != NOT_ARRIVED or rid in self.pushed:
            raise ValueError(f"request {rid} cannot be pushed twice or is unknown")
        if release_s < self.arr[rid] - ARRIVAL_EPS_S:
            raise ValueError(f"request {rid}: release {release_s} before its arrival {self.arr[rid]}")
        self.pushed.add(rid)
        self.num_pushed += 1
        heapq.heappush(self.pending, (float(release_s), int(rid)))

    def all_closed(self) -> bool:
        """Every (pushed) request finished or rejected."""
        if self.online:
            return self.num_closed == self.num_pushed and not self.pending
        return self.num_closed == self.n

    def running_ids(self) -> np.ndarray:
        """The running requests' ids, in admission order (cached, read-only)."""
        r = self.views[1]
        if r is None:
            r = self.views[1] = ids_array(self.running)
        return r

    def close_finished(self, fin: np.ndarray, steps: Any, times: Any) -> None:
        """Requests ``fin`` finished at ``steps`` (ending at ``times``): free their KV blocks
        and take them out of the running list."""
        self.finish_step[fin] = steps
        self.finish_time_s[fin] = times
        self.state[fin] = DONE
        self.kv.release(fin)
        fset = set(fin.tolist())
        self.running = [r for r in self.running if r not in fset]
        self.views[1] = None
        self.num_closed += int(fin.size)
