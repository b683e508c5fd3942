"""FastServe: skip-join MLFQ with token-level preemption and KV offload to host memory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.schedulers.base import EngineView, StepPlan, register
from slo_opt.schedulers.vllm import is_pure_decode

__all__ = ["FastServe", "step_start_s"]


def step_start_s(view: EngineView) -> float:
    """Start time of the step being planned (slot engines align it to their grid).

    Time-based decisions must use it (not ``view.now_s``): the simulator's fast-forward compares
    step *starts* with ``repeat_until_s``.
    """
    align = getattr(view.engine, "align_start_s", None)
    return float(align(view.now_s)) if align is not None else view.now_s


@register
@dataclass
class FastServe:
    """Skip-join multi-level feedback queue (Wu et al., arXiv:2305.05920, section 4; NSDI'26).

    Every iteration all active requests (waiting, resident, swapped) are ranked by
    ``(queue level, order of entry into that level)`` and the highest-ranked ones form the batch
    (token-level preemption: a resident request left out keeps its KV on the GPU).

    * **Skip-join**: a new request joins the highest-priority queue whose quantum is at least its
      estimated prefill time (from the engine model: one prefill step of its prompt).
    * **Quantum doubling**: queue ``k`` has quantum ``base_quantum_s * quantum_ratio**k``.
    * **Demotion**: a request whose execution time in its current queue reaches the quantum moves
      to the tail of the next queue (the last queue is FCFS).
    * **Starvation promotion**: a request not served for ``starve_limit_s`` goes back to Q1.
    * **KV offload**: when the KV blocks a higher-ranked request needs are missing, the resident
      requests ranked lowest are swapped out to host memory (``StepPlan.swap_out``; the simulator
      charges ``KV bytes / host bandwidth``); with ``offload_watermark > 0`` they are also swapped
      out proactively to keep that fraction of the KV cache free.
    * **Upload**: a swapped request is scheduled again as soon as it ranks inside the batch and its
      blocks fit; the simulator swaps it in (transfer time added to that step).

    Parameters
    ----------
    num_queues : int
        Number of priority queues ``K`` (FastServe: enough for the longest job; the last queue
        has no quantum limit).
    base_quantum_s : float or None
        Quantum of Q1. ``None``: one single-sequence decode step of the engine (FastServe sets
        Q1's quantum to the smallest iteration time [R, research/papers.md 4.2]).
    quantum_ratio : float
        Ratio between consecutive quanta (FastServe: 2).
    starve_limit_s : float
        Promotion threshold (FastServe's ``STARVE_LIMIT``; value not published, ours).
    max_batch_seqs : int
        Batch-size cap.
    max_batch_tokens : int or None
        Token cap per iteration (``None``: the engine's). Prompts are not chunked; a prompt
        larger than the cap is rejected.
    offload_watermark : float
        Fraction of KV blocks kept free by proactive offload (0 = offload only on demand).

    Notes
    -----
    Execution time in a queue is the wall time of the iterations the request took part in
    (prefill, decode, and swap transfers of those steps). Deviations: the simulator has no
    transfer-only operation, so an upload happens in the step that schedules the request and
    its transfer is not overlapped with compute (FastServe overlaps it; this is pessimistic for
    FastServe); no pipeline-parallel execution (FastServe's distributed engine).
    """

    name: ClassVar[str] = "fastserve"
    num_queues: int = 12
    base_quantum_s: float | None = None
    quantum_ratio: float = 2.0
    starve_limit_s: float = 5.0
    max_batch_seqs: int = 256
    max_batch_tokens: int | None = None
    offload_watermark: float = 0.0
    _st: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_queues < 1:
            raise ValueError("num_queues must be >= 1")
        if self.base_quantum_s is not None and not (self.base_quantum_s > 0
                                                    and math.isfinite(self.base_quantum_s)):
            raise ValueError("base_quantum_s must be finite and > 0")
        if not self.quantum_ratio >= 1:
            raise ValueError("quantum_ratio must be >= 1")
        if not self.starve_limit_s > 0:
            raise ValueError("starve_limit_s must be > 0")
        if self.max_batch_seqs < 1:
            raise ValueError("max_batch_seqs must be >= 1")
        if not 0 <= self.offload_watermark < 1:
            raise ValueError("offload_watermark must be in [0, 1)")

    def reset(self) -> None:
        """Forget queues and service accounting."""
        self._st = {}

    # -- state ------------------------------------------------------------------------------
    def _state(self, view: EngineView) -> dict[str, Any]:
        st = self._st
        w = view.workload
        if st.get("w") is not w:
            n = len(w)
            st.clear()
            st.update(
                w=w, seen=np.zeros(n, bool), level=np.zeros(n, np.int64),
                seq=np.zeros(n, np.int64), counter=0, base=np.zeros(n),
                seg=np.full(n, np.nan), entry=np.zeros(n), last_end=w.arrival_s.astype(float),
                quanta=self._quanta(view.engine), prev=set(),
            )
        return st

    def _quanta(self, engine: Any) -> np.ndarray:
        q0 = self.base_quantum_s
        if q0 is None:
            q0 = float(engine.step_time_s(BatchShape(decode_seqs=1, decode_context_tokens=1)))
        q = q0 * self.quantum_ratio ** np.arange(self.num_queues, dtype=float)
        q[-1] = math.inf
        return q

    def _join_level(self, view: EngineView, r: int, quanta: np.ndarray) -> int:
        p = int(view.workload.prompt_tokens[r])
        t_first = float(view.engine.step_time_s(
            BatchShape(prefill_tokens=p, prefill_seqs=1, prefill_context_tokens=p)))
        return int(np.argmax(quanta >= t_first))

    @staticmethod
    def _expiry(st: dict[str, Any], r: int) -> float:
        """Time at which ``r``'s service in its queue reaches the quantum (while served)."""
        q = st["quanta"][st["level"][r]]
        if not math.isfinite(q):
            return math.inf
        return float(st["seg"][r] + (st["entry"][r] + q - st["base"][r]))

    # -- policy -----------------------------------------------------------------------------
    def plan(self, view: EngineView) -> StepPlan:
        """Rank, demote/promote, select with KV offload, and promise until the next change."""
        st = self._state(view)
        now = step_start_s(view)
        level, seq, seg = st["level"], st["seq"], st["seg"]
        active = [int(r) for r in view.waiting] + [int(r) for r in view.running] + \
                 [int(r) for r in view.swapped]
        # skip-join for newcomers
        for r in active:
            if not st["seen"][r]:
                st["seen"][r] = True
                level[r] = self._join_level(view, r, st["quanta"])
                seq[r] = st["counter"]
                st["counter"] += 1
        # demotion of requests served in the previous step
        for r in sorted(st["prev"]):
            if not math.isnan(seg[r]) and st["seen"][r]:
                while level[r] < self.num_queues - 1 and now >= self._expiry(st, r):
                    served = st["base"][r] + (now - seg[r])
                    level[r] += 1
                    st["entry"][r] = served
                    seq[r] = st["counter"]
                    st["counter"] += 1
        # starvation promotion of requests not served in the previous step
        for r in active:
            if (math.isnan(seg[r]) and level[r] > 0
                    and now >= st["last_end"][r] + self.starve_limit_s):
                level[r] = 0
                st["entry"][r] = st["base"][r]
                seq[r] = st["counter"]
                st["counter"] += 1
                st["last_end"][r] = now
        ranked = sorted(active, key=lambda r: (int(level[r]), int(seq[r])))
        # selection
        cap = view.max_batch_tokens if self.max_batch_tokens is None else min(
            self.max_batch_tokens, view.max_batch_tokens)
        budget = cap
        free = view.kv_free_blocks
        running = set(int(r) for r in view.running)
        swapped = set(int(r) for r in view.swapped)
        waiting = set(int(r) for r in view.waiting)
        plan: dict[int, int] = {}
        swap_out: set[int] = set()
        reject: set[int] = set()
        for i, r in enumerate(ranked):
            if len(plan) >= self.max_batch_seqs:
                break
            if r in swap_out:
                continue
            n = view.next_tokens(r)
            if n > cap:
                if r in waiting:
                    reject.add(r)
                continue
            if n > budget:
                continue
            need = view.blocks_for(r, n) + (view.blocks_held(r) if r in swapped else 0)
            if need > free:
                victims = [v for v in reversed(ranked[i + 1:]) if v in running and v not in swap_out]
                avail = sum(view.blocks_held(v) for v in victims)
                if free + avail < need:
                    continue
                for v in victims:
                    if free >= need:
                        break
                    swap_out.add(v)
                    free += view.blocks_held(v)
            plan[r] = n
            budget -= n
            free -= need
        if self.offload_watermark > 0:
            target = int(self.offload_watermark * (view.engine.kv_capacity_tokens
                                                   // view.kv_block_tokens))
            for v in reversed(ranked):
                if free >= target:
                    break
                if v in running and v not in plan and v not in swap_out and view.blocks_held(v):
                    swap_out.add(v)
                    free += view.blocks_held(v)
        # service accounting: streaks of consecutive scheduled steps
        for r in st["prev"]:
            if r not in plan and not math.isnan(seg[r]):
                st["base"][r] += now - seg[r]
                seg[r] = math.nan
                st["last_end"][r] = now
        for r in plan:
            if math.isnan(seg[r]):
                seg[r] = now
        st["prev"] = set(plan)
        # fast-forward promise: next demotion or promotion
        repeat = -math.inf
        if (plan and not swap_out and not reject
                and is_pure_decode(view, plan)
                and not (self.offload_watermark > 0 and len(running) > len(plan))):
            repeat = min((self._expiry(st, r) for r in plan), default=math.inf)
            for r in active:
                if r not in plan and level[r] > 0:
                    repeat = min(repeat, float(st["last_end"][r] + self.starve_limit_s))
        return StepPlan(plan, swap_out=frozenset(swap_out), reject=frozenset(reject),
                        repeat_until_s=repeat)
