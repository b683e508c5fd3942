"""HiGHS answers are verified against an independent evaluation of the returned vector.

Regression for issue 12: highspy 1.16.0 with presolve and a MIP start reported the optimum's
objective but returned the start's (worse) column values; the placement test then failed with
``11.50 == 9.16``. These tests pin the detection and the repair on every supported version.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.solver
highspy = pytest.importorskip("highspy")


def _knapsack_lp():
    """max 3a + 2b + 2c  s.t. a + b + c <= 2 (binaries): optimum 5 (a and one of b, c)."""
    lp = highspy.HighsLp()
    lp.num_col_ = 3
    lp.num_row_ = 1
    lp.col_cost_ = np.array([3.0, 2.0, 2.0])
    lp.col_lower_ = np.zeros(3)
    lp.col_upper_ = np.ones(3)
    lp.row_lower_ = np.array([-highspy.kHighsInf])
    lp.row_upper_ = np.array([2.0])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array([0, 1, 2, 3], np.int32)
    lp.a_matrix_.index_ = np.array([0, 0, 0], np.int32)
    lp.a_matrix_.value_ = np.ones(3)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.integrality_ = [highspy.HighsVarType.kInteger] * 3
    return lp


def test_evaluate_is_independent_of_the_solver():
    from slo_opt.solvers.highs import evaluate

    lp = _knapsack_lp()
    obj, viol = evaluate(lp, np.array([1.0, 1.0, 0.0]))
    assert obj == 5.0 and viol == 0.0
    obj, viol = evaluate(lp, np.array([1.0, 1.0, 1.0]))  # breaks the row by 1 (scaled by 3)
    assert obj == 7.0 and viol == pytest.approx(1 / 3)
    _, viol = evaluate(lp, np.array([0.5, 0.0, 0.0]))  # fractional binary
    assert viol == pytest.approx(0.5)


def test_warm_start_answer_matches_its_vector():
    from slo_opt.solvers.highs import evaluate, solve_lp

    lp = _knapsack_lp()
    out = solve_lp(lp, options={"time_limit": 10.0}, start=np.array([0.0, 1.0, 1.0]))
    assert out.consistent
    assert out.objective == pytest.approx(5.0)
    assert evaluate(lp, out.x)[0] == pytest.approx(out.objective)


def test_contradicting_solver_is_resolved_cold(monkeypatch):
    """A solver that returns the start's vector with the optimum's objective is caught."""
    import slo_opt.solvers.highs as H

    real = H._one_run
    calls = []

    def lying(lp, options, start):
        h, info = real(lp, options, start)
        calls.append(start is not None)
        if start is None:
            return h, info

        class Sol:  # the 1.16.0 behaviour: the user's start comes back as the solution
            col_value = list(map(float, start))

        class Liar:
            def __getattr__(self, k):
                return getattr(h, k)

            def getSolution(self):
                return Sol()

        return Liar(), info

    monkeypatch.setattr(H, "_one_run", lying)
    out = H.solve_lp(_knapsack_lp(), options={}, start=np.array([0.0, 1.0, 1.0]))
    assert calls == [True, False]
    assert out.resolved_cold and out.consistent
    assert out.objective == pytest.approx(5.0)
    assert "solved cold" in out.message


def test_backend_rejects_values_that_contradict_incumbent():
    from slo_opt.solvers.backends import RawResult, _verified
    from slo_opt.solvers.base import LinearModel, Status

    m = LinearModel(sense="max")
    m.add_cols(2, lb=0.0, ub=1.0, cost=[1.0, 1.0], integer=True)
    m.add_rows(np.array([0, 0]), np.array([0, 1]), np.array([1.0, 1.0]), -math.inf, 1.0, 1)
    good = RawResult(Status.OPTIMAL, 1.0, 1.0, np.array([1.0, 0.0]), 0.0)
    assert _verified(m, good) is good
    wrong_obj = RawResult(Status.OPTIMAL, 2.0, 2.0, np.array([1.0, 0.0]), 0.0)
    assert _verified(m, wrong_obj).status == Status.ERROR
    infeasible = RawResult(Status.OPTIMAL, 2.0, 2.0, np.array([1.0, 1.0]), 0.0)
    r = _verified(m, infeasible)
    assert r.status == Status.ERROR and "violate" in r.message


def test_wrong_side_bound_is_numerical_trouble_not_clamped():
    from slo_opt.solvers.backends import BOUND_RTOL, _result
    from slo_opt.solvers.base import LinearModel, Status

    m = LinearModel(sense="max")
    m.add_cols(1, lb=0.0, ub=10.0, cost=1.0)
    x = np.array([5.0])
    ok = _result(m, Status.OPTIMAL, 5.0, 5.0 - 0.5 * BOUND_RTOL * 5.0, x, 0.0, "")
    assert ok.status == Status.OPTIMAL and ok.bound == 5.0  # within tolerance: the incumbent
    bad = _result(m, Status.OPTIMAL, 5.0, 4.9, x, 0.0, "")
    assert bad.status == Status.NUMERICAL and bad.bound is None and bad.incumbent == 5.0
    assert "wrong side" in bad.message
    mn = LinearModel(sense="min")
    mn.add_cols(1, lb=0.0, ub=10.0, cost=1.0)
    assert _result(mn, Status.OPTIMAL, 5.0, 5.1, x, 0.0, "").status == Status.NUMERICAL
    assert _result(mn, Status.OPTIMAL, 5.0, 4.0, x, 0.0, "").bound == 4.0


def test_no_banner_on_stdout():
    code = ("from slo_opt.solvers.highs import new_highs; h = new_highs(); "
            "from slo_opt.solvers.backends import run")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""


def test_thread_count_may_change_between_runs():
    """HiGHS' thread pool is process-global; a run with another size must still solve."""
    from slo_opt.solvers.highs import solve_lp

    for threads in (2, 1, 2):
        out = solve_lp(_knapsack_lp(), options={"threads": threads})
        assert out.status_name == "Optimal" and out.objective == pytest.approx(5.0)
