"""Admission windows (``StepPlan.admit_all``): exactly the step-by-step schedule.

The window runs many arrivals, admissions, decodes and completions without calling the
scheduler, from a fixed point of admission steps and start times (``slo_opt/sim/window.py``).
These tests compare it with stepping (``fast_forward=False``) bit for bit on workloads built
to hit its edges: arrivals exactly at (and 1 ulp / 1 eps around) step starts, idle gaps,
prompts over the token budget (chunking), several arrivals in one step beyond the sequence
cap, a KV cache small enough to preempt, requests that must be rejected, one-token prompts
and outputs, the promise horizon of ``max_steps``; and they check that windows do run.
"""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slo_opt.sim.window as sim_window
from slo_opt import Request, Workload, make, simulate
from slo_opt.models import LinearEngineModel
from slo_opt.models.catalog import get_engine
from slo_opt.schedulers.base import AdmitPromise
from slo_opt.sim.simulator import ARRIVAL_EPS_S, SchedulerStalled
from slo_opt.testing import linear_engines
from slo_opt.workloads.generators import EmpiricalLengths, synthetic

#: (scheduler, parameters) of every policy that gives the admission promise
CONFIGS = [
    ("vllm", {}),
    ("vllm", {"max_num_batched_tokens": 64}),
    ("vllm", {"max_num_seqs": 3}),
    ("vllm", {"chunked_prefill": False, "max_num_batched_tokens": 96}),
    ("vllm", {"long_prefill_token_threshold": 24}),
    ("sarathi", {"max_num_batched_tokens": 48}),
    ("fcfs", {}),
    ("fcfs", {"max_batch_seqs": 3, "max_batch_tokens": 64}),
    ("orca", {}),
    ("orca", {"max_tokens": 40, "max_batch_seqs": 4}),
    ("orca", {"max_batch_tokens": 64}),
]


@pytest.fixture
def window_count(monkeypatch):
    """Counts committed admission windows."""
    count = {"windows": 0, "steps": 0}
    real = sim_window._commit

    def counting(sim, J, *args):
        count["windows"] += 1
        count["steps"] += J
        return real(sim, J, *args)

    monkeypatch.setattr(sim_window, "_commit", counting)
    return count


def _engine(kv_tokens=4096, block=16, max_batch=512, knee=0, c_knee=0.0, c_sq=0.0):
    return LinearEngineModel(name="lin", c0_s=0.01, c_prefill_s=1e-4, c_prefill_sq_s=c_sq,
                             c_decode_s=1e-4, c_ctx_s=1e-6, c_knee_s=c_knee, knee_tokens=knee,
                             kv_capacity_tokens=kv_tokens, kv_block_tokens=block,
                             max_batch_tokens=max_batch)


def _workload(arrivals, prompts, outputs):
    reqs = [Request(i, float(a), int(p), int(o))
            for i, (a, p, o) in enumerate(zip(arrivals, prompts, outputs))]
    return Workload(reqs, name="t")


def _equal(w, e, params=None, max_steps=None, name="vllm"):
    params = params or {}
    kw = {} if max_steps is None else {"max_steps": max_steps}
    a = simulate(w, e, make(name, **params), fast_forward=True, **kw)
    b = simulate(w, e, make(name, **params), fast_forward=False, **kw)
    assert a == b, "admission windows differ from step-by-step simulation"
    assert a.steps.start_s.tobytes() == b.steps.start_s.tobytes()
    assert a.steps.end_s.tobytes() == b.steps.end_s.tobytes()
    return a


@st.composite
def _workloads(draw):
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.001, 0.004, 0.01, 0.03, 0.1, 0.5]),
                         min_size=n, max_size=n))
    prompts = draw(st.lists(st.integers(1, 120), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 90), min_size=n, max_size=n))
    return _workload(np.cumsum(gaps), prompts, outputs)


@settings(max_examples=150, deadline=None)
@given(w=_workloads(),
       e=linear_engines(kv_tokens=(128, 8192), max_batch_tokens=(16, 512), nonlinear=True),
       cfg=st.sampled_from(CONFIGS))
def test_windows_equal_stepping(w, e, cfg):
    name, params = cfg
    try:
        _equal(w, e, params, max_steps=100_000, name=name)
    except SchedulerStalled:  # both modes must stall identically
        with pytest.raises(SchedulerStalled):
            simulate(w, e, make(name, **params), fast_forward=False, max_steps=100_000)


