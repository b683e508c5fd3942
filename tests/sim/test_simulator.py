"""Simulator: hand-computed known answers, preemption, swap, rejection, replay, online mode."""

import math

import numpy as np
import pytest

from slo_opt import SLO, Request, StepPlan, Workload, make, replay, simulate, violations
from slo_opt.metrics import attainment, request_metrics
from slo_opt.models import SlotEngine
from slo_opt.schedule import EventKind
from slo_opt.sim.simulator import Simulation


def three_requests_one_long():
    """r0: prompt 8, output 4; r1, r2: prompt 2, output 1; all at t=0; TTFT SLO 2 s.

    SlotEngine(step_s=1, max_batch_tokens=4), token-exact KV.
    """
    slo = SLO(ttft_s=2.0)
    w = Workload([Request(0, 0.0, 8, 4, slo), Request(1, 0.0, 2, 1, slo), Request(2, 0.0, 2, 1, slo)])
    return w, SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=64)


def test_vllm_known_answer():
    """vLLM v1, budget 4, chunked prefill.

    step 0: r0 chunk 4.  step 1: r0 chunk 4 -> first token at t=2 (TTFT 2, met).
    step 2: r0 decode (1), r1 prompt 2 -> done at t=3 (TTFT 3, miss), r2 chunk 1 (budget left 1).
    step 3: r0 decode, r2 last prompt token -> done at t=4 (miss).  step 4: r0's 4th token,
    finishes at t=5, TPOT (5 - 2) / 3 = 1.  Attainment 1/3.
    """
    w, e = three_requests_one_long()
    s = simulate(w, e, make("vllm", max_num_batched_tokens=4))
    assert violations(s, w, e) == []
    m = request_metrics(s, w)
    np.testing.assert_allclose(m["first_token_s"], [2.0, 3.0, 4.0])
    np.testing.assert_allclose(m["finish_s"], [5.0, 3.0, 4.0])
    assert m["tpot_s"][0] == pytest.approx(1.0)
    assert attainment(s, w) == pytest.approx(1 / 3)
    assert s.num_steps == 5


def test_fcfs_none_known_answer():
    """No batching: r0 runs alone (prefill chunked by the budget: steps 0-1, decodes 2-4, done
    t=5), then r1 (t=6), then r2 (t=7). Only r0 meets TTFT <= 2 s."""
    w, e = three_requests_one_long()
    s = simulate(w, e, make("fcfs", batching="none"))
    assert violations(s, w, e) == []
    np.testing.assert_allclose(s.finish_s, [5.0, 6.0, 7.0])
    assert attainment(s, w) == pytest.approx(1 / 3)


def test_continuous_without_chunking_rejects_long_prompt():
    """Continuous batching without chunking cannot run an 8-token prompt on a 4-token budget:
    r0 is reported as rejected (not dropped); r1 and r2 share step 0 and finish at t=1."""
    w, e = three_requests_one_long()
    for name, params in (("fcfs", {"batching": "continuous"}), ("orca", {})):
        s = simulate(w, e, make(name, **params))
        assert violations(s, w, e) == []
        assert s.rejected.tolist() == [True, False, False]
        np.testing.assert_allclose(s.finish_s[1:], [1.0, 1.0])
        assert attainment(s, w) == pytest.approx(2 / 3)


def test_vllm_recompute_preemption_known_answer():
    """KV capacity 10 tokens; r0 (prompt 4, output 5, peak 8), r1 (prompt 4, output 3).

    step 0: both prefill (KV 8).  step 1: both decode (KV 10).  step 2: r0 needs an 11th
    token -> newest running request r1 is preempted (recompute, 5 tokens dropped).
    steps 2-4: r0 decodes alone and finishes at the end of step 4; r1's recompute needs 6
    tokens, free only from step 5.  step 5: r1 recomputes 6 tokens and emits its 3rd token.
    """
    w = Workload([Request(0, 0.0, 4, 5), Request(1, 0.0, 4, 3)])
    e = SlotEngine(step_s=1.0, max_batch_tokens=100, kv_capacity_tokens=10)
    s = simulate(w, e, make("vllm"))
    assert violations(s, w, e) == []
    assert s.finish_step.tolist() == [4, 5]
    assert s.events.step.tolist() == [2]
    assert s.events.request.tolist() == [1]
    assert s.events.kind.tolist() == [EventKind.PREEMPT_RECOMPUTE]
    assert s.events.tokens.tolist() == [5]
    assert s.allocs.tokens_per_request(2).tolist() == [8, 4 + 1 + 6]


