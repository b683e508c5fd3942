"""The scheduler contract: a read-only :class:`EngineView` in, a :class:`StepPlan` out.

The per-iteration decision follows vLLM: a mapping from request to tokens, plus optional
evictions (recompute or swap) and explicit rejections. The simulator owns all state and checks
every plan before applying it.

Adding a policy is one file: a dataclass whose fields are its hyper-parameters, decorated with
:func:`register`, and one import line in ``slo_opt/schedulers/__init__.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from slo_opt.engine import EngineModel
from slo_opt.registry import Registry
from slo_opt.request import Workload

__all__ = [
    "SCHEDULERS",
    "AdmitPromise",
    "CachePlan",
    "EngineView",
    "Scheduler",
    "StepPlan",
    "admit",
    "drop_too_long",
    "make",
    "register",
    "reserved_blocks",
    "scheduler_params",
]


class CachePlan:
    """A scratch copy of the engine's prefix cache, for planning one step.

    The simulator applies a plan in its ``tokens`` order: each request takes the KV blocks it
    needs, and a request without resident KV (waiting) first looks up the longest cached prefix
    of its tokens and reuses it. New blocks come from the head of the free queue, evicting the
    cached blocks there (least recently freed first, as vLLM v1's ``BlockPool``). A policy that
    wants the simulator's cache hits mirrors that order with this object: :meth:`grow` for a
    running request, :meth:`lookup` then :meth:`admit` for a waiting one. Calls change only
    this copy.

    This base class is the engine without prefix caching: every lookup misses, and
    :meth:`grow` / :meth:`admit` do nothing.
    """

    def lookup(self, rid: int) -> tuple[int, int]:
        """``(hit_tokens, free_hit_blocks)`` if ``rid`` (waiting) were admitted now.

        ``hit_tokens`` is a multiple of the block size and at most ``prompt + generated - 1``
        (the last token is always computed, for its logits); ``free_hit_blocks`` of its
        blocks sit in the free queue (no request holds them) and so count against the free
        blocks when ``rid`` is admitted, as vLLM's ``allocate_slots`` charges them.
        """
        return 0, 0

    def grow(self, rid: int, tokens: int) -> None:
        """A request of the plan with resident KV (running, or swapped back in) computes
        ``tokens`` more tokens: it takes the blocks they need from the free queue, and its
        blocks that become full are cached right away (a later admission of the same step
        can hit them, as in vLLM v1)."""

    def release(self, rid: int, held_blocks: int) -> int:
        """Blocks that preempting running request ``rid`` (holding ``held_blocks``) returns to
        the free queue: all of them, except blocks another request still holds through a
        cache hit (vLLM frees a block when its last holder lets it go)."""
        return held_blocks

    def admit(self, rid: int, hit_tokens: int, tokens: int) -> None:
        """``rid`` (waiting) is admitted: it reuses its hit (``hit_tokens`` as returned by
        :meth:`lookup`, just before) and computes ``tokens`` more tokens, as :meth:`grow`."""


@dataclass(frozen=True, eq=False)
class EngineView:
    """What a scheduler may see at the start of one iteration (read-only).

    Attributes
    ----------
    now_s : float
        Start time of the iteration being planned.
    step : int
        Index of the iteration being planned.
    engine : EngineModel
        The engine model (policies may query ``step_time_s`` to predict).
    workload : Workload
        All requests (including future ones: a policy must only use ``arrived`` ids).
    waiting : numpy.ndarray
        Arrived requests without resident KV (never started or preempted by recompute),
        in arrival order.
    running : numpy.ndarray
        Requests with resident KV, in admission order.
    swapped : numpy.ndarray
        Requests whose KV is in host memory, in swap-out order.
    num_computed : numpy.ndarray
        Per request, tokens with computed KV (vLLM's ``num_computed_tokens``).
    num_generated : numpy.ndarray
        Per request, output tokens emitted so far.
    kv_free_blocks : int
        Free KV blocks.
    first_scheduled_s : numpy.ndarray
        Per request, start time of the first step that computed tokens for it (NaN if none).
    """

    now_s: float
    step: int
    engine: EngineModel
    workload: Workload
    waiting: np.ndarray
    running: np.ndarray
    swapped: np.ndarray
    num_computed: np.ndarray
    num_generated: np.ndarray
    kv_free_blocks: int
    first_scheduled_s: np.ndarray
    next_arrival_s: float = math.inf

    @property
    def kv_block_tokens(self) -> int:
        """Block size of the paged KV cache."""
        return int(self.engine.kv_block_tokens)

    @property
    def kv_free_tokens(self) -> int:
        """Free KV capacity in tokens."""
        return self.kv_free_blocks * self.kv_block_tokens

    @property
    def max_batch_tokens(self) -> int:
        """The engine's hard cap on tokens per iteration."""
        return int(self.engine.max_batch_tokens)

    def next_tokens(self, rid: int) -> int:
        """Tokens ``rid`` must compute to emit its next output token.

        The rest of the prompt while prefilling (plus recomputation of generated tokens after a
        recompute preemption), else 1 (one decode token).
        """
        w = self.workload
        return int(w.prompt_tokens[rid] + self.num_generated[rid] - self.num_computed[rid])

    def next_tokens_of(self, ids: np.ndarray) -> np.ndarray:
        """:meth:`next_tokens` of every id in ``ids`` (an int array), vectorised."""
        w = self.workload
        return w.prompt_tokens[ids] + self.num_generated[ids] - self.num_computed[ids]

    def blocks_for(self, rid: int, tokens: int) -> int:
        """Extra KV blocks ``rid`` needs to compute ``tokens`` more tokens."""
        b = self.kv_block_tokens
        c = int(self.num_computed[rid])
        return -(-(c + tokens) // b) - (-(-c // b))

    def blocks_held(self, rid: int) -> int:
        """KV blocks ``rid`` holds (or would bring back on swap-in)."""
        b = self.kv_block_tokens
        return -(-int(self.num_computed[rid]) // b)

    def remaining_output(self, rid: int) -> int:
        """Output tokens still to generate (oracle knowledge: only oracle policies may use it)."""
        return int(self.workload.output_tokens[rid] - self.num_generated[rid])

    @property
    def prefix_caching(self) -> bool:
        """Whether the engine keeps freed KV blocks as a prefix cache (vLLM's
        ``enable_prefix_caching``; switched on by a policy whose ``enable_prefix_caching``
        field is true)."""
        return False

    def cache_plan(self) -> CachePlan:
        """A fresh :class:`CachePlan` of the engine's prefix cache as it is now."""
        return CachePlan()

    def cached_tokens(self, rid: int) -> int:
        """Tokens of waiting request ``rid`` the prefix cache would serve if it were admitted
        first in this step (0 without prefix caching)."""
        return self.cache_plan().lookup(rid)[0]


@dataclass(frozen=True, slots=True)
class AdmitPromise:
    """FCFS-admission promise of a stateless continuous-batching policy (fast-forward only).

    At every *later* step that starts before ``until_s``, while (a) no request is swapped,
    (b) every running request is in decode (``next_tokens == 1``, at least one output token),
    (c) every waiting request is fresh (nothing computed, nothing generated), and (d) the batch
    made of one decode token per running request plus the *whole* prompt of every waiting
    request has at most ``token_budget`` tokens and ``max_seqs`` sequences and fits in the
    free KV blocks (and, with ``reserve_output_tokens``, the reservations fit the cache), the
    policy would return exactly that batch, with no eviction or rejection, and the same promise
    (which includes the ``decode_all_until_s`` promise up to ``until_s``). With prefix
    caching, the simulator also makes sure that (e) no waiting request can hit the cache (the
    promise is about whole prompts).

    The simulator then runs whole windows of arrivals, admissions, decodes and completions
    without calling ``plan`` (vectorised over steps; exactly equal to stepping). vLLM's
    scheduler gives it: running requests first, then waiting requests FCFS while the budget,
    the sequence cap and the KV blocks allow.

    Parameters
    ----------
    until_s : float
        Horizon (``inf``: no horizon).
    token_budget : int
        Tokens per step the policy schedules at most.
    max_seqs : int
        Sequences per step the policy schedules at most.
    reserve_output_tokens : int or None
        ``None``: admission is limited by the free KV blocks (vLLM). An integer ``r``: each
        running or admitted request reserves ``ceil((prompt + max(output, r) - 1) / block)``
        blocks and the sum must fit the whole cache; a request whose reservation alone does
        not fit is rejected (Orca's worst-case reservation; ``r = 0`` reserves the true output).
    """

    until_s: float
    token_budget: int
    max_seqs: int
    reserve_output_tokens: int | None = None


def reserved_blocks(prompt_tokens: np.ndarray, output_tokens: np.ndarray, min_output_tokens: int,
                    block_tokens: int) -> np.ndarray:
    """Orca's worst-case KV reservation: ``ceil((prompt + max(output, min_output) - 1) / block)``
    blocks per request (see :class:`AdmitPromise`)."""
    return -(-(prompt_tokens + np.maximum(output_tokens, min_output_tokens) - 1) // block_tokens)


@dataclass(frozen=True)
class StepPlan:
    """One iteration's decision.

    Parameters
    ----------
    tokens : Mapping[int, int]
        Tokens to compute per request (``1 <= tokens <= next_tokens``). A swapped request listed
        here is swapped in first (transfer time added to the step).
    preempt : frozenset[int]
        Running requests evicted by recompute (KV dropped) at the start of the step.
    swap_out : frozenset[int]
        Running requests whose KV moves to host memory at the start of the step.
    reject : frozenset[int]
        Waiting requests the policy can never serve; reported as rejected.
    wait_until_s : float or None
        With an empty ``tokens``: stay idle until this time (or the next arrival, if earlier).
    repeat_until_s : float
        Fast-forward promise: for a pure-decode plan, the policy would return the same plan at
        every following step until an arrival, a completion, a KV-block shortage, or this time.
        ``-inf`` (default) makes no promise.
    decode_all_until_s : float
        Continuous-batching promise (opt-in; for stateless policies whose plan calls may be
        skipped). At every *later* step that starts before this time, while (a) no request has
        arrived since this plan, (b) no request is waiting or swapped, (c) every running request
        was in this plan and is in decode (``next_tokens == 1``, at least one output token), and
        (d) one more token of every running request fits in the free KV blocks, the policy
        would return one decode token for every running request, with no eviction or
        rejection, and the same promise. The simulator then runs those steps, across
        completions, without calling ``plan``. ``-inf`` (default) makes no promise.
    admit_all : AdmitPromise or None
        FCFS-admission promise (opt-in, see :class:`AdmitPromise`); ``None`` (default) makes
        none.
    """

    tokens: Mapping[int, int]
    preempt: frozenset[int] = frozenset()
    swap_out: frozenset[int] = frozenset()
    reject: frozenset[int] = frozenset()
    wait_until_s: float | None = None
    repeat_until_s: float = -math.inf
    decode_all_until_s: float = -math.inf
    admit_all: AdmitPromise | None = None

    @classmethod
    def idle(cls, wait_until_s: float | None = None) -> StepPlan:
        """A plan that computes nothing."""
        return cls({}, wait_until_s=wait_until_s)


@runtime_checkable
class Scheduler(Protocol):
    """An online policy. Dataclass fields are its hyper-parameters."""

    name: ClassVar[str]

    def reset(self) -> None:
        """Clear per-run state (queues, counters) before a simulation."""
        ...

    def plan(self, view: EngineView) -> StepPlan:
        """Decide the next iteration."""
        ...


SCHEDULERS = Registry("scheduler")
S = TypeVar("S", bound=type)


def register(cls: S) -> S:
    """Class decorator adding a scheduler to :data:`SCHEDULERS` under ``cls.name``."""
    return SCHEDULERS.register(cls)


def scheduler_params(name_or_cls: str | type) -> dict[str, Any]:
    """Hyper-parameters of a scheduler and their defaults."""
    return SCHEDULERS.params(name_or_cls)


def make(name: str, **params: Any) -> Any:
    """Instantiate a registered scheduler; unknown names or parameters list the valid ones."""
    return SCHEDULERS.make(name, **params)


def drop_too_long(view: EngineView, ids: np.ndarray | Sequence[int], limit: int
                  ) -> tuple[np.ndarray, set[int]]:
    """Split off the requests of ``ids`` whose next tokens exceed ``limit``.

    Without chunked prefill such a request can never be scheduled, so policies reject it.
    Vectorised over the (possibly long) waiting queue; ``ids`` keeps its order.

    Returns
    -------
    (kept_ids, rejected)
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size:
        too_long = view.next_tokens_of(ids) > limit
        if np.count_nonzero(too_long):
            return ids[~too_long], set(ids[too_long].tolist())
    return ids, set()


def admit(
    view: EngineView,
    plan: dict[int, int],
    order: Iterable[int],
    *,
    token_budget: int,
    max_seqs: int,
    free_blocks: int,
    chunked: bool = True,
    reserve_blocks: Mapping[int, int] | np.ndarray | None = None,
) -> tuple[int, int]:
    """Greedily add waiting requests in ``order`` to ``plan`` (modified in place).

    A request is admitted while the batch has fewer than ``max_seqs`` sequences, the token
    budget is positive and its KV blocks fit; with ``chunked=False`` its whole remaining prompt
    must fit in the budget. ``reserve_blocks`` (Orca; a mapping or an array indexed by request
    id) charges a reservation instead of the blocks of this step. Stops at the first request that does not fit (FCFS head-of-line
    semantics, as vLLM).

    Returns
    -------
    (token_budget, free_blocks)
        What is left after admission.
    """
    for rid in order:
        rid = int(rid)
        if len(plan) >= max_seqs or token_budget <= 0:
            break
        need_tokens = view.next_tokens(rid)
        n = min(need_tokens, token_budget)
        if not chunked and n < need_tokens:
            break
        blocks = reserve_blocks[rid] if reserve_blocks is not None else view.blocks_for(rid, n)
        if blocks > free_blocks:
            break
        plan[rid] = n
        token_budget -= n
        free_blocks -= blocks
    return token_budget, free_blocks
