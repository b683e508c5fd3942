"""Least-slack-first admission with optional preemption (an SLO-aware baseline)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.schedulers.base import EngineView, StepPlan, register
from slo_opt.schedulers.fastserve import step_start_s
from slo_opt.schedulers.fcfs import FCFS
from slo_opt.workloads.predictors import Oracle, Predictor

__all__ = ["LeastSlack"]


@register
@dataclass
class LeastSlack(FCFS):
    """Least slack first: ``slack = deadline - now - predicted remaining time``.

    The deadline of a request is ``arrival + min(e2e_slo, ttft_slo + tpot_slo * (L - 1))`` with
    ``L`` its predicted output length (the latest finish that meets all its SLOs); the remaining
    time is its remaining prefill (one unbatched step of the prompt, if not computed) plus its
    predicted remaining decode steps at the engine's single-sequence step time.

    Parameters
    ----------
    predictor : Predictor
        Output-length predictor (default :class:`~slo_opt.workloads.predictors.Oracle`: oracle knowledge).
    preemption : bool
        Continuous batching only: when the least-slack waiting request has less slack (by more
        than ``preempt_margin_s``) than the most-slack running one, that running request is
        preempted (recompute) to make room; at most one per step.
    preempt_margin_s : float
        Hysteresis of the preemption test.
    max_preemptions : int
        A request is preempted at most this many times (guarantees progress).

    Notes
    -----
    Other parameters as :class:`~slo_opt.schedulers.fcfs.FCFS`. Without preemption the waiting
    order does not change with time (every slack shifts by the same ``now``), so FCFS's
    fast-forward promise stays valid; with preemption no promise is made while requests wait.
    """

    name: ClassVar[str] = "least_slack"
    predictor: Predictor = field(default_factory=Oracle)
    preemption: bool = False
    preempt_margin_s: float = 0.0
    max_preemptions: int = 1
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.predictor, Predictor):
            raise TypeError("predictor must be a slo_opt.workloads.predictors.Predictor")
        if not self.preempt_margin_s >= 0 or self.max_preemptions < 0:
            raise ValueError("preempt_margin_s and max_preemptions must be >= 0")

    def reset(self) -> None:
        """Forget the static batch, estimates and preemption counts."""
        super().reset()
        self.predictor.reset()
        self._cache = {}

    def _est(self, view: EngineView) -> dict[str, Any]:
        c = self._cache
        w = view.workload
        if c.get("w") is not w:
            step = view.engine.step_time_s
            p = w.prompt_tokens
            pred = self.predictor.predict_tokens(w)
            pre = np.array([step(BatchShape(prefill_tokens=int(x), prefill_seqs=1,
                                            prefill_context_tokens=int(x))) for x in p.tolist()])
            dec = np.array([step(BatchShape(decode_seqs=1, decode_context_tokens=int(x)))
                            for x in (p + pred / 2).astype(np.int64).tolist()])
            tpot_part = np.where(pred > 1, w.tpot_slo_s * np.maximum(pred - 1, 1), 0.0)
            dl = w.arrival_s + np.minimum(w.e2e_slo_s, w.ttft_slo_s + tpot_part)
            c.clear()
            c.update(w=w, pred=pred, pre=pre, dec=dec, deadline=dl,
                     count=np.zeros(len(w), np.int64))
        return c

    def slack_s(self, view: EngineView, rid: int) -> float:
        """Slack of ``rid`` at the start of this step (``inf`` without SLOs)."""
        c = self._est(view)
        gen = int(view.num_generated[rid])
        started = view.num_computed[rid] >= view.workload.prompt_tokens[rid]
        rem = (0.0 if started else c["pre"][rid]) + max(c["pred"][rid] - gen, 1.0) * c["dec"][rid]
        return float(c["deadline"][rid] - step_start_s(view) - rem)

    def order(self, view: EngineView) -> list[int]:
        """Waiting requests by slack (least first), then arrival."""
        return sorted((int(r) for r in view.waiting), key=lambda r: (self.slack_s(view, r), r))

    def plan(self, view: EngineView) -> StepPlan:
        """FCFS's plan in slack order, plus the optional one-victim preemption."""
        plan = super().plan(view)
        if not (self.preemption and self.batching == "continuous") or plan.preempt:
            return plan
        left = [r for r in self.order(view) if r not in plan.tokens and r not in plan.reject]
        if not left:
            return plan
        c = self._est(view)
        cands = [r for r in plan.tokens if int(r) in set(map(int, view.running))
                 and c["count"][r] < self.max_preemptions]
        change: dict[str, Any] = {"repeat_until_s": -math.inf}
        if cands:
            v = max(cands, key=lambda r: (self.slack_s(view, r), r))
            if self.slack_s(view, left[0]) + self.preempt_margin_s < self.slack_s(view, v):
                c["count"][v] += 1
                toks = {r: t for r, t in plan.tokens.items() if r != v}
                change.update(tokens=toks, preempt=frozenset({v}))
        return dataclasses.replace(plan, **change)
