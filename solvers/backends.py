"""Solver back-ends for :class:`~slo_opt.solvers.base.LinearModel`: HiGHS (highspy), Pyomo, cvxpy.

Each back-end maps its native status to :class:`~slo_opt.solvers.base.Status` in exactly one
function (``_status_highs``, ``_status_pyomo``, ``_status_cvxpy``). Incumbent and bound are
kept apart: the bound is the solver's proven dual bound (``mip_dual_bound``), or, when a limit
stops the solver before it has one, :meth:`LinearModel.trivial_bound` (a bound from column
bounds alone), never the incumbent.

Notes
-----
Pitfalls handled (research/optimization.md section 3): Pyomo's new ``highs`` interface raises
on a time limit unless ``raise_exception_on_nonoptimal_result=False, load_solutions=False``;
cvxpy passes ``Maximize`` to HiGHS as a minimisation, so its ``mip_dual_bound`` is negated;
HiGHS' ``time_limit`` is not honoured in some presolve loops (HiGHS#2226), hence
``hard_timeout_s`` runs the back-end in a child process that is killed at the deadline.
"""

from __future__ import annotations

import importlib.util
import math
import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from slo_opt.solvers.base import LinearModel, Status

__all__ = ["AVAILABLE", "HAS_CVXPY", "HAS_HIGHSPY", "HAS_PYOMO", "RawResult", "run"]

HAS_HIGHSPY = importlib.util.find_spec("highspy") is not None
HAS_PYOMO = importlib.util.find_spec("pyomo") is not None and HAS_HIGHSPY
HAS_CVXPY = importlib.util.find_spec("cvxpy") is not None
#: Back-end name -> installed.
AVAILABLE = {"highs": HAS_HIGHSPY, "pyomo": HAS_PYOMO, "cvxpy": HAS_CVXPY}


@dataclass
class RawResult:
    """A back-end's answer before extraction."""

    status: Status
    incumbent: float | None
    bound: float | None
    values: np.ndarray | None
    solve_s: float
    message: str = ""


def run(model: LinearModel, *, backend: str = "highs", time_limit_s: float = 60.0,
        rel_gap: float = 1e-6, hard_timeout_s: float | None = None, threads: int = 1,
        start: np.ndarray | None = None) -> RawResult:
    """Solve ``model`` with ``backend``; see :func:`slo_opt.solvers.base.solve`."""
    if backend not in AVAILABLE:
        raise ValueError(f"unknown backend {backend!r}; known: {sorted(AVAILABLE)}")
    if not AVAILABLE[backend]:
        raise ImportError(f"backend {backend!r} is not installed (pip install 'slo_opt[solvers]')")
    if model.num_cols == 0:  # empty workload: nothing to decide
        ok = bool(np.all(model.row_lb <= 0) and np.all(model.row_ub >= 0))
        st = Status.OPTIMAL if ok else Status.INFEASIBLE
        val = model.obj_offset if ok else None
        return RawResult(st, val, val if ok else None, np.zeros(0) if ok else None, 0.0, "empty model")
    fn = {"highs": _solve_highs, "pyomo": _solve_pyomo, "cvxpy": _solve_cvxpy}[backend]
    if start is not None and backend == "highs":
        model.info["mip_start"] = np.asarray(start, float)
    from slo_opt.solvers.highs import quiet_banner

    if HAS_HIGHSPY:
        quiet_banner()  # pyomo and cvxpy construct HiGHS themselves
    if hard_timeout_s is None:
        raw = fn(model, time_limit_s, rel_gap, threads)
    else:
        raw = _in_subprocess(fn, model, time_limit_s, rel_gap, threads, hard_timeout_s)
    return _verified(model, raw)


