"""vLLM v1 and V0 step semantics: queue order, admission-time KV checks, V0's prefill-only steps."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given

from slo_opt.checks import violations
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate
from slo_opt.testing import slot_engines, workloads


@dataclass
class _Spy:
    """Wraps a policy and records the queues it saw at every call."""

    inner: Any
    seen: list

    @property
    def name(self) -> str:
        return self.inner.name

    def reset(self) -> None:
        self.inner.reset()
        self.seen.clear()

    def plan(self, view):
        self.seen.append((view.running.tolist(), view.waiting.tolist()))
        return self.inner.plan(view)


@pytest.mark.parametrize("params", [
    ("vllm", {}), ("vllm", {"scheduler_reserve_full_isl": True}),
    ("vllm", {"chunked_prefill": False}), ("vllm_v0", {})])
@given(workload=workloads(max_requests=8, max_prompt=200, max_output=30, max_gap_s=0.05),
       engine=slot_engines(min_batch_tokens=32, max_batch_tokens=256, block_tokens=(16,)))
def test_arrival_order_queue_is_vllm_order(params, workload, engine):
    """vLLM prepends a preempted request to its waiting queue; the simulator keeps the queue in
    arrival order. Equal for these FCFS policies: the running list stays in arrival order and
    every running request is older than every waiting one, so a victim (the newest running
    request) belongs at the front."""
    name, kw = params
    spy = _Spy(make(name, **kw), [])
    s = simulate(workload, engine, spy, fast_forward=False)
    assert violations(s, workload, engine) == []
    for running, waiting in spy.seen:
        assert running == sorted(running)
        if running and waiting:
            assert max(running) < min(waiting)


def _engine(kv_blocks: int, budget: int = 64) -> SlotEngine:
    return SlotEngine(step_s=0.01, max_batch_tokens=budget, kv_capacity_tokens=16 * kv_blocks,
                      kv_block_tokens=16)


def test_full_sequence_gate_refuses_a_prompt_whose_first_chunk_fits():
    # request 0 runs alone (64-token prompt: 4 blocks, then decodes into a 5th); request 1
    # arrives with a 96-token prompt (6 blocks). 10 blocks in all: its first 32-token chunk
    # (2 blocks) fits next to request 0, its whole prompt does not until request 0 ends.
    w = Workload.from_arrays([0.0, 0.015], [64, 96], [20, 2])
    eng = _engine(10, budget=64)
    for full, admitted_early in ((False, True), (True, False)):
        s = simulate(w, eng, make("vllm", max_num_batched_tokens=64,
                                  scheduler_reserve_full_isl=full), fast_forward=False)
        assert violations(s, w, eng) == []
        first_step_1 = int(s.allocs.step[s.allocs.request == 1].min())
        assert (first_step_1 < s.finish_step[0]) == admitted_early


def test_v0_prefill_steps_stall_decodes():
    # two requests decoding; a third arrives: V0 runs its prompt alone (no decode in that step)
    w = Workload.from_arrays([0.0, 0.0, 0.05], [16, 16, 32], [20, 20, 3])
    eng = _engine(100)
    s = simulate(w, eng, make("vllm_v0", max_num_batched_tokens=64), fast_forward=False)
    assert violations(s, w, eng) == []
    step = int(s.allocs.step[s.allocs.request == 2].min())
    assert s.steps.prefill_tokens[step] == 32 and s.steps.decode_seqs[step] == 0
    # vLLM v1 mixes the same prompt with the decodes
    s1 = simulate(w, eng, make("vllm", max_num_batched_tokens=64), fast_forward=False)
    step1 = int(s1.allocs.step[s1.allocs.request == 2].min())
    assert s1.steps.prefill_tokens[step1] == 32 and s1.steps.decode_seqs[step1] == 2


def test_v0_watermark_and_prompt_limit():
    eng = _engine(100, budget=512)
    # 100 blocks, watermark 10 %: 10 blocks must stay free. Request 0 holds 80 blocks
    # (1280 tokens); request 1 (160 tokens, 10 blocks) would leave exactly 10: admitted;
    # with a 161-token prompt (11 blocks) only 9 would remain: it waits for request 0.
    for p1, waits in ((160, False), (161, True)):
        w = Workload.from_arrays([0.0, 0.001], [1280, p1], [3, 2])
        pol = make("vllm_v0", max_num_batched_tokens=2048, watermark=0.1)
        eng2 = _engine(100, budget=2048)
        s = simulate(w, eng2, pol, fast_forward=False)
        assert violations(s, w, eng2) == []
        assert (int(s.allocs.step[s.allocs.request == 1].min()) > s.finish_step[0]) == waits
    # a prompt longer than the budget is rejected (V0 ignores it); so is one that can never
    # leave the watermark free
    w = Workload.from_arrays([0.0, 0.0], [600, 16], [2, 2])
    s = simulate(w, eng, make("vllm_v0", max_num_batched_tokens=512), fast_forward=False)
    assert s.rejected.tolist() == [True, False]
    w = Workload.from_arrays([0.0], [1580], [2])
    s = simulate(w, _engine(100, budget=2048),
                 make("vllm_v0", max_num_batched_tokens=2048, watermark=0.02),
                 fast_forward=False)
    assert s.rejected.tolist() == [True]


def test_v1_bad_parameters_are_typed_errors():
    with pytest.raises(TypeError):
        make("vllm", enable_prefix_caching="false")
    with pytest.raises(TypeError):
        make("vllm", scheduler_reserve_full_isl=1)
    with pytest.raises(ValueError):
        make("vllm_v0", watermark=1.0)
    with pytest.raises(TypeError):
        make("vllm_v0", enable_prefix_caching="yes")


def test_v0_fast_forward_is_exact_on_a_trace_head():
    from slo_opt.models.catalog import get_engine
    from slo_opt.workloads.traces import default_workload

    w = default_workload().head(200)
    eng = get_engine("h100/llama-3.1-8b", kv_capacity_tokens=60_000)
    pol = lambda: make("vllm_v0", max_num_batched_tokens=8192)  # noqa: E731
    a = simulate(w, eng, pol(), fast_forward=True)
    b = simulate(w, eng, pol(), fast_forward=False)
    assert np.array_equal(a.steps.end_s, b.steps.end_s)
    assert a.allocs == b.allocs and a.events == b.events
