"""Convex bandwidth allocation for a fixed placement (cvxpy; PerLLM's resource-allocation step).

Given which requests share a bottleneck link (one group per link or site) and their payloads,
choose rates ``b_i > 0`` (``papers.md`` section 2.7, [Rec])::

    min  sum_i P_i * sigma_i / b_i                    (transmission energy: power x time)
    s.t. sigma_i / b_i + tau_i <= Delta_i              (deadline incl. inference time tau_i)
         sum_{i in g} b_i <= B_g                       for every group g
         b_i >= 0

``inv_pos`` keeps it DCP. Without binding deadlines the optimum has the closed form
``b_i = B_g sqrt(P_i sigma_i) / sum_g sqrt(P_k sigma_k)`` with value
``(sum sqrt(P_i sigma_i))^2 / B_g`` (tested).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["BandwidthResult", "allocate_bandwidth"]


@dataclass(frozen=True)
class BandwidthResult:
    """``status`` (cvxpy's), ``objective`` (J), per-request ``rate_bytes_per_s`` and
    ``transfer_s``; ``wall_s`` includes compilation."""

    status: str
    objective: float
    rate_bytes_per_s: np.ndarray
    transfer_s: np.ndarray
    wall_s: float


def allocate_bandwidth(payload_bytes: np.ndarray, group: np.ndarray,
                       capacity_bytes_per_s: np.ndarray, *, power_w: np.ndarray | float = 1.0,
                       infer_s: np.ndarray | float = 0.0,
                       deadline_s: np.ndarray | float = math.inf,
                       solver: str | None = None) -> BandwidthResult:
    """Solve the allocation; ``group[i]`` indexes ``capacity_bytes_per_s``.

    Returns status ``"infeasible"`` (and NaNs) when the deadlines cannot all be met.
    """
    import cvxpy as cp

    t0 = time.perf_counter()
    s = np.asarray(payload_bytes, float).reshape(-1)
    n = s.size
    g = np.asarray(group, np.int64).reshape(-1)
    cap = np.asarray(capacity_bytes_per_s, float).reshape(-1)
    if g.size != n or (g < 0).any() or (g >= cap.size).any():
        raise ValueError("group must give a valid capacity index for every request")
    if (s <= 0).any() or (cap <= 0).any():
        raise ValueError("payloads and capacities must be > 0")
    p = np.broadcast_to(np.asarray(power_w, float), (n,))
    tau = np.broadcast_to(np.asarray(infer_s, float), (n,))
    dl = np.broadcast_to(np.asarray(deadline_s, float), (n,))
    if (p < 0).any():
        raise ValueError("power_w must be >= 0")
    # scale bytes to MB for conditioning
    scale = 1e6
    sm, capm = s / scale, cap / scale
    b = cp.Variable(n, pos=True)
    obj = cp.Minimize(cp.sum(cp.multiply(p * sm, cp.inv_pos(b))))
    cons = []
    for k in range(cap.size):
        idx = np.flatnonzero(g == k)
        if idx.size:
            cons.append(cp.sum(b[idx]) <= capm[k])
    fin = np.flatnonzero(np.isfinite(dl))
    if fin.size:
        room = dl[fin] - tau[fin]
        if (room <= 0).any():
            return BandwidthResult("infeasible", math.nan, np.full(n, math.nan),
                                   np.full(n, math.nan), time.perf_counter() - t0)
        cons.append(cp.multiply(sm[fin], cp.inv_pos(b[fin])) <= room)
    prob = cp.Problem(obj, cons)
    try:
        prob.solve(solver=solver or cp.CLARABEL)
    except cp.error.SolverError as exc:
        return BandwidthResult(f"error: {exc}", math.nan, np.full(n, math.nan),
                               np.full(n, math.nan), time.perf_counter() - t0)
    if b.value is None or prob.status not in ("optimal", "optimal_inaccurate"):
        return BandwidthResult(str(prob.status), math.nan, np.full(n, math.nan),
                               np.full(n, math.nan), time.perf_counter() - t0)
    rate = np.asarray(b.value, float) * scale
    return BandwidthResult(str(prob.status), float(prob.value), rate, s / rate,
                           time.perf_counter() - t0)
