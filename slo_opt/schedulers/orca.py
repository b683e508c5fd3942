"""Orca: iteration-level FCFS batching with worst-case KV reservation (no preemption)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from slo_opt.schedulers.base import (
    AdmitPromise,
    EngineView,
    StepPlan,
    admit,
    register,
    reserved_blocks,
)
from slo_opt.schedulers.vllm import is_pure_decode

__all__ = ["Orca"]


@register
@dataclass
class Orca:
    """Orca's scheduler (OSDI'22, Algorithm 1).

    Every iteration all running requests advance (whole prompts, no chunking); waiting requests
    join FCFS while the batch has fewer than ``max_batch_seqs`` sequences, the token cap holds,
    and the KV reservation ``prompt + max_tokens`` of every admitted request fits the capacity.
    Because memory is reserved for the worst case, nothing is ever preempted.

    Parameters
    ----------
    max_batch_seqs : int
        Orca's ``max_bs``.
    max_tokens : int or None
        Output tokens reserved per request. ``None`` reserves each request's true output length
        (an oracle of the generation limit); a number reserves ``max(max_tokens, output)`` so
        that no request is truncated.
    max_batch_tokens : int or None
        Token cap per iteration (``None``: the engine's).

    Notes
    -----
    Selective batching is an engine property, captured by the engine model's step time. Orca
    scans the queue in arrival order and stops at the first request that does not fit (as the
    paper's Algorithm 1). Requests whose prompt exceeds the token cap are rejected.

    References
    ----------
    .. [1] G.-I. Yu et al., "Orca: A Distributed Serving System for Transformer-Based
       Generative Models", OSDI 2022.
    """

    name: ClassVar[str] = "orca"
    max_batch_seqs: int = 256
    max_tokens: int | None = None
    max_batch_tokens: int | None = None
    _memo: Any = field(default=None, init=False, repr=False, compare=False)

    def reset(self) -> None:
        """Stateless (the per-workload memo of reservations is a pure function of the input)."""
        self._memo = None

    def _tables(self, view: EngineView) -> tuple[np.ndarray, np.ndarray, int]:
        """Reserved blocks of every request, whether it must be rejected (memoised), and the
        prompt-length limit.

        Orca never preempts, so a waiting request is fresh: both depend only on its lengths.
        """
        w = view.workload
        b = view.kv_block_tokens
        cap = view.engine.kv_capacity_tokens // b
        limit = view.max_batch_tokens if self.max_batch_tokens is None else self.max_batch_tokens
        key = (b, cap, limit)
        m = self._memo
        if m is None or m[0] is not w or m[1] != key:
            resv = reserved_blocks(w.prompt_tokens, w.output_tokens, self.max_tokens or 0, b)
            m = self._memo = (w, key, resv, (resv > cap) | (w.prompt_tokens > limit))
        return m[2], m[3], limit

    def plan(self, view: EngineView) -> StepPlan:
        """Advance every running request; admit FCFS under the reservation."""
        budget = view.max_batch_tokens if self.max_batch_tokens is None else min(
            self.max_batch_tokens, view.max_batch_tokens)
        token_cap = budget
        resv, bad, limit = self._tables(view)
        plan: dict[int, int] = {}
        reserved = 0
        for r in view.running:
            r = int(r)
            reserved += int(resv[r])
            n = view.next_tokens(r)
            if n > budget:
                break
            plan[r] = n
            budget -= n
        cap = view.engine.kv_capacity_tokens // view.kv_block_tokens
        # vectorised over the (possibly long) queue; admit() stops at the first misfit
        order: Any = np.asarray(view.waiting, dtype=np.int64)
        reject: set[int] = set()
        if order.size:
            gone = bad[order]
            if view.num_generated[order].any():  # re-queued requests (not from Orca itself)
                gone = gone | (view.next_tokens_of(order) > limit)
            if np.count_nonzero(gone):
                reject = set(order[gone].tolist())
                order = order[~gone]
        admit(view, plan, order, token_budget=budget, max_seqs=self.max_batch_seqs,
              free_blocks=cap - reserved, chunked=False, reserve_blocks=resv)
        repeat = math.inf if not reject and is_pure_decode(view, plan) else -math.inf
        # stateless: with nothing waiting every running request advances (StepPlan docs)
        exact = type(self) is Orca
        every = math.inf if exact else -math.inf
        # ... and admits every waiting request whose prompt and reservation fit (admission
        # windows; the reservation rule is part of the promise)
        adm = AdmitPromise(math.inf, token_cap, self.max_batch_seqs,
                           reserve_output_tokens=self.max_tokens or 0) if exact else None
        return StepPlan(plan, reject=frozenset(reject), repeat_until_s=repeat,
                        decode_all_until_s=every, admit_all=adm)
