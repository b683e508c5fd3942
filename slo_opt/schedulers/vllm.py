"""vLLM v1-style scheduling: token budget, chunked prefill, running-first, recompute preemption."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from slo_opt.schedulers.base import (
    AdmitPromise,
    EngineView,
    StepPlan,
    admit,
    drop_too_long,
    register,
)

__all__ = ["VLLM", "running_first"]


def running_first(view: EngineView, budget: int, *, long_prefill_token_threshold: int = 0
                  ) -> tuple[dict[int, int], set[int], int, int]:
    """Schedule running requests in admission order, preempting the newest on KV shortage.

    Mirrors ``vllm/v1/core/sched/scheduler.py``: each running request gets
    ``min(remaining, threshold, budget)`` tokens; when its KV blocks do not fit, the *last*
    running request is evicted by recompute until they do, or until the request itself is the
    victim.

    Returns
    -------
    (plan, preempted, budget_left, free_blocks_left)
    """
    free = view.kv_free_blocks
    ids = view.running
    if len(ids) > 4:  # vectorised fast path: everything fits (no chunk cut, no preemption)
        ids = np.asarray(ids, np.int64)
        comp = view.num_computed[ids]
        nt = view.next_tokens_of(ids)
        if long_prefill_token_threshold > 0:
            nt = np.minimum(nt, long_prefill_token_threshold)
        total = int(np.add.reduce(nt))
        if total <= budget:
            b = view.kv_block_tokens
            need = int(np.add.reduce(-(-(comp + nt) // b))) - int(np.add.reduce(-(-comp // b)))
            if need <= free:
                return dict(zip(ids.tolist(), nt.tolist())), set(), budget - total, free - need
    plan: dict[int, int] = {}
    preempted: set[int] = set()
    running = [int(r) for r in view.running]
    i = 0
    while i < len(running) and budget > 0:
        r = running[i]
        n = min(view.next_tokens(r), budget)
        if long_prefill_token_threshold > 0:
            n = min(n, long_prefill_token_threshold)
        need = view.blocks_for(r, n)
        while need > free:
            victim = running.pop()
            preempted.add(victim)
            free += view.blocks_held(victim)
            if victim == r:
                break
        if r in preempted:
            break
        plan[r] = n
        budget -= n
        free -= need
        i += 1
    return plan, preempted, budget, free


def is_pure_decode(view: EngineView, plan: dict[int, int]) -> bool:
    """True if every planned request computes one decode token (fast-forward candidate)."""
    gen = view.num_generated
    if len(plan) > 4:
        ids = np.fromiter(plan.keys(), np.int64, len(plan))
        toks = np.fromiter(plan.values(), np.int64, len(plan))
        g = gen[ids]
        nt = view.next_tokens_of(ids)
        k = len(plan)
        return bool(np.count_nonzero(toks == 1) == k and np.count_nonzero(nt == 1) == k
                    and np.count_nonzero(g >= 1) == k)
    return bool(plan) and all(
        t == 1 and view.next_tokens(r) == 1 and gen[r] >= 1 for r, t in plan.items()
    )


@register
@dataclass
class VLLM:
    """vLLM v1 scheduler (the 2025+ meaning of "vLLM" as a baseline).

    Parameters
    ----------
    max_num_batched_tokens : int
        Token budget per iteration (vLLM API-server default on H100: 8192).
    max_num_seqs : int
        Cap on concurrently running sequences (vLLM default 1024 on >= 70 GiB GPUs, else 256).
    long_prefill_token_threshold : int
        Cap on one request's prefill chunk per step (0 = none).
    chunked_prefill : bool
        If ``False`` a new request is admitted only when its whole prompt fits the budget.

    Notes
    -----
    Follows ``vllm/v1/core/sched/scheduler.py`` (research/simulators.md B.1): running requests
    first, in order; recompute preemption of the newest running request under KV pressure;
    waiting requests admitted FCFS only if nothing was preempted in this step. Plans carry the
    ``decode_all_until_s`` and ``admit_all`` fast-forward promises (the policy is stateless).
    Deviations:
    preempted requests rejoin the waiting queue in arrival order (vLLM prepends them; they are
    almost always older than every waiting request), no prefix caching, no watermark.

    References
    ----------
    .. [1] W. Kwon et al., "Efficient Memory Management for Large Language Model Serving with
       PagedAttention", SOSP 2023.
    """

    name: ClassVar[str] = "vllm"
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    long_prefill_token_threshold: int = 0
    chunked_prefill: bool = True

    def __post_init__(self) -> None:
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be >= 1")

    def reset(self) -> None:
        """Stateless."""

    def plan(self, view: EngineView) -> StepPlan:
        """One vLLM v1 scheduling step."""
        budget = min(self.max_num_batched_tokens, view.max_batch_tokens)
        plan, preempted, left, free = running_first(
            view, budget, long_prefill_token_threshold=self.long_prefill_token_threshold)
        reject: set[int] = set()
        n0 = len(plan)
        if not preempted:
            # admit() stops at the first request that does not fit: hand it the queue itself
            # (no per-step pass over a long waiting queue)
            order: Any = view.waiting
            if not self.chunked_prefill:
                order, reject = drop_too_long(view, order, budget)
            n_run = len(view.running) - len(preempted)
            n0 = len(plan)
            admit(view, plan, order, token_budget=left, free_blocks=free,
                  max_seqs=self.max_num_seqs - n_run + len(plan), chunked=self.chunked_prefill)
        # an admitted waiting request is never in decode (fresh, or recomputing its prompt)
        pure = not preempted and not reject and len(plan) == n0 and is_pure_decode(view, plan)
        repeat = math.inf if pure else -math.inf
        # stateless: with nothing waiting, every running request in decode and KV to spare,
        # the next plans are one decode token per running request (subclasses that override
        # plan() make no such promise)
        exact = type(self).plan is VLLM.plan
        every = math.inf if exact else -math.inf
        # ... and with only fresh requests waiting whose whole prompts fit, the next plans
        # admit them all (running_first gives every decode one token, admit() takes the
        # prompts in order): the FCFS-admission promise
        adm = AdmitPromise(math.inf, budget, self.max_num_seqs) if exact else None
        return StepPlan(plan, preempt=frozenset(preempted), reject=frozenset(reject),
                        repeat_until_s=repeat, decode_all_until_s=every, admit_all=adm)
