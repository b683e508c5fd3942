"""Edge-cloud placement as a generalised assignment MILP (PerLLM's clairvoyant oracle).

Formulation (``shared/research/optimization.md`` section 2.5 / 5(d); PerLLM arXiv:2405.14636,
objective ``min sum omega * E`` s.t. C1-C4 as rebuilt in ``papers.md`` section 2.3)::

    min  sum_ij E_ij x_ij + theta * sum_i s_i + rho * sum_i r_i
    s.t. sum_j x_ij + r_i = 1                         for all i   (C4; r_i only if rho given)
         sum_j T_ij x_ij - s_i <= Delta_i              for all i   (C1; slack variant only)
         x_ij = 0 if T_ij > Delta_i                               (C1; hard variant)
         sum_i L_ij x_ij <= C_j                        for all j   (C2 compute time)
         sum_i M_i x_ij <= K_j                         for all j   (C3 memory, optional)
         sum_(i,j) uses e  bytes_i x_ij <= B_e * H     for all e   (C3 link bytes over the epoch)
         x binary, r in [0, 1], s >= 0

Solved with HiGHS through ``highspy`` (column-wise CSC arrays; ``optimization.md`` 3.1-3.2).
The result reports the status, the incumbent and the dual bound as HiGHS gives them
("optimal" also when the relative gap tolerance is reached, see HiGHS#1147).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PlacementInstance", "PlacementResult", "assignment_cost", "solve_placement"]


@dataclass(frozen=True, eq=False)
class PlacementInstance:
    """One decision epoch.

    Parameters
    ----------
    energy_j : (n, m) array
        Weighted energy of request ``i`` at site ``j`` (``inf``: not allowed, e.g. memory).
    time_s : (n, m) array
        Processing time (transfer + inference) of ``i`` at ``j``.
    deadline_s : (n,) array
        Processing-time requirements ``Delta_i`` (``inf``: none).
    load_s : (n, m) array, optional
        Compute time ``i`` takes from ``j``'s capacity (C2).
    capacity_s : (m,) array, optional
        Compute-time capacity of each site over the epoch.
    mem_tokens : (n,) array, optional; mem_capacity_tokens : (m,) array, optional
        Memory rows (C3), e.g. KV tokens held concurrently.
    link_bytes : tuple of arrays ``(i, j, e, bytes)``, optional; link_capacity_bytes : (L,)
        Bytes that placing ``i`` at ``j`` moves over link ``e``, and each link's capacity over
        the epoch (C3 bandwidth).
    deadline_penalty : float, optional
        ``theta``: ``None`` forbids late pairs (hard C1); a number turns C1 into a soft row with
        slack ``s_i`` (seconds) penalised by ``theta`` per second.
    reject_penalty : float, optional
        ``rho``: ``None`` forces every request to be placed; a number allows rejection
        ``r_i`` at that cost.
    """

    energy_j: np.ndarray
    time_s: np.ndarray
    deadline_s: np.ndarray
    load_s: np.ndarray | None = None
    capacity_s: np.ndarray | None = None
    mem_tokens: np.ndarray | None = None
    mem_capacity_tokens: np.ndarray | None = None
    link_bytes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    link_capacity_bytes: np.ndarray | None = None
    deadline_penalty: float | None = None
    reject_penalty: float | None = None

    def __post_init__(self) -> None:
        e = np.asarray(self.energy_j, float)
        if e.ndim != 2:
            raise ValueError(f"energy_j must be (n, m), got shape {e.shape}")
        n, m = e.shape
        object.__setattr__(self, "energy_j", e)
        if np.isnan(e).any() or (e == -math.inf).any():
            raise ValueError("energy_j must not contain NaN or -inf")
        t = np.asarray(self.time_s, float)
        if t.shape != (n, m) or np.isnan(t).any() or (t < 0).any():
            raise ValueError(f"time_s must be a non-negative (n, m)=({n}, {m}) array")
        object.__setattr__(self, "time_s", t)
        d = np.asarray(self.deadline_s, float).reshape(-1)
        if d.size != n or np.isnan(d).any() or (d <= 0).any():
            raise ValueError(f"deadline_s must be {n} positive values (inf = none)")
        object.__setattr__(self, "deadline_s", d)
        if (self.load_s is None) != (self.capacity_s is None):
            raise ValueError("give both load_s and capacity_s, or neither")
        if (self.mem_tokens is None) != (self.mem_capacity_tokens is None):
            raise ValueError("give both mem_tokens and mem_capacity_tokens, or neither")
        if (self.link_bytes is None) != (self.link_capacity_bytes is None):
            raise ValueError("give both link_bytes and link_capacity_bytes, or neither")
        if self.load_s is not None:
            ls = np.asarray(self.load_s, float)
            cap = np.asarray(self.capacity_s, float).reshape(-1)
            if ls.shape != (n, m) or cap.size != m or (ls < 0).any() or (cap < 0).any():
                raise ValueError("load_s must be (n, m) >= 0 and capacity_s (m,) >= 0")
        for nm in ("deadline_penalty", "reject_penalty"):
            v = getattr(self, nm)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{nm} must be None or finite and >= 0, got {v}")

    @property
    def shape(self) -> tuple[int, int]:
        """(requests, sites)."""
        return self.energy_j.shape  # type: ignore[return-value]

    def allowed(self) -> np.ndarray:
        """Pairs that may be used: finite energy and, under hard C1, on time."""
        ok = np.isfinite(self.energy_j)
        if self.deadline_penalty is None:
            ok &= self.time_s <= self.deadline_s[:, None] + 1e-9
        return ok


@dataclass(frozen=True)
class PlacementResult:
    """Outcome of :func:`solve_placement`.

    ``status`` is one of ``"optimal"`` (within ``mip_rel_gap``), ``"time_limit"``,
    ``"infeasible"`` or ``"error: <HiGHS status>"``; ``objective`` is the incumbent (NaN when
    none), ``bound`` the dual bound, ``site_of`` the incumbent assignment (-1 = rejected).
    """

    status: str
    objective: float
    bound: float
    gap: float
    site_of: np.ndarray
    slack_s: np.ndarray
    wall_s: float
    num_cols: int
    num_rows: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_solution(self) -> bool:
        """Whether an incumbent exists."""
        return self.status in ("optimal", "time_limit") and math.isfinite(self.objective)


def assignment_cost(inst: PlacementInstance, site_of: np.ndarray) -> tuple[float, bool]:
    """Objective of a given assignment under ``inst`` and whether it satisfies every row."""
    site_of = np.asarray(site_of, np.int64)
    _n, m = inst.shape
    placed = site_of >= 0
    idx = np.flatnonzero(placed)
    e = inst.energy_j[idx, site_of[idx]]
    t = inst.time_s[idx, site_of[idx]]
    cost = float(e.sum())
    ok = bool(np.isfinite(e).all())
    late = np.maximum(t - inst.deadline_s[idx], 0.0)
    if inst.deadline_penalty is None:
        ok &= bool((late <= 1e-9).all())
    else:
        cost += inst.deadline_penalty * float(late.sum())
    if (~placed).any():
        if inst.reject_penalty is None:
            ok = False
        else:
            cost += inst.reject_penalty * float((~placed).sum())
    if inst.load_s is not None:
        used = np.bincount(site_of[idx], weights=inst.load_s[idx, site_of[idx]], minlength=m)
        ok &= bool((used <= np.asarray(inst.capacity_s) + 1e-9).all())
    if inst.mem_tokens is not None:
        used = np.bincount(site_of[idx], weights=np.asarray(inst.mem_tokens)[idx], minlength=m)
        ok &= bool((used <= np.asarray(inst.mem_capacity_tokens) + 1e-9).all())
    if inst.link_bytes is not None:
        li, lj, le, lb = inst.link_bytes
        sel = site_of[li] == lj
        used = np.bincount(le[sel], weights=lb[sel], minlength=len(inst.link_capacity_bytes))
        ok &= bool((used <= np.asarray(inst.link_capacity_bytes) + 1e-6).all())
    return cost, ok


def solve_placement(inst: PlacementInstance, *, time_limit_s: float = 60.0,
                    mip_rel_gap: float = 1e-6, threads: int = 1) -> PlacementResult:
    """Solve the epoch GAP with HiGHS (``highspy``).

    Parameters
    ----------
    inst : PlacementInstance
    time_limit_s : float
        HiGHS time limit (a hard wall-clock guard is the caller's job, see
        ``optimization.md`` 3.2 on HiGHS#2226).
    mip_rel_gap : float
        Relative gap at which HiGHS stops and reports "optimal".
    threads : int
        HiGHS threads (1 recommended on small machines).
    """
    import highspy

    from slo_opt.solvers.highs import solve_lp

    t0 = time.perf_counter()
    n, m = inst.shape
    ok = inst.allowed()
    pi, pj = np.nonzero(ok)
    nx_ = pi.size
    soft = inst.deadline_penalty is not None
    rej = inst.reject_penalty is not None
    # columns: x pairs, then r_i (if rej), then s_i (if soft)
    ncol = nx_ + (n if rej else 0) + (n if soft else 0)
    r0 = nx_
    s0 = nx_ + (n if rej else 0)
    cost = np.concatenate([inst.energy_j[pi, pj],
                           np.full(n if rej else 0, inst.reject_penalty or 0.0),
                           np.full(n if soft else 0, inst.deadline_penalty or 0.0)])
    lower = np.zeros(ncol)
    upper = np.concatenate([np.ones(nx_ + (n if rej else 0)), np.full(n if soft else 0, np.inf)])
    rows_i: list[np.ndarray] = []
    cols_i: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    rlo: list[np.ndarray] = []
    rhi: list[np.ndarray] = []
    nrow = 0

    def add(r: np.ndarray, c: np.ndarray, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        nonlocal nrow
        rows_i.append(r + nrow)
        cols_i.append(c)
        vals.append(v)
        rlo.append(lo)
        rhi.append(hi)
        nrow += lo.size

    # C4 assignment
    r = [pi]
    c = [np.arange(nx_)]
    v = [np.ones(nx_)]
    if rej:
        r.append(np.arange(n))
        c.append(r0 + np.arange(n))
        v.append(np.ones(n))
    add(np.concatenate(r), np.concatenate(c), np.concatenate(v), np.ones(n), np.ones(n))
    # C1 soft deadline rows (only requests with a finite deadline)
    if soft:
        fin = np.isfinite(inst.deadline_s)
        rowmap = np.full(n, -1)
        rowmap[fin] = np.arange(int(fin.sum()))
        sel = fin[pi]
        fi = np.flatnonzero(fin)
        add(np.concatenate([rowmap[pi[sel]], rowmap[fi]]),
            np.concatenate([np.flatnonzero(sel), s0 + fi]),
            np.concatenate([inst.time_s[pi[sel], pj[sel]], -np.ones(fi.size)]),
            np.full(fi.size, -np.inf), inst.deadline_s[fin])
    # C2 compute
    if inst.load_s is not None:
        add(pj, np.arange(nx_), np.asarray(inst.load_s, float)[pi, pj],
            np.full(m, -np.inf), np.asarray(inst.capacity_s, float).reshape(-1))
    # C3 memory
    if inst.mem_tokens is not None:
        add(pj, np.arange(nx_), np.asarray(inst.mem_tokens, float)[pi],
            np.full(m, -np.inf), np.asarray(inst.mem_capacity_tokens, float).reshape(-1))
    # C3 links
    if inst.link_bytes is not None:
        li, lj, le, lb = (np.asarray(a) for a in inst.link_bytes)
        colmap = np.full((n, m), -1, np.int64)
        colmap[pi, pj] = np.arange(nx_)
        cc = colmap[li, lj]
        keep = cc >= 0
        cap = np.asarray(inst.link_capacity_bytes, float).reshape(-1)
        add(le[keep], cc[keep], lb[keep].astype(float), np.full(cap.size, -np.inf), cap)
    R = np.concatenate(rows_i)
    C = np.concatenate(cols_i)
    V = np.concatenate(vals)
    order = np.lexsort((R, C))
    R, C, V = R[order], C[order], V[order]
    start = np.searchsorted(C, np.arange(ncol + 1))

    lp = highspy.HighsLp()
    lp.num_col_ = int(ncol)
    lp.num_row_ = int(nrow)
    lp.col_cost_ = cost
    lp.col_lower_ = lower
    lp.col_upper_ = upper
    lp.row_lower_ = np.concatenate(rlo)
    lp.row_upper_ = np.concatenate(rhi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start.astype(np.int32)
    lp.a_matrix_.index_ = R.astype(np.int32)
    lp.a_matrix_.value_ = V
    integ = [highspy.HighsVarType.kInteger] * nx_ + [highspy.HighsVarType.kContinuous] * (
        ncol - nx_)
    lp.integrality_ = integ
    if ncol == 0:
        return PlacementResult("optimal", 0.0, 0.0, 0.0, np.full(n, -1), np.zeros(n),
                               time.perf_counter() - t0, 0, nrow)
    out = solve_lp(lp, options={"time_limit": float(time_limit_s),
                                "mip_rel_gap": float(mip_rel_gap), "threads": int(threads)})
    st = out.model_status
    sname = out.status_name
    obj = out.objective if out.objective is not None else math.nan
    bound = out.mip_dual_bound
    gap = out.mip_gap
    if not out.consistent:
        status = f"error: {out.message}"
    elif st == highspy.HighsModelStatus.kOptimal:
        status = "optimal"
    elif st == highspy.HighsModelStatus.kTimeLimit:
        status = "time_limit"
    elif st == highspy.HighsModelStatus.kInfeasible:
        status = "infeasible"
    else:
        status = f"error: {sname}"
    site_of = np.full(n, -1, np.int64)
    slack = np.zeros(n)
    has = status in ("optimal", "time_limit") and out.x is not None
    if has:
        x = out.x
        on = x[:nx_] > 0.5
        site_of[pi[on]] = pj[on]
        if soft:
            slack = np.maximum(x[s0:s0 + n], 0.0)
    else:
        obj = math.nan
    return PlacementResult(status, obj, bound, gap, site_of, slack, time.perf_counter() - t0,
                           int(ncol), int(nrow), {"highs_status": sname})