def _verified(model: LinearModel, raw: RawResult) -> RawResult:
    """Evaluate the returned vector against the model itself (every back-end).

    The incumbent must equal ``c x + offset`` of the returned values, and the values must
    satisfy the rows, column bounds and integrality within :data:`.highs.FEAS_ATOL`; otherwise
    the answer is an :attr:`Status.ERROR` with the reason, never a value.
    """
    from slo_opt.solvers.highs import FEAS_ATOL, OBJ_RTOL

    if raw.values is None or raw.incumbent is None:
        return raw
    x = np.asarray(raw.values, float)
    if x.size != model.num_cols:
        return RawResult(Status.ERROR, None, None, None, raw.solve_s,
                         f"{raw.message}: solution has {x.size} values for {model.num_cols} columns")
    obj = float(model.c @ x) + float(model.obj_offset)
    act = model.matrix("csr") @ x if model.num_rows else np.zeros(0)
    scale_r = 1.0 + np.abs(np.where(np.isfinite(model.row_ub), model.row_ub,
                                    np.where(np.isfinite(model.row_lb), model.row_lb, 0.0)))
    viol = max(
        float(np.max(np.concatenate([[0.0], (model.row_lb - act) / scale_r,
                                     (act - model.row_ub) / scale_r]))),
        float(np.max(np.concatenate([[0.0], model.col_lb - x, x - model.col_ub]))),
        float(np.max(np.abs(x[model.integer] - np.rint(x[model.integer])), initial=0.0)),
    )
    why = []
    if not math.isclose(obj, raw.incumbent, rel_tol=OBJ_RTOL, abs_tol=OBJ_RTOL):
        why.append(f"incumbent {raw.incumbent:.10g} but the returned values evaluate to "
                   f"{obj:.10g}")
    if viol > FEAS_ATOL:
        why.append(f"returned values violate a row, bound or integrality by {viol:.3g}")
    if why:
        return RawResult(Status.ERROR, None, None, None, raw.solve_s,
                         f"{raw.message}: " + "; ".join(why))
    return raw


