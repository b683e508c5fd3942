"""A batch-size-resolved fluid LP bound on SLO attainment for engines whose step time grows with
the batch (SLICE's edge GPU), valid for every schedule with at most ``K`` decodes per step.

Variables per request ``i``: ``x_i in [0, 1]`` (met) and ``y_ik >= 0``, ``k = 1..K``: how many of
its decode steps hold exactly ``k`` decode sequences. With ``l_k`` =
:func:`~slo_opt.solvers.engine_bounds.decode_step_floor_s` (any step with ``k`` decodes lasts
at least ``l_k``) and ``e`` a per-prompt-token time that any step pays on top of ``l_k`` (batch sizes above 16 are
grouped geometrically, :func:`batch_groups`: a group ``lo..hi`` uses the smallest ``l_k`` in
it and charges each decode ``l / hi``, which only weakens the bound)::

    max  sum_i w_i x_i
    sum_k y_ik = (O_i - 1) x_i                                   (its decodes)
    sum_k l_k y_ik <= (TPOT_i + tol) (O_i - 1) x_i               (mean TPOT)
    decode work  sum_k (l_k / k) y_ik  inside [a_i, a_i + L_i]   (fluid rows, one machine)
    prefill work e P_i x_i             inside [a_i, a_i + TTFT_i]

``L_i = min(e2e_i, TTFT_i + TPOT_i (O_i - 1))``: a met request's last token is due by then.

Why it holds: a met request's decode steps are distinct steps between its first token and its
finish, so their durations sum to at most ``TPOT (O - 1)`` (the metric's mean TPOT); a step with
``k`` decodes carries ``k`` request-decodes and lasts ``>= l_k + e P``, so charging ``l_k / k``
to each of its decodes and ``e`` to each prompt token never exceeds its duration; the fluid rows
(:func:`~slo_opt.solvers.window_fluid.add_window_work`) then bound the work per time cell. The
TPOT row is what captures SLICE's point: a tight TPOT forces small batches, which have low
throughput ``k / l_k`` on a steep ``l(k)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from slo_opt.metrics import SLO_TOL_S
from slo_opt.request import Workload
from slo_opt.solvers.base import LinearModel, Status
from slo_opt.solvers.engine_bounds import decode_step_floor_s
from slo_opt.solvers.window_fluid import add_window_work, cell_edges

__all__ = ["TPOTFluidBound", "batch_groups", "prefill_extra_s_per_token", "tpot_fluid_bound"]


def batch_groups(max_seqs: int, exact_up_to: int = 16, ratio: float = 1.25,
                 ) -> list[tuple[int, int]]:
    """Batch-size groups ``(lo, hi)``: sizes 1..``exact_up_to`` alone, then geometric bins."""
    out = [(b, b) for b in range(1, min(max_seqs, exact_up_to) + 1)]
    lo = exact_up_to + 1
    while lo <= max_seqs:
        hi = min(max_seqs, max(lo, int(lo * ratio)))
        out.append((lo, hi))
        lo = hi + 1
    return out


def prefill_extra_s_per_token(engine: object) -> float:
    """``e`` with ``step_time >= l_k + e P`` for every step (``k`` decodes, ``P`` prompt
    tokens): linear ``c_prefill``; table with a prefill fallback, its per-token cost; 0 for
    other engines (always valid)."""
    from slo_opt.models.linear import LinearEngineModel
    from slo_opt.models.table import TableEngineModel

    if isinstance(engine, LinearEngineModel):
        return float(engine.c_prefill_s)
    if isinstance(engine, TableEngineModel) and engine.prefill_tokens is None:
        return float(engine.prefill_fallback_s_per_token)
    return 0.0


@dataclass(frozen=True)
class TPOTFluidBound:
    """Outcome of :func:`tpot_fluid_bound`."""

    status: Status
    value: float  #: bound on sum_i w_i met_i (NaN when the LP did not solve)
    fraction: float  #: value / sum_i w_i
    num_cols: int
    num_rows: int
    wall_s: float
    valid_for: str


def tpot_fluid_bound(workload: Workload, engine: object, max_seqs: int, *,
                     weights: str = "count", cell_s: float = 0.5,
                     time_limit_s: float = 60.0) -> TPOTFluidBound:
    """Upper bound on (utility-weighted) SLO attainment (module docstring).

    Parameters
    ----------
    workload : Workload
        With TTFT, TPOT and (optional) e2e SLOs.
    engine : EngineModel
    max_seqs : int
        Largest number of decode sequences per step of every policy compared.
    weights : {"count", "utility"}
    cell_s : float
        Fluid cell length (smaller = tighter, larger LP).
    """
    from slo_opt.solvers import backends

    if weights not in ("count", "utility"):
        raise ValueError(f"weights must be 'count' or 'utility', got {weights!r}")
    if not isinstance(workload, Workload) or len(workload) == 0:
        raise ValueError("workload must be a non-empty Workload")
    t0 = time.perf_counter()
    k = int(max_seqs)
    if k < 1:
        raise ValueError(f"max_seqs must be >= 1, got {max_seqs}")
    floor = np.array([decode_step_floor_s(engine, b) for b in range(1, k + 1)])
    groups = batch_groups(k)
    # group g = sizes lo..hi: every step in it lasts >= min floor over the group (lk) and
    # carries <= hi decodes, so each decode is charged lk / hi
    lk = np.array([floor[lo - 1:hi].min() for lo, hi in groups])
    khi = np.array([hi for _, hi in groups], float)
    k = len(groups)
    e = prefill_extra_s_per_token(engine)
    n = len(workload)
    a = np.asarray(workload.arrival_s, float)
    p = np.asarray(workload.prompt_tokens, float)
    d = np.asarray(workload.output_tokens, float) - 1.0
    ttft = np.asarray(workload.ttft_slo_s, float) + SLO_TOL_S
    tpot = np.asarray(workload.tpot_slo_s, float) + SLO_TOL_S
    e2e = np.asarray(workload.e2e_slo_s, float) + SLO_TOL_S
    horizon = np.minimum(e2e, ttft + tpot * d)
    w = np.ones(n) if weights == "count" else np.asarray(workload.utility, float)
    total = float(w.sum())
    m = LinearModel(sense="max", info={"name": "tpot_fluid"})
    x = m.add_cols(n, lb=0.0, ub=1.0, cost=w)
    dec = np.flatnonzero(d > 0)
    y = m.add_cols(dec.size * k, lb=0.0).reshape(dec.size, k)
    nd = dec.size
    if nd:
        rows = np.arange(nd)
        # sum_k y = d x
        m.add_rows(np.concatenate([np.repeat(rows, k), rows]),
                   np.concatenate([y.reshape(-1), x[dec]]),
                   np.concatenate([np.ones(nd * k), -d[dec]]), 0.0, 0.0, nd)
        # sum_k l_k y <= tpot d x
        m.add_rows(np.concatenate([np.repeat(rows, k), rows]),
                   np.concatenate([y.reshape(-1), x[dec]]),
                   np.concatenate([np.tile(lk, nd), -(tpot * d)[dec]]), -math.inf, 0.0, nd)
    # fluid rows: decode members (work sum_k l_k/k y) and prefill members (work e P x)
    starts = np.concatenate([a[dec], a])
    ends = np.concatenate([a[dec] + horizon[dec], a + ttft])
    edges = cell_edges(starts, ends, cell_s)
    if nd:
        cols = [y[:, b] for b in range(k)]
        coefs = [np.full(nd, lk[b] / khi[b]) for b in range(k)]
        add_window_work(m, edges, a[dec], a[dec] + horizon[dec], np.zeros(nd, np.int64),
                        cols, coefs, 1)
    if e > 0:
        add_window_work(m, edges, a, a + ttft, np.zeros(n, np.int64), [x], [e * p], 1)
    raw = backends.run(m, time_limit_s=time_limit_s)
    val = math.nan
    if raw.status == Status.OPTIMAL and raw.incumbent is not None:
        b = raw.bound if raw.bound is not None else raw.incumbent
        val = min(total, max(float(raw.incumbent), float(b)) * (1 + 1e-7) + 1e-9)
    return TPOTFluidBound(raw.status, val, val / total if total > 0 else math.nan,
                          m.num_cols, m.num_rows, time.perf_counter() - t0,
                          f"{getattr(engine, 'name', type(engine).__name__)}, every schedule "
                          f"with <= {int(max_seqs)} decode sequences per step")
