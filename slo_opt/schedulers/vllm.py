"""vLLM v1-style scheduling: token budget, chunked prefill, running-first, recompute preemption."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from slo_opt.schedulers.base import (
    AdmitPromise,
    CachePlan,
    EngineView,
    StepPlan,
    admit,
    drop_too_long,
    register,
)

__all__ = ["VLLM", "admit_waiting", "running_first"]


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
    cache: CachePlan | None = None  # with prefix caching: a victim's shared blocks stay held
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
            if cache is None and view.prefix_caching:
                cache = view.cache_plan()
            held = view.blocks_held(victim)
            free += cache.release(victim, held) if cache is not None else held
            if victim == r:
                break
        if r in preempted:
            break
        plan[r] = n
        budget -= n
        free -= need
        i += 1
    return plan, preempted, budget, free


def admit_waiting(view: EngineView, plan: dict[int, int], order: Any, *, token_budget: int,
                  free_blocks: int, max_new: int, chunked: bool = True,
                  long_prefill_token_threshold: int = 0, reserve_full_isl: bool = False,
                  whole_limit_tokens: float = math.inf, cache: CachePlan | None = None
                  ) -> tuple[int, int, int]:
    """Admit waiting requests in ``order`` as vLLM v1's waiting loop does (``plan`` in place).

    Per request, in order, stopping at the first that does not fit: the prefix-cache hit
    ``h`` (``cache.lookup``; 0 without a cache), ``n = min(num_tokens - h, threshold, budget)``
    new tokens where ``num_tokens = prompt + generated``; with ``chunked=False`` it stops if
    the rest does not fit the budget (unless it exceeds ``whole_limit_tokens``, a recompute no
    step could hold whole); with ``reserve_full_isl`` the blocks of the *whole* sequence,
    ``ceil(num_tokens / b) - h / b`` plus the hit blocks that sit in the free queue, must fit
    the free blocks; then the blocks of this step, ``ceil((h + n) / b) - h / b`` plus the same
    free hit blocks. At most ``max_new`` requests are admitted.

    Returns
    -------
    (token_budget, free_blocks, admitted)
        What is left, and how many requests were admitted.
    """
    b = view.kv_block_tokens
    k = 0
    for rid in order:
        if k >= max_new or token_budget <= 0:
            break
        rid = int(rid)
        num_tokens = view.next_tokens(rid)  # nothing resident: prompt + generated
        hit, free_hit = cache.lookup(rid) if cache is not None else (0, 0)
        rest = num_tokens - hit
        n = rest
        if 0 < long_prefill_token_threshold < n:
            n = long_prefill_token_threshold
        if not chunked and n > token_budget and rest <= whole_limit_tokens:
            break
        n = min(n, token_budget)
        hb = hit // b
        if reserve_full_isl and -(-num_tokens // b) - hb + free_hit > free_blocks:
            break
        new = -(-(hit + n) // b) - hb
        if new + free_hit > free_blocks:
            break
        plan[rid] = n
        token_budget -= n
        free_blocks -= new + free_hit
        if cache is not None:
            cache.admit(rid, hit, n)
        k += 1
    return token_budget, free_blocks, k


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
    enable_prefix_caching : bool
        vLLM's automatic prefix caching: the simulator keeps freed KV blocks as a cache and a
        waiting request (new, or preempted by recompute) reuses its longest cached block
        prefix, computing only the rest (default ``False``; vLLM v1's own default is on).
    scheduler_reserve_full_isl : bool
        vLLM 0.19's admission gate (its default is on): a waiting request is admitted only if
        the KV blocks of its whole current sequence fit the free blocks, not just its first
        chunk (default ``False`` here, the pre-0.19 behaviour).

    Notes
    -----
    Step semantics, as ``vllm/v1/core/sched/scheduler.py`` (``Scheduler.schedule``) and
    ``vllm/v1/core/kv_cache_manager.py`` (``KVCacheManager``) of vLLM 0.19 do it, in our words:

    * *Order in a step.* Running requests first, in admission order, each getting
      ``min(remaining, threshold, budget)`` tokens while budget is left; then waiting requests
      in queue order, but only if no request was preempted in this step, while the running
      count is below ``max_num_seqs`` and budget is left; the waiting loop stops at the first
      request that does not fit (no skipping; with chunked prefill disabled it also stops at
      a request whose rest exceeds the budget).
    * *Preemption.* When a running request's new blocks do not fit (``allocate_slots``
      fails), the last running request is preempted, repeatedly, until they fit or the
      request itself is the victim. A victim loses its KV (recompute: its computed tokens go
      to 0, the generated ones are kept and recomputed) and goes to the *front* of the
      waiting queue (``_preempt_request``: ``waiting.prepend_request``). Its blocks are freed
      tail first (``KVCacheManager.free``); with prefix caching their hashes stay, so a
      resumed request reuses whatever of its own prefix was not evicted meanwhile. Here the
      waiting queue is kept in arrival order: for this policy that is the same order, since
      the running list stays in arrival order, every running request is older than every
      waiting one and victims are taken newest first (tested).
    * *Admission-time KV check* (``allocate_slots``): blocks needed = blocks of the computed
      prefix after this step's tokens minus the cache-hit blocks, plus the hit blocks that
      are in the free queue (touching them takes them out of it); with
      ``scheduler_reserve_full_isl`` the same count for the whole current sequence
      (``request.num_tokens`` = prompt + generated) must fit first. Prefix-cache hits are
      looked up only for requests with no computed tokens, are whole blocks, and at most
      ``num_tokens - 1`` tokens (``get_computed_blocks``).
    * *Watermark.* vLLM v1 has none (V0's 1 % admission watermark is in ``vllm_v0``).
    * *Free blocks.* vLLM's ``BlockPool`` reserves one null block, so ``num_gpu_blocks`` of
      its log is one more than it can use: give the engine ``num_gpu_blocks - 1`` blocks to
      match.

    Plans carry the ``decode_all_until_s`` and ``admit_all`` fast-forward promises (the policy
    is stateless). Deviations: vLLM 0.19 schedules asynchronously by default
    (``async_scheduling``): a request that finishes in one step still holds its blocks while
    the next step is planned; here blocks are free as soon as the step ends. Speculative
    decoding, LoRA, encoders and KV connectors are not modelled.

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
    enable_prefix_caching: bool = False
    scheduler_reserve_full_isl: bool = False

    def __post_init__(self) -> None:
        for k in ("max_num_batched_tokens", "max_num_seqs", "long_prefill_token_threshold"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise TypeError(f"{k} must be an int, got {v!r}")
        for k in ("chunked_prefill", "enable_prefix_caching", "scheduler_reserve_full_isl"):
            if not isinstance(getattr(self, k), bool | np.bool_):
                raise TypeError(f"{k} must be a bool, got {getattr(self, k)!r}")
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be >= 1")
        if self.long_prefill_token_threshold < 0:
            raise ValueError("long_prefill_token_threshold must be >= 0")

    def reset(self) -> None:
        """Stateless."""

    def plan(self, view: EngineView) -> StepPlan:
        """One vLLM v1 scheduling step."""
        budget = min(self.max_num_batched_tokens, view.max_batch_tokens)
        thr = self.long_prefill_token_threshold
        plan, preempted, left, free = running_first(view, budget, long_prefill_token_threshold=thr)
        reject: set[int] = set()
        n0 = len(plan)
        caching = self.enable_prefix_caching and view.prefix_caching
        if not preempted:
            # admit() stops at the first request that does not fit: hand it the queue itself
            # (no per-step pass over a long waiting queue)
            order: Any = view.waiting
            if not self.chunked_prefill:
                order, reject = drop_too_long(view, order, budget)
            n_run = len(view.running) - len(preempted)
            if caching or self.scheduler_reserve_full_isl:
                cache = None
                if caching and len(order):
                    cache = view.cache_plan()
                    for r, t in plan.items():  # running requests take their blocks first
                        cache.grow(r, t)
                admit_waiting(view, plan, order, token_budget=left, free_blocks=free,
                              max_new=self.max_num_seqs - n_run, chunked=self.chunked_prefill,
                              long_prefill_token_threshold=thr,
                              reserve_full_isl=self.scheduler_reserve_full_isl,
                              whole_limit_tokens=budget, cache=cache)
            else:
                admit(view, plan, order, token_budget=left, free_blocks=free,
                      max_seqs=self.max_num_seqs - n_run + len(plan),
                      chunked=self.chunked_prefill)
        # an admitted waiting request is never in decode (fresh, or recomputing its prompt)
        pure = not preempted and not reject and len(plan) == n0 and is_pure_decode(view, plan)
        # the plan repeats while only time passes: with requests waiting, their admission
        # must stay refused as KV blocks run out; a cache hit that shrinks as blocks are
        # evicted, or grows as a running request fills blocks another request shares, could
        # admit one earlier (the full-sequence gate is monotone for private hits)
        if pure and caching and len(view.waiting) and (
                view.workload.prefix_ids is not None or not self.scheduler_reserve_full_isl):
            pure = False
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
