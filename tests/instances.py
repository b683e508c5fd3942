"""Known-answer catalogue: hand-solved instances with the arithmetic in each docstring.

Every formulation and policy must reproduce these numbers (cvxpy's ``lp_1`` idiom, DESIGN.md
section 5). ``Known.heuristics`` maps a registered scheduler name to the attainment it must
reach on the same :class:`~slo_opt.models.slot.SlotEngine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload


@dataclass(frozen=True)
class Known:
    """An instance with its hand-computed optimum (attainment unless stated otherwise)."""

    workload: Workload
    engine: SlotEngine
    optimum: float
    heuristics: dict[str, float] = field(default_factory=dict)
    lp_bound: float | None = None
    num_slots: int | None = None


def three_requests_one_long() -> Known:
    """SlotEngine(step_s=1, max_batch_tokens=4, kv 64); all arrive at 0; TTFT <= 2 s only.

    r0: prompt 8, output 4; r1, r2: prompt 2, output 1. 12 prompt tokens need 3 slots, 8 fit
    by the end of slot 1 (TTFT <= 2 s means the first token in slot 0 or 1).
    Meeting r0 needs its 8 prompt tokens in slots 0-1, which fill both slots, so r1 and r2
    start in slot 2 (t = 3 s, miss): 1/3. Serving r1 + r2 in slot 0 (4 tokens, both at 1 s) and
    r0 in slots 1-2 (first token at 3 s, miss) gives 2/3; meeting all three needs 12 prompt
    tokens by the end of slot 1, but only 8 fit -> optimum 2/3.
    LP relaxation: r0's 8 tokens are needed by slot 1, r1/r2's 2 each by slot 1; budget
    8 tokens: 8 m0 + 2 m1 + 2 m2 <= 8 with m <= 1 gives max (m0+m1+m2)/3 at m1 = m2 = 1,
    m0 = 1/2: (2.5)/3 = 5/6.
    FCFS (continuous, no chunking) rejects r0 (prompt 8 > budget 4) and meets r1, r2: 2/3.
    vLLM / Sarathi (chunked, FCFS order) prefill r0 in slots 0-1 and r1, r2 in slot 2: 1/3.
    """
    w = Workload.from_arrays([0.0, 0.0, 0.0], [8, 2, 2], [4, 1, 1], ttft_slo_s=2.0)
    e = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=64)
    return Known(w, e, optimum=2 / 3, lp_bound=5 / 6,
                 heuristics={"fcfs": 2 / 3, "vllm": 1 / 3, "sarathi": 1 / 3})


def kv_forces_sequential() -> Known:
    """KV capacity 10 tokens; two requests prompt 4, output 3 (peak KV 6 each), arrive at 0.

    SlotEngine(step_s=1, max_batch_tokens=16). TTFT <= 1 s (first token in slot 0), TPOT and
    e2e unbounded. Both prefills in slot 0 hold 4 + 4 = 8 tokens. Running both decodes in
    lock-step needs 5 + 5 = 10 in slot 1 and 6 + 6 = 12 > 10 in slot 2, but a decode may
    stall: r0 decodes in slots 1, 2 (KV 5 + 4 = 9, 6 + 4 = 10) and finishes in slot 2, which
    frees its 6 tokens; r1 decodes in slots 3, 4. Both meet TTFT (1 s) -> optimum 1.
    """
    w = Workload.from_arrays([0.0, 0.0], [4, 4], [3, 3], ttft_slo_s=1.0)
    e = SlotEngine(step_s=1.0, max_batch_tokens=16, kv_capacity_tokens=10)
    return Known(w, e, optimum=1.0)


def kv_forces_sequential_tpot() -> Known:
    """As :func:`kv_forces_sequential` with TPOT <= 1.5 s: the optimum drops to 1/2.

    TPOT (f - s) / 2 <= 1.5 means finish slot f <= 3 (s = 0). Both need two decodes in slots
    1-3. Whoever decodes second-to-last pushes KV over 10: both decode in slot 1 (10), then
    any decode in slot 2 or 3 gives 6 + 5 = 11 > 10; r0 alone in slots 1, 2 (9, 10) leaves r1
    slots 3, 4 (f = 4 > 3); r0 in slot 1 and r1 in slot 2 (5 + 5 = 10) blocks slot 3
    (6 + 5 = 11). So at most one request meets -> optimum 1/2 (the LP relaxation says 1).
    """
    w = Workload.from_arrays([0.0, 0.0], [4, 4], [3, 3], ttft_slo_s=1.0, tpot_slo_s=1.5)
    e = SlotEngine(step_s=1.0, max_batch_tokens=16, kv_capacity_tokens=10)
    return Known(w, e, optimum=0.5, lp_bound=1.0)


def late_arrival_window() -> Known:
    """Arrival between slots: a = 0.5 s with step 1 s can first compute in slot 1.

    One request, prompt 3, output 2, TTFT <= 1.5 s: first token at the end of slot 1 = 2 s,
    TTFT = 1.5 s -> met (exactly at the target); with TTFT <= 1.4 s it is missed. Optimum 1.
    """
    w = Workload.from_arrays([0.5], [3], [2], ttft_slo_s=1.5)
    e = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=16)
    return Known(w, e, optimum=1.0)


def horizon_too_short() -> Known:
    """Two slots of horizon for a request needing three (prompt 8, budget 4, output 2).

    Prefill takes slots 0-1, the decode slot 2 is outside ``num_slots = 2``: attainment 0
    (and ``must_serve=True`` is INFEASIBLE).
    """
    w = Workload.from_arrays([0.0], [8], [2])
    e = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=16)
    return Known(w, e, optimum=0.0, num_slots=2)


ALL = [three_requests_one_long, kv_forces_sequential, kv_forces_sequential_tpot,
       late_arrival_window, horizon_too_short]

__all__ = ["ALL", "Known", *[f.__name__ for f in ALL]]
