"""SLICE's utility maximisation as MILPs: one cycle's exact admission, and a whole-horizon bound.

* :func:`solve_cycle` -- the utility-optimal task selection of one cycle (papers.md 1.8,
  optimization.md 5(c)). Two formulations:

  - ``"columns"`` (column occupancy, exact for *any* ``l(k)``): binary ``z[j,k]`` = column ``j``
    of the contiguous decode mask holds exactly ``k`` tasks;
  - ``"affine"`` (compact, exact when ``l(k) = alpha + beta k``): ``alpha R + beta sum v_i X_i
    <= P`` with ``R >= v_i X_i`` the number of non-empty columns.

  :func:`brute_force_cycle` enumerates subsets (small instances) as the test oracle.
* :func:`solve_horizon` -- an offline whole-horizon utility MILP on the slotted engine
  (:class:`~slo_opt.models.slot.SlotEngine`): the maximum utility of requests meeting TTFT,
  TPOT and e2e SLOs over any schedule (chunked prefill, any decode pattern). It upper-bounds
  every online policy that does not swap KV.

All models are sparse matrices solved by HiGHS through :func:`scipy.optimize.milp`.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slo_opt.metrics import SLO_TOL_S
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload

__all__ = [
    "CycleInstance",
    "CycleSolution",
    "HorizonSolution",
    "brute_force_cycle",
    "cycle_instance_from_decision",
    "solve_cycle",
    "solve_horizon",
]



def _int32_csr(a: Any) -> Any:
    """``a`` with 32-bit index arrays: scipy < 1.13's ``milp`` rejects int64 (``'long'``)."""
    a.indices = a.indices.astype(np.int32, copy=False)
    a.indptr = a.indptr.astype(np.int32, copy=False)
    return a

def _scipy():  # imported lazily: scipy is an optional dependency ("solvers" extra)
    try:
        from scipy import optimize, sparse
    except ImportError as e:  # pragma: no cover
        raise ImportError("slice_milp needs scipy (pip install 'slo_opt[solvers]')") from e
    return optimize, sparse


_STATUS = {0: "optimal", 1: "feasible", 2: "infeasible", 3: "unbounded", 4: "error"}


# -- one cycle ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleInstance:
    """One SLICE selection decision.

    Parameters
    ----------
    utility : numpy.ndarray
        ``U_i`` of each candidate (>= 0).
    rates : numpy.ndarray
        Decodes per cycle ``v_i`` (int >= 1).
    latency_s : numpy.ndarray
        ``l(k)`` for ``k = 1..K`` (> 0); at most ``K`` tasks can be selected.
    period_s : float
        Bound on the cycle time ``T_period``.
    max_tasks : int
        Cap on selected tasks.
    kv_blocks : numpy.ndarray or None
        KV weight of each candidate (0 for already resident tasks).
    kv_budget_blocks : float
        Capacity for the weights.
    """

    utility: np.ndarray
    rates: np.ndarray
    latency_s: np.ndarray
    period_s: float
    max_tasks: int = 16
    kv_blocks: np.ndarray | None = None
    kv_budget_blocks: float = math.inf

    def __post_init__(self) -> None:
        u = np.asarray(self.utility, float)
        v = np.asarray(self.rates, np.int64)
        lat = np.asarray(self.latency_s, float)
        if u.ndim != 1 or v.shape != u.shape:
            raise ValueError("utility and rates must be 1-D arrays of equal length")
        if np.any(~np.isfinite(u)) or np.any(u < 0):
            raise ValueError("utility must be finite and >= 0")
        if np.any(v < 1):
            raise ValueError("rates must be >= 1")
        if lat.ndim != 1 or lat.size == 0 or np.any(~np.isfinite(lat)) or np.any(lat <= 0):
            raise ValueError("latency_s must be a non-empty 1-D array of finite values > 0")
        if not (self.period_s > 0 and math.isfinite(self.period_s)):
            raise ValueError("period_s must be finite and > 0")
        if self.max_tasks < 1:
            raise ValueError("max_tasks must be >= 1")
        kv = np.zeros(u.size) if self.kv_blocks is None else np.asarray(self.kv_blocks, float)
        if kv.shape != u.shape or np.any(kv < 0):
            raise ValueError("kv_blocks must be >= 0, one per candidate")
        object.__setattr__(self, "utility", u)
        object.__setattr__(self, "rates", v)
        object.__setattr__(self, "latency_s", lat)
        object.__setattr__(self, "kv_blocks", kv)

    @property
    def num_tasks(self) -> int:
        """Number of candidates."""
        return int(self.utility.size)

    @property
    def cap(self) -> int:
        """Most tasks a selection may hold."""
        return min(self.max_tasks, self.latency_s.size)

    def cycle_time_s(self, selected: np.ndarray) -> float:
        """``T_period`` of a selection (the paper's formula; contiguous mask)."""
        v = np.sort(self.rates[np.asarray(selected, np.int64)])[::-1]
        if v.size == 0:
            return 0.0
        return float(np.dot(v - np.append(v[1:], 0), self.latency_s[: v.size]))

    def is_feasible(self, selected: np.ndarray, tol: float = 1e-9) -> bool:
        """Whether a selection meets every constraint."""
        sel = np.asarray(selected, np.int64)
        return (sel.size <= self.cap and self.cycle_time_s(sel) <= self.period_s + tol
                and float(self.kv_blocks[sel].sum()) <= self.kv_budget_blocks + tol)


