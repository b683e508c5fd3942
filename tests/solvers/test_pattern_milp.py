"""Formulation A (pattern MILP): replay exactness, restriction of the per-slot optimum, known
answers, model size, pinning, bad input and the combined certificate."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("highspy")

from hypothesis import given, settings
from hypothesis import strategies as st

from slo_opt.checks import violations
from slo_opt.metrics import attainment, goodput_tokens
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.solvers import GoodputMILP, Instance, NotRepresentable, Status, solve
from slo_opt.solvers.pattern_milp import PatternMILP, greedy_pattern_schedule
from slo_opt.study.certificate import solve_with_certificate

from ..instances import (
    horizon_too_short,
    kv_forces_sequential,
    kv_forces_sequential_tpot,
    late_arrival_window,
    three_requests_one_long,
)

pytestmark = pytest.mark.solver


@st.composite
def instances(draw, max_requests: int = 6, max_prompt: int = 40, max_output: int = 6):
    """n <= 6, prompts <= 40 (some longer than the budget: chunked patterns), outputs <= 6."""
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
                   kv_capacity_tokens=draw(st.integers(48, 128)))
    return w, e


def _score(s, w, objective):
    return {"attainment": attainment(s, w), "weighted": attainment(s, w, weighted=True),
            "goodput": goodput_tokens(s, w)}[objective]


# -- replay exactness ----------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(inst=instances(), objective=st.sampled_from(["attainment", "weighted", "goodput"]),
       strides=st.sampled_from([(1,), (1, 2), (1, 3)]))
def test_replay_scores_exactly_the_objective(inst, objective, strides):
    w, e = inst
    res = solve(PatternMILP(objective=objective, strides=strides), Instance(w, e),
                time_limit_s=20)
    assert res.status == Status.OPTIMAL
    assert violations(res.schedule, w, e) == []
    got = _score(res.schedule, w, objective)
    assert abs(got - res.incumbent) <= 1e-9 * max(1.0, abs(got))
    # the extracted schedule pins back into the pattern model at the same value
    fixed = solve(PatternMILP(objective=objective, strides=strides), Instance(w, e),
                  fix=res.schedule)
    assert fixed.status == Status.OPTIMAL
    assert abs(fixed.incumbent - res.incumbent) <= 1e-9 * max(1.0, abs(got))


# -- restriction of the per-slot optimum (the bound chain) ---------------------------------------
@settings(max_examples=12, deadline=None)
@given(inst=instances(), strides=st.sampled_from([(1,), (1, 2)]))
def test_pattern_optimum_is_at_most_the_per_slot_optimum(inst, strides):
    w, e = inst
    inst_ = Instance(w, e)
    pat = solve(PatternMILP(strides=strides), inst_, time_limit_s=20)
    opt = solve(GoodputMILP(), inst_, time_limit_s=20)
    lp = solve(GoodputMILP(), inst_, relax=True)
    assert pat.status == opt.status == lp.status == Status.OPTIMAL
    assert pat.incumbent <= opt.incumbent + 1e-9 <= lp.bound + 2e-7
    # the pattern schedule is a valid MIP start / pinned solution of the per-slot model
    pinned = solve(GoodputMILP(), inst_, fix=pat.schedule, time_limit_s=20)
    assert pinned.status == Status.OPTIMAL
    assert abs(pinned.incumbent - pat.incumbent) <= 1e-9
    # the greedy packing is feasible and never beats the pattern optimum
    g, gv = greedy_pattern_schedule(inst_, PatternMILP(strides=strides))
    assert violations(g, w, e) == []
    assert abs(attainment(g, w) - gv) <= 1e-9 and gv <= pat.incumbent + 1e-9


# -- known answers -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [three_requests_one_long, kv_forces_sequential_tpot,
                                  late_arrival_window, horizon_too_short],
                         ids=lambda f: f.__name__)
def test_equals_per_slot_optimum_where_contiguous_decode_is_optimal(case):
    k = case()
    inst = Instance(k.workload, k.engine, k.num_slots)
    res = solve(PatternMILP(), inst, time_limit_s=10)
    assert res.status == Status.OPTIMAL
    assert res.incumbent == pytest.approx(k.optimum, abs=1e-9)
    assert violations(res.schedule, k.workload, k.engine) == []


def test_decode_stall_needed_strides_recover_it():
    """kv_forces_sequential needs r1 to stall its decode until r0 frees KV (optimum 1).

    Contiguous patterns cannot stall: r1 decoding in slots 1, 2 next to r0 needs 5 + 5 and
    6 + 6 = 12 > 10 tokens of KV, so only one request meets (1/2, strictly below the per-slot
    optimum). With stride 3, r1 decodes in slots 3 and 6 (KV 9, 10 in slots 1, 2 next to r0):
    both meet -> 1.
    """
    k = kv_forces_sequential()
    inst = Instance(k.workload, k.engine)
    assert solve(PatternMILP(), inst).incumbent == pytest.approx(0.5)
    res = solve(PatternMILP(strides=(1, 3)), inst)
    assert res.incumbent == pytest.approx(1.0)
    assert violations(res.schedule, k.workload, k.engine) == []
    assert sorted(res.schedule.finish_s.tolist()) == [3.0, 7.0]


def test_model_size_is_stable():
    """three_requests_one_long, default horizon 16 slots.

    Columns: r0 (prompt 8 = 2 chunks of B = 4, first token by slot 1) has one pattern (s = 1);
    r1 and r2 (prompt 2, one output token) start in slot 0 or 1: 1 + 2 + 2 = 5.
    Rows: 3 request rows + 16 token rows + 16 KV rows = 35.
    Nonzeros: r0 5 token + 5 KV + 1 request; r1, r2 2 columns x 3 each: 11 + 12 = 23.
    """
    k = three_requests_one_long()
    res = solve(PatternMILP(), Instance(k.workload, k.engine))
    assert res.size == {"cols": 5, "rows": 35, "nnz": 23, "integer_cols": 5}
    res = solve(PatternMILP(chunked_prefill=False), Instance(k.workload, k.engine))
    assert res.size["cols"] == 4 and res.incumbent == pytest.approx(2 / 3)
    # one sequence per slot: r1 in slot 0, r2 in slot 1 (both within TTFT), r0 misses
    res = solve(PatternMILP(max_seqs=1), Instance(k.workload, k.engine))
    assert res.size["rows"] == 35 + 16 and res.incumbent == pytest.approx(2 / 3)
    assert sorted(res.schedule.first_token_s[1:].tolist()) == [1.0, 2.0]


# -- pinning and bad input -----------------------------------------------------------------------
def test_fix_rejects_a_met_trajectory_that_is_not_a_pattern():
    k = kv_forces_sequential()
    inst = Instance(k.workload, k.engine)
    stall = solve(GoodputMILP(), inst).schedule  # r1 stalls its decode: not a (s, 1) pattern
    assert attainment(stall, k.workload) == 1.0
    with pytest.raises(NotRepresentable, match="not a pattern"):
        solve(PatternMILP(), inst, fix=stall)
    m = PatternMILP().build(inst)
    PatternMILP().fix(m, stall, inst, drop_preempted=True)  # MIP-start mode: dropped instead
    assert int(m.col_ub.sum()) <= 1  # at least the stalled request is pinned unserved


def test_bad_input_and_edge_cases():
    with pytest.raises(ValueError, match="strides"):
        PatternMILP(strides=(0,))
    with pytest.raises(ValueError, match="strides"):
        PatternMILP(strides=())
    with pytest.raises(ValueError, match="objective"):
        PatternMILP(objective="nope")
    with pytest.raises(ValueError, match="max_seqs"):
        PatternMILP(max_seqs=0)
    k = horizon_too_short()
    inst = Instance(k.workload, k.engine, k.num_slots)
    assert solve(PatternMILP(must_serve=True), inst).status == Status.INFEASIBLE
    w = Workload.from_arrays([], [], [])
    e = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=16)
    res = solve(PatternMILP(), Instance(w, e))
    assert res.status == Status.OPTIMAL and res.incumbent == 1.0 == attainment(res.schedule, w)


# -- the combined certificate --------------------------------------------------------------------
def test_certificate_is_honest():
    from slo_opt.solvers.scenarios import default_engine, scaled_workload

    e = default_engine()
    w = scaled_workload(12, 3.0, np.random.default_rng(3), e)
    inst = Instance(w, e)
    c = solve_with_certificate(inst, 20.0)
    assert violations(c.schedule, w, e) == []
    assert c.value == pytest.approx(attainment(c.schedule, w), abs=1e-12)
    assert c.value >= max(v for k, v in c.candidates.items() if v is not None) - 1e-12
    assert c.bound >= c.value - 1e-7
    assert c.bound == min(v for v in c.bounds.values() if v is not None)
    assert "pattern_milp" not in c.bounds  # a restriction never certifies the general problem
    if c.bounds["goodput_milp"] is not None and c.candidates["goodput_milp"] is not None:
        # small instance: the per-slot MILP proves optimality, so the gap closes
        assert c.gap == pytest.approx(0.0, abs=1e-6)
