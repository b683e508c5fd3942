"""The one place that runs HiGHS (``highspy``): quiet construction, logging, verified answers.

Every formulation that calls HiGHS directly (:mod:`.backends`, :mod:`.placement_milp`,
:mod:`.placement_slotted`) goes through :func:`solve_lp`, which

* creates the solver without its banner on stdout (HiGHS >= 1.16 prints one from the C++
  constructor, the first time per process; it is captured and sent to :mod:`logging`);
* sends HiGHS' own log to the ``slo_opt.solvers.highs`` logger when that logger is enabled for
  ``DEBUG`` (never to stdout);
* **never accepts an answer it has not checked**: the returned primal vector is evaluated
  independently (objective ``c x + offset``, row activities, column bounds, integrality) and
  compared with the objective HiGHS reports. If they disagree and a MIP start was given, the
  model is re-solved cold; if they still disagree, the outcome is marked ``consistent=False``
  and callers report an explicit error status instead of a value.

Notes
-----
Root cause of the wrong answers seen with highspy 1.16.0 (issue 12): with presolve on and a MIP
start passed through ``Highs.setSolution``, HiGHS maps the start into the presolved space,
where dual reductions turn it into a *better* point ("MIP start solution is feasible in the
reduced space: objective value is ..."); when that point is the final incumbent, 1.16.0 reports
its objective and status ``Optimal`` but returns the user's original (worse) column values from
``getSolution()``. The objective and the solution vector then disagree (placement stage 2:
reported 9.156, returned vector worth 11.501). 1.15.x returns the postsolved vector; 1.16.0
without a start, or with presolve off, is correct. The independent evaluation below detects the
mismatch on every version, and the cold re-solve repairs it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["HighsOutcome", "evaluate", "new_highs", "quiet_banner", "solve_lp"]

log = logging.getLogger("slo_opt.solvers.highs")

#: Relative tolerance on |reported objective - evaluated objective| (HiGHS' feasibility
#: tolerances are 1e-7 absolute on rows; objectives are sums of up to 1e6 such terms).
OBJ_RTOL = 1e-6
#: Absolute tolerance on row/column bound and integrality violations of a returned vector.
FEAS_ATOL = 1e-6

_banner_done = False
_threads: int | None = None  # size of HiGHS' process-global thread pool, once a run has set it


@contextlib.contextmanager
def _capture_fd1() -> Any:
    """Redirect the process' file descriptor 1 (C-level stdout) to a temporary file."""
    import sys

    with contextlib.suppress(Exception):
        sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield tmp
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace").strip()
            if text:
                log.debug("%s", text)


def quiet_banner() -> None:
    """Make sure HiGHS' once-per-process banner has been printed, into :mod:`logging`.

    Back-ends that construct HiGHS themselves (Pyomo, cvxpy) call this first.
    """
    if not _banner_done:
        new_highs()


def new_highs(**options: Any) -> Any:
    """A ``highspy.Highs`` with no console output, HiGHS' log routed to :mod:`logging`.

    Parameters
    ----------
    **options
        HiGHS option name -> value (e.g. ``time_limit=5.0``). ``threads`` defaults to 1 (not
        HiGHS' "all cores"), so that every run in a process asks for the same thread pool.
    """
    import highspy

    global _banner_done
    if not _banner_done:
        try:
            with _capture_fd1():
                h = highspy.Highs()
        except OSError:  # no usable fd 1 (rare embedded hosts): construct normally
            h = highspy.Highs()
        _banner_done = True
    else:
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    if log.isEnabledFor(logging.DEBUG) and hasattr(h, "cbLogging"):
        h.setOptionValue("output_flag", True)
        h.setOptionValue("log_to_console", False)
        h.cbLogging += lambda e: log.debug("%s", str(e.message).rstrip())
    options = dict(options)
    threads = int(options.pop("threads", 1))
    global _threads
    if _threads is not None and threads != _threads and hasattr(h, "resetGlobalScheduler"):
        # HiGHS' thread pool is process-global and sized by the first run; a run asking for a
        # different size fails with model status "Not Set" unless the pool is reset first.
        h.resetGlobalScheduler(True)
    _threads = threads
    h.setOptionValue("threads", threads)
    for k, v in options.items():
        h.setOptionValue(k, v)
    return h


@dataclass(frozen=True)
class HighsOutcome:
    """What one verified HiGHS run returned.

    Attributes
    ----------
    model_status : highspy.HighsModelStatus
    status_name : str
        ``modelStatusToString`` of ``model_status``.
    objective : float or None
        The objective **evaluated from** ``x`` (``None`` when there is no primal vector).
    reported_objective : float
        HiGHS' ``objective_function_value``.
    mip_dual_bound, mip_gap : float
        As HiGHS reports them (``nan`` for an LP or when absent).
    x : numpy.ndarray or None
        Column values of the primal solution, when HiGHS has one.
    consistent : bool
        ``False`` when the returned vector contradicts the reported objective or is infeasible
        beyond :data:`FEAS_ATOL` even after a cold re-solve; callers must not report its value.
    resolved_cold : bool
        A mismatch was found after a warm start and the model was solved again without it.
    message : str
        Why ``consistent`` is ``False``, or what the cold re-solve repaired.
    """

    model_status: Any
    status_name: str
    objective: float | None
    reported_objective: float
    mip_dual_bound: float
    mip_gap: float
    x: np.ndarray | None
    consistent: bool
    resolved_cold: bool
    message: str