@dataclass(frozen=True)
class CycleSolution:
    """Result of one cycle's admission problem."""

    status: str  # "optimal", "feasible", "infeasible", "error"
    utility: float  # objective of `selected` (nan if none)
    bound: float  # proven upper bound on the optimum
    selected: np.ndarray  # candidate indices, ascending
    cycle_time_s: float  # T_period of `selected`
    wall_s: float
    formulation: str


def cycle_instance_from_decision(decision: dict) -> CycleInstance:
    """Rebuild the instance of a decision recorded by ``SLICE(record_decisions=True)``."""
    return CycleInstance(
        utility=np.asarray(decision["utility"], float), rates=np.asarray(decision["rates"]),
        latency_s=np.asarray(decision["latency_s"], float),
        period_s=float(decision["period_limit_s"]), max_tasks=int(decision["max_tasks"]),
        kv_blocks=np.asarray(decision["kv_blocks"], float),
        kv_budget_blocks=float(decision["kv_budget_blocks"]))


def _affine_coeffs(lat: np.ndarray, tol: float = 1e-9) -> tuple[float, float]:
    k = np.arange(1, lat.size + 1)
    if lat.size == 1:
        return float(lat[0]), 0.0
    beta = float(lat[1] - lat[0])
    alpha = float(lat[0] - beta)
    if np.max(np.abs(alpha + beta * k - lat)) > tol * max(1.0, float(lat.max())):
        raise ValueError("latency table is not affine in k; use formulation='columns'")
    return alpha, beta