def _child(conn: Any, fn: Any, model: LinearModel, tl: float, gap: float, threads: int) -> None:
    try:
        conn.send(("ok", fn(model, tl, gap, threads)))
    except Exception as exc:  # pragma: no cover - reported to the parent
        conn.send(("err", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _in_subprocess(fn: Any, model: LinearModel, tl: float, gap: float, threads: int,
                   hard_timeout_s: float) -> RawResult:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_child, args=(child, fn, model, tl, gap, threads), daemon=True)
    proc.start()
    child.close()
    got = None
    if parent.poll(hard_timeout_s):
        try:
            got = parent.recv()
        except EOFError:
            got = None
    if proc.is_alive():
        proc.kill()
    proc.join()
    dt = time.perf_counter() - t0
    if got is None:
        return RawResult(Status.NO_SOLUTION, None, model.trivial_bound(), None, dt,
                         f"hard timeout after {hard_timeout_s} s (child killed)")
    kind, payload = got
    if kind == "err":
        return RawResult(Status.ERROR, None, None, None, dt, payload)
    return payload


# -- HiGHS (highspy) ---------------------------------------------------------------------------
def _status_highs(out: Any, model: LinearModel, mip: bool) -> tuple[Status, float | None,
                                                                     float | None, str]:
    """The one HiGHS -> Status mapping (``out``: a verified :class:`.highs.HighsOutcome`)."""
    import highspy

    ms = out.model_status
    msg = out.status_name
    obj = out.objective  # evaluated from the returned vector, not HiGHS' report
    S = highspy.HighsModelStatus
    if ms == S.kOptimal:
        bound = out.mip_dual_bound if mip else obj
        if bound is None or not math.isfinite(bound):
            bound = obj
        return Status.OPTIMAL, obj, bound, msg
    if ms == S.kInfeasible:
        return Status.INFEASIBLE, None, None, msg
    limits = [getattr(S, k) for k in ("kTimeLimit", "kIterationLimit", "kSolutionLimit",
                                      "kInterrupt", "kObjectiveBound", "kObjectiveTarget",
                                      "kHighsInterrupt") if hasattr(S, k)]  # by version
    if ms in limits:
        bound = out.mip_dual_bound if mip else math.nan
        if not math.isfinite(bound):
            bound = model.trivial_bound()
        return (Status.FEASIBLE if obj is not None else Status.NO_SOLUTION), obj, bound, msg
    return Status.ERROR, None, None, msg


def _solve_highs(model: LinearModel, tl: float, gap: float, threads: int) -> RawResult:
    import highspy

    from slo_opt.solvers.highs import solve_lp

    A = model.matrix("csc")
    A.sum_duplicates()
    opts: dict[str, Any] = {"time_limit": float(tl), "mip_rel_gap": float(gap),
                            "mip_abs_gap": 1e-9, "threads": int(threads)}
    lp_solver = model.info.get("lp_solver")
    mip = bool(model.integer.any())
    if lp_solver and not mip:
        opts["solver"] = lp_solver
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_ = model.num_cols
    lp.num_row_ = model.num_rows
    lp.col_cost_ = np.asarray(model.c, float)
    lp.col_lower_ = np.where(np.isfinite(model.col_lb), model.col_lb, -inf)
    lp.col_upper_ = np.where(np.isfinite(model.col_ub), model.col_ub, inf)
    lp.row_lower_ = np.where(np.isfinite(model.row_lb), model.row_lb, -inf)
    lp.row_upper_ = np.where(np.isfinite(model.row_ub), model.row_ub, inf)
    lp.offset_ = float(model.obj_offset)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(float)
    lp.sense_ = highspy.ObjSense.kMaximize if model.sense == "max" else highspy.ObjSense.kMinimize
    if mip:
        kI, kC = highspy.HighsVarType.kInteger, highspy.HighsVarType.kContinuous
        lp.integrality_ = [kI if b else kC for b in model.integer.tolist()]
    start = model.info.get("mip_start")
    if not (mip and start is not None and start.size == model.num_cols):
        start = None
    t0 = time.perf_counter()
    out = solve_lp(lp, options=opts, start=start)
    dt = time.perf_counter() - t0
    if not out.consistent:
        return RawResult(Status.ERROR, None, None, None, dt,
                         f"{out.status_name}: {out.message}")
    status, obj, bound, msg = _status_highs(out, model, mip)
    if out.resolved_cold:
        msg = f"{msg} ({out.message})"
    vals = out.x if obj is not None else None
    return _result(model, status, obj, bound, vals, dt, msg)


#: A dual bound may sit on the wrong side of the incumbent by at most this much (relative to
#: ``max(1, |incumbent|)``): the solvers' primal feasibility and optimality tolerances (1e-7)
#: summed over a model's rows. Within it the bound is replaced by the incumbent; beyond it the
#: result is :attr:`Status.NUMERICAL` with no bound (never a silent clamp).
BOUND_RTOL = 1e-6


def _safe_bound(model: LinearModel, obj: float | None, bound: float | None) -> float | None:
    """``bound`` checked against the incumbent; :class:`_WrongSideBound` beyond tolerance."""
    if bound is None or obj is None:
        return bound
    wrong = (obj - bound) if model.sense == "max" else (bound - obj)
    if wrong <= 0:
        return bound
    if wrong <= BOUND_RTOL * max(1.0, abs(obj)):
        return obj
    raise _WrongSideBound(f"dual bound {bound:.10g} is on the wrong side of the incumbent "
                          f"{obj:.10g} by {wrong:.3g} (tolerance {BOUND_RTOL:g} relative)")


class _WrongSideBound(ArithmeticError):
    """A solver's dual bound contradicts its own incumbent beyond :data:`BOUND_RTOL`."""


def _result(model: LinearModel, status: Status, obj: float | None, bound: float | None,
            vals: np.ndarray | None, dt: float, msg: str) -> RawResult:
    """A :class:`RawResult` whose bound has passed :func:`_safe_bound` (or NUMERICAL)."""
    try:
        return RawResult(status, obj, _safe_bound(model, obj, bound), vals, dt, msg)
    except _WrongSideBound as exc:
        return RawResult(Status.NUMERICAL, obj, None, vals, dt, f"{msg}: {exc}")


# -- Pyomo (new HiGHS interface) ---------------------------------------------------------------
def _status_pyomo(res: Any) -> Status:
    """The one Pyomo -> Status mapping."""
    from pyomo.contrib.solver.common.results import SolutionStatus
    from pyomo.contrib.solver.common.results import TerminationCondition as TC

    tc, ss = res.termination_condition, res.solution_status
    if tc == TC.convergenceCriteriaSatisfied and ss == SolutionStatus.optimal:
        return Status.OPTIMAL
    if tc in (TC.provenInfeasible, TC.locallyInfeasible):
        return Status.INFEASIBLE
    if tc in (TC.maxTimeLimit, TC.iterationLimit, TC.objectiveLimit, TC.interrupted,
              TC.minStepLength):
        return Status.FEASIBLE if ss in (SolutionStatus.feasible, SolutionStatus.optimal) \
            else Status.NO_SOLUTION
    return Status.ERROR


def _solve_pyomo(model: LinearModel, tl: float, gap: float, threads: int) -> RawResult:
    import pyomo.environ as pyo
    from pyomo.contrib.solver.solvers.highs import Highs
    from pyomo.core.expr.numeric_expr import LinearExpression

    n = model.num_cols
    m = pyo.ConcreteModel(name=model.info.get("name", "model"))
    lb, ub, integ = model.col_lb, model.col_ub, model.integer

    def bounds(_m: Any, j: int) -> tuple[float | None, float | None]:
        return (float(lb[j]) if math.isfinite(lb[j]) else None,
                float(ub[j]) if math.isfinite(ub[j]) else None)

    def domain(_m: Any, j: int) -> Any:
        return pyo.Integers if integ[j] else pyo.Reals

    m.x = pyo.Var(range(n), bounds=bounds, domain=domain)
    A = model.matrix("csr")
    A.sum_duplicates()
    xs = [m.x[j] for j in range(n)]
    m.rows = pyo.ConstraintList()
    for i in range(model.num_rows):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        if lo == hi:
            continue
        expr = LinearExpression(constant=0, linear_coefs=A.data[lo:hi].tolist(),
                                linear_vars=[xs[j] for j in A.indices[lo:hi]])
        rl, ru = model.row_lb[i], model.row_ub[i]
        m.rows.add((float(rl) if math.isfinite(rl) else None, expr,
                    float(ru) if math.isfinite(ru) else None))
    nz = np.flatnonzero(model.c)
    obj = LinearExpression(constant=float(model.obj_offset),
                           linear_coefs=model.c[nz].tolist(), linear_vars=[xs[j] for j in nz])
    m.obj = pyo.Objective(expr=obj, sense=pyo.maximize if model.sense == "max" else pyo.minimize)
    t0 = time.perf_counter()
    res = Highs().solve(m, time_limit=float(tl), rel_gap=float(gap), threads=int(threads),
                        load_solutions=False, raise_exception_on_nonoptimal_result=False)
    dt = time.perf_counter() - t0
    status = _status_pyomo(res)
    inc = res.incumbent_objective if status in (Status.OPTIMAL, Status.FEASIBLE) else None
    bound = res.objective_bound
    if status == Status.INFEASIBLE or status == Status.ERROR:
        bound = None
    elif bound is None or not math.isfinite(bound):
        bound = inc if (status == Status.OPTIMAL and not integ.any()) else model.trivial_bound()
    vals = None
    if inc is not None:
        loader = res.solution_loader
        # pyomo >= 6.10.1 names it get_vars; 6.9.2-6.10.0 get_primals
        prim = loader.get_vars() if hasattr(loader, "get_vars") else loader.get_primals()
        vals = np.array([prim[m.x[j]] for j in range(n)], float)
    return _result(model, status, None if inc is None else float(inc), bound, vals, dt,
                   str(res.termination_condition))


# -- cvxpy ---------------------------------------------------------------------------------------
def _status_cvxpy(status: str, has_value: bool) -> Status:
    """The one cvxpy -> Status mapping."""
    if status == "optimal":
        return Status.OPTIMAL
    if status in ("infeasible", "infeasible_inaccurate"):
        return Status.INFEASIBLE
    if status in ("user_limit", "optimal_inaccurate"):
        return Status.FEASIBLE if has_value else Status.NO_SOLUTION
    return Status.ERROR


def _solve_cvxpy(model: LinearModel, tl: float, gap: float, threads: int) -> RawResult:
    import cvxpy as cp

    A = model.matrix("csc")
    A.sum_duplicates()
    integ = model.integer
    ii, cc = np.flatnonzero(integ), np.flatnonzero(~integ)
    parts, cons = [], []
    xi = cp.Variable(ii.size, integer=True) if ii.size else None
    xc = cp.Variable(cc.size) if cc.size else None
    Ax = 0
    cx = float(model.obj_offset)
    for var, idx in ((xi, ii), (xc, cc)):
        if var is None:
            continue
        parts.append((var, idx))
        Ax = Ax + A[:, idx] @ var
        cx = cx + model.c[idx] @ var
        lo, hi = model.col_lb[idx], model.col_ub[idx]
        if np.isfinite(lo).any():
            f = np.flatnonzero(np.isfinite(lo))
            cons.append(var[f] >= lo[f])
        if np.isfinite(hi).any():
            f = np.flatnonzero(np.isfinite(hi))
            cons.append(var[f] <= hi[f])
    rl, ru = model.row_lb, model.row_ub
    if model.num_rows:
        eq = np.flatnonzero(rl == ru)
        lo = np.flatnonzero(np.isfinite(rl) & (rl != ru))
        hi = np.flatnonzero(np.isfinite(ru) & (rl != ru))
        if eq.size:
            cons.append(Ax[eq] == rl[eq])
        if lo.size:
            cons.append(Ax[lo] >= rl[lo])
        if hi.size:
            cons.append(Ax[hi] <= ru[hi])
    objective = cp.Maximize(cx) if model.sense == "max" else cp.Minimize(cx)
    prob = cp.Problem(objective, cons)
    opts: dict[str, Any] = {"time_limit": float(tl), "threads": int(threads)}
    if ii.size:
        opts["mip_rel_gap"] = float(gap)
    t0 = time.perf_counter()
    try:
        prob.solve(solver=cp.HIGHS, **opts)
    except cp.error.SolverError as exc:
        return RawResult(Status.ERROR, None, None, None, time.perf_counter() - t0, str(exc))
    dt = time.perf_counter() - t0
    has_val = prob.value is not None and np.isfinite(prob.value)
    status = _status_cvxpy(str(prob.status), has_val)
    inc = float(prob.value) if status in (Status.OPTIMAL, Status.FEASIBLE) and has_val else None
    bound: float | None = None
    if status not in (Status.INFEASIBLE, Status.ERROR):
        extra = getattr(prob.solver_stats, "extra_stats", None)
        raw = getattr(extra, "mip_dual_bound", None) if ii.size else None
        if raw is not None and math.isfinite(raw):
            # cvxpy minimises -f for Maximize: the reported dual bound is negated (opt.md 3.3)
            bound = (-float(raw) if model.sense == "max" else float(raw)) + model.obj_offset
        elif status == Status.OPTIMAL:
            bound = inc
        else:
            bound = model.trivial_bound()
    vals = None
    if inc is not None:
        vals = np.zeros(model.num_cols)
        for var, idx in parts:
            vals[idx] = np.asarray(var.value, float).reshape(-1)
    return _result(model, status, inc, bound, vals, dt, str(prob.status))