@pytest.mark.parametrize("name", ["vllm", "sarathi", "fcfs", "orca"])
def test_promising_policies_run_windows(name, window_count):
    e = _engine()
    rng = np.random.default_rng(4)
    n = 80
    w = _workload(np.cumsum(rng.exponential(0.05, n)), rng.integers(1, 60, n),
                  rng.integers(1, 80, n))
    s = _equal(w, e, name=name)
    assert window_count["windows"] >= 1
    assert window_count["steps"] > 0.5 * s.num_steps


def test_windows_run_on_a_light_trace(window_count):
    e = get_engine("h100/llama-3.1-8b")
    w = synthetic(400, 4.0, EmpiricalLengths.default(), np.random.default_rng(3), name="p")
    s = _equal(w, e)
    assert window_count["windows"] >= 5
    assert window_count["steps"] > 0.8 * s.num_steps  # most steps run inside windows


@pytest.mark.parametrize("offset", [-2 * ARRIVAL_EPS_S, -ARRIVAL_EPS_S, 0.0, ARRIVAL_EPS_S,
                                    2 * ARRIVAL_EPS_S, "ulp-", "ulp+"])
def test_arrivals_on_step_boundaries(offset, window_count):
    """Arrivals placed on the step starts of a reference run (the visibility rule's edge)."""
    e = _engine(knee=16, c_knee=3e-5, c_sq=1e-7)
    rng = np.random.default_rng(5)
    base = _workload([0.0, 0.0, 0.002], [30, 5, 17], [80, 60, 70])
    ref = simulate(base, e, make("vllm"), fast_forward=False)
    starts = ref.steps.start_s[3:60:4]
    if offset == "ulp-":
        arr = np.nextafter(starts + ARRIVAL_EPS_S, -np.inf)
    elif offset == "ulp+":
        arr = np.nextafter(starts + ARRIVAL_EPS_S, np.inf)
    else:
        arr = starts + offset
    arr = np.concatenate(([0.0, 0.0, 0.002], np.maximum(arr, 0.002)))
    n = arr.size
    w = _workload(arr, np.concatenate(([30, 5, 17], rng.integers(1, 40, n - 3))),
                  np.concatenate(([80, 60, 70], rng.integers(1, 50, n - 3))))
    _equal(w, e)
    assert window_count["windows"] >= 1


def test_idle_gaps_and_bursts(window_count):
    e = _engine()
    arr = [0.0, 0.0, 0.0, 5.0, 5.0, 5.0001, 5.0002, 20.0] + [30.0 + 0.003 * i for i in range(40)]
    n = len(arr)
    rng = np.random.default_rng(1)
    w = _workload(arr, rng.integers(1, 80, n), rng.integers(1, 60, n))
    _equal(w, e)
    _equal(w, e, {"max_num_seqs": 4})
    assert window_count["windows"] >= 3


def test_prompt_over_budget_and_rejection_inside_a_window():
    e = _engine(kv_tokens=512, max_batch=128)
    arr = [0.0, 0.01, 0.05, 0.06, 0.3, 0.31, 0.5]
    prompts = [10, 20, 300, 15, 600, 1, 1]  # 300 needs chunks; 600 + output exceeds the cache
    outputs = [40, 30, 20, 25, 10, 1, 5]
    s = _equal(_workload(arr, prompts, outputs), e)
    assert s.rejected.tolist() == [False, False, False, False, True, False, False]


def test_kv_pressure_preemption_after_windows():
    e = _engine(kv_tokens=256, block=16)
    rng = np.random.default_rng(2)
    n = 30
    w = _workload(np.cumsum(rng.exponential(0.02, n)), rng.integers(10, 60, n),
                  rng.integers(20, 120, n))
    s = _equal(w, e)
    assert len(s.events.step) > 0  # preemptions happened


def test_max_steps_inside_a_window():
    e = _engine()
    w = _workload([0.0, 0.01, 0.02, 0.03], [10, 10, 10, 10], [200, 200, 200, 200])
    for cap in (7, 50, 150):
        with pytest.raises(SchedulerStalled):
            simulate(w, e, make("vllm"), fast_forward=True, max_steps=cap)
    _equal(w, e, max_steps=10_000)