def solve_cycle(inst: CycleInstance, *, formulation: str = "columns",
                time_limit_s: float = 30.0) -> CycleSolution:
    """Utility-optimal selection of one cycle.

    Parameters
    ----------
    inst : CycleInstance
        The decision.
    formulation : {"columns", "affine"}
        ``columns``: ``max sum U_i X_i`` s.t. ``sum_k k z[j,k] = sum_{i: v_i >= j} X_i`` and
        ``sum_k z[j,k] <= 1`` for every column ``j <= C = max v``, ``sum_{j,k} l(k) z[j,k] <= P``,
        ``sum X <= max_tasks``, ``sum kv_i X_i <= KV``. Exact for any ``l`` because the
        contiguous mask's column ``j`` holds exactly the selected tasks with ``v_i >= j``.
        ``affine``: ``alpha R + beta sum v_i X_i <= P``, ``R >= v_i X_i`` (``R`` integer), exact
        when ``l(k) = alpha + beta k`` on ``k = 1..K`` (checked; ``ValueError`` otherwise).
    time_limit_s : float
        HiGHS time limit.

    Returns
    -------
    CycleSolution
    """
    optimize, sparse = _scipy()
    t0 = time.perf_counter()
    n = inst.num_tasks
    if n == 0:
        return CycleSolution("optimal", 0.0, 0.0, np.zeros(0, np.int64), 0.0, 0.0, formulation)
    v, lat, cap = inst.rates, inst.latency_s, inst.cap
    rows: list[tuple[dict[int, float], float, float]] = []  # (coeffs, lb, ub)
    if formulation == "columns":
        c_cols = int(v.max())
        kmax = cap
        nz = c_cols * kmax

        def z(j: int, k: int) -> int:  # column j in 0..C-1, k in 1..kmax
            return n + j * kmax + (k - 1)

        nvar = n + nz
        cost = np.concatenate([-inst.utility, np.zeros(nz)])
        integrality = np.ones(nvar)
        lb, ub = np.zeros(nvar), np.ones(nvar)
        for j in range(c_cols):
            occ = {z(j, k): float(k) for k in range(1, kmax + 1)}
            for i in np.flatnonzero(v >= j + 1).tolist():
                occ[i] = -1.0
            rows.append((occ, 0.0, 0.0))
            rows.append(({z(j, k): 1.0 for k in range(1, kmax + 1)}, -np.inf, 1.0))
        rows.append(({z(j, k): float(lat[k - 1]) for j in range(c_cols)
                      for k in range(1, kmax + 1)}, -np.inf, inst.period_s))
    elif formulation == "affine":
        alpha, beta = _affine_coeffs(lat)
        nvar = n + 1
        r_idx = n
        cost = np.concatenate([-inst.utility, [0.0]])
        integrality = np.ones(nvar)
        lb = np.zeros(nvar)
        ub = np.concatenate([np.ones(n), [float(v.max())]])
        time_row = {i: beta * float(v[i]) for i in range(n)}
        time_row[r_idx] = alpha
        rows.append((time_row, -np.inf, inst.period_s))
        for i in range(n):
            rows.append(({r_idx: 1.0, i: -float(v[i])}, 0.0, np.inf))
    else:
        raise ValueError(f"formulation must be 'columns' or 'affine', got {formulation!r}")
    rows.append(({i: 1.0 for i in range(n)}, -np.inf, float(cap)))
    if math.isfinite(inst.kv_budget_blocks):
        rows.append(({i: float(inst.kv_blocks[i]) for i in range(n)}, -np.inf,
                     inst.kv_budget_blocks))
    data, ri, ci, rlb, rub = [], [], [], [], []
    for r, (coef, lo, hi) in enumerate(rows):
        for c, a in coef.items():
            ri.append(r)
            ci.append(c)
            data.append(a)
        rlb.append(lo)
        rub.append(hi)
    a_mat = _int32_csr(sparse.csr_array((data, (ri, ci)), shape=(len(rows), nvar)))
    res = optimize.milp(
        cost, integrality=integrality, bounds=optimize.Bounds(lb, ub),
        constraints=optimize.LinearConstraint(a_mat, rlb, rub),
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-9, "disp": False})
    wall = time.perf_counter() - t0
    status = _STATUS.get(res.status, "error")
    if res.x is None:
        return CycleSolution(status, math.nan, math.nan, np.zeros(0, np.int64), math.nan, wall,
                             formulation)
    sel = np.flatnonzero(np.round(res.x[:n]) > 0.5)
    util = float(inst.utility[sel].sum())
    bound = -float(getattr(res, "mip_dual_bound", -util) or -util)
    bound = max(bound, util)
    return CycleSolution(status, util, bound, sel, inst.cycle_time_s(sel), wall, formulation)


