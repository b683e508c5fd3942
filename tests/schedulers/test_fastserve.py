"""FastServe: skip-join, preemption of long jobs by short newcomers, KV swap, conformance."""

import numpy as np
import pytest

from slo_opt.checks import violations
from slo_opt.metrics import request_metrics
from slo_opt.models.linear import LinearEngineModel
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedule import EventKind
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate
from slo_opt.testing import check_conformance


def _linear(kv=100_000):
    return LinearEngineModel(name="lin", c0_s=0.005, c_prefill_s=2e-5, c_decode_s=1e-5,
                             kv_capacity_tokens=kv, kv_block_tokens=16, max_batch_tokens=8192)


def test_skip_join_uses_prefill_time():
    eng = _linear()
    fs = make("fastserve")
    w = Workload.from_arrays([0.0, 0.0], [10, 4000], [2, 2])
    simulate(w, eng, fs)
    q = fs._quanta(eng)
    lv = [fs._join_level(type("V", (), {"workload": w, "engine": eng})(), r, q) for r in (0, 1)]
    assert lv[0] < lv[1]
    assert q[lv[1]] >= eng.step_time_s.__self__.step_time_s(  # quantum covers its prefill
        __import__("slo_opt.engine", fromlist=["BatchShape"]).BatchShape(
            prefill_tokens=4000, prefill_seqs=1, prefill_context_tokens=4000))


def test_short_newcomer_preempts_a_long_job():
    """Token-level preemption: with one batch slot, a short job arriving later finishes first."""
    eng = SlotEngine(step_s=0.01, max_batch_tokens=64, kv_capacity_tokens=4096)
    w = Workload.from_arrays([0.0, 0.2], 4, [200, 5])
    fs = simulate(w, eng, make("fastserve", max_batch_seqs=1))
    fc = simulate(w, eng, make("fcfs", batching="continuous", max_batch_seqs=1))
    f_fs = request_metrics(fs, w)["finish_s"]
    f_fc = request_metrics(fc, w)["finish_s"]
    assert f_fs[1] < f_fs[0]
    assert f_fc[1] > f_fc[0]
    assert not violations(fs, w, eng)


def test_demotion_and_promotion_bound_waiting():
    eng = SlotEngine(step_s=0.01, max_batch_tokens=64, kv_capacity_tokens=4096)
    # a stream of short jobs would starve the long one without promotion
    arr = np.concatenate(([0.0], 0.05 + 0.02 * np.arange(200)))
    out = np.concatenate(([100], np.full(200, 2)))
    w = Workload.from_arrays(arr, 4, out)
    lim = 0.3
    s = simulate(w, eng, make("fastserve", max_batch_seqs=1, starve_limit_s=lim))
    s_inf = simulate(w, eng, make("fastserve", max_batch_seqs=1, starve_limit_s=1e9))

    def max_gap(sched):
        step, req, _ = sched.allocs.expand()
        t = np.sort(sched.steps.start_s[step[req == 0]])
        return float(np.diff(t).max())

    assert max_gap(s) <= lim + 6 * eng.step_s  # promotion, then at most a short job ahead
    assert max_gap(s_inf) > 2 * lim


def test_kv_pressure_swaps_and_charges_transfer():
    eng = SlotEngine(step_s=0.01, max_batch_tokens=256, kv_capacity_tokens=16 * 10,
                     kv_block_tokens=16, kv_bytes_per_token=1_000_000,
                     host_bandwidth_bytes_per_s=1e9)
    rng = np.random.default_rng(0)
    w = Workload.from_arrays(np.sort(rng.uniform(0, 0.5, 12)), rng.integers(20, 60, 12),
                             rng.integers(20, 60, 12))
    s = simulate(w, eng, make("fastserve", max_batch_seqs=4))
    assert not violations(s, w, eng)
    kinds = s.events.kind
    assert (kinds == EventKind.SWAP_OUT).any() and (kinds == EventKind.SWAP_IN).any()
    assert not (kinds == EventKind.PREEMPT_RECOMPUTE).any()
    assert s.steps.swap_s.sum() > 0
    assert (s.finish_step >= 0).all()


@pytest.mark.parametrize("kw", [{}, {"max_batch_seqs": 2}, {"offload_watermark": 0.3},
                                {"base_quantum_s": 0.05, "quantum_ratio": 3.0, "num_queues": 3},
                                {"starve_limit_s": 0.05}])
def test_conformance_variants(kw):
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(1, 9))
        w = Workload.from_arrays(np.cumsum(rng.uniform(0, 0.05, n)), rng.integers(1, 150, n),
                                 rng.integers(1, 30, n))
        for eng in (SlotEngine(step_s=0.02, max_batch_tokens=160, kv_capacity_tokens=16 * 14,
                               kv_block_tokens=16), _linear(kv=16 * 20)):
            check_conformance(lambda: make("fastserve", **kw), w, eng)


@pytest.mark.parametrize("bad", [{"num_queues": 0}, {"base_quantum_s": 0.0},
                                 {"quantum_ratio": 0.5}, {"starve_limit_s": 0},
                                 {"max_batch_seqs": 0}, {"offload_watermark": 1.0}])
def test_bad_parameters(bad):
    with pytest.raises(ValueError):
        make("fastserve", **bad)