def evaluate(lp: Any, x: np.ndarray) -> tuple[float, float]:
    """Objective ``c x + offset`` and the worst bound/row/integrality violation of ``x``.

    Computed from the ``HighsLp`` arrays alone (column-wise matrix), independently of HiGHS'
    own solution report.
    """
    x = np.asarray(x, float)
    n = int(lp.num_col_)
    c = np.asarray(lp.col_cost_, float)
    obj = float(c @ x) + float(lp.offset_)
    lo = np.asarray(lp.col_lower_, float)
    hi = np.asarray(lp.col_upper_, float)
    viol = float(np.max(np.concatenate([[0.0], lo - x, x - hi]))) if n else 0.0
    m = int(lp.num_row_)
    if m:
        start = np.asarray(lp.a_matrix_.start_, np.int64)
        index = np.asarray(lp.a_matrix_.index_, np.int64)
        value = np.asarray(lp.a_matrix_.value_, float)
        col = np.repeat(np.arange(n), np.diff(start[: n + 1]))
        act = np.bincount(index[: col.size], weights=value[: col.size] * x[col], minlength=m)
        rlo = np.asarray(lp.row_lower_, float)
        rhi = np.asarray(lp.row_upper_, float)
        scale = 1.0 + np.abs(np.where(np.isfinite(rhi), rhi, np.where(np.isfinite(rlo), rlo, 0)))
        rv = np.maximum(rlo - act, act - rhi) / scale
        viol = max(viol, float(np.max(np.concatenate([[0.0], rv]))))
    integ = getattr(lp, "integrality_", None)
    if integ is not None and len(integ):
        import highspy

        mask = np.array([v == highspy.HighsVarType.kInteger for v in integ], bool)
        if mask.any():
            viol = max(viol, float(np.max(np.abs(x[mask] - np.rint(x[mask])))))
    return obj, viol


def _one_run(lp: Any, options: dict[str, Any], start: np.ndarray | None) -> tuple[Any, Any]:
    import highspy

    h = new_highs(**options)
    h.passModel(lp)
    if start is not None:
        mip = getattr(lp, "integrality_", None)
        s = np.asarray(start, float)
        if mip is not None and len(mip):
            mask = np.array([v == highspy.HighsVarType.kInteger for v in mip], bool)
            s = np.where(mask, np.rint(s), s)
        sol = highspy.HighsSolution()
        sol.col_value = s.tolist()
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    return h, h.getInfo()


def _check(lp: Any, h: Any, info: Any) -> tuple[np.ndarray | None, float | None, str]:
    """Primal vector, its evaluated objective, and '' or the reason it contradicts HiGHS."""
    if int(info.primal_solution_status) != 2:  # kSolutionStatusFeasible
        return None, None, ""
    x = np.asarray(h.getSolution().col_value, float)
    obj, viol = evaluate(lp, x)
    rep = float(info.objective_function_value)
    why = []
    if not math.isclose(obj, rep, rel_tol=OBJ_RTOL, abs_tol=OBJ_RTOL):
        why.append(f"reported objective {rep:.10g} but the returned solution evaluates to "
                   f"{obj:.10g}")
    if viol > FEAS_ATOL:
        why.append(f"returned solution violates a bound, row or integrality by {viol:.3g}")
    return x, obj, "; ".join(why)


def solve_lp(lp: Any, *, options: dict[str, Any] | None = None,
             start: np.ndarray | None = None) -> HighsOutcome:
    """Solve a ``highspy.HighsLp`` and verify the answer (see the module docstring).

    Parameters
    ----------
    lp : highspy.HighsLp
        The model (column-wise matrix).
    options : dict, optional
        HiGHS options (``time_limit``, ``mip_rel_gap``, ``threads``, ...).
    start : numpy.ndarray, optional
        A MIP start (integer columns are rounded). On a contradiction the model is re-solved
        without it.
    """
    opts = dict(options or {})
    h, info = _one_run(lp, opts, start)
    x, obj, why = _check(lp, h, info)
    cold = False
    msg = ""
    if why and start is not None:
        log.warning("HiGHS answer contradicted by its own solution vector (%s); re-solving "
                    "without the MIP start", why)
        h, info = _one_run(lp, opts, None)
        x2, obj2, why2 = _check(lp, h, info)
        cold = True
        msg = f"warm-started answer rejected ({why}); solved cold"
        x, obj, why = x2, obj2, why2
    if why:
        log.warning("HiGHS answer rejected: %s", why)
        msg = (msg + "; " if msg else "") + why
    ms = h.getModelStatus()
    return HighsOutcome(
        model_status=ms, status_name=h.modelStatusToString(ms), objective=obj,
        reported_objective=float(info.objective_function_value),
        mip_dual_bound=float(getattr(info, "mip_dual_bound", math.nan)),
        mip_gap=float(getattr(info, "mip_gap", math.nan)), x=x, consistent=not why,
        resolved_cold=cold, message=msg)
