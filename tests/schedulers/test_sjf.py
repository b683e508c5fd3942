"""SJF / SSJF: optimality on simultaneous arrivals, starvation guard, predictor latency, modes."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.checks import violations
from slo_opt.metrics import request_metrics
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate
from slo_opt.testing import check_conformance
from slo_opt.workloads.predictors import NoisyRegression, Oracle

ENGINE = SlotEngine(step_s=0.05, max_batch_tokens=64, kv_capacity_tokens=4096)
NO_GUARD = {"starvation_threshold_s": math.inf, "starvation_factor": math.inf}


def _mean_jct(s, w):
    return float(np.mean(request_metrics(s, w)["e2e_s"]))


@given(st.lists(st.integers(1, 40), min_size=1, max_size=12),
       st.lists(st.integers(1, 64), min_size=12, max_size=12))
def test_oracle_sjf_never_worse_than_fcfs_simultaneous_arrivals(outs, prompts):
    """Single server, no batching, all requests at t=0: SPT order minimises mean JCT."""
    w = Workload.from_arrays(np.zeros(len(outs)), prompts[:len(outs)], outs)
    f = simulate(w, ENGINE, make("fcfs", batching="none"))
    s = simulate(w, ENGINE, make("sjf", batching="none", **NO_GUARD))
    assert _mean_jct(s, w) <= _mean_jct(f, w) + 1e-9
    # and SJF runs requests in nondecreasing output length
    first = request_metrics(s, w)["first_scheduled_s"]
    assert np.all(np.diff(w.output_tokens[np.argsort(first, kind="stable")]) >= 0)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=10))
def test_mean_jct_lower_bound_below_every_scheduler(outs):
    """The solvers' mean-JCT bound (when present) and single-machine SRPT bound every policy."""
    from experiments.ssjf import srpt_mean_jct_s

    w = Workload.from_arrays(np.zeros(len(outs)), 8, outs)
    exec_s = w.output_tokens * ENGINE.step_s  # prompt fits one step: 1 + (out - 1) steps
    lb = srpt_mean_jct_s(w.arrival_s, exec_s.astype(float))
    bounds = [lb]
    from slo_opt.solvers.engine_jct import engine_mean_jct_bound

    bounds.append(engine_mean_jct_bound(w, ENGINE, 1).value_s)
    for name, kw in [("fcfs", {"batching": "none"}), ("sjf", {"batching": "none", **NO_GUARD}),
                     ("ssjf", {"batching": "none"}), ("edf", {"batching": "none"}),
                     ("least_slack", {"batching": "none"})]:
        s = simulate(w, ENGINE, make(name, **kw))
        for b in bounds:
            assert b <= _mean_jct(s, w) + 1e-9, name


def test_ssjf_with_oracle_equals_sjf():
    rng = np.random.default_rng(0)
    w = Workload.from_arrays(np.sort(rng.uniform(0, 2, 20)), rng.integers(1, 60, 20),
                             rng.integers(1, 40, 20))
    for mode in ("none", "dynamic"):
        a = simulate(w, ENGINE, make("sjf", batching=mode, max_batch_seqs=3))
        b = simulate(w, ENGINE, make("ssjf", batching=mode, max_batch_seqs=3, predictor=Oracle()))
        assert a == b


def test_starvation_guard_serves_the_oldest():
    # a long job (id 1) waiting behind a stream of short ones: without the guard it goes last
    n = 30
    arr2 = np.concatenate(([0.0, 0.0], 0.01 + 0.05 * np.arange(n)))
    out2 = np.concatenate(([3, 30], np.full(n, 2)))
    w = Workload.from_arrays(arr2, 4, out2)
    no = simulate(w, ENGINE, make("sjf", batching="none", **NO_GUARD))
    guard = simulate(w, ENGINE, make("sjf", batching="none", starvation_threshold_s=0.5))
    e_no = request_metrics(no, w)["e2e_s"][1]
    e_guard = request_metrics(guard, w)["e2e_s"][1]
    assert e_guard < e_no
    assert e_no == pytest.approx(request_metrics(no, w)["finish_s"].max())  # starved to the end


def test_predictor_latency_delays_admission():
    w = Workload.from_arrays([0.0, 0.1, 0.2], 4, [3, 3, 3])
    lat = 0.37
    s = simulate(w, ENGINE, make("ssjf", predictor=NoisyRegression(sigma=0.3, latency_s=lat)))
    first = request_metrics(s, w)["first_scheduled_s"]
    assert np.all(first >= w.arrival_s + lat - 1e-12)
    assert not violations(s, w, ENGINE)


def test_dynamic_batch_takes_the_shortest():
    w = Workload.from_arrays(np.zeros(6), 4, [9, 1, 8, 2, 7, 3])
    s = simulate(w, ENGINE, make("sjf", batching="dynamic", max_batch_seqs=3))
    first = request_metrics(s, w)["first_scheduled_s"]
    assert set(np.flatnonzero(first == first.min()).tolist()) == {1, 3, 5}


@pytest.mark.parametrize("kw", [
    {"batching": "none"},
    {"batching": "dynamic", "max_batch_seqs": 2, "batch_wait_timeout_s": 0.2},
    {"batching": "continuous", "max_batch_seqs": 3},
    {"batching": "continuous", "predictor": NoisyRegression(sigma=1.0, latency_s=0.07)},
    {"batching": "continuous", "exec_const_s": 0.1, "exec_per_token_s": 0.02,
     "starvation_threshold_s": 0.3, "requeue_key": "remaining"},
])
def test_ssjf_conformance_in_every_mode(kw):
    rng = np.random.default_rng(5)
    for _ in range(15):
        n = int(rng.integers(1, 9))
        w = Workload.from_arrays(np.cumsum(rng.uniform(0, 0.1, n)), rng.integers(1, 120, n),
                                 rng.integers(1, 25, n))
        eng = SlotEngine(step_s=0.02, max_batch_tokens=128, kv_capacity_tokens=16 * 12,
                         kv_block_tokens=16)
        check_conformance(lambda: make("ssjf", **kw), w, eng)


@pytest.mark.parametrize("bad", [
    {"starvation_threshold_s": 0}, {"starvation_factor": -1}, {"exec_const_s": 0.1},
    {"predictor": "oracle"}, {"requeue_key": "x"}, {"batching": "bogus"},
])
def test_bad_parameters(bad):
    with pytest.raises((ValueError, TypeError)):
        make("ssjf", **bad)
