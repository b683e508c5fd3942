"""Memory-constrained shortest-first (MC-SF; Jaillet et al., 2025).

Written from the paper's description of the algorithm; no code was available or copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from slo_opt.schedulers.base import EngineView, StepPlan, drop_too_long, register

__all__ = ["MCSF", "peak_fits"]


def peak_fits(computed_tokens: np.ndarray, remaining_steps: np.ndarray, capacity_blocks: int,
              block_tokens: int) -> bool:
    """Whether a batch that decodes every step stays within the KV cache until it drains.

    Request ``j`` holds ``computed_tokens[j] + k + 1`` tokens at the end of the ``k``-th step
    from now (``k = 0`` is the step being planned) and completes in step
    ``remaining_steps[j] - 1``, after which its blocks are freed. Each request's use only grows
    until it completes, so the total is largest at some completion step: checking those steps
    checks every step (the paper's argument for checking completion times only).
    """
    c = np.asarray(computed_tokens, np.int64)
    r = np.asarray(remaining_steps, np.int64)
    if c.size == 0:
        return True
    for k in np.unique(r - 1).tolist():
        alive = r - 1 >= k
        need = -(-(c[alive] + k + 1) // block_tokens)
        if int(need.sum()) > capacity_blocks:
            return False
    return True


@register
@dataclass
class MCSF:
    """Memory-constrained shortest-first: Jaillet et al. [1]_, the MC-SF algorithm.

    Every step, all running requests decode one token (the paper's non-preemptive batches:
    a started request is processed in every round until it completes). Waiting requests are
    then considered in ascending order of predicted output length ``o~`` (ties by arrival), and
    one is added when (i) its whole prompt fits the step's remaining token budget and the
    sequence cap, and (ii) the KV use projected under the predictions stays within the cache
    at every future step until the batch drains (:func:`peak_fits`: the projected use of the
    running requests and the candidates added so far, plus the candidate, at every predicted
    completion step). Admission stops at the first candidate that does not fit (see Notes).

    Parameters
    ----------
    overestimate : float
        The prediction is ``o~ = ceil(overestimate * o)`` of the true output length ``o``
        (oracle lengths for ``1``). The paper's guarantee needs ``o <= o~ <= alpha o``; values
        below 1 are refused (an under-prediction would overflow the cache, which MC-SF has no
        way to handle without preemption).
    max_batch_seqs : int
        Sequences per step.
    backfill : bool
        ``False``: stop admitting at the first candidate that does not fit. ``True``: skip it
        and keep trying shorter-ranked ones after it.

    Notes
    -----
    Deviations from the paper's model (its section 2: one batch per unit of time whatever its
    composition, prompt processed with the first output token, memory ``s_i + j`` while
    producing the ``j``-th token):

    * Token budget: slo_opt's engines cap the tokens of a step (``max_batch_tokens``), which the
      paper does not have. A candidate is admitted only if its whole prompt fits the budget left
      after one decode token per running request; prompts longer than the whole budget are
      rejected (no chunked prefill, as in the paper).
    * KV accounting is slo_opt's: a request holds ``prompt + generated - 1`` tokens (the KV of
      the last output token is never computed), in blocks of ``kv_block_tokens``; the paper's
      ``s_i + j`` is one token more. The peak argument is unchanged.
    * Time is counted in steps, not seconds: the projection assumes each running request
      decodes in every step, which the admission rule guarantees (the batch never exceeds the
      token budget), so it holds on any engine model.
    * Requests whose predicted peak (``prompt + o~ - 1`` tokens) exceeds the whole KV cache can
      never be admitted and are rejected (the paper assumes ``M >= max_i (s_i + o~_i)``).
    * Stop-or-skip: the description we worked from adds requests "while" the projected memory
      stays feasible; we stop at the first misfit by default (strict shortest-first) and offer
      ``backfill=True`` for the skipping reading.
    * Predictions are the true lengths scaled by ``overestimate`` (deterministic); the paper's
      experiments use predicted lengths, its competitive-ratio analysis (all arrivals at time
      0, equal prompts, ``o~`` in ``[o, alpha o]``, ``M >= 2 max(s + o~)``) gives MC-SF a
      constant ratio; with arbitrary arrivals no deterministic online algorithm has one (the
      paper's ``Omega(sqrt(n))`` lower bound).

    References
    ----------
    .. [1] P. Jaillet, J. Jiang, K. Mellou, M. Molinaro, C. Podimata, Z. Zhou, "Online
       Scheduling for LLM Inference with KV Cache Constraints", arXiv 2502.07115 (2025):
       the model and the hindsight-optimal integer program, the lower bound for deterministic
       online algorithms, and the MC-SF algorithm with its competitive analysis and its
       experiments (average MC-SF / hindsight optimum 1.005 with all arrivals at time 0,
       1.047 with Poisson arrivals, on synthetic instances of 40-60 requests).
    """

    name: ClassVar[str] = "mcsf"
    overestimate: float = 1.0
    max_batch_seqs: int = 256
    backfill: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.overestimate, bool) or not isinstance(self.overestimate, int | float) \
                or not (1.0 <= self.overestimate < math.inf):
            raise ValueError(f"overestimate must be a finite number >= 1, got {self.overestimate!r}")
        if isinstance(self.max_batch_seqs, bool) or not isinstance(self.max_batch_seqs, int) \
                or self.max_batch_seqs < 1:
            raise ValueError(f"max_batch_seqs must be an int >= 1, got {self.max_batch_seqs!r}")
        if not isinstance(self.backfill, bool):
            raise ValueError(f"backfill must be a bool, got {self.backfill!r}")

    def reset(self) -> None:
        """Stateless: nothing to clear."""

    def predicted_output(self, view: EngineView) -> np.ndarray:
        """``o~`` of every request (oracle lengths times ``overestimate``, rounded up)."""
        o = np.asarray(view.workload.output_tokens, np.int64)
        if self.overestimate == 1.0:
            return o
        return np.ceil(o * float(self.overestimate) - 1e-9).astype(np.int64)

    def plan(self, view: EngineView) -> StepPlan:
        """Decode every running request, then admit shortest predicted outputs while they fit."""
        b = view.kv_block_tokens
        pred = self.predicted_output(view)
        P = view.workload.prompt_tokens
        running = np.asarray(view.running, np.int64)
        plan = {int(r): int(view.next_tokens(int(r))) for r in running}
        budget = view.max_batch_tokens - sum(plan.values())
        held = int(sum(view.blocks_held(int(r)) for r in running))
        held += int(sum(view.blocks_held(int(r)) for r in view.swapped))
        capacity = view.kv_free_blocks + held
        ids, reject = drop_too_long(view, view.waiting, view.max_batch_tokens)
        if ids.size:
            peak = -(-(P[ids] + pred[ids] - 1) // b)
            too_big = peak > capacity
            if too_big.any():
                reject |= set(ids[too_big].tolist())
                ids = ids[~too_big]
        # projected use: running requests (computed c, remaining predicted steps r)
        c = [int(view.num_computed[r]) for r in running]
        rem = [max(1, int(pred[r] - view.num_generated[r])) for r in running]
        order = sorted(ids.tolist(), key=lambda r: (int(pred[r]), r))
        for r in order:
            if len(plan) >= self.max_batch_seqs:
                break
            p = int(P[r])
            ok = p <= budget and peak_fits(np.array(c + [p - 1]), np.array(rem + [int(pred[r])]),
                                           capacity, b)
            if not ok:
                if self.backfill:
                    continue
                break
            plan[int(r)] = p
            budget -= p
            c.append(p - 1)
            rem.append(int(pred[r]))
        if not plan:
            return StepPlan.idle() if not reject else StepPlan({}, reject=frozenset(reject))
        quiet = len(ids) == 0 and not reject
        pure = all(view.next_tokens(r) == 1 and view.num_generated[r] >= 1 for r in plan)
        return StepPlan(plan, reject=frozenset(reject),
                        repeat_until_s=math.inf if quiet and pure else -math.inf,
                        decode_all_until_s=math.inf)
