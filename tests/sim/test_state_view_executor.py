"""EngineState (arrivals, pushes, completions), the view builder and the step executor, on a
hand-computed three-request instance of the slotted engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slo_opt import StepPlan, Workload, make
from slo_opt.models.slot import SlotEngine
from slo_opt.schedule import EventKind
from slo_opt.sim.executor import InvalidPlan, apply_evictions, execute
from slo_opt.sim.state import DONE, NOT_ARRIVED, REJECTED, RUNNING, SWAPPED, WAITING, EngineState
from slo_opt.sim.view import build_view


def _state(online: bool = False) -> EngineState:
    # r0: P 5 O 3 (peak 7 tokens); r1: P 3 O 2; r2: P 30 O 5 (peak 34 > 32: rejected)
    w = Workload.from_arrays([0.0, 0.0, 1.0], [5, 3, 30], [3, 2, 5])
    e = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=32, kv_block_tokens=4,
                   kv_bytes_per_token=8, host_bandwidth_bytes_per_s=16.0)
    return EngineState(w, e, make("fcfs"), fast_forward=False, max_steps=None, online=online)


def test_arrivals_and_rejection_on_arrival():
    st = _state()
    assert st.kv.capacity_blocks == 8 and st.next_arrival_s() == 0.0
    st.admit_arrivals()
    assert st.state.tolist() == [WAITING, WAITING, NOT_ARRIVED]
    assert st.waiting.array().tolist() == [0, 1] and st.next_arrival_s() == 1.0
    st.now = 1.0
    st.admit_arrivals()
    assert st.state[2] == REJECTED and st.num_closed == 1 and math.isinf(st.next_arrival_s())


def test_online_push_rules():
    st = _state(online=True)
    st.admit_arrivals()
    assert st.all_closed() and math.isinf(st.next_arrival_s())
    st.push(1, 0.5)
    with pytest.raises(ValueError, match="twice"):
        st.push(1, 0.5)
    with pytest.raises(ValueError, match="before its arrival"):
        st.push(2, 0.5)
    st.admit_arrivals()
    assert st.state[1] == NOT_ARRIVED and st.next_arrival_s() == 0.5 and not st.all_closed()
    st.now = 0.5
    st.admit_arrivals()
    assert st.state[1] == WAITING
    with pytest.raises(RuntimeError, match="online"):
        _state().push(0, 0.0)


def test_view_reflects_state():
    st = _state()
    st.admit_arrivals()
    v = build_view(st)
    assert v.waiting.tolist() == [0, 1] and v.running.size == 0 and v.swapped.size == 0
    assert v.kv_free_blocks == 8 and v.kv_block_tokens == 4 and v.next_arrival_s == 1.0
    assert [v.next_tokens(r) for r in (0, 1)] == [5, 3]
    assert v.next_tokens_of(np.array([1, 0])).tolist() == [3, 5]
    assert v.blocks_for(0, 5) == 2 and v.blocks_held(0) == 0
    assert build_view(st).waiting is v.waiting  # cached until the queue changes


def test_execute_prefill_then_decode_and_finish():
    st = _state()
    st.admit_arrivals()
    execute(st, StepPlan({0: 5, 1: 3}))  # both prompts: 2 + 1 blocks, first tokens at t=1
    assert st.state[:2].tolist() == [RUNNING, RUNNING] and len(st.waiting) == 0
    assert st.computed[:2].tolist() == [5, 3] and st.generated[:2].tolist() == [1, 1]
    assert st.kv.free_blocks == 8 - 3 and st.kv.held[:2].tolist() == [2, 1]
    assert st.first_token_step[:2].tolist() == [0, 0] and st.first_token_time_s[0] == 1.0
    assert st.nt[:2].tolist() == [1, 1] and st.now == 1.0 and st.step == 1
    execute(st, StepPlan({0: 1, 1: 1}))  # r1 finishes (2 outputs); r0 computes token 6
    assert st.state[:2].tolist() == [RUNNING, DONE] and st.finish_step[1] == 1
    assert st.kv.held[:2].tolist() == [2, 0] and st.kv.free_blocks == 6
    steps, allocs, _ = st.rec.tables()
    assert steps.prefill_tokens.tolist() == [8, 0] and steps.decode_seqs.tolist() == [0, 2]
    assert steps.context_tokens.tolist() == [8, 10]
    assert int((allocs.tokens * allocs.num_steps).sum()) == 5 + 3 + 2


@pytest.mark.parametrize(("plan", "msg"), [
    (StepPlan({2: 1}), "request 2 has not arrived"),
    (StepPlan({7: 1}), "unknown request id"),
    (StepPlan({0: 6}), "6 tokens > next_tokens 5"),
    (StepPlan({0: 0}), "tokens must be >= 1"),
])
def test_invalid_plans_name_the_rule(plan, msg):
    st = _state()
    st.admit_arrivals()
    with pytest.raises(InvalidPlan, match=msg) as ei:
        execute(st, plan)
    assert ei.value.scheduler == "fcfs" and ei.value.step == 0


def test_budget_and_kv_overflow():
    st = _state()
    st.admit_arrivals()
    st.max_batch_tokens = 4
    with pytest.raises(InvalidPlan, match="exceed the engine's max_batch_tokens"):
        execute(st, StepPlan({0: 5}))
    st = _state()
    st.admit_arrivals()
    st.kv.free_blocks = 1
    with pytest.raises(InvalidPlan, match="KV overflow: needs 2 blocks, 1 free"):
        execute(st, StepPlan({0: 5}))


def test_evictions_preempt_swap_reject():
    st = _state()
    st.admit_arrivals()
    execute(st, StepPlan({0: 5, 1: 3}))
    assert apply_evictions(st, StepPlan({}, preempt=frozenset({0}), swap_out=frozenset({1})))
    assert st.state[:2].tolist() == [WAITING, SWAPPED] and st.kv.free_blocks == 8
    assert st.computed[:2].tolist() == [0, 3] and st.nt[0] == 5 + 1
    assert st.pending_swap_s == 3 * 8 / 16.0
    kinds = [k for _, _, k, _ in st.rec.events]
    assert kinds == [int(EventKind.PREEMPT_RECOMPUTE), int(EventKind.SWAP_OUT)]
    with pytest.raises(InvalidPlan, match="reject of request 1 which is not waiting"):
        apply_evictions(st, StepPlan({}, reject=frozenset({1})))
    assert apply_evictions(st, StepPlan({}, reject=frozenset({0})))
    assert st.state[0] == REJECTED and not apply_evictions(st, StepPlan({}))
