"""The checker catches every kind of broken schedule (mutation tests)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given

from slo_opt import Request, Workload, make, simulate, violations
from slo_opt.models import SlotEngine
from slo_opt.schedule import AllocTable, EventKind, EventTable, Schedule, StepTable
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


def _swap_instance():
    eng = SlotEngine(step_s=0.01, max_batch_tokens=256, kv_capacity_tokens=16 * 10,
                     kv_block_tokens=16, kv_bytes_per_token=1_000_000,
                     host_bandwidth_bytes_per_s=1e9)
    rng = np.random.default_rng(0)
    w = Workload.from_arrays(np.sort(rng.uniform(0, 0.5, 12)), rng.integers(20, 60, 12),
                             rng.integers(20, 60, 12))
    s = simulate(w, eng, make("fastserve", max_batch_seqs=4))
    assert (s.events.kind == EventKind.SWAP_OUT).any() and s.steps.swap_s.sum() > 0
    return s, w, eng


def test_detects_free_swaps_in_the_tables():
    """Swaps made free (swap_s zeroed, every later step moved earlier) are re-derived."""
    s, w, eng = _swap_instance()
    assert violations(s, w, eng) == []
    st = s.steps
    shift = np.cumsum(st.swap_s)
    free = dataclasses.replace(s, steps=StepTable(
        start_s=st.start_s - (shift - st.swap_s), end_s=st.end_s - shift,
        prefill_tokens=st.prefill_tokens, decode_seqs=st.decode_seqs,
        context_tokens=st.context_tokens, swap_s=np.zeros_like(st.swap_s)))
    assert free.steps.end_s[-1] < s.steps.end_s[-1] - 0.1  # e2e times drop
    msgs = violations(free, w, eng)
    assert any("swap time" in v for v in msgs)
    assert any("lasts" in v for v in msgs)
    # recording the swap time without spending it is caught by the duration check alone
    unspent = dataclasses.replace(free, steps=dataclasses.replace(free.steps, swap_s=st.swap_s))
    assert any("lasts" in v for v in violations(unspent, w, eng))


def test_detects_a_simulator_with_free_swaps(monkeypatch):
    """The checker does not trust the simulator's own transfer model."""
    from slo_opt.sim.kv import KVBlockManager

    _, w, eng = _swap_instance()
    monkeypatch.setattr(KVBlockManager, "transfer_s", lambda self, tokens: 0.0)
    s = simulate(w, eng, make("fastserve", max_batch_seqs=4))
    assert (s.events.kind == EventKind.SWAP_OUT).any() and s.steps.swap_s.sum() == 0
    assert any("swap time" in v for v in violations(s, w, eng))


def test_detects_wrong_swap_in_tokens():
    s, w, eng = _swap_instance()
    ev = s.events
    i = int(np.flatnonzero(ev.kind == EventKind.SWAP_IN)[0])
    tok = np.array(ev.tokens)
    tok[i] += 1
    bad = dataclasses.replace(s, events=dataclasses.replace(ev, tokens=tok))
    assert any("SWAP_IN" in v for v in violations(bad, w, eng))


def _truncate(s, k):
    """The first ``k`` steps of ``s`` (a run cut short)."""
    step, req, tok = s.allocs.expand()
    keep = step < k
    st = s.steps
    cut = {c: getattr(st, c)[:k] for c in ("start_s", "end_s", "prefill_tokens", "decode_seqs",
                                          "context_tokens", "swap_s")}
    return dataclasses.replace(
        s, steps=StepTable(**cut),
        allocs=AllocTable(req[keep], step[keep], tok[keep], np.ones(int(keep.sum()), np.int64)),
        first_token_step=np.where(s.first_token_step < k, s.first_token_step, -1),
        finish_step=np.where(s.finish_step < k, s.finish_step, -1))


def test_detects_rejected_request_with_allocations():
    s = _truncate(BASE, 2)  # both requests started, none finished
    assert (s.finish_step < 0).all() and len(s.allocs)
    served = np.isin(np.arange(2), s.allocs.request)
    assert violations(s, W, E) == []
    bad = dataclasses.replace(s, rejected=served)
    assert sum("still has allocations" in v for v in violations(bad, W, E)) == served.sum()


def test_rejection_after_eviction_is_allowed():
    """A request evicted by recompute and then rejected (a policy that cannot re-admit it)."""
    w = Workload([Request(0, 0.0, 6, 4)])
    e = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=16)
    full = simulate(w, e, make("vllm"))
    # keep the prefill step, then a recompute preemption at step 1, nothing after
    a = full.allocs
    keep = a.step == 0
    s = Schedule(
        num_requests=1,
        steps=StepTable(start_s=full.steps.start_s[:1], end_s=full.steps.end_s[:1],
                        prefill_tokens=full.steps.prefill_tokens[:1],
                        decode_seqs=full.steps.decode_seqs[:1],
                        context_tokens=full.steps.context_tokens[:1],
                        swap_s=full.steps.swap_s[:1]),
        allocs=AllocTable(a.request[keep], a.step[keep], a.tokens[keep], a.num_steps[keep]),
        events=EventTable(step=np.array([1]), request=np.array([0]),
                          kind=np.array([int(EventKind.PREEMPT_RECOMPUTE)]),
                          tokens=np.array([6])),
        first_token_step=np.array([0]), finish_step=np.array([-1]), rejected=np.array([True]))
    assert violations(s, w, e) == []
    resident = dataclasses.replace(s, events=EventTable())
    assert any("still has allocations" in v for v in violations(resident, w, e))
