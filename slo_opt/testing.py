"""Public testing API: hypothesis strategies and a scheduler conformance check.

Use it to property-test your own scheduler against ours and against the optimum::

    from hypothesis import given
    from slo_opt.testing import workloads, slot_engines, check_conformance

    @given(workloads(), slot_engines())
    def test_my_policy(workload, engine):
        check_conformance(lambda: MyPolicy(), workload, engine)

Strategies are valid by construction (no ``assume``) and keep instances tiny so that the offline
MILPs solve in milliseconds. ``linear_engines()`` gives context-dependent step times, the
harder test of a fast-forward promise (``repeat_until_s``, ``decode_all_until_s``,
``admit_all``). Requires ``hypothesis`` (the ``test`` extra).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from slo_opt.checks import violations
from slo_opt.engine import EngineModel
from slo_opt.metrics import summary
from slo_opt.models.linear import LinearEngineModel
from slo_opt.models.slot import SlotEngine
from slo_opt.request import SLO, Request, Workload
from slo_opt.schedule import EventKind, Schedule
from slo_opt.sim.simulator import simulate

__all__ = [
    "ConformanceError",
    "WorstCase",
    "check_conformance",
    "evaluate_gap",
    "linear_engines",
    "save_worst_case",
    "slos",
    "slot_engines",
    "verify_worst_case",
    "workloads",
    "worst_case",
    "worst_case_instances",
]


@st.composite
def slos(draw: Any, *, allow_inf: bool = True) -> SLO:
    """SLOs with TTFT in [0.05, 5] s, TPOT in [0.01, 1] s, e2e in [0.5, 20] s (or none)."""
    inf = st.just(math.inf) if allow_inf else st.nothing()
    ttft = draw(st.one_of(st.floats(0.05, 5.0), inf))
    tpot = draw(st.one_of(st.floats(0.01, 1.0), inf))
    e2e = draw(st.one_of(st.floats(0.5, 20.0), inf))
    return SLO(ttft_s=ttft, tpot_s=tpot, e2e_s=e2e)


@st.composite
def workloads(draw: Any, *, max_requests: int = 6, max_prompt: int = 48, max_output: int = 8,
              max_gap_s: float = 0.5, min_requests: int = 1) -> Workload:
    """Small workloads: sorted arrivals, positive lengths, random SLOs and utilities."""
    n = draw(st.integers(min_requests, max_requests))
    gaps = draw(st.lists(st.floats(0.0, max_gap_s, allow_nan=False), min_size=n, max_size=n))
    arrivals = np.cumsum(gaps)
    reqs = []
    for i, a in enumerate(arrivals):
        reqs.append(Request(
            id=i,
            arrival_s=float(a),
            prompt_tokens=draw(st.integers(1, max_prompt)),
            output_tokens=draw(st.integers(1, max_output)),
            slo=draw(slos()),
            utility=draw(st.sampled_from([1.0, 1.0, 10.0, 100.0])),
            class_label=draw(st.sampled_from(["rt", "nrt"])),
        ))
    return Workload(reqs)


@st.composite
def slot_engines(draw: Any, *, min_batch_tokens: int = 8, max_batch_tokens: int = 64,
                 block_tokens: tuple[int, ...] = (1, 4, 16)) -> SlotEngine:
    """Slotted engines with a small token budget and KV capacity (some requests may not fit)."""
    b = draw(st.sampled_from(block_tokens))
    blocks = draw(st.integers(max(1, 16 // b), max(2, 512 // b)))
    return SlotEngine(
        step_s=draw(st.sampled_from([0.02, 0.05, 0.1])),
        max_batch_tokens=draw(st.integers(min_batch_tokens, max_batch_tokens)),
        kv_capacity_tokens=blocks * b,
        kv_block_tokens=b,
    )


@st.composite
def linear_engines(draw: Any, *, kv_tokens: tuple[int, int] = (64, 1024),
                   max_batch_tokens: tuple[int, int] = (16, 256),
                   nonlinear: bool = False) -> LinearEngineModel:
    """Linear engines whose step time grows with the context, with a small paged KV cache.

    For fast-forward tests (vectorised step-time sums, exact float equality with stepping):
    ``kv_tokens`` bounds the cache, ``max_batch_tokens`` the token cap; ``nonlinear`` also
    draws the quadratic prefill term and the knee hinge.
    """
    b = draw(st.sampled_from([1, 4, 16]))
    blocks = draw(st.integers(max(2, kv_tokens[0] // b), max(4, kv_tokens[1] // b)))
    extra = {}
    if nonlinear:
        extra = {"c_prefill_sq_s": draw(st.sampled_from([0.0, 2e-7])),
                 "c_knee_s": draw(st.sampled_from([0.0, 5e-5])),
                 "knee_tokens": draw(st.sampled_from([0, 8, 48]))}
    return LinearEngineModel(
        name="lin",
        c0_s=draw(st.sampled_from([0.005, 0.01, 0.0123])),
        c_prefill_s=draw(st.sampled_from([0.0, 1e-4, 3.3e-4])),
        c_decode_s=draw(st.sampled_from([0.0, 2e-4])),
        c_ctx_s=draw(st.sampled_from([0.0, 1e-6, 7.7e-6])),
        kv_capacity_tokens=blocks * b,
        kv_block_tokens=b,
        max_batch_tokens=draw(st.integers(*max_batch_tokens)),
        **extra,
    )


class ConformanceError(AssertionError):
    """A scheduler broke a conformance property (the message says which)."""


def check_conformance(
    scheduler: Any | Callable[[], Any],
    workload: Workload,
    engine: EngineModel,
    *,
    check_fast_forward: bool = True,
) -> Schedule:
    """Run a scheduler through every conformance property; raise on the first failure.

    Properties: (1) the simulated schedule is feasible (:func:`slo_opt.checks.violations` is
    empty: budget, KV, arrivals, token accounting, nothing after completion); (2) every request
    is finished or explicitly rejected, and a request is rejected only if it is not finished;
    (3) token conservation: each finished request's allocations equal ``work_tokens`` plus the
    tokens dropped by its recompute preemptions; (4) determinism: a second run of a fresh copy
    gives an equal schedule; (5) fast-forward gives the same schedule as stepping one iteration
    at a time.

    Parameters
    ----------
    scheduler : Scheduler or callable returning one
        Copied (``copy.deepcopy``) before each run, so stateful policies start fresh.

    Returns
    -------
    Schedule
        The (fast-forward) schedule, for further checks.
    """
    def fresh() -> Any:
        return scheduler() if callable(scheduler) and not hasattr(scheduler, "plan") \
            else copy.deepcopy(scheduler)

    name = getattr(fresh(), "name", "?")
    s1 = simulate(workload, engine, fresh(), fast_forward=True, max_steps=_step_cap(workload))
    v = violations(s1, workload, engine)
    if v:
        raise ConformanceError(f"{name}: infeasible schedule: {v[:5]}")
    fin = s1.finish_step >= 0
    if not np.all(fin | s1.rejected):
        ids = np.flatnonzero(~(fin | s1.rejected))[:10].tolist()
        raise ConformanceError(f"{name}: requests {ids} neither finished nor rejected")
    if np.any(fin & s1.rejected):
        raise ConformanceError(f"{name}: requests both finished and rejected")
    got = s1.allocs.tokens_per_request(len(workload))
    ev = s1.events
    recompute = np.bincount(ev.request[ev.kind == EventKind.PREEMPT_RECOMPUTE],
                            weights=ev.tokens[ev.kind == EventKind.PREEMPT_RECOMPUTE],
                            minlength=len(workload)).astype(np.int64)
    want = workload.work_tokens + recompute
    bad = fin & (got != want)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConformanceError(
            f"{name}: request {i} computed {int(got[i])} tokens, expected {int(want[i])}")
    s2 = simulate(workload, engine, fresh(), fast_forward=True, max_steps=_step_cap(workload))
    if s1 != s2:
        raise ConformanceError(f"{name}: two runs with the same inputs differ (non-deterministic)")
    if check_fast_forward:
        s3 = simulate(workload, engine, fresh(), fast_forward=False, max_steps=_step_cap(workload))
        if s1 != s3:
            raise ConformanceError(
                f"{name}: fast-forward changes the schedule (a wrong repeat_until_s promise): "
                f"{summary(s1, workload)['makespan_s']} vs {summary(s3, workload)['makespan_s']}")
    return s1


def _step_cap(workload: Workload) -> int:
    """A generous iteration cap that turns a livelock into an error instead of a hang."""
    w = workload
    return int(100 + 20 * (w.prompt_tokens.sum() + w.output_tokens.sum()))


# worst cases on demand (needs the solvers extra; imported last: it uses ConformanceError)
from slo_opt.worst_case import (  # noqa: E402
    WorstCase,
    evaluate_gap,
    save_worst_case,
    verify_worst_case,
    worst_case,
    worst_case_instances,
)