def test_engine_without_vectorised_shapes_takes_the_plain_path(window_count):
    e = get_engine("h100/llama-3.1-8b")
    plain = type("Plain", (), {k: getattr(e, k) for k in (
        "name", "kv_capacity_tokens", "kv_block_tokens", "max_batch_tokens",
        "kv_bytes_per_token", "host_bandwidth_bytes_per_s")})()
    plain.step_time_s = e.step_time_s  # type: ignore[attr-defined]
    w = synthetic(60, 4.0, EmpiricalLengths.default(), np.random.default_rng(0), name="p")
    a = simulate(w, plain, make("vllm"))
    assert window_count["windows"] == 0
    b = simulate(w, e, make("vllm"))
    assert window_count["windows"] > 0
    assert a == b


def test_windows_are_not_used_online_or_without_fast_forward(window_count):
    e = _engine()
    w = _workload([0.0, 0.01, 0.02], [5, 6, 7], [30, 30, 30])
    simulate(w, e, make("vllm"), fast_forward=False)
    assert window_count["windows"] == 0
    assert math.isfinite(simulate(w, e, make("vllm")).makespan_s)


class _Switch:
    """vLLM that shrinks its token budget at ``t_s`` and promises admissions only until then."""

    name = "switch"

    def __init__(self, t_s):
        self.t_s = t_s
        self.before = make("vllm")
        self.after = make("vllm", max_num_batched_tokens=32)

    def reset(self):
        pass

    def plan(self, view):
        if view.now_s >= self.t_s:
            return self.after.plan(view)
        p = self.before.plan(view)
        adm = p.admit_all
        return dataclasses.replace(
            p, decode_all_until_s=min(p.decode_all_until_s, self.t_s),
            admit_all=None if adm is None else AdmitPromise(self.t_s, adm.token_budget,
                                                            adm.max_seqs))


@pytest.mark.parametrize("k", [9, 20, 31])
def test_promise_horizon_on_a_step_start(k, window_count):
    """A policy change at exactly a step's start: that step already follows the new policy."""
    e = _engine()
    arr = [0.0, 0.0, 0.01, 0.02]
    prompts, outputs = [20, 30, 25, 10], [60, 60, 60, 60]
    ref = simulate(_workload(arr, prompts, outputs), e, make("vllm"), fast_forward=False)
    t = float(ref.steps.start_s[k])
    w = _workload(arr + [t - ARRIVAL_EPS_S / 2], prompts + [100], outputs + [5])
    a = simulate(w, e, _Switch(t), fast_forward=True)
    b = simulate(w, e, _Switch(t), fast_forward=False)
    assert a == b
    assert a.steps.start_s.tobytes() == b.steps.start_s.tobytes()
    assert int(a.steps.prefill_tokens[k]) == 32 - int(a.steps.decode_seqs[k])  # chunked at t
    assert window_count["windows"] >= 1


@pytest.mark.parametrize("max_tokens", [None, 120])
def test_orca_reservations_bind_inside_windows(max_tokens, window_count):
    """Orca admits on reserved (worst-case) blocks, long before the actual KV is full."""
    e = _engine(kv_tokens=640, block=16)  # 40 blocks; each request reserves 8 (or 9)
    rng = np.random.default_rng(6)
    n = 40
    w = _workload(np.cumsum(rng.exponential(0.03, n)), rng.integers(10, 30, n),
                  rng.integers(60, 100, n))
    s = _equal(w, e, {"max_tokens": max_tokens}, name="orca")
    v = simulate(w, e, make("vllm"))
    # the reservation, not the KV, capped Orca's batch
    assert int(s.steps.decode_seqs.max()) < int(v.steps.decode_seqs.max())
    assert window_count["windows"] >= 1


@pytest.mark.parametrize("name", ["a100/llama-2-7b", "jetson-orin/llama-3.2-1b"])
def test_windows_on_roofline_engines(name, window_count):
    e = get_engine(name, kind="roofline")
    w = synthetic(150, 3.0, EmpiricalLengths.default(), np.random.default_rng(8), name="p")
    _equal(w, e)
    assert window_count["windows"] >= 3


@pytest.mark.parametrize("cap", [1, 7, 50])
def test_sparse_arrivals_with_a_bounded_lookahead(cap, monkeypatch, window_count):
    """Windows look at most MAX_WINDOW_STEPS ahead; long outputs and sparse arrivals still match."""
    monkeypatch.setattr(sim_window, "MAX_WINDOW_STEPS", cap)
    e = _engine()
    rng = np.random.default_rng(9)
    n = 25
    w = _workload(np.cumsum(rng.exponential(0.4, n)), rng.integers(1, 50, n),
                  rng.integers(100, 400, n))
    _equal(w, e)
    assert window_count["windows"] >= 3
