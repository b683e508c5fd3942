"""Lower bounds on engine step times, valid for every batch a simulator can build.

The bounds below turn an :class:`~slo_opt.engine.EngineModel` into *work* that any schedule on
that engine must spend, so that capacity arguments ("the work done in an interval is at most
its length") give proven bounds on SLO attainment and mean JCT for schedules on the engine
itself (variable step times), not only on the slotted engine:

* :func:`step_planes`: linear lower planes ``T(batch) >= a_p P + a_d D + a_c C`` over every
  batch with ``D <= max_seqs`` decode sequences (``P`` prefill tokens, ``C`` decode context
  tokens). A per-step constant (the weight read, kernel overhead) is amortised over at most
  ``max_seqs`` decode sequences.
* :func:`decode_step_floor_s`: a lower bound on the time of any step with exactly ``k`` decode
  sequences (whatever else it computes).
* :func:`request_work_s`: the work a request brings to a plane: ``a_p P + a_d (O - 1) +
  a_c sum_k (P + k)`` (its ``O - 1`` decode steps attend ``P + 1 .. P + O - 1`` tokens, the
  simulator's convention; recomputation and swaps only add work).
* :func:`min_inference_s`: a lower bound on one request's inference time (first step start to
  last token) under any schedule: one prefill step plus ``O - 1`` decode steps, each at least a
  single-sequence step.

Derivations (every coefficient is >= 0; each term dropped below is >= 0):

* :class:`~slo_opt.models.linear.LinearEngineModel`:
  ``T = c0 + c_p P + c_q Q + c_d D + c_c C + c_k max(0, P + D - knee)``
  ``>= c_p P + (c_d + c0 / K) D + c_c C`` (``D <= K``), and, where ``c0 >= c_k knee``,
  ``>= (c_p + c_k) P + (c_d + c_k + (c0 - c_k knee) / K) D + c_c C``.
* :class:`~slo_opt.models.roofline.RooflineEngineModel`:
  ``T = o + s D + max(t_w, g N + h S) + kv C_all + t_attn (+ all-reduce)`` (``S`` sampling
  sequences, ``S >= D``; ``t_w >=`` its one-token value) ``>= o D / K + s D + lam t_w D / K
  + (1 - lam) (g (P + D) + h D) + kv C`` for any ``lam`` in ``[0, 1]``
  (``max(a, b) >= lam a + (1 - lam) b``); planes for ``lam = 0`` and ``lam = 1``.
* :class:`~slo_opt.models.table.TableEngineModel`: a pure-decode step of ``b`` sequences takes
  ``>= f(b) = min over contexts`` of the interpolated table (piecewise linear in the context,
  so the minimum is at context 0 or a grid point); a mixed step takes ``>= f(b) + e P``
  (prefill fallback ``e`` s/token) or ``>= T_pre(P + b)`` (prefill curve, ``>= s (P + b)`` with
  ``s = min T_pre(x) / x`` over ``1 <= x <= max_batch_tokens``, attained at an end point or a
  breakpoint of the piecewise-linear curve).
* :class:`~slo_opt.models.slot.SlotEngine`: every non-empty step takes ``step_s`` and holds at
  most ``max_batch_tokens`` tokens and ``K`` decodes: ``T >= step_s (P + D) / max_batch_tokens``
  and ``T >= step_s D / K``.

Engines of other types raise ``TypeError`` (no silent guess). The planes are property-tested
against ``engine.step_time_s`` on random batches (``tests/solvers/test_engine_bounds.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slo_opt.engine import BatchShape

__all__ = ["StepPlane", "ctx_s_per_token", "decode_step_floor_s", "min_inference_s",
           "prefill_floor_s", "request_ctx_tokens", "request_work_s", "step_planes"]


@dataclass(frozen=True, slots=True)
class StepPlane:
    """``step_time_s(batch) >= prefill_s_per_token P + decode_s_per_seq D + ctx_s_per_token C``.

    Valid for every batch with at most ``max_seqs`` decode sequences (``C`` = decode context
    tokens of the batch, the simulator's ``decode_context_tokens``).
    """

    prefill_s_per_token: float
    decode_s_per_seq: float
    ctx_s_per_token: float
    max_seqs: int
    label: str = ""


def _check_seqs(max_seqs: int) -> int:
    if isinstance(max_seqs, bool) or not isinstance(max_seqs, int | np.integer) or max_seqs < 1:
        raise ValueError(f"max_seqs must be an int >= 1, got {max_seqs!r}")
    return int(max_seqs)


def _table_decode_floor(engine: object, b: int) -> float:
    ctxs = [0.0, *np.asarray(engine.decode_context, float).tolist()]  # type: ignore[attr-defined]
    return float(min(engine.decode_time_at(b, c) for c in ctxs))  # type: ignore[attr-defined]


def _table_bmax(engine: object) -> int:
    """Largest decode batch of the table's grid (the floor is non-decreasing beyond it)."""
    return max(1, int(np.ceil(float(np.max(engine.decode_batch)))))  # type: ignore[attr-defined]


def _table_prefill_slope(engine: object) -> float:
    """``min T_pre(x) / x`` over ``1 <= x <= max_batch_tokens`` (end points and breakpoints)."""
    xmax = float(engine.max_batch_tokens)  # type: ignore[attr-defined]
    xs = [1.0, xmax] + [float(x) for x in engine.prefill_tokens  # type: ignore[attr-defined]
                        if 1.0 <= float(x) <= xmax]
    return float(min(engine.prefill_time_at(x) / x for x in xs))  # type: ignore[attr-defined]


def _table_prefill_min_from(engine: object, lo: float) -> float:
    """``min T_pre(x)`` over ``lo <= x <= max_batch_tokens``."""
    xmax = float(engine.max_batch_tokens)  # type: ignore[attr-defined]
    xs = [lo, xmax] + [float(x) for x in engine.prefill_tokens  # type: ignore[attr-defined]
                       if lo <= float(x) <= xmax]
    return float(min(engine.prefill_time_at(x) for x in xs))  # type: ignore[attr-defined]


def _kind(engine: object) -> str:
    from slo_opt.models.linear import LinearEngineModel
    from slo_opt.models.roofline import RooflineEngineModel
    from slo_opt.models.slot import SlotEngine
    from slo_opt.models.table import TableEngineModel

    for cls, name in ((LinearEngineModel, "linear"), (RooflineEngineModel, "roofline"),
                      (TableEngineModel, "table"), (SlotEngine, "slot")):
        if isinstance(engine, cls):
            return name
    raise TypeError(f"no step-time lower bound for engine type {type(engine).__name__}")


def _roofline_terms(engine: object) -> tuple[float, float, float, float, float, float]:
    """``(overhead_s, per_seq_s, t_weights_min_s, s_per_token, s_per_sampled_seq,
    s_per_ctx_token)`` of :class:`~slo_opt.models.roofline.RooflineEngineModel`.

    The weight read of a non-empty step is at least the dense weights, the LM head and, for a
    mixture of experts, ``k`` experts per layer (one token activates ``k``); GEMM FLOPs are
    ``2 active_params`` per token plus ``2 head_params`` per sampling sequence (every decode).
    """
    from slo_opt.models.kv import kv_bytes_per_token, weight_bytes

    e = engine
    sh = e.shape  # type: ignore[attr-defined]
    tp = e.tensor_parallel  # type: ignore[attr-defined]
    bw = e.eta_mem * e.gpu.memory_bandwidth_bytes_per_s * tp  # type: ignore[attr-defined]
    fl = e.eta_flops * e.gpu.peak_bf16_flops_per_s * tp  # type: ignore[attr-defined]
    bpp = weight_bytes(sh) / sh.params
    read = float(sh.body_params - sh.num_layers * sh.num_experts * sh.expert_params) \
        + float(sh.head_params)
    if sh.is_moe:
        read += sh.num_layers * sh.experts_per_token * sh.expert_params
    return (float(e.overhead_s), float(e.per_seq_s), bpp * read / bw,  # type: ignore[attr-defined]
            2.0 * sh.active_body_params / fl, 2.0 * sh.head_params / fl,
            kv_bytes_per_token(sh) / bw)


def step_planes(engine: object, max_seqs: int) -> tuple[StepPlane, ...]:
    """Linear lower planes of ``engine.step_time_s`` for batches of ``<= max_seqs`` decodes.

    Every plane is valid on its own; the total time of a set of steps is at least the largest
    of the planes' sums (see the module docstring for the derivation per engine type).
    """
    k = _check_seqs(max_seqs)
    kind = _kind(engine)
    e = engine
    if kind == "linear":
        c0, cp, cd, cc = (float(e.c0_s), float(e.c_prefill_s),  # type: ignore[attr-defined]
                          float(e.c_decode_s), float(e.c_ctx_s))  # type: ignore[attr-defined]
        out = [StepPlane(cp, cd + c0 / k, cc, k, "linear")]
        ck, knee = float(e.c_knee_s), float(e.knee_tokens)  # type: ignore[attr-defined]
        if ck > 0 and c0 >= ck * knee:
            out.append(StepPlane(cp + ck, cd + ck + (c0 - ck * knee) / k, cc, k, "linear+knee"))
        return tuple(out)
    if kind == "roofline":
        o, s, tw, g, gh, kv = _roofline_terms(e)
        return (StepPlane(g, s + o / k + g + gh, kv, k, "roofline-compute"),
                StepPlane(0.0, s + (o + tw) / k, kv, k, "roofline-memory"))
    if kind == "table":
        f = min(_table_decode_floor(e, b) / b for b in range(1, k + 1))
        if e.prefill_tokens is None:  # type: ignore[attr-defined]
            return (StepPlane(float(e.prefill_fallback_s_per_token), f, 0.0, k,  # type: ignore[attr-defined]
                              "table-fallback"),)
        sl = _table_prefill_slope(e)
        return (StepPlane(sl, min(sl, f), 0.0, k, "table-curve"),)
    # slot engine: every step lasts step_s, holds <= max_batch_tokens tokens, <= k decodes
    a = float(e.step_s) / float(e.max_batch_tokens)  # type: ignore[attr-defined]
    return (StepPlane(a, a, 0.0, k, "slot-tokens"),
            StepPlane(0.0, float(e.step_s) / k, 0.0, k, "slot-seqs"))  # type: ignore[attr-defined]


def decode_step_floor_s(engine: object, k: int) -> float:
    """Lower bound on the time of any step holding exactly ``k >= 1`` decode sequences."""
    k = _check_seqs(k)
    kind = _kind(engine)
    e = engine
    if kind == "linear":
        return float(e.c0_s + e.c_decode_s * k)  # type: ignore[attr-defined]
    if kind == "roofline":
        o, s, tw, g, gh, _ = _roofline_terms(e)
        return o + s * k + max(tw, (g + gh) * k)
    if kind == "table":
        f = _table_decode_floor(e, k)
        if e.prefill_tokens is None:  # type: ignore[attr-defined]
            return f
        # a mixed step costs T_pre(P + k) + (non-negative context increment)
        return min(f, _table_prefill_min_from(e, float(k)))
    return float(e.step_s)  # type: ignore[attr-defined]


def prefill_floor_s(engine: object, prompt_tokens: np.ndarray) -> np.ndarray:
    """Lower bound on the total time of the steps computing a ``P``-token prompt (its own
    prefill steps, whatever else they compute)."""
    kind = _kind(engine)
    e = engine
    p = np.asarray(prompt_tokens, float)
    cap = float(e.max_batch_tokens)  # type: ignore[attr-defined]
    nsteps = np.ceil(p / cap)  # at least this many steps hold the prompt
    if kind == "linear":
        return nsteps * float(e.c0_s) + float(e.c_prefill_s) * p  # type: ignore[attr-defined]
    if kind == "roofline":
        o, _, tw, g, _, _ = _roofline_terms(e)
        return nsteps * o + np.maximum(nsteps * tw, g * p)
    if kind == "table":
        if e.prefill_tokens is None:  # type: ignore[attr-defined]
            # a step with prefill and b >= 0 decodes costs >= min_b f(b) + e P
            f0 = min(_table_decode_floor(e, b) for b in range(1, _table_bmax(e) + 1))
            return nsteps * f0 + float(e.prefill_fallback_s_per_token) * p  # type: ignore[attr-defined]
        return _table_prefill_slope(e) * p
    return nsteps * float(e.step_s)  # type: ignore[attr-defined]


def ctx_s_per_token(engine: object) -> float:
    """``a_c`` with ``step_time >= (time without decode context) + a_c C`` for every step
    (``C`` = decode context tokens): linear ``c_ctx``, roofline KV bytes / bandwidth, 0 else."""
    kind = _kind(engine)
    if kind == "linear":
        return float(engine.c_ctx_s)  # type: ignore[attr-defined]
    if kind == "roofline":
        return _roofline_terms(engine)[5]
    return 0.0


def request_ctx_tokens(prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """Decode context tokens a request's ``O - 1`` decode steps attend: ``sum_k (P + k)``."""
    p = np.asarray(prompt_tokens, float)
    d = np.maximum(np.asarray(output_tokens, float) - 1.0, 0.0)
    return d * p + d * (d + 1.0) / 2.0


def request_work_s(plane: StepPlane, prompt_tokens: np.ndarray,
                   output_tokens: np.ndarray) -> np.ndarray:
    """Seconds of ``plane`` work each request brings (module docstring)."""
    p = np.asarray(prompt_tokens, float)
    d = np.maximum(np.asarray(output_tokens, float) - 1.0, 0.0)
    ctx = d * p + d * (d + 1.0) / 2.0
    return plane.prefill_s_per_token * p + plane.decode_s_per_seq * d + plane.ctx_s_per_token * ctx


def min_inference_s(engine: object, prompt_tokens: np.ndarray,
                    output_tokens: np.ndarray) -> np.ndarray:
    """Lower bound on each request's inference time (first step start -> last token).

    Its prompt needs at least ``ceil(P / max_batch_tokens)`` steps (bounded below by
    :func:`prefill_floor_s`) and its ``O - 1`` decodes ``O - 1`` further steps, each at least the
    cheapest step with one or more decode sequences attending the request's own context.
    """
    kind = _kind(engine)
    e = engine
    p = np.asarray(prompt_tokens, float)
    d = np.maximum(np.asarray(output_tokens, float) - 1.0, 0.0)
    pre = prefill_floor_s(engine, p)
    if kind == "linear":
        per = float(e.c0_s + e.c_decode_s)  # type: ignore[attr-defined]
        ctx = float(e.c_ctx_s) * (d * p + d * (d + 1.0) / 2.0)  # type: ignore[attr-defined]
        return pre + d * per + ctx
    if kind == "roofline":
        o, s, tw, g, gh, kv = _roofline_terms(e)
        return pre + d * (o + s + max(tw, g + gh)) + kv * (d * p + d * (d + 1.0) / 2.0)
    if kind == "table":
        # beyond the grid the interpolation extrapolates with a non-negative slope
        fl = min(decode_step_floor_s(e, b) for b in range(1, _table_bmax(e) + 1))
        return pre + d * fl
    return pre + d * float(e.step_s)  # type: ignore[attr-defined]


def _validate(engine: object, planes: tuple[StepPlane, ...], batch: BatchShape) -> float:
    """Largest plane value of ``batch`` minus its step time (<= 0 when the planes hold)."""
    t = float(engine.step_time_s(batch))  # type: ignore[attr-defined]
    if batch.prefill_tokens == 0 and batch.decode_seqs == 0:
        return -math.inf
    v = max(pl.prefill_s_per_token * batch.prefill_tokens + pl.decode_s_per_seq
            * batch.decode_seqs + pl.ctx_s_per_token * batch.decode_context_tokens
            for pl in planes)
    return v - t