def test_request_larger_than_kv_is_rejected_not_dropped():
    w = Workload([Request(0, 0.0, 100, 10), Request(1, 0.0, 4, 2)])
    e = SlotEngine(step_s=0.1, max_batch_tokens=256, kv_capacity_tokens=64, kv_block_tokens=16)
    for name in ("vllm", "orca", "fcfs", "sarathi"):
        s = simulate(w, e, make(name))
        assert s.rejected.tolist() == [True, False]
        assert s.finish_step[1] >= 0
        assert request_metrics(s, w)["slo_met"][0] == False  # noqa: E712


class _SwapOnce:
    """Runs r0 and r1, swaps r1 out once at step 2 and back in at step 4."""

    name = "swap_once"

    def reset(self):
        self.out = False

    def plan(self, view):
        run = [int(r) for r in view.running]
        if view.step == 2 and 1 in run and not self.out:
            self.out = True
            return StepPlan({0: view.next_tokens(0)}, swap_out=frozenset({1}))
        toks = {r: view.next_tokens(r) for r in run}
        if view.step >= 4:
            toks.update({int(r): view.next_tokens(int(r)) for r in view.swapped})
        toks.update({int(r): view.next_tokens(int(r)) for r in view.waiting})
        return StepPlan(toks)


def test_swap_out_and_in_costs_transfer_time():
    w = Workload([Request(0, 0.0, 4, 6), Request(1, 0.0, 8, 6)])
    e = SlotEngine(step_s=1.0, max_batch_tokens=64, kv_capacity_tokens=64,
                   kv_bytes_per_token=1000, host_bandwidth_bytes_per_s=10_000.0)
    s = simulate(w, e, _SwapOnce(), fast_forward=False)
    assert violations(s, w, e) == []
    kinds = s.events.kind.tolist()
    assert kinds == [EventKind.SWAP_OUT, EventKind.SWAP_IN]
    # r1 had 8 + 2 - 1 = 9 computed tokens at swap-out: 9 * 1000 B / 10 kB/s = 0.9 s each way
    assert s.steps.swap_s[2] == pytest.approx(0.9)
    assert s.steps.swap_s[4] == pytest.approx(0.9)
    assert s.finish_step[1] >= 0


def test_replay_on_same_engine_is_identity_and_retimes_on_faster_engine():
    w, e = three_requests_one_long()
    s = simulate(w, e, make("vllm", max_num_batched_tokens=4))
    r = replay(s, w, e)
    assert r == s
    fast = SlotEngine(step_s=0.5, max_batch_tokens=4, kv_capacity_tokens=64)
    r2 = replay(s, w, fast)
    assert violations(r2, w, fast) == []
    np.testing.assert_allclose(r2.finish_s, s.finish_s / 2)


def test_online_simulation_equals_offline():
    rng = np.random.default_rng(3)
    n = 30
    w = Workload.from_arrays(np.cumsum(rng.exponential(0.05, n)), rng.integers(1, 40, n),
                             rng.integers(1, 12, n))
    e = SlotEngine(step_s=0.05, max_batch_tokens=48, kv_capacity_tokens=192, kv_block_tokens=4)
    off = simulate(w, e, make("vllm"))
    sim = Simulation(w, e, make("vllm"))
    for r in range(n):
        sim.run_until(float(w.arrival_s[r]))
        sim.push(r)
    assert sim.finish() == off


def test_online_release_delays_visibility():
    w = Workload([Request(0, 0.0, 4, 2), Request(1, 0.0, 4, 2)])
    e = SlotEngine(step_s=1.0, max_batch_tokens=64, kv_capacity_tokens=64)
    sim = Simulation(w, e, make("vllm"))
    sim.push(0, 0.0)
    sim.push(1, 3.0)  # e.g. after a 3 s network transfer
    s = sim.finish()
    assert violations(s, w, e) == []
    assert s.steps.start_s[s.allocs.step[s.allocs.request == 1].min()] >= 3.0


def test_fast_forward_equals_stepping_on_long_decodes():
    rng = np.random.default_rng(0)
    n = 50
    w = Workload.from_arrays(np.cumsum(rng.exponential(0.5, n)), rng.integers(1, 300, n),
                             rng.integers(1, 400, n), ttft_slo_s=1.0, tpot_slo_s=0.1)
    e = SlotEngine(step_s=0.02, max_batch_tokens=512, kv_capacity_tokens=4096, kv_block_tokens=16)
    for name in ("vllm", "orca", "fcfs", "sarathi"):
        a = simulate(w, e, make(name), fast_forward=True)
        b = simulate(w, e, make(name), fast_forward=False)
        assert a == b, name
        assert len(a.allocs) < sum(w.output_tokens)  # run-length allocations


def test_idle_engine_jumps_to_next_arrival():
    w = Workload([Request(0, 0.0, 1, 1), Request(1, 100.0, 1, 1)])
    e = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=8)
    s = simulate(w, e, make("vllm"))
    assert s.steps.start_s.tolist() == [0.0, 100.0]
    assert math.isclose(s.makespan_s, 101.0)
