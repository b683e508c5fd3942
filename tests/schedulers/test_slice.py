"""SLICE: conformance of every option, the T_period formula, the mask, and the rate guarantee."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.metrics import request_metrics
from slo_opt.models.catalog import get_engine
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.schedulers.slice_ import (
    SLICE,
    column_time_s,
    decode_mask,
    greedy_select,
    rates_per_cycle,
    t_period_s,
)
from slo_opt.sim.simulator import simulate
from slo_opt.testing import check_conformance, slot_engines, workloads
from slo_opt.workloads.edge import edge_workload

EDGE = get_engine("slice-edge/chatglm2-6b-int4")
LAT_S = np.array([14, 27, 38, 50, 60, 72, 83, 125, 126, 123, 124, 125, 126, 123, 124]) / 1e3

OPTIONS = [
    {},
    {"pacing": "paced", "period_s": 0.5},
    {"placement": "spread", "restart_on_replan": False},
    {"stop_rule": "skip", "rank_by": "rate"},
    {"infeasible": "best_effort", "rate_rounding": "floor", "max_tasks": 3},
    {"utility_source": "code", "ratio": 0.5, "placement": "spread", "pacing": "paced"},
]


@pytest.mark.parametrize("params", OPTIONS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
@given(workload=workloads(max_requests=8, max_prompt=64, max_output=12), engine=slot_engines())
def test_conformance_options(params, workload, engine):
    check_conformance(lambda: make("slice", **params), workload, engine)


@pytest.mark.parametrize("params", OPTIONS[:3])
def test_conformance_edge_profile(params):
    w = edge_workload(25, 1.5, np.random.default_rng(3))
    check_conformance(lambda: make("slice", **params), w, EDGE)


def test_bad_parameters_are_rejected():
    for bad in ({"stop_rule": "stop"}, {"period_s": 0.0}, {"ratio": math.nan},
                {"max_tasks": 0}, {"placement": "random"}, {"pacing": "lazy"}):
        with pytest.raises(ValueError):
            make("slice", **bad)
    with pytest.raises(ValueError, match="unknown parameter"):
        make("slice", periods=1.0)


@given(st.lists(st.integers(1, 49), min_size=1, max_size=15))
def test_t_period_formula_is_the_contiguous_mask_column_sum(rates):
    v = np.array(rates)
    assert t_period_s(v, LAT_S) == pytest.approx(column_time_s(decode_mask(v), LAT_S))
    # a hand value: rates (20, 9): 9 columns of 2 tasks + 11 of 1 task
    assert t_period_s([9, 20], LAT_S) == pytest.approx(9 * 0.027 + 11 * 0.014)


@given(st.lists(st.integers(1, 49), min_size=1, max_size=15),
       st.sampled_from(["contiguous", "spread"]))
def test_mask_rows_hold_exactly_the_rates(rates, placement):
    m = decode_mask(np.array(rates), placement)
    assert m.shape == (len(rates), max(rates))
    assert m.sum(axis=1).tolist() == rates
    assert m.any(axis=0).all()  # no empty column: the densest row covers all of them


def test_rates_rounding():
    tpot = np.array([0.05, 0.12, math.inf, 0.3])
    assert rates_per_cycle(tpot, 1.0).tolist() == [20, 9, 1, 4]
    assert rates_per_cycle(tpot, 1.0, rounding="floor").tolist() == [20, 8, 1, 3]


def test_greedy_break_versus_skip():
    # 0 alone: 40 x 14 ms; + task 1: 40 x 27 + 5 x 14 ms > 1 s; + task 2: 5 x 27 + 35 x 14 ms
    v = np.array([40, 45, 5])
    brk = greedy_select([0, 1, 2], v, LAT_S, 1.0, stop_rule="break")
    skp = greedy_select([0, 1, 2], v, LAT_S, 1.0, stop_rule="skip")
    assert brk == [0]
    assert skp == [0, 2]
    assert greedy_select([0, 1, 2], v, LAT_S, 1.0, max_tasks=1, stop_rule="skip") == [0]


class _Recorder:
    """Delegates to SLICE and checks each plan against the mask column it claims to run."""

    name = "slice-recorder"

    def __init__(self, inner: SLICE) -> None:
        self.inner = inner
        self.columns: list[tuple[int, frozenset[int], frozenset[int]]] = []

    def reset(self) -> None:
        self.inner.reset()
        self.columns = []

    def plan(self, view):
        p = self.inner.plan(view)
        if p.tokens:
            s = self.inner
            col = s.column
            allowed = frozenset(r for r, on in zip(s.rows, s.mask[:, col]) if on)
            self.columns.append((col, frozenset(p.tokens), allowed))
        return p


@pytest.mark.parametrize("placement", ["contiguous", "spread"])
@pytest.mark.parametrize("pacing", ["work_conserving", "paced"])
def test_every_column_batch_respects_the_mask(placement, pacing):
    w = edge_workload(30, 1.0, np.random.default_rng(7))
    rec = _Recorder(SLICE(placement=placement, pacing=pacing))
    sched = simulate(w, EDGE, rec, fast_forward=False)
    assert rec.columns
    for col, batch, allowed in rec.columns:
        assert batch <= allowed, (col, batch, allowed)
    assert (sched.finish_step >= 0).sum() + sched.rejected.sum() == len(w)


def _steady_workload(tpot_s: np.ndarray, output_tokens: int) -> Workload:
    n = tpot_s.size
    return Workload.from_arrays(np.zeros(n), np.full(n, 16), np.full(n, output_tokens),
                                ttft_slo_s=5.0, tpot_slo_s=tpot_s,
                                utility=np.where(tpot_s <= 0.05, 100.0, 1.0))


@given(num_rt=st.integers(0, 3), num_nrt=st.integers(0, 6),
       placement=st.sampled_from(["contiguous", "spread"]),
       pacing=st.sampled_from(["work_conserving", "paced"]))
def test_selected_tasks_meet_tpot_when_t_period_fits(num_rt, num_nrt, placement, pacing):
    tpot = np.array([0.05] * num_rt + [0.12] * num_nrt)
    if tpot.size == 0:
        return
    rates = rates_per_cycle(tpot, 1.0)
    t_per = (t_period_s(rates, LAT_S) if placement == "contiguous"
             else column_time_s(decode_mask(rates, "spread"), LAT_S))
    w = _steady_workload(tpot, output_tokens=int(rates.max()) * 3 + 1)
    s = SLICE(placement=placement, pacing=pacing, record_decisions=True)
    rec = _Recorder(s)
    sched = simulate(w, EDGE, rec, fast_forward=False)
    if t_per > 1.0:  # not everybody is selected: nothing to assert about the rest
        return
    assert sorted(s.decisions[0]["selected"]) == list(range(tpot.size))  # everyone selected
    # per full cycle: every task gets exactly v_i tokens in at most one period
    c = int(rates.max())
    steps = sched.steps
    per_step = [batch for _, batch, _ in rec.columns]
    for k in range(2):  # the first two cycles (nobody finishes before the third)
        window = per_step[k * c:(k + 1) * c]
        got = [sum(r in b for b in window) for r in range(tpot.size)]
        assert got == rates.tolist()
        dur = steps.end_s[(k + 1) * c - 1] - steps.start_s[k * c]
        # the prefill column of cycle 0 is not part of T_period (paper); later cycles are exact
        if k > 0:
            assert dur == pytest.approx(t_per)
            assert dur <= 1.0 + 1e-9
    m = request_metrics(sched, w)
    assert np.all(m["tpot_s"] <= tpot + 1e-9)


def test_unservable_tasks_are_rejected_explicitly():
    eng = SlotEngine(step_s=0.1, max_batch_tokens=16, kv_capacity_tokens=256)
    w = Workload.from_arrays([0.0, 0.0, 0.0], [8, 40, 8], [4, 4, 4],
                             tpot_slo_s=[0.2, 0.2, 0.01])
    sched = simulate(w, eng, make("slice"))
    # prompt 40 > 16 tokens per iteration; TPOT 10 ms < l(1) = 100 ms can never be met
    assert sched.rejected.tolist() == [False, True, True]
    sched = simulate(w, eng, make("slice", infeasible="best_effort"))
    assert sched.rejected.tolist() == [False, True, False]
    assert sched.finish_step[2] >= 0


def test_reset_clears_state():
    w = edge_workload(10, 2.0, np.random.default_rng(0))
    s = SLICE(record_decisions=True)
    a = simulate(w, EDGE, s)
    assert s.decisions and s.rows
    s.reset()
    assert s.decisions == [] and s.rows == [] and s.mask.size == 0 and s.column == -1
    assert simulate(w, EDGE, s) == a
