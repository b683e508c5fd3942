"""Scaled-down instances for optimality-gap studies and solver benchmarks.

Lengths are scaled down as in research/optimization.md section 4 (prompt ~ U[16, 128], output ~
U[4, 16] by default) so that the exact MILP stays solvable; the engine is a ``SlotEngine`` with
step 50 ms, budget 256 tokens, KV 2048 tokens. ``load`` is the offered token load relative to
the engine's token capacity ``B / step_s``.
"""

from __future__ import annotations

import math

import numpy as np

from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload

__all__ = ["default_engine", "scale_trace", "scaled_workload"]


def default_engine(step_s: float = 0.05, max_batch_tokens: int = 256,
                   kv_capacity_tokens: int = 2048) -> SlotEngine:
    """The slotted engine of the gap study (token-exact KV)."""
    return SlotEngine(step_s=step_s, max_batch_tokens=max_batch_tokens,
                      kv_capacity_tokens=kv_capacity_tokens, kv_block_tokens=1)


def scaled_workload(n: int, load: float, rng: np.random.Generator, engine: SlotEngine, *,
                    prompt: tuple[int, int] = (16, 128), output: tuple[int, int] = (4, 16),
                    ttft_slots: tuple[float, float] = (4.0, 16.0), tpot_slots: float = 1.5,
                    e2e_slo_s: float = math.inf) -> Workload:
    """Poisson arrivals at ``load`` x token capacity; uniform lengths; per-request TTFT SLO.

    Parameters
    ----------
    n : int
        Requests.
    load : float
        Offered tokens per second / (``max_batch_tokens / step_s``) (> 0).
    rng : numpy.random.Generator
        Consumed in this order: lengths, arrivals, SLOs.
    ttft_slots, tpot_slots : TTFT SLO ~ U[ttft_slots] slots; TPOT SLO = ``tpot_slots`` slots.
    """
    if n < 0 or not load > 0:
        raise ValueError(f"n must be >= 0 and load > 0, got n={n}, load={load}")
    D, B = float(engine.step_s), int(engine.max_batch_tokens)
    P = rng.integers(prompt[0], prompt[1] + 1, size=n)
    O = rng.integers(output[0], output[1] + 1, size=n)
    mean_work = (prompt[0] + prompt[1]) / 2 + (output[0] + output[1]) / 2 - 1
    rate_per_s = load * (B / D) / mean_work
    arr = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n)) if n else np.zeros(0)
    arr = arr - arr[0] if n else arr
    ttft = rng.uniform(ttft_slots[0], ttft_slots[1], size=n) * D
    return Workload.from_arrays(arr, P, O, ttft_slo_s=ttft, tpot_slo_s=tpot_slots * D,
                                e2e_slo_s=e2e_slo_s, name=f"scaled-n{n}-load{load:g}")


def scale_trace(w: Workload, n: int, length_scale: float, *, ttft_slo_s: float | None = None,
                tpot_slo_s: float | None = None) -> Workload:
    """The first ``n`` requests of a trace with lengths multiplied by ``length_scale`` (>= 1)."""
    w = w.head(n)
    cols = w.columns()
    cols["prompt_tokens"] = np.maximum(1, np.round(w.prompt_tokens * length_scale)).astype(int)
    cols["output_tokens"] = np.maximum(1, np.round(w.output_tokens * length_scale)).astype(int)
    if ttft_slo_s is not None:
        cols["ttft_slo_s"] = np.full(len(w), ttft_slo_s)
    if tpot_slo_s is not None:
        cols["tpot_slo_s"] = np.full(len(w), tpot_slo_s)
    return Workload.from_arrays(name=f"{w.name}-x{length_scale:g}", **cols)
