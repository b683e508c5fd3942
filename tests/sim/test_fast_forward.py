"""Fast-forward (event skipping) gives exactly the step-by-step schedule, for every scheduler.

The conformance suite checks this on slot engines with short outputs; here the runs are long
(many decode steps per fast-forward), the engine is a linear model whose step time grows with
the context (so the vectorised step-time sums are exercised) and arrivals fall in the middle of
decode runs. Targeted cases pin the three stopping rules: a KV-block shortage during a run, an
arrival in the middle of a run, and a preemption.
"""

import math

import numpy as np
import pytest
from hypothesis import given

from slo_opt import Request, StepPlan, Workload, make, simulate
from slo_opt.checks import violations
from slo_opt.metrics import summary
from slo_opt.models import LinearEngineModel, SlotEngine
from slo_opt.schedule import EventKind
from slo_opt.schedulers import SCHEDULERS
from slo_opt.testing import linear_engines, slot_engines, workloads

NAMES = sorted(SCHEDULERS)


def _same_summary(a, b):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), k
        else:
            assert x == y, k


def _check_equal(name, workload, engine):
    a = simulate(workload, engine, make(name), fast_forward=True, max_steps=200_000)
    b = simulate(workload, engine, make(name), fast_forward=False, max_steps=200_000)
    assert a == b, f"{name}: fast-forward schedule differs from step-by-step"
    assert a.steps.start_s.tobytes() == b.steps.start_s.tobytes()  # same floats, bit for bit
    assert a.steps.end_s.tobytes() == b.steps.end_s.tobytes()
    _same_summary(summary(a, workload), summary(b, workload))
    return a


@pytest.mark.parametrize("name", NAMES)
@given(workload=workloads(max_requests=7, max_prompt=64, max_output=60, max_gap_s=0.3),
       engine=linear_engines())
def test_fast_forward_equals_stepping_linear_engine(name, workload, engine):
    _check_equal(name, workload, engine)


@pytest.mark.parametrize("name", NAMES)
@given(workload=workloads(max_requests=6, max_prompt=40, max_output=40, max_gap_s=0.2),
       engine=slot_engines(min_batch_tokens=16, max_batch_tokens=96, block_tokens=(1, 4, 16)))
def test_fast_forward_equals_stepping_slot_engine_long_outputs(name, workload, engine):
    _check_equal(name, workload, engine)


