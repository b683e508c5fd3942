"""Fluid LP bound and single-server mean-JCT bounds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("highspy")
pytest.importorskip("pyomo")

from hypothesis import given, settings
from hypothesis import strategies as st

from slo_opt.metrics import attainment, request_metrics
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.sim.simulator import simulate
from slo_opt.solvers import GoodputMILP, Instance, Status, solve
from slo_opt.solvers.fluid_bound import FluidBound
from slo_opt.solvers.jct_bounds import (
    brute_force_mean_jct,
    exact_mean_jct,
    jobs_from_workload,
    srpt_mean_jct,
)

from ..instances import ALL
from .test_goodput_milp import instances

pytestmark = pytest.mark.solver


@pytest.mark.parametrize("case", ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bucket_slots", [1, 4])
def test_fluid_bound_is_above_known_optima(case, bucket_slots):
    k = case()
    res = solve(FluidBound(bucket_slots=bucket_slots), Instance(k.workload, k.engine, k.num_slots))
    assert res.status == Status.OPTIMAL and res.schedule is None
    assert res.bound >= k.optimum - 1e-7


def test_fluid_bound_known_value():
    """three_requests_one_long with 1-slot buckets: the same 8-token prefix argument as the
    MILP's LP relaxation (8 m0 + 2 m1 + 2 m2 <= 8 by slot 1) gives 5/6."""
    from ..instances import three_requests_one_long

    k = three_requests_one_long()
    res = solve(FluidBound(bucket_slots=1), Instance(k.workload, k.engine))
    assert res.bound == pytest.approx(5 / 6, abs=1e-6)


@settings(max_examples=10)
@given(inst=instances(), bucket=st.sampled_from([1, 3, 8]))
def test_fluid_bound_chain(inst, bucket):
    w, e = inst
    I = Instance(w, e)
    opt = solve(GoodputMILP(), I)
    fb = solve(FluidBound(bucket_slots=bucket), I)
    assert fb.bound >= opt.incumbent - 1e-7
    for name in sorted(SCHEDULERS):  # valid for preempting heuristics too
        assert attainment(simulate(w, e, make(name)), w) <= fb.bound + 1e-7, name


def test_fluid_bound_bad_input():
    with pytest.raises(ValueError, match="bucket_slots"):
        FluidBound(bucket_slots=0)
    w = Workload.from_arrays([], [], [])
    e = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=16)
    assert solve(FluidBound(), Instance(w, e)).bound == 1.0


# -- mean JCT ------------------------------------------------------------------------------------
def test_srpt_known_answer():
    """Jobs (r, p): (0, 4), (1, 1). SRPT preempts job 0 at t=1: C1 = 2, C0 = 5 -> JCT (5 + 1)/2
    = 3. Non-preemptive optimum: 0 then 1 -> C = 4, 5 -> (4 + 4)/2 = 4; 1 first (idle until 1)
    -> C1 = 2, C0 = 6 -> (6 + 1)/2 = 3.5. So exact = 3.5 >= SRPT = 3."""
    assert srpt_mean_jct([0, 1], [4, 1]) == pytest.approx(3.0)
    assert brute_force_mean_jct([0, 1], [4, 1]) == pytest.approx(3.5)
    res = exact_mean_jct([0, 1], [4, 1])
    assert res.status == Status.OPTIMAL and res.mean_jct == pytest.approx(3.5)
    assert res.order == (1, 0)


@settings(max_examples=25)
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(1, 6)), min_size=1, max_size=6))
def test_exact_matches_brute_force_and_srpt_is_below(jobs):
    r = np.array([j[0] for j in jobs], float)
    p = np.array([j[1] for j in jobs], float)
    bf = brute_force_mean_jct(r, p)
    ex = exact_mean_jct(r, p, time_limit_s=20)
    assert ex.status == Status.OPTIMAL
    assert ex.mean_jct == pytest.approx(bf, abs=1e-6)
    assert ex.bound <= ex.mean_jct + 1e-9
    assert srpt_mean_jct(r, p) <= bf + 1e-9


@settings(max_examples=10)
@given(inst=instances())
@pytest.mark.parametrize("name", ["fcfs", "sjf", "ssjf"])
def test_batch_size_one_policies_are_above_the_exact_jct(name, inst):
    w, e = inst
    e = SlotEngine(step_s=e.step_s, max_batch_tokens=e.max_batch_tokens,
                   kv_capacity_tokens=10_000)  # nobody rejected: every job is served
    if name not in SCHEDULERS:
        pytest.skip(f"{name} not registered")
    if len(w) > 6:
        return
    s = simulate(w, e, make(name, batching="none"))
    jct = request_metrics(s, w)["e2e_s"]
    r, p = jobs_from_workload(w, e)
    a = np.asarray(w.arrival_s) / e.step_s
    opt = brute_force_mean_jct(r, p, arrival=a) * e.step_s
    assert float(np.mean(jct)) >= opt - 1e-7
    assert opt >= srpt_mean_jct(r, p, arrival=a) * e.step_s - 1e-7
    if name == "fcfs":  # FCFS at batch size 1 is exactly the single-server FCFS schedule
        t, tot = 0.0, 0.0
        for j in range(len(w)):
            t = max(t, r[j]) + p[j]
            tot += t - a[j]
        assert float(np.mean(jct)) == pytest.approx(tot / len(w) * e.step_s, abs=1e-7)


def test_jct_bad_input():
    with pytest.raises(ValueError, match="length"):
        srpt_mean_jct([0, 1], [1])
    with pytest.raises(ValueError, match="proc"):
        exact_mean_jct([0], [0])
    assert srpt_mean_jct([], []) == 0.0
    assert exact_mean_jct([], []).mean_jct == 0.0
