"""Step-time planes, decode floors, minimum inference times and the engine JCT bound.

Each property compares the derived bound with an independent computation: the engine's own
``step_time_s`` on random batches, and schedules simulated by the registered schedulers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.engine import BatchShape
from slo_opt.metrics import request_metrics
from slo_opt.models.catalog import get_engine
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate
from slo_opt.solvers.engine_bounds import (
    decode_step_floor_s,
    min_inference_s,
    request_work_s,
    step_planes,
)
from slo_opt.solvers.engine_jct import engine_mean_jct_bound

ENGINES = {
    "h100-linear": lambda: get_engine("h100/llama-3.1-8b"),
    "a100-roofline-8b": lambda: get_engine("a100/llama-3.1-8b"),
    "jetson-roofline": lambda: get_engine("jetson-orin/llama-3.2-1b"),
    "a100-roofline": lambda: get_engine("a100/qwen2.5-7b"),
    "a100-roofline-tp2": lambda: get_engine("a100/llama-3.1-8b", tensor_parallel_size=2),
    "h100-moe-roofline": lambda: get_engine("h100/qwen3-30b-a3b"),
    "edge-table": lambda: get_engine("slice-edge/chatglm2-6b-int4"),
    "h100-table-curve": lambda: get_engine("h100/llama-3.1-8b", kind="table"),
    "slot": lambda: SlotEngine(step_s=0.05, max_batch_tokens=48, kv_capacity_tokens=4096),
}
_CACHE: dict[str, object] = {}


def _engine(name: str) -> object:
    if name not in _CACHE:
        _CACHE[name] = ENGINES[name]()
    return _CACHE[name]


@given(name=st.sampled_from(sorted(ENGINES)), k=st.integers(1, 64), data=st.data())
def test_planes_and_floor_below_step_time(name, k, data):
    e = _engine(name)
    cap = int(e.max_batch_tokens)
    d = data.draw(st.integers(0, min(k, cap)))
    p = data.draw(st.integers(0 if d else 1, max(cap - d, 0 if d else 1)))
    ps = data.draw(st.integers(1 if p else 0, max(1, min(p, 8)) if p else 0))
    ctx = d * data.draw(st.integers(1, 4096))
    pctx = p + data.draw(st.integers(0, 4096)) * ps
    b = BatchShape(prefill_tokens=p, decode_seqs=d, decode_context_tokens=ctx,
                   prefill_seqs=ps, prefill_context_tokens=pctx)
    t = float(e.step_time_s(b))
    for pl in step_planes(e, k):
        v = pl.prefill_s_per_token * p + pl.decode_s_per_seq * d + pl.ctx_s_per_token * ctx
        assert v <= t * (1 + 1e-9) + 1e-12, (pl, b, v, t)
    if d:
        assert decode_step_floor_s(e, d) <= t * (1 + 1e-9) + 1e-12


def test_planes_are_not_trivial():
    """The bounds must carry information: a full batch's plane is within 2x of its time."""
    e = _engine("h100-linear")
    b = BatchShape(decode_seqs=64, decode_context_tokens=64 * 1000)
    t = e.step_time_s(b)
    v = max(pl.decode_s_per_seq * 64 + pl.ctx_s_per_token * 64000 for pl in step_planes(e, 64))
    assert 0.5 * t <= v <= t
    with pytest.raises(TypeError):
        step_planes(object(), 4)
    with pytest.raises(ValueError):
        step_planes(e, 0)


def _workload(rng: np.random.Generator, n: int, rate: float) -> Workload:
    return Workload.from_arrays(np.cumsum(rng.exponential(1 / rate, n)),
                                rng.integers(8, 600, n), rng.integers(1, 80, n))


@pytest.mark.parametrize("name", ["h100-linear", "jetson-roofline", "edge-table", "slot"])
@pytest.mark.parametrize("sched", [("fcfs", {"batching": "continuous", "max_batch_seqs": 16}),
                                   ("vllm", {"max_num_seqs": 16}),
                                   ("orca", {"max_batch_seqs": 16}),
                                   ("fastserve", {"max_batch_seqs": 16}),
                                   ("fcfs", {"batching": "none"})])
def test_bounds_hold_on_simulated_schedules(name, sched):
    e = _engine(name)
    k = 1 if sched[1].get("batching") == "none" else 16
    rng = np.random.default_rng(7)
    for rate in (5.0, 200.0):
        w = _workload(rng, 30, rate)
        if name == "slot":
            w = Workload.from_arrays(w.arrival_s, np.minimum(w.prompt_tokens, 40),
                                     np.minimum(w.output_tokens, 12))
        s = simulate(w, e, make(sched[0], **sched[1]))
        m = request_metrics(s, w)
        assert m["finished"].all()
        # per request: inference time (first step start -> finish) >= the isolation floor
        first = np.full(len(w), np.inf)
        a = s.allocs
        np.minimum.at(first, a.request, s.steps.start_s[a.step])
        inf = s.finish_s - first
        lb = min_inference_s(e, w.prompt_tokens, w.output_tokens)
        assert np.all(lb <= inf * (1 + 1e-9) + 1e-12)
        # total busy time >= every plane's total work
        busy = float((s.steps.end_s - s.steps.start_s).sum())
        for pl in step_planes(e, k):
            assert request_work_s(pl, w.prompt_tokens, w.output_tokens).sum() <= busy * (1 + 1e-9)
        jct = float(np.mean(m["e2e_s"]))
        bd = engine_mean_jct_bound(w, e, k)
        assert bd.value_s <= jct * (1 + 1e-9), (bd, jct)
        if rate > 100:  # overloaded: the bound is informative, not just the isolation term
            assert bd.value_s >= 0.3 * jct
