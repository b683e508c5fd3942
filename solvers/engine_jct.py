"""A proven lower bound on the mean JCT of any schedule on an engine model (batched or not).

Two independent arguments, each a valid bound on its own; the result is the larger:

1. *Isolation.* A request's JCT is at least its minimum inference time
   (:func:`~slo_opt.solvers.engine_bounds.min_inference_s`): its prefill and ``O - 1`` decode
   steps run one after another and each costs at least a single-sequence step.
2. *Single fast machine.* For a step plane ``T >= a_p P + a_d D + a_c C``
   (:func:`~slo_opt.solvers.engine_bounds.step_planes`, batches of at most ``max_seqs``
   decodes), spread each step's plane work uniformly over the step: the engine then processes
   plane work at rate <= 1, each request's work ``w_i``
   (:func:`~slo_opt.solvers.engine_bounds.request_work_s`) lies between its arrival and its
   completion, so the schedule is a preemptive (processor-sharing allowed) schedule of jobs
   ``(r_i = arrival_i, p_i = w_i)`` on one unit-speed machine whose completions are no later than
   the real ones. Preemptive SRPT minimises the total completion time there (Schrage 1968;
   processor sharing is dominated), so its mean flow time is a lower bound.

Valid for every scheduler whose batches hold at most ``max_seqs`` decode sequences (recompute
preemption and swaps only add work or time), on the engine it was computed for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo_opt.request import Workload
from slo_opt.solvers.engine_bounds import (
    min_inference_s,
    request_work_s,
    step_planes,
)
from slo_opt.solvers.jct_bounds import srpt_mean_jct

__all__ = ["EngineJCTBound", "engine_mean_jct_bound"]


@dataclass(frozen=True)
class EngineJCTBound:
    """Outcome of :func:`engine_mean_jct_bound` (seconds)."""

    value_s: float  #: the bound: max of the two below
    isolation_s: float  #: mean minimum inference time
    srpt_s: float  #: best single-machine SRPT bound over the step planes
    binding: str  #: "isolation" or the plane label that gives the bound
    valid_for: str  #: engine name and the batch cap


def engine_mean_jct_bound(workload: Workload, engine: object, max_seqs: int) -> EngineJCTBound:
    """Lower bound on the mean JCT (completion - arrival) of ``workload`` on ``engine``.

    Parameters
    ----------
    workload : Workload
    engine : EngineModel
        Linear, roofline, table or slot engine (others raise ``TypeError``).
    max_seqs : int
        Largest number of decode sequences any step may hold (the schedulers' batch cap).
    """
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    if len(workload) == 0:
        raise ValueError("empty workload")
    p, o = workload.prompt_tokens, workload.output_tokens
    iso = float(np.mean(min_inference_s(engine, p, o)))
    best, label = 0.0, "isolation"
    arr = np.asarray(workload.arrival_s, float)
    for pl in step_planes(engine, max_seqs):
        w = request_work_s(pl, p, o)
        w = np.maximum(w, 1e-12)
        v = srpt_mean_jct(arr, w)
        if v > best:
            best, label = v, pl.label
    value = max(iso, best)
    return EngineJCTBound(value, iso, best, "isolation" if iso >= best else label,
                          f"{getattr(engine, 'name', type(engine).__name__)}, <= {max_seqs} "
                          "decode sequences per step")
