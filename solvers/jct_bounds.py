"""Mean job-completion-time (JCT) bounds for a single server: SRPT and an exact MILP.

Model (the reference for SJF/SSJF, SSJF section 3.5 with batch size 1)
-----------------------------------------------------------------------
One server runs one job at a time. Job ``j`` is released at ``r_j`` and needs ``p_j`` units of
service; JCT is ``C_j - a_j`` (completion minus arrival). :func:`jobs_from_workload` maps a
workload on :class:`~slo_opt.models.slot.SlotEngine` to this model at batch size 1, in slots:
``r_j`` is the request's first slot and ``p_j = ceil(P_j / B) + O_j - 1`` (chunked prefill at
the token budget, then one decode per slot), which is exactly what ``FCFS(batching="none")``
and ``SJF/SSJF(batching="none")`` execute on that engine.

* :func:`srpt_mean_jct`: shortest-remaining-processing-time is optimal for
  ``1 | r_j, pmtn | sum C_j`` (Schrage 1968), so its mean JCT is a lower bound on every
  non-preemptive schedule of the same jobs (and on every policy that serves one job at a time).
* :func:`exact_mean_jct`: ``1 | r_j | sum C_j`` (strongly NP-hard) solved exactly by a
  disjunctive MILP for small ``n`` (order binaries, big-M = last release + total work).
* :func:`brute_force_mean_jct`: enumeration of orders with earliest starts (tests, n <= 7).

Notes
-----
This single-server model ignores batching: with continuous batching a policy can beat the
batch-size-1 optimum, so these are references for SJF/SSJF's batch-size-1 setting, not bounds
on batched engines.

References
----------
.. [1] L. Schrage, "A proof of the optimality of the shortest remaining processing time
   discipline", Operations Research 16(3), 1968.
.. [2] H. Qiu et al., "Efficient Interactive LLM Serving with Proxy Model-based Sequence
   Length Prediction", 2024 (SSJF; JCT = completion - arrival).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import numpy as np

from slo_opt.request import Workload
from slo_opt.solvers.base import LinearModel, Status, first_slots

__all__ = ["JCTResult", "brute_force_mean_jct", "exact_mean_jct", "jobs_from_workload",
           "srpt_mean_jct"]


def _check(release: np.ndarray, proc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(release, float).reshape(-1)
    p = np.asarray(proc, float).reshape(-1)
    if r.size != p.size:
        raise ValueError(f"release ({r.size}) and proc ({p.size}) differ in length")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(p))):
        raise ValueError("release and proc must be finite")
    if np.any(p <= 0) or np.any(r < 0):
        raise ValueError("proc must be > 0 and release >= 0")
    return r, p


def jobs_from_workload(workload: Workload, engine: object) -> tuple[np.ndarray, np.ndarray]:
    """``(release_slot, proc_slots)`` of the batch-size-1 model on a ``SlotEngine``."""
    D = float(engine.step_s)  # type: ignore[attr-defined]
    B = int(engine.max_batch_tokens)  # type: ignore[attr-defined]
    r = first_slots(workload, D).astype(float)
    P = np.asarray(workload.prompt_tokens, np.int64)
    p = (-(-P // B) + np.asarray(workload.output_tokens, np.int64) - 1).astype(float)
    return r, p


def srpt_mean_jct(release: np.ndarray, proc: np.ndarray, arrival: np.ndarray | None = None
                  ) -> float:
    """Mean JCT of preemptive SRPT (optimal for ``1|r_j,pmtn|sum C_j``): a lower bound.

    ``arrival`` (default ``release``) is subtracted from completion times.
    """
    r, p = _check(release, proc)
    n = r.size
    if n == 0:
        return 0.0
    a = r if arrival is None else np.asarray(arrival, float)
    order = np.argsort(r, kind="stable")
    C = np.zeros(n)
    heap: list[tuple[float, int]] = []
    t = 0.0
    k = 0
    while k < n or heap:
        if not heap:
            t = max(t, r[order[k]])
        while k < n and r[order[k]] <= t:
            j = int(order[k])
            heapq.heappush(heap, (p[j], j))
            k += 1
        rem, j = heapq.heappop(heap)
        nxt = r[order[k]] if k < n else math.inf
        if t + rem <= nxt:
            t += rem
            C[j] = t
        else:
            heapq.heappush(heap, (rem - (nxt - t), j))
            t = nxt
    return float(np.mean(C - a))


def brute_force_mean_jct(release: np.ndarray, proc: np.ndarray,
                         arrival: np.ndarray | None = None) -> float:
    """Exact non-preemptive optimum by enumerating orders (earliest starts); ``n <= 8``."""
    r, p = _check(release, proc)
    n = r.size
    if n > 8:
        raise ValueError(f"brute force is for n <= 8, got {n}")
    if n == 0:
        return 0.0
    a = r if arrival is None else np.asarray(arrival, float)
    best = math.inf
    for perm in itertools.permutations(range(n)):
        t = 0.0
        tot = 0.0
        for j in perm:
            t = max(t, r[j]) + p[j]
            tot += t - a[j]
            if tot >= best:
                break
        best = min(best, tot)
    return best / n


@dataclass(frozen=True)
class JCTResult:
    """Outcome of :func:`exact_mean_jct`."""

    status: Status
    mean_jct: float | None  # incumbent
    bound: float | None  # proven lower bound on the optimal mean JCT
    order: tuple[int, ...] | None  # service order of the incumbent


def exact_mean_jct(release: np.ndarray, proc: np.ndarray, arrival: np.ndarray | None = None,
                   *, time_limit_s: float = 60.0, backend: str = "highs") -> JCTResult:
    """Exact non-preemptive minimum mean JCT (disjunctive MILP, small ``n``).

    ``S_j >= r_j``; for ``j < k``: ``S_k >= S_j + p_j - H (1 - z_jk)`` and
    ``S_j >= S_k + p_k - H z_jk`` with ``H = max r + sum p``; minimise ``mean(S + p - a)``.
    """
    from slo_opt.solvers import backends

    r, p = _check(release, proc)
    n = r.size
    a = r if arrival is None else np.asarray(arrival, float)
    if n == 0:
        return JCTResult(Status.OPTIMAL, 0.0, 0.0, ())
    H = float(r.max() + p.sum())
    m = LinearModel(sense="min", obj_offset=float(np.mean(p - a)), info={"name": "jct_np"})
    S = m.add_cols(n, lb=r, ub=H, cost=1.0 / n)
    pairs = list(itertools.combinations(range(n), 2))
    if pairs:
        jj = np.array([x for x, _ in pairs])
        kk = np.array([y for _, y in pairs])
        z = m.add_cols(len(pairs), lb=0.0, ub=1.0, integer=True)
        q = len(pairs)
        # S_k - S_j - H z >= p_j - H ;  S_j - S_k + H z >= p_k
        rows = np.repeat(np.arange(q), 3)
        m.add_rows(rows, np.stack([S[kk], S[jj], z], 1).reshape(-1),
                   np.tile([1.0, -1.0, -H], q), p[jj] - H, math.inf, q)
        m.add_rows(rows, np.stack([S[jj], S[kk], z], 1).reshape(-1),
                   np.tile([1.0, -1.0, H], q), p[kk], math.inf, q)
    raw = backends.run(m, backend=backend, time_limit_s=time_limit_s, rel_gap=1e-9)
    order = None
    if raw.values is not None:
        order = tuple(int(j) for j in np.argsort(raw.values[S], kind="stable"))
    return JCTResult(raw.status, raw.incumbent, raw.bound, order)