class _Counting:
    """Wraps a scheduler and counts plan() calls (to show that fast-forward skips them)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def reset(self):
        self.inner.reset()

    def plan(self, view):
        self.calls += 1
        return self.inner.plan(view)


def _lin(kv_tokens, block=16, max_batch=512):
    return LinearEngineModel(name="lin", c0_s=0.01, c_prefill_s=1e-4, c_decode_s=1e-4,
                             c_ctx_s=1e-6, kv_capacity_tokens=kv_tokens, kv_block_tokens=block,
                             max_batch_tokens=max_batch)


def test_fast_forward_skips_plans_on_a_long_decode():
    w = Workload([Request(0, 0.0, 10, 500), Request(1, 0.0, 20, 300)])
    e = _lin(4096)
    ff, step = _Counting(make("vllm")), _Counting(make("vllm"))
    a = simulate(w, e, ff, fast_forward=True)
    b = simulate(w, e, step, fast_forward=False)
    assert a == b
    assert step.calls == a.num_steps
    assert ff.calls <= 4  # prefill, decode run to r1's completion, decode run to r0's
    assert len(a.allocs) < 10  # decode runs are stored run-length encoded


def test_kv_block_shortage_during_a_decode_run_stops_fast_forward():
    """Two requests decode until the cache (block 16) is full; vLLM must then preempt the newer
    one at exactly the step where the next block is needed."""
    w = Workload([Request(0, 0.0, 30, 200), Request(1, 0.0, 30, 200)])
    e = _lin(16 * 20)  # 20 blocks: one request peaks at 15, both fit at first, not at the end
    a = _check_equal("vllm", w, e)
    assert violations(a, w, e) == []
    pre = a.events.kind == EventKind.PREEMPT_RECOMPUTE
    assert pre.any(), "the case must exercise a preemption"
    s = int(a.events.step[pre][0])
    assert a.allocs.num_steps.max() > 50  # the decode run before it was fast-forwarded
    # the first preemption happens at the step where the 13th block would be needed: both
    # requests hold ceil(ctx/16) blocks, ctx = 30 + t after t decode tokens of each request
    held = [math.ceil((30 + t) / 16) * 2 for t in range(200)]
    t_short = next(t for t in range(200) if math.ceil((30 + t + 1) / 16) * 2 > 20)
    assert held[t_short] <= 20
    assert s == 1 + t_short  # step 0 is the joint prefill
    assert int(a.events.request[pre][0]) == 1  # the newest running request is the victim


def test_arrival_in_the_middle_of_a_decode_run():
    e = _lin(8192)
    w = Workload([Request(0, 0.0, 10, 400), Request(1, 0.3567, 50, 5)])
    ff = _Counting(make("vllm"))
    a = simulate(w, e, ff, fast_forward=True)
    b = simulate(w, e, make("vllm"), fast_forward=False)
    assert a == b
    # r1's prefill happens in the first step that starts at or after its arrival
    k = int(np.flatnonzero(a.steps.prefill_tokens > 0)[1])
    assert a.steps.start_s[k] >= 0.3567 - 1e-9 > a.steps.start_s[k - 1]
    assert ff.calls < a.num_steps / 10


def test_preemption_and_requeue_under_kv_pressure_all_schedulers():
    """Many requests, a cache far too small: every scheduler preempts or queues; FF == step."""
    rng = np.random.default_rng(3)
    n = 12
    arr = np.cumsum(rng.exponential(0.05, n))
    w = Workload.from_arrays(arr, rng.integers(5, 60, n), rng.integers(20, 120, n))
    e = _lin(16 * 20)
    for name in NAMES:
        _check_equal(name, w, e)


def test_promise_horizon_stops_a_run():
    """A policy promising the same plan only until t=0.25 s is asked again at that point."""

    class Horizon:
        name = "horizon"

        def reset(self):
            self.calls = []

        def plan(self, view):
            self.calls.append(view.now_s)
            toks = {int(r): view.next_tokens(int(r)) for r in view.running}
            toks.update({int(r): view.next_tokens(int(r)) for r in view.waiting})
            pure = all(t == 1 and view.num_generated[r] >= 1 for r, t in toks.items())
            horizon = 0.25 if view.now_s < 0.25 - 1e-9 else math.inf
            return StepPlan(toks, repeat_until_s=horizon if pure else -math.inf)

    w = Workload([Request(0, 0.0, 8, 100)])
    e = SlotEngine(step_s=0.01, max_batch_tokens=64, kv_capacity_tokens=256)
    h = Horizon()
    a = simulate(w, e, h, fast_forward=True)
    assert a == simulate(w, e, Horizon(), fast_forward=False)
    assert len(h.calls) == 3  # prefill, decode run until 0.25 s, the rest
    assert h.calls[2] >= 0.25 - 1e-9


def test_decode_all_promise_runs_across_completions():
    """vLLM promises to decode every running request while nothing waits: one plan call covers
    the decode phase of the whole batch, across its completions."""
    w = Workload([Request(i, 0.0, 10 + 7 * i, 40 + 53 * i) for i in range(6)])
    e = _lin(1 << 14)
    for name in ("vllm", "fcfs", "orca", "sarathi"):
        ff = _Counting(make(name))
        a = simulate(w, e, ff, fast_forward=True)
        assert a == simulate(w, e, make(name), fast_forward=False)
        assert ff.calls <= 2, name  # the joint prefill, then one decode-all run to the end
        assert a.finish_step.max() == a.num_steps - 1


@pytest.mark.parametrize("blocks", [9, 12, 17, 25, 40])
@pytest.mark.parametrize("name", ["vllm", "fcfs", "orca", "sarathi"])
def test_decode_all_run_kv_shortage_after_completions(name, blocks):
    """Completions free blocks during a decode-all run; a later block shortage must stop the
    run at exactly the step where step-by-step stepping asks the policy (and it preempts)."""
    w = Workload([Request(0, 0.0, 20, 25), Request(1, 0.0, 9, 90), Request(2, 0.0, 30, 140),
                  Request(3, 0.01, 5, 60), Request(4, 0.02, 40, 8)])
    e = _lin(16 * blocks, block=4)
    a = _check_equal(name, w, e)
    assert violations(a, w, e) == []


def test_decode_all_promise_is_opt_in():
    """A plan without the promise is asked again at every step after the prefill; an arrival
    ends a promise."""

    class NoPromise:
        name = "nopromise"

        def __init__(self):
            self.inner = make("vllm")
            self.calls = 0

        def reset(self):
            self.calls = 0

        def plan(self, view):
            self.calls += 1
            p = self.inner.plan(view)
            return StepPlan(p.tokens, preempt=p.preempt, reject=p.reject)

    w = Workload([Request(0, 0.0, 10, 30), Request(1, 0.0, 12, 20), Request(2, 0.2, 4, 10)])
    e = _lin(4096)
    h = NoPromise()
    a = simulate(w, e, h, fast_forward=True)
    assert h.calls == a.num_steps
    assert a == simulate(w, e, make("vllm"), fast_forward=True)


@pytest.mark.parametrize("name", ["vllm", "orca", "fcfs"])
def test_online_simulation_with_decode_all_runs_equals_offline(name):
    """Incremental (online) runs stop decode-all runs at run_until's limit; pushing every
    request at its arrival gives the offline step-by-step schedule."""
    from slo_opt.sim.simulator import Simulation

    rng = np.random.default_rng(7)
    n = 15
    arr = np.cumsum(rng.exponential(0.4, n))
    w = Workload.from_arrays(arr, rng.integers(5, 80, n), rng.integers(10, 200, n))
    e = _lin(16 * 40)
    sim = Simulation(w, e, make(name))
    for rid in range(n):
        sim.run_until(float(w.arrival_s[rid]))
        sim.push(rid)
    a = sim.finish()
    assert a == simulate(w, e, make(name), fast_forward=False)
