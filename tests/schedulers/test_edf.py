"""EDF and least-slack: admission order, preemption, conformance."""

import numpy as np
import pytest

from slo_opt.metrics import request_metrics
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate
from slo_opt.testing import check_conformance

ENGINE = SlotEngine(step_s=0.05, max_batch_tokens=64, kv_capacity_tokens=4096)


def test_edf_serves_by_ttft_deadline():
    w = Workload.from_arrays(np.zeros(4), 4, [3, 3, 3, 3], ttft_slo_s=[3.0, 1.0, np.inf, 2.0])
    s = simulate(w, ENGINE, make("edf", batching="none"))
    first = request_metrics(s, w)["first_scheduled_s"]
    assert np.argsort(first).tolist() == [1, 3, 0, 2]


def test_edf_without_slos_is_fcfs():
    rng = np.random.default_rng(0)
    w = Workload.from_arrays(np.sort(rng.uniform(0, 1, 15)), rng.integers(1, 60, 15),
                             rng.integers(1, 30, 15))
    for mode in ("none", "dynamic", "continuous"):
        kw = {"batching": mode, "max_batch_seqs": 3}
        assert simulate(w, ENGINE, make("edf", **kw)) == simulate(w, ENGINE, make("fcfs", **kw))


def test_least_slack_prefers_the_tighter_request():
    # same TTFT SLO, the long one has less slack under a tight e2e target
    w = Workload.from_arrays([0.0, 0.0], 4, [20, 2], ttft_slo_s=10.0, e2e_slo_s=[1.2, 5.0])
    s = simulate(w, ENGINE, make("least_slack", batching="none"))
    first = request_metrics(s, w)["first_scheduled_s"]
    assert first[0] < first[1]


def test_least_slack_preemption_helps_the_urgent_newcomer():
    w = Workload.from_arrays([0.0, 0.3], 4, [60, 3], ttft_slo_s=[100.0, 0.2],
                             e2e_slo_s=[100.0, 0.5])
    kw = {"batching": "continuous", "max_batch_seqs": 1}
    no = request_metrics(simulate(w, ENGINE, make("least_slack", **kw)), w)
    yes_s = simulate(w, ENGINE, make("least_slack", preemption=True, **kw))
    yes = request_metrics(yes_s, w)
    assert yes["e2e_s"][1] < no["e2e_s"][1]
    assert len(yes_s.events) == 1  # exactly one preemption (max_preemptions=1)


@pytest.mark.parametrize("name,kw", [
    ("edf", {}), ("edf", {"batching": "dynamic", "max_batch_seqs": 2}),
    ("least_slack", {}), ("least_slack", {"preemption": True, "max_batch_seqs": 2}),
    ("least_slack", {"preemption": True, "max_preemptions": 3, "preempt_margin_s": 0.01}),
])
def test_conformance_variants(name, kw):
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(1, 9))
        w = Workload.from_arrays(np.cumsum(rng.uniform(0, 0.05, n)), rng.integers(1, 120, n),
                                 rng.integers(1, 30, n), ttft_slo_s=rng.uniform(0.05, 2, n),
                                 tpot_slo_s=rng.uniform(0.01, 0.3, n))
        eng = SlotEngine(step_s=0.02, max_batch_tokens=160, kv_capacity_tokens=16 * 14,
                         kv_block_tokens=16)
        check_conformance(lambda: make(name, **kw), w, eng)


def test_bad_parameters():
    with pytest.raises((ValueError, TypeError)):
        make("least_slack", predictor=None)
    with pytest.raises(ValueError):
        make("least_slack", preempt_margin_s=-1)
