"""Smoke test and unit tests of the SSJF reproduction's job-level simulator."""

import csv
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.ssjf import (
    faithful_arrivals,
    main,
    run_jobs,
    srpt_mean_jct_s,
    vicuna_lengths,
)

#: quick-mode SSJF JCT reductions vs FCFS (%) per (mode, batching, B), pinned; tolerance 0.5
#: points (the runs are seeded, so any drift means the simulator or the policies changed)
PINNED_QUICK = {("faithful", "none", 1): 31.1, ("faithful", "dynamic", 4): 30.9,
                ("faithful", "continuous", 4): 23.4, ("clean", "none", 1): 12.0,
                ("clean", "dynamic", 8): 39.4, ("clean", "continuous", 8): -0.1}


def test_quick_run_writes_outputs(tmp_path):
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "records.csv")))
    assert {r["policy"] for r in rows} >= {"fcfs", "sjf", "ssjf", "lower_bound"}
    assert {r["mode"] for r in rows} == {"faithful", "clean"}
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert "git_sha" in cfg and cfg["config"]["num_jobs"] == 50
    assert cfg["schedules_checked"] == 9  # every clean-mode schedule went through violations
    assert (tmp_path / "ssjf_faithful.png").exists() and (tmp_path / "ssjf_reduction.png").exists()
    head = list(csv.DictReader(open(tmp_path / "headline.csv")))
    got = {(h["mode"], h["batching"], int(h["batch_size"])): float(h["ssjf_jct_reduction_pct"])
           for h in head}
    for k, v in PINNED_QUICK.items():
        assert abs(got[k] - v) <= 0.5, (k, got[k], v)
    for h in head:  # the bound is a bound: every policy's mean JCT is above it
        lb = float(h["lower_bound_jct_s"])
        assert lb > 0 and all(float(h[k]) >= lb for k in ("fcfs_jct_s", "ssjf_jct_s", "sjf_jct_s"))


@given(st.lists(st.tuples(st.integers(0, 10), st.integers(1, 40)), min_size=2, max_size=20),
       st.integers(2, 4))
def test_requeue_key_remaining_with_perfect_predictions_is_oracle_sjf(jobs, b):
    """With predictions equal to the true exec times, keying re-queued jobs on the predicted
    remaining time is exactly the oracle SJF (which re-sorts on the true remaining time)."""
    jobs.sort()
    arr = np.array([j[0] for j in jobs], float)
    ex = np.array([j[1] / 10 for j in jobs])
    inf = float("inf")
    kw = {"batching": "continuous", "batch_size": b, "threshold_s": inf, "factor": inf}
    oracle = run_jobs(arr, ex, policy="sjf", **kw)
    rem = run_jobs(arr, ex, policy="sjf", key_s=ex.copy(), requeue_key="remaining", **kw)
    assert np.allclose(oracle, rem)
    with pytest.raises(ValueError):
        run_jobs(arr, ex, policy="sjf", batching="none", batch_size=1, requeue_key="bad")


def test_fcfs_waits_for_batch_timeout_but_sjf_does_not():
    arr = np.array([0.0])
    ex = np.array([1.0])
    f = run_jobs(arr, ex, policy="fcfs", batching="dynamic", batch_size=2, timeout_s=10)
    s = run_jobs(arr, ex, policy="sjf", batching="dynamic", batch_size=2, timeout_s=10)
    assert f[0] == 11.0 and s[0] == 1.0


def test_continuous_batch_runs_until_shortest_then_rebatches():
    arr = np.zeros(3)
    ex = np.array([3.0, 1.0, 2.0])
    fin = run_jobs(arr, ex, policy="sjf", batching="continuous", batch_size=2)
    # B=2: {1, 2} run; at t=1 job 1 leaves and job 0 joins job 2 (1 s left); job 0 ends at 4
    assert fin.tolist() == [4.0, 1.0, 2.0]


def test_arrival_quirks():
    rng = np.random.default_rng(0)
    a = faithful_arrivals("poisson", 50, 3, rng)
    assert a.size == 50 and np.all(a == np.round(a)) and np.all(np.diff(a) >= 0)
    g = faithful_arrivals("gamma", 50, 0.1, rng)
    assert np.all(np.diff(np.diff(g)) >= -1e-9)  # sorted gaps: non-decreasing increments
    v = vicuna_lengths(20000, rng)
    assert abs(np.median(v) - 140) < 8 and v.min() >= 2 and v.max() <= 511


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 50)), min_size=1, max_size=25),
       st.sampled_from(["none", "dynamic", "continuous"]), st.integers(1, 4))
def test_srpt_bound_below_every_policy(jobs, batching, b):
    jobs.sort()
    arr = np.array([j[0] for j in jobs], float)
    ex = np.array([j[1] / 10 for j in jobs])
    servers = 1 if batching == "none" else b
    lb = max(ex.mean(), srpt_mean_jct_s(arr, ex, float(servers)))
    key = ex[::-1].copy()  # an arbitrary (bad) predictor
    for pol, kw in (("fcfs", {}), ("sjf", {}), ("sjf", {"key_s": key, "guard_s": key})):
        fin = run_jobs(arr, ex, policy=pol, batching=batching, batch_size=b, **kw)
        assert np.isfinite(fin).all()
        assert lb <= np.mean(fin - arr) + 1e-9


@given(st.lists(st.integers(1, 50), min_size=1, max_size=25))
def test_sjf_optimal_for_simultaneous_arrivals(sizes):
    arr = np.zeros(len(sizes))
    ex = np.array(sizes, float)
    inf = float("inf")
    sjf = run_jobs(arr, ex, policy="sjf", batching="none", batch_size=1, threshold_s=inf,
                   factor=inf)
    assert abs(np.mean(sjf) - srpt_mean_jct_s(arr, ex)) < 1e-9  # SPT = SRPT here