def brute_force_cycle(inst: CycleInstance) -> CycleSolution:
    """Enumerate every subset of at most ``cap`` candidates (``n <= 18``): the test oracle."""
    n = inst.num_tasks
    if n > 18:
        raise ValueError(f"brute force is for n <= 18 candidates, got {n}")
    t0 = time.perf_counter()
    best, best_sel = 0.0, np.zeros(0, np.int64)
    for size in range(1, min(n, inst.cap) + 1):
        for comb in itertools.combinations(range(n), size):
            sel = np.array(comb, np.int64)
            u = float(inst.utility[sel].sum())
            if u > best + 1e-12 and inst.is_feasible(sel):
                best, best_sel = u, sel
    return CycleSolution("optimal", best, best, best_sel, inst.cycle_time_s(best_sel),
                         time.perf_counter() - t0, "brute_force")


# -- whole horizon -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HorizonSolution:
    """Result of the offline utility MILP on the slot grid."""

    status: str
    utility: float  # incumbent: sum of U_i over requests meeting their SLO
    bound: float  # proven upper bound
    met: np.ndarray  # bool per request (incumbent)
    first_token_slot: np.ndarray  # -1 where not met
    finish_slot: np.ndarray  # -1 where not met
    num_slots: int
    wall_s: float
    size: dict = field(default_factory=dict)

    @property
    def attainment_weighted_bound(self) -> float:
        """Bound on utility-weighted attainment (divide by the total utility outside)."""
        return self.bound


