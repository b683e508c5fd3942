"""Shortest-job-first: oracle ``sjf`` and speculative ``ssjf`` (SSJF, AIOps'24).

Both reuse :class:`~slo_opt.schedulers.fcfs.FCFS` (no / dynamic / continuous batching) and
override only :meth:`order`, the one-line policy difference: waiting requests are served by
(predicted) output length instead of arrival, with SSJF's starvation guard.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.request import Workload
from slo_opt.schedulers.base import EngineView, StepPlan, register
from slo_opt.schedulers.fastserve import step_start_s
from slo_opt.schedulers.fcfs import FCFS
from slo_opt.workloads.predictors import ConfusionMatrixPredictor, Predictor

__all__ = ["SJF", "SSJF", "ShortestFirst", "exec_time_estimate_s"]

#: SSJF's starvation thresholds: ``SJF_STARVATION_WAITING_TIME_THRES = 100`` s and
#: ``SJF_STARVATION_WAITING_TIME_COEFFICIENT = 10`` (``model-serving/util.py`` of
#: James-QiuHaoran/LLM-serving-with-proxy-models @4b866866; research/papers.md 3.5).
SSJF_STARVATION_THRESHOLD_S = 100.0
SSJF_STARVATION_FACTOR = 10.0


def exec_time_estimate_s(engine: object, workload: Workload, output_tokens: np.ndarray) -> np.ndarray:
    """Unbatched execution time of each request on ``engine`` given its output length.

    One prefill step of the whole prompt plus ``output - 1`` single-sequence decode steps at the
    mid-generation context (the engine models here are affine in context, so this is exact up to
    the linear term for :class:`~slo_opt.models.linear.LinearEngineModel`).
    """
    p = workload.prompt_tokens
    out = np.maximum(np.asarray(output_tokens, float), 1.0)
    step = engine.step_time_s  # type: ignore[attr-defined]
    pre = np.array([step(BatchShape(prefill_tokens=int(x), prefill_seqs=1,
                                    prefill_context_tokens=int(x))) for x in p.tolist()])
    mid = (p + out / 2).astype(np.int64)
    dec = np.array([step(BatchShape(decode_seqs=1, decode_context_tokens=int(c)))
                    for c in mid.tolist()])
    return pre + (out - 1) * dec


@dataclass
class ShortestFirst(FCFS):
    """Common part of SJF and SSJF: length-keyed order plus SSJF's starvation guard.

    Parameters
    ----------
    starvation_threshold_s : float
        Guard T: when the longest-waiting request has waited more than this, the queue is served
        by waiting time (SSJF code: 100 s). ``inf`` disables.
    starvation_factor : float
        Guard k: ... or more than ``k`` times its (predicted) execution time (SSJF code: 10).
    exec_const_s, exec_per_token_s : float or None
        Execution-time model ``const + per_token * output_tokens`` used by the guard (SSJF's
        0.1 s + 0.02 s/token in the faithful reproduction). ``None``: estimate from the engine
        (:func:`exec_time_estimate_s`).

    Notes
    -----
    The guard looks at the single longest-waiting request, as the authors' ``sjf.py``; waiting
    time is measured from arrival (the authors' ``curr_waiting_time`` is bumped only at batch
    boundaries). Ties in the length key are broken by arrival (Python's stable sort in the
    authors' code).
    """

    starvation_threshold_s: float = SSJF_STARVATION_THRESHOLD_S
    starvation_factor: float = SSJF_STARVATION_FACTOR
    exec_const_s: float | None = None
    exec_per_token_s: float | None = None
    _exec_cache: tuple[Workload, np.ndarray] | None = field(default=None, init=False, repr=False,
                                                           compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.starvation_threshold_s > 0 or not self.starvation_factor > 0:
            raise ValueError("starvation_threshold_s and starvation_factor must be > 0")
        if (self.exec_const_s is None) != (self.exec_per_token_s is None):
            raise ValueError("give both exec_const_s and exec_per_token_s, or neither")
        if self.exec_const_s is not None and not (self.exec_const_s >= 0
                                                  and self.exec_per_token_s > 0):  # type: ignore[operator]
            raise ValueError("exec_const_s must be >= 0 and exec_per_token_s > 0")

    # -- hooks -------------------------------------------------------------------------------
    def key_tokens(self, view: EngineView) -> np.ndarray:
        """Per-request sort key in tokens (smaller first)."""
        raise NotImplementedError

    def guard_tokens(self, view: EngineView) -> np.ndarray:
        """Per-request (predicted) output length used by the starvation guard."""
        raise NotImplementedError

    def ready_s(self, view: EngineView) -> np.ndarray:
        """Time each request becomes admissible (arrival, plus predictor latency for SSJF)."""
        return view.workload.arrival_s

    # -- policy ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the static batch and cached estimates."""
        super().reset()
        self._exec_cache = None

    def _guard_exec_s(self, view: EngineView) -> np.ndarray:
        w = view.workload
        c = self._exec_cache
        if c is not None and c[0] is w:
            return c[1]
        g = self.guard_tokens(view)
        if self.exec_const_s is not None:
            est = self.exec_const_s + self.exec_per_token_s * g  # type: ignore[operator]
        else:
            est = exec_time_estimate_s(view.engine, w, g)
        self._exec_cache = (w, est)
        return est

    def _ready(self, view: EngineView) -> list[int]:
        ready = self.ready_s(view)
        t = max(view.now_s, step_start_s(view))
        return [int(r) for r in view.waiting if ready[r] <= t]

    def _guard_time_s(self, view: EngineView, oldest: int) -> float:
        """Time at which the guard fires for ``oldest`` (arrival + min(T, k x exec))."""
        est = float(self._guard_exec_s(view)[oldest])
        return float(view.workload.arrival_s[oldest]) + min(self.starvation_threshold_s,
                                                            self.starvation_factor * est)

    def order(self, view: EngineView) -> list[int]:
        """Ready waiting requests, shortest (predicted) first unless the guard fires."""
        ready = self._ready(view)
        if not ready:
            return []
        oldest = ready[0]  # view.waiting is in arrival order
        if step_start_s(view) > self._guard_time_s(view, oldest):
            return ready  # serve by waiting time (arrival order)
        key = self.key_tokens(view)
        return sorted(ready, key=lambda r: (key[r], r))

    def plan(self, view: EngineView) -> StepPlan:
        """FCFS's plan with SJF's order; waits for predictions; caps the fast-forward promise."""
        plan = super().plan(view)
        ready = self.ready_s(view)
        t = step_start_s(view)
        pending = [float(ready[r]) for r in view.waiting if ready[r] > max(view.now_s, t)]
        nxt = min(pending, default=math.inf)
        r = self._ready(view)
        if r:
            g = self._guard_time_s(view, r[0])
            if g >= t:
                nxt = min(nxt, math.nextafter(g, math.inf))
        changes: dict[str, float] = {}
        if plan.repeat_until_s > nxt:
            changes["repeat_until_s"] = nxt
        if not plan.tokens and math.isfinite(nxt) and pending:
            w = plan.wait_until_s
            changes["wait_until_s"] = min(min(pending), w if w is not None else math.inf)
        return dataclasses.replace(plan, **changes) if changes else plan  # type: ignore[arg-type]


@register
@dataclass
class SJF(ShortestFirst):
    """Oracle shortest-job-first: the key is the true remaining output length.

    The upper reference of SSJF (research/papers.md 3.5): same batching modes and starvation
    guard, with oracle lengths (which the guard also uses).
    """

    name: ClassVar[str] = "sjf"

    def key_tokens(self, view: EngineView) -> np.ndarray:
        """True remaining output tokens (oracle)."""
        return view.workload.output_tokens - view.num_generated

    def guard_tokens(self, view: EngineView) -> np.ndarray:
        """True output length (oracle)."""
        return view.workload.output_tokens.astype(float)


@register
@dataclass
class SSJF(ShortestFirst):
    """Speculative shortest-job-first (Qiu et al., AIOps'24, arXiv:2404.08509).

    Parameters
    ----------
    predictor : Predictor
        Output-length predictor; default SSJF's vicuna-13b confusion-matrix classifier with seed
        0 (:class:`~slo_opt.workloads.predictors.ConfusionMatrixPredictor`). Its ``latency_s`` delays
        admission. Predictions are drawn once per run (``reset`` re-seeds).
    requeue_key : {"original", "remaining"}
        Key of a request that was preempted and re-queued: its original prediction (authors'
        code) or the prediction minus the tokens already generated.

    Notes
    -----
    Deviation: the starvation guard's ``k x exec time`` uses the *predicted* time; the authors'
    ``sjf.py`` uses the true execution time, an oracle leak (research/papers.md 6.4, decision 26).
    The authors' FCFS waits for future arrivals in batching modes; our FCFS and SSJF are equally
    work-conserving (the asymmetry is reproduced only in ``experiments/ssjf.py --mode faithful``).
    """

    name: ClassVar[str] = "ssjf"
    predictor: Predictor = field(default_factory=lambda: ConfusionMatrixPredictor(seed=0))
    requeue_key: Literal["original", "remaining"] = "original"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.predictor, Predictor):
            raise TypeError(f"predictor must be a slo_opt.workloads.predictors.Predictor, got {self.predictor!r}")
        if self.requeue_key not in ("original", "remaining"):
            raise ValueError("requeue_key must be 'original' or 'remaining'")

    def reset(self) -> None:
        """Also re-seed the predictor."""
        super().reset()
        self.predictor.reset()

    def ready_s(self, view: EngineView) -> np.ndarray:
        """Arrival plus predictor latency."""
        return self.predictor.ready_s(view.workload)

    def key_tokens(self, view: EngineView) -> np.ndarray:
        """Predicted output tokens (minus generated ones with ``requeue_key='remaining'``)."""
        p = self.predictor.predict_tokens(view.workload)
        if self.requeue_key == "remaining":
            return np.maximum(p - view.num_generated, 1.0)
        return p

    def guard_tokens(self, view: EngineView) -> np.ndarray:
        """Predicted output tokens."""
        return self.predictor.predict_tokens(view.workload)
