"""Smoke test and unit tests of the SSJF reproduction's job-level simulator."""

import csv
import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from experiments.ssjf import (
    faithful_arrivals,
    main,
    run_jobs,
    srpt_mean_jct_s,
    vicuna_lengths,
)


def test_quick_run_writes_outputs(tmp_path):
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "records.csv")))
    assert {r["policy"] for r in rows} >= {"fcfs", "sjf", "ssjf", "lower_bound"}
    assert {r["mode"] for r in rows} == {"faithful", "clean"}
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert "git_sha" in cfg and cfg["config"]["num_jobs"] == 50
    assert (tmp_path / "ssjf_faithful.png").exists()


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
