"""Real-length instances: trace requests at their real lengths on a slotted engine whose slot is
one real iteration of a calibrated engine (issue 14).

:func:`slot_engine_for` turns a calibrated :class:`~slo_opt.models.linear.LinearEngineModel`
into a :class:`~slo_opt.models.slot.SlotEngine` with budget ``B`` tokens per slot and slot
length = the longest step the linear engine can take for any batch of at most ``B`` tokens
(prefill + decode), decode context at most the KV capacity ``M`` and per-request context at most
``max_context_tokens``. Every schedule of that slotted engine therefore runs on the linear
engine with every step finishing no later than its slot ends, so its attainment is *achievable*
on the linear engine (slotted optimum <= linear optimum: a primal, never a bound of the linear
engine). Bounds of the linear engine come from
:func:`~slo_opt.solvers.lagrangian.time_lagrangian_bound`.

:func:`real_length_workload`: the first ``n`` requests of a trace (Azure conv/code 2023,
Mooncake), arrivals rescaled so the offered token rate is ``load`` x the slotted engine's token
capacity ``B / step_s``, one SLO for all.

Derivation of the slot length (linear model, ``p`` prefill and ``b`` decode tokens,
``p + b <= B``, ``q <= p L``, ``C <= M``)::

    T = c0 + c_p p + c_q q + c_d b + c_ctx C + c_k max(0, p + b - knee)
      <= c0 + max(c_p B + c_q B L, c_d B) + c_ctx M + c_k max(0, B - knee)

(linear in ``p`` for ``b = B - p``, so the maximum is at an end point).
"""

from __future__ import annotations

import math

import numpy as np

from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload

__all__ = ["real_length_workload", "slot_engine_for", "slot_step_s"]


def slot_step_s(engine: object, max_batch_tokens: int, max_context_tokens: int) -> float:
    """Longest step of ``engine`` over batches of ``<= max_batch_tokens`` tokens (docstring)."""
    from slo_opt.models.linear import LinearEngineModel

    if not isinstance(engine, LinearEngineModel):
        raise TypeError(f"slot_engine_for needs a LinearEngineModel, got {type(engine).__name__}")
    B = int(max_batch_tokens)
    L = int(max_context_tokens)
    if B < 1 or L < 1:
        raise ValueError(f"max_batch_tokens and max_context_tokens must be >= 1, got {B}, {L}")
    e = engine
    return float(e.c0_s + max(e.c_prefill_s * B + e.c_prefill_sq_s * B * L, e.c_decode_s * B)
                 + e.c_ctx_s * e.kv_capacity_tokens + e.c_knee_s * max(0, B - e.knee_tokens))


def slot_engine_for(engine: object, max_batch_tokens: int = 2048,
                    max_context_tokens: int | None = None) -> SlotEngine:
    """The slotted engine whose slot is one real iteration of ``engine`` (module docstring).

    Parameters
    ----------
    engine : LinearEngineModel
        The calibrated engine (e.g. ``catalog.get_engine("h100/llama-3.1-8b")``).
    max_batch_tokens : int
        Slot budget ``B``.
    max_context_tokens : int, optional
        Longest request (prompt + output) the slot must cover; default the KV capacity.
    """
    M = int(engine.kv_capacity_tokens)  # type: ignore[attr-defined]
    L = M if max_context_tokens is None else min(int(max_context_tokens), M)
    step = slot_step_s(engine, max_batch_tokens, L)
    return SlotEngine(step_s=step, max_batch_tokens=int(max_batch_tokens), kv_capacity_tokens=M,
                      kv_block_tokens=1, name=f"slot[{getattr(engine, 'name', 'engine')}]")


def real_length_workload(trace: Workload, n: int, load: float, engine: SlotEngine, *,
                         ttft_slo_s: float = 2.0, tpot_slo_s: float = 0.2,
                         e2e_slo_s: float = math.inf, start: int = 0) -> Workload:
    """Requests ``start .. start+n-1`` of ``trace`` at real lengths, at ``load`` x capacity.

    Arrivals are shifted to start at 0 and scaled so that (total tokens) / (last arrival) =
    ``load x max_batch_tokens / step_s``; the request order and relative gaps are the trace's.
    """
    if not isinstance(trace, Workload):
        raise TypeError(f"trace must be a Workload, got {type(trace).__name__}")
    if n < 1 or start < 0 or start + n > len(trace):
        raise ValueError(f"need 1 <= n and start + n <= {len(trace)} requests, got n={n}, "
                         f"start={start}")
    if not (load > 0 and math.isfinite(load)):
        raise ValueError(f"load must be finite and > 0, got {load}")
    w = trace.subset(np.arange(start, start + n))
    a = np.asarray(w.arrival_s, float)
    a = a - a.min()
    span = float(a.max())
    cap = float(engine.max_batch_tokens) / float(engine.step_s)
    tokens = float(np.sum(w.work_tokens))
    if span > 0:
        a = a * (tokens / (load * cap)) / span
    return w.replace(arrival_s=a, ttft_slo_s=np.full(n, float(ttft_slo_s)),
                     tpot_slo_s=np.full(n, float(tpot_slo_s)),
                     e2e_slo_s=np.full(n, float(e2e_slo_s)),
                     name=f"{trace.name}[{start}:{start + n}]-load{load:g}")
