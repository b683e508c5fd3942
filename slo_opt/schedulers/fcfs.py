"""FCFS with no batching, dynamic (static, timeout) batching, or continuous batching."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from slo_opt.schedulers.base import (
    AdmitPromise,
    EngineView,
    StepPlan,
    admit,
    drop_too_long,
    register,
)
from slo_opt.schedulers.vllm import is_pure_decode, running_first

__all__ = ["FCFS", "batch_plan"]

Batching = Literal["none", "dynamic", "continuous"]


def batch_plan(view: EngineView, members: list[int], budget: int) -> dict[int, int]:
    """Advance every unfinished member of a static batch within the token budget."""
    plan: dict[int, int] = {}
    for r in members:
        if budget <= 0:
            break
        n = min(view.next_tokens(r), budget)
        plan[r] = n
        budget -= n
    return plan


def form_static_batch(view: EngineView, order: list[int], max_batch_seqs: int) -> list[int]:
    """Take requests in ``order`` while their *peak* KV (prompt + output) fits together.

    Static batches cannot preempt, so the batch reserves each member's peak KV.
    """
    b = view.kv_block_tokens
    free = view.kv_free_blocks
    w = view.workload
    out: list[int] = []
    for r in order:
        if len(out) >= max_batch_seqs:
            break
        peak = -(-(int(w.prompt_tokens[r]) + int(w.output_tokens[r]) - 1) // b)
        if peak > free:
            break
        out.append(r)
        free -= peak
    return out


@register
@dataclass
class FCFS:
    """First-come-first-served in three batching modes (SSJF's baseline; SSJF section 3.5).

    Parameters
    ----------
    batching : {"none", "dynamic", "continuous"}
        ``none``: one request at a time, run to completion. ``dynamic``: Triton-style static
        batches of up to ``max_batch_seqs`` requests, formed when the batch is full or the oldest
        waiting request has waited ``batch_wait_timeout_s``, run to completion of the whole
        batch. ``continuous``: iteration-level batching; requests join whenever there is room
        (no chunked prefill) and the newest is preempted by recompute under KV pressure.
    max_batch_seqs : int
        Batch-size cap (dynamic and continuous).
    batch_wait_timeout_s : float
        Dynamic batching: how long the oldest waiting request may wait for the batch to fill.
    max_batch_tokens : int or None
        Token cap per iteration (``None``: the engine's). Prompts longer than the cap are
        chunked in ``none`` and ``dynamic`` modes.

    Notes
    -----
    All modes order by arrival; that one line is the difference with SJF/SSJF. The SSJF
    authors' FCFS also *waits* for future arrivals when a batch is not full; that asymmetry is
    reproduced only in the SSJF reproduction's faithful mode, not here (papers.md 6.4, 27b).
    """

    name: ClassVar[str] = "fcfs"
    batching: Batching = "continuous"
    max_batch_seqs: int = 256
    batch_wait_timeout_s: float = 0.0
    max_batch_tokens: int | None = None
    _batch: list[int] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.batching not in ("none", "dynamic", "continuous"):
            raise ValueError(f"batching must be none/dynamic/continuous, got {self.batching!r}")
        if self.max_batch_seqs < 1:
            raise ValueError("max_batch_seqs must be >= 1")
        if not self.batch_wait_timeout_s >= 0:
            raise ValueError("batch_wait_timeout_s must be >= 0")

    def reset(self) -> None:
        """Forget the current static batch."""
        self._batch = []

    def order(self, view: EngineView) -> list[int]:
        """Waiting requests in service order (arrival order here; SJF/SSJF override)."""
        return [int(r) for r in view.waiting]

    def _budget(self, view: EngineView) -> int:
        cap = view.max_batch_tokens
        return cap if self.max_batch_tokens is None else min(cap, self.max_batch_tokens)

    def plan(self, view: EngineView) -> StepPlan:
        """Dispatch on the batching mode."""
        if self.batching == "continuous":
            return self._continuous(view)
        return self._static(view, 1 if self.batching == "none" else self.max_batch_seqs)

    def _continuous(self, view: EngineView) -> StepPlan:
        budget = self._budget(view)
        plan, preempted, left, free = running_first(view, budget)
        # vectorised over the queue (FCFS's own order is the queue itself): a long waiting
        # queue costs C-level work per step, and admit() stops at the first misfit
        ids, reject = drop_too_long(
            view, view.waiting if type(self).order is FCFS.order else self.order(view), budget)
        if not preempted:
            order = ids
            n_run = len(view.running)
            admit(view, plan, order, token_budget=left, free_blocks=free,
                  max_seqs=self.max_batch_seqs - n_run + len(plan), chunked=False)
        repeat = math.inf if not preempted and not reject and is_pure_decode(view, plan) else -math.inf
        # continuous FCFS is stateless: with nothing waiting it decodes every running request;
        # subclasses (other orders, extra state) do not inherit this promise
        exact = type(self) is FCFS
        every = math.inf if exact else -math.inf
        # ... and admits every waiting request whose whole prompt fits (admission windows)
        adm = AdmitPromise(math.inf, budget, self.max_batch_seqs) if exact else None
        return StepPlan(plan, preempt=frozenset(preempted), reject=frozenset(reject),
                        repeat_until_s=repeat, decode_all_until_s=every, admit_all=adm)

    def _static(self, view: EngineView, max_seqs: int) -> StepPlan:
        gen, out = view.num_generated, view.workload.output_tokens
        self._batch = [r for r in self._batch if gen[r] < out[r]]
        if not self._batch:
            order = self.order(view)
            if not order:
                return StepPlan.idle()
            full = len(order) >= max_seqs
            oldest = float(view.workload.arrival_s[min(order)])
            deadline = oldest + self.batch_wait_timeout_s
            if not full and max_seqs > 1 and view.now_s < deadline - 1e-12:
                return StepPlan.idle(wait_until_s=deadline)
            self._batch = form_static_batch(view, order, max_seqs)
            if not self._batch:  # cannot happen: a lone request always fits (else rejected)
                return StepPlan.idle()
        plan = batch_plan(view, self._batch, self._budget(view))
        repeat = math.inf if is_pure_decode(view, plan) and len(plan) == len(self._batch) else -math.inf
        return StepPlan(plan, repeat_until_s=repeat)
