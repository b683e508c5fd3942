"""vLLM V0's default scheduler: prefill-prioritised iterations, no chunked prefill."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from slo_opt.schedulers.base import EngineView, StepPlan, register
from slo_opt.schedulers.vllm import is_pure_decode, running_first

__all__ = ["VLLMv0"]


@register
@dataclass
class VLLMv0:
    """vLLM V0 (``vllm/core/scheduler.py``, ``Scheduler._schedule_default``), before V1.

    Parameters
    ----------
    max_num_batched_tokens : int
        Tokens of one prefill iteration at most; a prompt longer than this is rejected
        (V0's ``prompt_limit``; V0 requires ``max_num_batched_tokens >= max_model_len``).
    max_num_seqs : int
        Cap on running sequences (prefills are admitted only while running + new fit it).
    watermark : float
        Share of the KV blocks an admission must leave free (V0's ``--watermark``, 0.01).
    enable_prefix_caching : bool
        Automatic prefix caching (V0's default: off). See Notes for the eviction order.

    Notes
    -----
    One step, as V0's ``_schedule_default`` does it with chunked prefill off (in our words):

    * *Prefills first* (``_schedule_prefills``): waiting requests in queue order, each with
      its whole sequence (prompt plus generated tokens of a preempted request), while the
      prompt tokens fit the token budget and the running plus admitted sequences fit
      ``max_num_seqs``. The KV check (``BlockSpaceManager.can_allocate``) needs
      ``free - required >= watermark_blocks`` with ``required`` the blocks of the whole
      sequence and ``watermark_blocks = floor(watermark * total blocks)``; a request with
      ``total - required < watermark_blocks`` can never run and is rejected (V0 "ignores"
      it), as is a prompt longer than the budget. The first request that does not fit stops
      the loop.
    * *If any prefill was scheduled, the step is prefill-only*: running requests do not
      decode in it ("prefill-prioritised"; decodes stall while prompts arrive).
    * *Else every running request decodes one token* (``_schedule_running``), in admission
      order; when a request cannot get a block for its token, the last running request is
      preempted by recompute (V0's default for single-sequence requests) and goes to the
      front of the waiting queue (``waiting.extendleft``), until the block fits or the
      request itself is the victim. No admission happens in a decode step.

    With ``enable_prefix_caching`` the prompt tokens served from the cache are not counted
    against the budget or computed (V0's ``_get_num_new_uncached_and_cached_tokens``).
    Deviations: swap preemption (V0's mode for multi-sequence groups) is not modelled; the
    prefix cache is the simulator's (vLLM v1's free-queue order: least recently freed block
    first, tail blocks of a request first), whereas V0's evictor picks the least recently
    *accessed* block, ties broken by the most hashed tokens; a preempted request whose
    prompt plus generated tokens exceed the budget is recomputed in chunks (V0 would drop
    it).

    References
    ----------
    .. [1] W. Kwon et al., "Efficient Memory Management for Large Language Model Serving with
       PagedAttention", SOSP 2023, section 4.5 (scheduling and preemption).
    """

    name: ClassVar[str] = "vllm_v0"
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    watermark: float = 0.01
    enable_prefix_caching: bool = False

    def __post_init__(self) -> None:
        for k in ("max_num_batched_tokens", "max_num_seqs"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{k} must be an int >= 1, got {v!r}")
        w = self.watermark
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < 1:
            raise ValueError(f"watermark must be a number in [0, 1), got {w!r}")
        if not isinstance(self.enable_prefix_caching, bool | np.bool_):
            raise TypeError(f"enable_prefix_caching must be a bool, got {self.enable_prefix_caching!r}")

    def reset(self) -> None:
        """Stateless."""

    def plan(self, view: EngineView) -> StepPlan:
        """One V0 step: a prefill-only batch if any prompt can be admitted, else decodes."""
        budget = min(self.max_num_batched_tokens, view.max_batch_tokens)
        b = view.kv_block_tokens
        total = int(view.engine.kv_capacity_tokens) // b
        mark = int(self.watermark * total)
        plan: dict[int, int] = {}
        reject: set[int] = set()
        caching = self.enable_prefix_caching and view.prefix_caching
        cache = view.cache_plan() if caching and len(view.waiting) else None
        free = view.kv_free_blocks
        seqs = len(view.running)
        left = budget
        for rid in view.waiting.tolist():
            num_tokens = view.next_tokens(rid)  # nothing resident: prompt + generated
            fresh = int(view.num_generated[rid]) == 0
            required = -(-num_tokens // b)
            if fresh and (num_tokens > budget or total - required < mark):
                reject.add(rid)  # V0 ignores it (FINISHED_IGNORED)
                continue
            hit, free_hit = cache.lookup(rid) if cache is not None else (0, 0)
            n = num_tokens - hit
            need = required - hit // b + free_hit
            if free - need < mark:  # AllocStatus.LATER
                break
            if seqs + 1 > self.max_num_seqs:
                break
            if n > left:
                if n <= budget or plan:
                    break
                n = left  # a recompute no step could hold whole: in chunks (a deviation)
            plan[rid] = n
            left -= n
            seqs += 1
            free -= need
            if cache is not None:
                cache.admit(rid, hit, n)
            if left <= 0:
                break
        if plan:  # a prefill-only step
            return StepPlan(plan, reject=frozenset(reject))
        run, preempted, _, _ = running_first(view, max(budget, len(view.running)))
        pure = not preempted and not reject and is_pure_decode(view, run)
        # a pure-decode plan repeats while only time passes: the waiting head stays refused
        # as free blocks only shrink (a shared-prefix hit could grow instead)
        if pure and caching and len(view.waiting) and view.workload.prefix_ids is not None:
            pure = False
        exact = type(self).plan is VLLMv0.plan
        return StepPlan(run, preempt=frozenset(preempted), reject=frozenset(reject),
                        repeat_until_s=math.inf if pure else -math.inf,
                        decode_all_until_s=math.inf if exact else -math.inf)
