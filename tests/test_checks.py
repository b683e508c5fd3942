"""The checker catches every kind of broken schedule (mutation tests)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given

from slo_opt import Request, Workload, make, simulate, violations
from slo_opt.models import SlotEngine
from slo_opt.schedule import AllocTable, Schedule, StepTable
from slo_opt.testing import slot_engines, workloads

W = Workload([Request(0, 0.0, 4, 3), Request(1, 0.5, 3, 2)])
E = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=16)
BASE = simulate(W, E, make("vllm"))


def _with_allocs(s, **cols):
    a = s.allocs
    new = {k: np.array(getattr(a, k)) for k in ("request", "step", "tokens", "num_steps")}
    for k, f in cols.items():
        new[k] = f(new[k])
    return dataclasses.replace(s, allocs=AllocTable(**new))


def test_base_is_feasible():
    assert violations(BASE, W, E) == []


def test_detects_token_budget_overflow():
    e = SlotEngine(step_s=1.0, max_batch_tokens=3, kv_capacity_tokens=16)
    assert any("max_batch_tokens" in v for v in violations(BASE, W, e))


def test_detects_kv_overflow():
    e = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=5)
    assert any("KV overflow" in v for v in violations(BASE, W, e))


def test_detects_wrong_step_time():
    e = SlotEngine(step_s=0.5, max_batch_tokens=8, kv_capacity_tokens=16)
    assert any("lasts" in v for v in violations(BASE, W, e))


def test_detects_allocation_before_arrival():
    w = Workload([Request(0, 0.0, 4, 3), Request(1, 5.0, 3, 2)])
    assert any("before its arrival" in v for v in violations(BASE, w, E))


def test_detects_too_many_tokens():
    bad = _with_allocs(BASE, tokens=lambda t: t + (np.arange(t.size) == 0))
    assert violations(bad, W, E)


def test_detects_missing_first_token_record():
    bad = dataclasses.replace(BASE, first_token_step=np.array([-1, BASE.first_token_step[1]]))
    assert any("first_token_step" in v for v in violations(bad, W, E))


def test_detects_overlapping_steps():
    st = BASE.steps
    start = np.array(st.start_s)
    start[1] -= 0.5
    bad = dataclasses.replace(BASE, steps=StepTable(start, st.end_s, st.prefill_tokens,
                                                    st.decode_seqs, st.context_tokens, st.swap_s))
    assert violations(bad, W, E)


def test_detects_wrong_request_count():
    w = Workload([Request(0, 0.0, 4, 3)])
    assert violations(BASE, w, E)


def test_detects_finished_and_rejected():
    bad = dataclasses.replace(BASE, rejected=np.array([True, False]))
    assert any("rejected" in v for v in violations(bad, W, E))


@given(workload=workloads(), engine=slot_engines())
def test_dropping_any_allocation_is_detected(workload, engine):
    s = simulate(workload, engine, make("vllm"))
    if len(s.allocs) == 0:
        return
    keep = np.ones(len(s.allocs), bool)
    keep[len(s.allocs) // 2] = False
    a = s.allocs
    bad = dataclasses.replace(s, allocs=AllocTable(a.request[keep], a.step[keep], a.tokens[keep],
                                                   a.num_steps[keep]))
    assert violations(bad, workload, engine) != []


def test_schedule_records_round_trip(tmp_path):
    assert Schedule.from_records(BASE.to_records()) == BASE
    p = tmp_path / "s.npz"
    BASE.save_npz(str(p))
    assert Schedule.load_npz(str(p)) == BASE


def test_schedule_validates_column_lengths():
    with pytest.raises(ValueError):
        StepTable(np.zeros(2), np.ones(3))
