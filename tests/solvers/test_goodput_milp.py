"""The SLO-attainment MILP: known answers, the three cross-checks, bad input, model size."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("highspy")
pytest.importorskip("pyomo")

from hypothesis import given, settings
from hypothesis import strategies as st

from slo_opt.checks import violations
from slo_opt.metrics import attainment, goodput_tokens
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.sim.simulator import simulate
from slo_opt.solvers import GoodputMILP, Instance, NotRepresentable, Status, solve

from ..instances import ALL, three_requests_one_long

pytestmark = pytest.mark.solver
TOL = 1e-9


@st.composite
def instances(draw, max_requests: int = 6, max_prompt: int = 24, max_output: int = 6):
    """Small slot-engine instances: n <= 6, prompts <= 24, outputs <= 6, B 16-32, M 64-128."""
    D = draw(st.sampled_from([0.05, 0.1, 1.0]))
    n = draw(st.integers(1, max_requests))
    gaps = draw(st.lists(st.floats(0.0, 3.0), min_size=n, max_size=n))
    arr = np.cumsum(gaps) * D
    P = draw(st.lists(st.integers(1, max_prompt), min_size=n, max_size=n))
    O = draw(st.lists(st.integers(1, max_output), min_size=n, max_size=n))
    inf = st.just(math.inf)
    ttft = [draw(st.one_of(inf, st.floats(1.0, 8.0))) * D for _ in range(n)]
    tpot = [draw(st.one_of(inf, st.floats(1.0, 3.0))) * D for _ in range(n)]
    e2e = [draw(st.one_of(inf, st.floats(2.0, 20.0))) * D for _ in range(n)]
    util = draw(st.lists(st.sampled_from([1.0, 10.0]), min_size=n, max_size=n))
    w = Workload.from_arrays(arr, P, O, ttft_slo_s=ttft, tpot_slo_s=tpot, e2e_slo_s=e2e,
                             utility=util)
    e = SlotEngine(step_s=D, max_batch_tokens=draw(st.integers(16, 32)),
                   kv_capacity_tokens=draw(st.integers(64, 128)))
    return w, e


def _simulate(name, w, e):
    return simulate(w, e, make(name), max_steps=100_000)


# -- known answers ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", ALL, ids=lambda f: f.__name__)
def test_known_optimum(case):
    k = case()
    inst = Instance(k.workload, k.engine, k.num_slots)
    res = solve(GoodputMILP(), inst, time_limit_s=10)
    assert res.status == Status.OPTIMAL
    assert res.incumbent == pytest.approx(k.optimum, abs=TOL)
    assert violations(res.schedule, k.workload, k.engine) == []
    if k.lp_bound is not None:
        lp = solve(GoodputMILP(), inst, relax=True)
        assert lp.bound == pytest.approx(k.lp_bound, abs=1e-7)
    for name, want in k.heuristics.items():
        got = attainment(_simulate(name, k.workload, k.engine), k.workload)
        assert got == pytest.approx(want, abs=TOL), name


@pytest.mark.parametrize("backend", ["highs", "pyomo", "cvxpy"])
def test_backends_agree(backend):
    if backend == "cvxpy":
        pytest.importorskip("cvxpy")
    k = three_requests_one_long()
    res = solve(GoodputMILP(), Instance(k.workload, k.engine), backend=backend)
    assert res.status == Status.OPTIMAL
    assert res.incumbent == pytest.approx(2 / 3, abs=1e-7)
    assert res.bound == pytest.approx(2 / 3, abs=1e-6)
    lp = solve(GoodputMILP(), Instance(k.workload, k.engine), backend=backend, relax=True)
    assert lp.bound == pytest.approx(5 / 6, abs=1e-6)


def test_model_size_is_stable():
    k = three_requests_one_long()
    res = solve(GoodputMILP(), Instance(k.workload, k.engine))
    assert res.size == {"cols": 45, "rows": 110, "nnz": 259, "integer_cols": 45}


# -- the three cross-checks ---------------------------------------------------------------------
@settings(max_examples=15)
@given(inst=instances(), objective=st.sampled_from(["attainment", "weighted", "goodput"]))
def test_replay_scores_exactly_the_objective(inst, objective):
    w, e = inst
    res = solve(GoodputMILP(objective=objective), Instance(w, e), time_limit_s=20)
    assert res.status == Status.OPTIMAL
    assert violations(res.schedule, w, e) == []
    s = res.schedule
    assert not s.rejected.any()
    got = {"attainment": attainment(s, w), "weighted": attainment(s, w, weighted=True),
           "goodput": goodput_tokens(s, w)}[objective]
    assert abs(got - res.incumbent) <= 1e-9 * max(1.0, abs(got))


@settings(max_examples=10)
@given(inst=instances())
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_fix_and_solve_every_scheduler(name, inst):
    w, e = inst
    sched = _simulate(name, w, e)
    inst_ = Instance(w, e)
    if np.any(sched.events.kind != 0):  # swaps lengthen a step beyond one slot
        with pytest.raises(NotRepresentable, match="swap"):
            solve(GoodputMILP(), inst_, fix=sched)
        return
    res = solve(GoodputMILP(), inst_, fix=sched, time_limit_s=20)
    assert res.status == Status.OPTIMAL, res.message
    assert abs(res.incumbent - attainment(sched, w)) <= 1e-9


@settings(max_examples=10)
@given(inst=instances())
def test_bound_chain(inst):
    w, e = inst
    inst_ = Instance(w, e)
    lp = solve(GoodputMILP(), inst_, relax=True)
    opt = solve(GoodputMILP(), inst_, time_limit_s=20)
    assert lp.status == Status.OPTIMAL and opt.status == Status.OPTIMAL
    assert lp.bound >= opt.incumbent - 1e-7
    assert opt.bound >= opt.incumbent - 1e-9
    for name in sorted(SCHEDULERS):
        s = _simulate(name, w, e)
        h = attainment(s, w)
        # the optimum is over non-preemptive schedules: a preempting heuristic may exceed it
        # only if it actually preempted (documented in goodput_milp's Notes)
        assert h <= opt.incumbent + 1e-9 or len(s.events) > 0, name
        assert h <= lp.bound + 1e-7 or len(s.events) > 0, name


# -- bad input ---------------------------------------------------------------------------------
def test_horizon_too_short_scores_zero_and_must_serve_is_infeasible():
    w = Workload.from_arrays([0.0], [8], [2])
    e = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=16)
    inst = Instance(w, e, num_slots=2)
    res = solve(GoodputMILP(), inst)
    assert res.status == Status.OPTIMAL and res.incumbent == 0.0
    assert violations(res.schedule, w, e) == []
    assert (res.schedule.finish_step == -1).all() and not res.schedule.rejected.any()
    assert solve(GoodputMILP(must_serve=True), inst).status == Status.INFEASIBLE
    assert solve(GoodputMILP(must_serve=True), Instance(w, e)).incumbent == 1.0


def test_time_limit_zero_returns_a_bound_without_hanging():
    k = three_requests_one_long()
    res = solve(GoodputMILP(), Instance(k.workload, k.engine), time_limit_s=0)
    assert res.status in (Status.NO_SOLUTION, Status.FEASIBLE, Status.OPTIMAL)
    assert res.bound is not None and res.bound >= 2 / 3 - 1e-9
    if res.status == Status.NO_SOLUTION:
        assert res.incumbent is None and res.schedule is None


def test_hard_timeout_subprocess():
    k = three_requests_one_long()
    res = solve(GoodputMILP(), Instance(k.workload, k.engine), hard_timeout_s=30)
    assert res.status == Status.OPTIMAL and res.incumbent == pytest.approx(2 / 3)


def test_empty_workload():
    w = Workload.from_arrays([], [], [])
    e = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=16)
    res = solve(GoodputMILP(), Instance(w, e))
    assert res.status == Status.OPTIMAL and res.incumbent == 1.0 == attainment(res.schedule, w)
    assert res.schedule.num_steps == 0


def test_bad_arguments():
    k = three_requests_one_long()
    with pytest.raises(ValueError, match="objective"):
        GoodputMILP(objective="nope")
    with pytest.raises(ValueError, match="time_limit_s"):
        solve(GoodputMILP(), Instance(k.workload, k.engine), time_limit_s=-1)
    with pytest.raises(ValueError, match="kv_block_tokens"):
        Instance(k.workload, SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=64,
                                        kv_block_tokens=4))
    with pytest.raises(ValueError, match="backend"):
        solve(GoodputMILP(), Instance(k.workload, k.engine), backend="gurobi")


def _too_strict(real):
    """A wrong metric: TTFT must be <= 0.6 x its target (the injected fault of issue 12)."""
    def request_metrics(schedule, workload):
        m = dict(real(schedule, workload))
        tight = m["ttft_s"] <= 0.6 * workload.ttft_slo_s
        m["slo_met"] = m["slo_met"] & tight
        return m
    return request_metrics


def test_fix_and_solve_catches_a_too_strict_metric(monkeypatch):
    """Fix-and-solve pins only allocations: the model's deadline rows, not the metric, decide
    which requests are met, so a metric that is too strict disagrees with the pinned optimum."""
    import slo_opt.metrics as metrics
    from slo_opt.solvers import goodput_milp

    w = Workload.from_arrays([0.0, 0.0], [4, 3], [2, 2], ttft_slo_s=[1.0, 2.0],
                             tpot_slo_s=[1.0, 1.0])
    e = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=64)
    sched = _simulate("vllm", w, e)
    inst_ = Instance(w, e)
    res = solve(GoodputMILP(), inst_, fix=sched, time_limit_s=20)
    assert res.status == Status.OPTIMAL and res.incumbent == pytest.approx(attainment(sched, w))
    assert res.incumbent == pytest.approx(1.0)
    strict = _too_strict(metrics.request_metrics)
    monkeypatch.setattr(metrics, "request_metrics", strict)
    monkeypatch.setattr(goodput_milp, "request_metrics", strict, raising=False)
    res = solve(GoodputMILP(), inst_, fix=sched, time_limit_s=20)
    assert res.status == Status.OPTIMAL
    assert attainment(sched, w) < 1.0  # the fault is live
    assert abs(res.incumbent - attainment(sched, w)) > 0.1
