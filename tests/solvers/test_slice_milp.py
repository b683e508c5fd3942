"""SLICE admission MILP (one cycle) and the whole-horizon utility bound."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("scipy")

from slo_opt.metrics import request_metrics
from slo_opt.models.catalog import get_engine
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.schedulers.slice_ import greedy_select
from slo_opt.sim.simulator import simulate
from slo_opt.solvers.slice_milp import (
    CycleInstance,
    brute_force_cycle,
    cycle_instance_from_decision,
    solve_cycle,
    solve_horizon,
)
from slo_opt.testing import slot_engines, workloads
from slo_opt.workloads.edge import edge_workload

pytestmark = pytest.mark.solver

LAT_S = np.array([14, 27, 38, 50, 60, 72, 83, 125, 126, 123, 124, 125, 126, 123, 124]) / 1e3
AFFINE_S = 0.006 + 0.004 * np.arange(1, 17)


@st.composite
def cycle_instances(draw, latency_s=LAT_S, max_n=8):
    n = draw(st.integers(1, max_n))
    u = draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 10.0, 100.0]), min_size=n, max_size=n))
    v = draw(st.lists(st.integers(1, 30), min_size=n, max_size=n))
    kv = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    return CycleInstance(np.array(u), np.array(v), latency_s,
                         period_s=draw(st.floats(0.05, 1.5)),
                         max_tasks=draw(st.integers(1, 16)), kv_blocks=np.array(kv),
                         kv_budget_blocks=draw(st.sampled_from([np.inf, 4.0, 10.0])))


@given(cycle_instances())
def test_column_milp_equals_brute_force(inst):
    a, b = solve_cycle(inst), brute_force_cycle(inst)
    assert a.status == "optimal"
    assert a.utility == pytest.approx(b.utility)
    assert inst.is_feasible(a.selected)
    assert a.cycle_time_s <= inst.period_s + 1e-9


@given(cycle_instances(latency_s=AFFINE_S))
def test_affine_form_equals_column_form_on_affine_latency(inst):
    a, c = solve_cycle(inst), solve_cycle(inst, formulation="affine")
    assert c.utility == pytest.approx(a.utility)
    assert inst.is_feasible(c.selected)


def test_affine_form_refuses_a_non_affine_table():
    inst = CycleInstance(np.ones(2), np.array([3, 4]), LAT_S, 1.0)
    with pytest.raises(ValueError, match="not affine"):
        solve_cycle(inst, formulation="affine")
    with pytest.raises(ValueError):
        solve_cycle(inst, formulation="knapsack")


def test_known_answer():
    # U = (100, 1, 1), v = (20, 9, 9), l = LAT_S, P = 0.5 s. {0}: 20 x 14 = 280 ms;
    # {0, 1}: 9 x 27 + 11 x 14 = 397 ms; {0, 1, 2}: 9 x 38 + 11 x 14 = 496 ms -> all three.
    inst = CycleInstance(np.array([100.0, 1, 1]), np.array([20, 9, 9]), LAT_S, 0.5)
    assert solve_cycle(inst).utility == 102.0
    # P = 0.45 s: only one nRT task fits beside the RT task
    inst = CycleInstance(np.array([100.0, 1, 1]), np.array([20, 9, 9]), LAT_S, 0.45)
    assert solve_cycle(inst).utility == 101.0


def _density_order(inst: CycleInstance) -> list[int]:
    return sorted(range(inst.num_tasks), key=lambda i: (-inst.utility[i] / inst.rates[i], i))


@given(cycle_instances(), st.sampled_from(["break", "skip"]))
def test_greedy_never_beats_the_milp(inst, stop_rule):
    left = [inst.kv_budget_blocks]

    def fits(i):
        return inst.kv_blocks[i] <= left[0]

    def take(i):
        left[0] -= inst.kv_blocks[i]

    sel = greedy_select(_density_order(inst), inst.rates, inst.latency_s, inst.period_s,
                        max_tasks=inst.max_tasks, stop_rule=stop_rule, fits=fits, take=take)
    assert inst.is_feasible(np.array(sel, dtype=np.int64))
    assert float(inst.utility[sel].sum()) <= solve_cycle(inst).utility + 1e-9


@given(st.lists(st.sampled_from([0.0, 1.0, 3.0, 100.0]), min_size=1, max_size=10),
       st.integers(1, 30), st.floats(0.05, 1.5), st.integers(1, 16),
       st.sampled_from(["break", "skip"]))
def test_greedy_is_optimal_with_equal_rates(utilities, rate, period_s, max_tasks, stop_rule):
    """Equal rates: T_period = v l(k) is increasing in k, a cardinality constraint -> top-k."""
    u = np.array(utilities)
    inst = CycleInstance(u, np.full(u.size, rate), LAT_S[:8], period_s, max_tasks=max_tasks)
    sel = greedy_select(_density_order(inst), inst.rates, inst.latency_s, period_s,
                        max_tasks=max_tasks, stop_rule=stop_rule)
    assert float(u[sel].sum()) == pytest.approx(solve_cycle(inst).utility)


def test_recorded_decisions_of_a_run_are_dominated_by_the_milp():
    w = edge_workload(25, 1.2, np.random.default_rng(5))
    s = make("slice", record_decisions=True)
    simulate(w, get_engine("slice-edge/chatglm2-6b-int4"), s)
    assert len(s.decisions) > 10
    for d in s.decisions[:25]:
        inst = cycle_instance_from_decision(d)
        opt = solve_cycle(inst)
        assert d["selected_utility"] <= opt.utility + 1e-9


# -- whole horizon -------------------------------------------------------------------------


def test_horizon_known_answer():
    """step 1 s, 4 tokens/slot, both arrive at 0, TTFT 1 s: both need all of slot 0.
    r0: prompt 4, output 3, TPOT 1 s (decodes in slots 1, 2), U = 3; r1: prompt 4, output 1,
    U = 2. Only one can meet its TTFT -> optimum 3 (r0)."""
    eng = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=64)
    w = Workload.from_arrays([0.0, 0.0], [4, 4], [3, 1], ttft_slo_s=1.0, tpot_slo_s=1.0,
                             utility=[3.0, 2.0])
    h = solve_horizon(w, eng)
    assert h.status == "optimal"
    assert h.utility == 3.0 and h.bound == pytest.approx(3.0)
    assert h.met.tolist() == [True, False]
    assert h.first_token_slot[0] == 0 and h.finish_slot[0] == 2
    # TTFT 2 s: r1 can go second (slot 1) while r0 keeps its TPOT -> both
    w2 = w.replace(ttft_slo_s=np.array([2.0, 2.0]))
    assert solve_horizon(w2, eng).utility == 5.0
    # KV: 6 tokens of r0 alone exceed a 5-token cache
    small = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=5)
    assert solve_horizon(w, small).met.tolist() == [False, True]


def test_horizon_model_size():
    eng = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=64)
    w = Workload.from_arrays([0.0, 0.0], [4, 4], [3, 1], ttft_slo_s=1.0, tpot_slo_s=1.0)
    h = solve_horizon(w, eng, num_slots=5)
    assert h.size["variables"] == 2 * (8 * 5 + 1)


@settings(max_examples=10)
@given(workload=workloads(max_requests=4, max_prompt=16, max_output=5),
       engine=slot_engines(max_batch_tokens=32))
def test_horizon_bound_dominates_every_policy(workload, engine):
    h = solve_horizon(workload, engine, time_limit_s=5)  # the bound stays valid at a limit
    assert h.status in ("optimal", "feasible")
    for name in ("slice", "orca", "fcfs", "vllm"):
        sched = simulate(workload, engine, make(name))
        met = request_metrics(sched, workload)["slo_met"]
        assert float(workload.utility[met].sum()) <= h.bound + 1e-6, name
