"""Metrics definitions on hand-computed schedules."""

import math

import numpy as np
import pytest

from slo_opt import SLO, Request, Workload, make, simulate
from slo_opt.metrics import (
    attainment,
    goodput_tokens,
    percentile,
    request_metrics,
    request_records,
    summary,
    throughput_25pct_rps,
)
from slo_opt.models import SlotEngine

E = SlotEngine(step_s=1.0, max_batch_tokens=16, kv_capacity_tokens=64)


def test_ttft_tpot_e2e_definitions():
    """One request, prompt 3, output 4, arrives at 0: prefill step 0 (token 1 at t=1),
    decodes in steps 1-3 (tokens at t=2,3,4). TTFT 1, TPOT (4-1)/3 = 1, e2e 4."""
    w = Workload([Request(0, 0.0, 3, 4, SLO(ttft_s=1.0, tpot_s=1.0, e2e_s=4.0))])
    s = simulate(w, E, make("vllm"))
    m = request_metrics(s, w)
    assert m["ttft_s"][0] == 1.0
    assert m["tpot_s"][0] == 1.0
    assert m["e2e_s"][0] == 4.0
    assert m["queue_s"][0] == 0.0
    assert bool(m["slo_met"][0])
    tight = Workload([Request(0, 0.0, 3, 4, SLO(ttft_s=1.0, tpot_s=0.99))])
    assert not request_metrics(simulate(tight, E, make("vllm")), tight)["slo_met"][0]


def test_single_token_output_has_zero_tpot():
    w = Workload([Request(0, 0.0, 3, 1, SLO(tpot_s=0.001))])
    m = request_metrics(simulate(w, E, make("vllm")), w)
    assert m["tpot_s"][0] == 0.0 and bool(m["slo_met"][0])


def test_weighted_attainment_and_goodput():
    w = Workload([Request(0, 0.0, 2, 5, SLO(ttft_s=1.0), utility=100.0),
                  Request(1, 0.0, 30, 3, SLO(ttft_s=1.0), utility=1.0)])
    s = simulate(w, E, make("vllm"))  # r1's 30-token prompt needs 2+ steps -> misses TTFT
    assert attainment(s, w) == 0.5
    assert attainment(s, w, weighted=True) == pytest.approx(100 / 101)
    assert goodput_tokens(s, w) == 5


def test_rejected_counts_as_miss():
    e = SlotEngine(step_s=1.0, max_batch_tokens=16, kv_capacity_tokens=4)
    w = Workload([Request(0, 0.0, 10, 2), Request(1, 0.0, 1, 1)])
    s = simulate(w, e, make("vllm"))
    assert attainment(s, w) == 0.5
    assert summary(s, w)["num_rejected"] == 1


def test_summary_and_records_columns():
    rng = np.random.default_rng(1)
    w = Workload.from_arrays(np.sort(rng.uniform(0, 5, 20)), rng.integers(1, 20, 20),
                             rng.integers(1, 10, 20), ttft_slo_s=2.0)
    s = simulate(w, E, make("vllm"))
    sm = summary(s, w)
    assert sm["num_finished"] == 20
    assert 0 <= sm["attainment"] <= 1
    assert sm["p50_ttft_s"] <= sm["p99_ttft_s"]
    rec = request_records(s, w)
    assert set(rec) >= {"id", "arrival_s", "prompt_tokens", "output_tokens", "first_token_s",
                        "finish_s", "ttft_s", "tpot_s", "e2e_s", "slo_met", "rejected"}
    assert all(len(v) == 20 for v in rec.values())


def test_throughput_25pct_matches_definition():
    """8 jobs finishing at t=1..8: pos = int(percentile(range(8), 25)) = 1 -> 1 / finish[1] = 0.5."""
    w = Workload([Request(i, 0.0, 1, 1) for i in range(8)])
    e = SlotEngine(step_s=1.0, max_batch_tokens=1, kv_capacity_tokens=64)
    s = simulate(w, e, make("fcfs", batching="none"))
    np.testing.assert_allclose(s.finish_s, np.arange(1, 9))
    assert throughput_25pct_rps(s, w) == pytest.approx(0.5)


def test_percentile_ignores_nan():
    assert percentile(np.array([1.0, np.nan, 3.0]), 50) == 2.0
    assert math.isnan(percentile(np.array([np.nan]), 50))