def solve_horizon(workload: Workload, engine: SlotEngine, *, num_slots: int | None = None,
                  time_limit_s: float = 60.0, rel_gap: float = 1e-6) -> HorizonSolution:
    """Maximum total utility of requests that can meet TTFT, TPOT and e2e on the slot grid.

    Variables per request ``i`` and slot ``t >= a_i`` (first slot starting at or after its
    arrival): prefill tokens ``p[i,t]`` (integer, chunked prefill allowed), decode ``d[i,t]``,
    first-token ``f[i,t]`` and finish ``e[i,t]`` (binary); ``m_i`` = request met.

    ``sum_t p = P_i m_i``, ``sum_t d = (O_i - 1) m_i``, ``sum_t f = sum_t e = m_i``;
    budget ``sum_i p + d <= B``; prefill done by the first-token slot
    (``sum_{tau<=t} p >= P_i sum_{tau<=t} f``); decodes after it and up to the finish
    (``d[i,t] <= sum_{tau<t} f``, ``d[i,t] <= sum_{tau>=t} e``; for ``O_i = 1`` the finish is the
    first-token slot); TTFT / e2e by fixing ``f`` / ``e`` to 0 in late slots; TPOT
    ``step (slot(e) - slot(f)) <= TPOT_i (O_i - 1)``; KV tokens ``sum_i (sum_{tau<=t} (p+d) -
    W_i sum_{tau<t} e) <= KV``. Objective ``max sum_i U_i m_i``.

    Notes
    -----
    An *upper bound* on the utility of any simulated policy on this engine that never swaps:
    every such schedule maps to a feasible point (recomputation only adds tokens; requests
    that miss their SLO may be dropped; KV in tokens relaxes KV in blocks). The horizon must
    cover the last deadline; by default it covers every finite deadline and, for requests
    without deadlines, the total work at one token per slot.
    """
    optimize, sparse = _scipy()
    t0 = time.perf_counter()
    w = workload
    n = len(w)
    s = float(engine.step_s)
    arr = np.asarray(w.arrival_s, float)
    a_slot = np.maximum(0, np.ceil(arr / s - 1e-9)).astype(np.int64)
    P = w.prompt_tokens.astype(np.int64)
    O = w.output_tokens.astype(np.int64)
    W = P + O - 1
    if num_slots is None:
        dl = np.minimum(w.e2e_slo_s, w.ttft_slo_s + w.tpot_slo_s * np.maximum(O - 1, 0))
        finite = np.isfinite(dl)
        last = float(np.max(arr[finite] + dl[finite])) if finite.any() else 0.0
        num_slots = int(max(math.ceil(last / s) + 1,
                            int(a_slot.max(initial=0)) + int(W.sum()) + 1 if (~finite).any() else 0))
    T = int(num_slots)
    if T < 1:
        raise ValueError("num_slots must be >= 1")
    B = int(engine.max_batch_tokens)
    KV = int(engine.kv_capacity_tokens)
    # variable layout: per request, binaries/integers per slot, then cumulative chains
    idx: list[dict[str, np.ndarray]] = []
    nv = 0
    lb: list[float] = []
    ub: list[float] = []
    integ: list[int] = []
    for i in range(n):
        slots = np.arange(a_slot[i], T)
        k = slots.size
        d = {"slots": slots}
        for name, hi, is_int in (("p", float(P[i]), 1), ("d", 1.0, 1), ("f", 1.0, 1),
                                 ("e", 1.0, 1), ("Pc", float(P[i]), 0), ("Dc", float(O[i]), 0),
                                 ("Fc", 1.0, 0), ("Ec", 1.0, 0)):
            d[name] = nv + np.arange(k)
            nv += k
            lb += [0.0] * k
            ub += [hi] * k
            integ += [is_int] * k
        d["m"] = np.array([nv])
        nv += 1
        lb.append(0.0)
        ub.append(1.0)
        integ.append(1)
        # SLO windows: first token / finish at the end of slot t = (t+1) s
        end = (slots + 1) * s - arr[i]
        ttft_ok = end <= w.ttft_slo_s[i] + SLO_TOL_S
        e2e_ok = end <= w.e2e_slo_s[i] + SLO_TOL_S
        for j in np.flatnonzero(~ttft_ok):
            ub[int(d["f"][j])] = 0.0
        for j in np.flatnonzero(~e2e_ok):
            ub[int(d["e"][j])] = 0.0
        if O[i] == 1:
            for j in range(k):
                ub[int(d["d"][j])] = 0.0
        idx.append(d)
    lb_a, ub_a = np.array(lb), np.array(ub)
    cost = np.zeros(nv)
    for i in range(n):
        cost[idx[i]["m"][0]] = -float(w.utility[i])
    R: list[np.ndarray] = []
    C: list[np.ndarray] = []
    V: list[np.ndarray] = []
    rlo: list[float] = []
    rhi: list[float] = []
    row = [0]

    def add(cols, vals, lo: float, hi: float) -> None:
        cols = np.asarray(cols, np.int64)
        R.append(np.full(cols.size, row[0], np.int64))
        C.append(cols)
        V.append(np.asarray(vals, float) * np.ones(cols.size))
        rlo.append(lo)
        rhi.append(hi)
        row[0] += 1

    budget_cols: list[list[int]] = [[] for _ in range(T)]
    kv_terms: list[list[tuple[int, float]]] = [[] for _ in range(T)]
    for i in range(n):
        d = idx[i]
        k = d["slots"].size
        m = int(d["m"][0])
        if k == 0:
            ub_a[m] = 0.0
            continue
        add(np.append(d["p"], m), np.append(np.ones(k), -float(P[i])), 0.0, 0.0)
        add(np.append(d["d"], m), np.append(np.ones(k), -float(O[i] - 1)), 0.0, 0.0)
        add(np.append(d["f"], m), np.append(np.ones(k), -1.0), 0.0, 0.0)
        add(np.append(d["e"], m), np.append(np.ones(k), -1.0), 0.0, 0.0)
        tt = d["slots"].astype(float)
        if O[i] == 1:  # finish slot == first-token slot
            add(np.concatenate([d["e"], d["f"]]), np.concatenate([tt, -tt]), 0.0, 0.0)
        else:
            lim = math.floor((float(w.tpot_slo_s[i]) * (O[i] - 1) + SLO_TOL_S) / s + 1e-9) \
                if math.isfinite(w.tpot_slo_s[i]) else T
            add(np.concatenate([d["e"], d["f"]]), np.concatenate([tt, -tt]), -np.inf, float(lim))
        for j in range(k):
            t = int(d["slots"][j])
            # cumulative chains X_c[j] = X_c[j-1] + x[j]
            for cum, x in (("Pc", "p"), ("Dc", "d"), ("Fc", "f"), ("Ec", "e")):
                if j == 0:
                    add([d[cum][0], d[x][0]], [1.0, -1.0], 0.0, 0.0)
                else:
                    add([d[cum][j], d[cum][j - 1], d[x][j]], [1.0, -1.0, -1.0], 0.0, 0.0)
            # prefill done by the first-token slot: P Fc(t) <= Pc(t)
            add([d["Fc"][j], d["Pc"][j]], [float(P[i]), -1.0], -np.inf, 0.0)
            if O[i] > 1:
                # decode strictly after the first-token slot, and not after the finish slot
                if j == 0:
                    ub_a[int(d["d"][0])] = 0.0
                else:
                    add([d["d"][j], d["Fc"][j - 1]], [1.0, -1.0], -np.inf, 0.0)
                    add([d["d"][j], d["Ec"][j - 1], m], [1.0, 1.0, -1.0], -np.inf, 0.0)
            budget_cols[t] += [int(d["p"][j]), int(d["d"][j])]
            # KV at slot t: tokens computed up to t, minus W if finished before t
            kv_terms[t] += [(int(d["Pc"][j]), 1.0), (int(d["Dc"][j]), 1.0)]
            if j > 0:
                kv_terms[t].append((int(d["Ec"][j - 1]), -float(W[i])))
    for t in range(T):
        if budget_cols[t]:
            add(np.array(budget_cols[t]), np.ones(len(budget_cols[t])), -np.inf, float(B))
        if kv_terms[t]:
            add(np.array([c for c, _ in kv_terms[t]]), np.array([v for _, v in kv_terms[t]]),
                -np.inf, float(KV))
    if row[0] == 0:
        return HorizonSolution("optimal", 0.0, 0.0, np.zeros(n, bool), np.full(n, -1),
                               np.full(n, -1), T, time.perf_counter() - t0)
    a_mat = _int32_csr(sparse.csr_array(
        (np.concatenate(V), (np.concatenate(R), np.concatenate(C))), shape=(row[0], nv)))
    res = optimize.milp(
        cost, integrality=np.array(integ), bounds=optimize.Bounds(lb_a, ub_a),
        constraints=optimize.LinearConstraint(a_mat, np.array(rlo), np.array(rhi)),
        options={"time_limit": time_limit_s, "mip_rel_gap": rel_gap, "disp": False})
    wall = time.perf_counter() - t0
    status = _STATUS.get(res.status, "error")
    size = {"variables": int(nv), "constraints": int(row[0]), "nonzeros": int(a_mat.nnz)}
    dual = getattr(res, "mip_dual_bound", None)
    if res.x is None:
        bound = -float(dual) if dual is not None and math.isfinite(dual) else math.inf
        return HorizonSolution(status, math.nan, bound, np.zeros(n, bool), np.full(n, -1),
                               np.full(n, -1), T, wall, size)
    x = np.round(res.x)
    met = np.array([x[idx[i]["m"][0]] > 0.5 for i in range(n)], bool)
    first = np.full(n, -1, np.int64)
    fin = np.full(n, -1, np.int64)
    for i in np.flatnonzero(met):
        d = idx[i]
        first[i] = int(d["slots"][np.argmax(x[d["f"]])])
        fin[i] = int(d["slots"][np.argmax(x[d["e"]])])
    util = float(w.utility[met].sum())
    bound = -float(dual) if dual is not None and math.isfinite(dual) else util
    return HorizonSolution(status, util, max(bound, util), met, first, fin, T, wall, size)
