"""Placement MILP (GAP) and convex bandwidth allocation: known answers and the oracle property."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

pytestmark = pytest.mark.solver


def _brute(inst, m):
    from slo_opt.solvers.placement_milp import assignment_cost

    n = inst.shape[0]
    choices = range(-1, m) if inst.reject_penalty is not None else range(m)
    best = math.inf
    for a in itertools.product(choices, repeat=n):
        c, ok = assignment_cost(inst, np.array(a))
        if ok:
            best = min(best, c)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("variant", [(None, None), (None, 30.0), (5.0, None), (5.0, 30.0)])
def test_milp_matches_brute_force(seed, variant):
    pytest.importorskip("highspy")
    from slo_opt.solvers.placement_milp import PlacementInstance, assignment_cost, solve_placement

    rng = np.random.default_rng(seed)
    n, m = 6, 3
    e = rng.uniform(1, 10, (n, m))
    e[rng.random((n, m)) < 0.1] = np.inf  # memory-infeasible pairs
    t = rng.uniform(0.5, 3, (n, m))
    d = rng.choice([2.0, 2.5, np.inf], n)
    links = (np.repeat(np.arange(n), m), np.tile(np.arange(m), n), np.tile(np.arange(m), n),
             np.repeat(rng.uniform(1, 3, n), m))
    inst = PlacementInstance(e, t, d, rng.uniform(0.1, 1, (n, m)), np.array([1.2, 1.5, 1.0]),
                             link_bytes=links, link_capacity_bytes=np.array([5.0, 6.0, 4.0]),
                             deadline_penalty=variant[0], reject_penalty=variant[1])
    res = solve_placement(inst)
    best = _brute(inst, m)
    if math.isinf(best):
        assert res.status == "infeasible" and not res.has_solution
    else:
        assert res.status == "optimal"
        assert res.objective == pytest.approx(best, rel=1e-6, abs=1e-6)
        assert res.bound <= res.objective + 1e-6
        c, ok = assignment_cost(inst, res.site_of)
        assert ok and c == pytest.approx(res.objective, rel=1e-6, abs=1e-6)


def test_instance_validation():
    from slo_opt.solvers.placement_milp import PlacementInstance

    with pytest.raises(ValueError, match="energy_j"):
        PlacementInstance(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="deadline_s"):
        PlacementInstance(np.ones((2, 2)), np.ones((2, 2)), [1.0, 0.0])
    with pytest.raises(ValueError, match="both load_s"):
        PlacementInstance(np.ones((2, 2)), np.ones((2, 2)), [1.0, 1.0], load_s=np.ones((2, 2)))


def test_bandwidth_allocation_closed_form():
    pytest.importorskip("cvxpy")
    from slo_opt.solvers.placement_cvx import allocate_bandwidth

    s = np.array([1e6, 4e6, 9e6, 2e6])
    p = np.array([1.0, 1.0, 1.0, 2.0])
    res = allocate_bandwidth(s, np.array([0, 0, 0, 1]), np.array([12e6, 5e6]), power_w=p)
    assert res.status == "optimal"
    root = np.sqrt(p[:3] * s[:3] / 1e6)
    assert res.rate_bytes_per_s[:3] == pytest.approx(12e6 * root / root.sum(), rel=1e-3)
    want = (root.sum() ** 2) / 12.0 + 2.0 * 2.0 / 5.0
    assert res.objective == pytest.approx(want, rel=1e-4)
    # a binding deadline moves bandwidth to the urgent request
    res2 = allocate_bandwidth(s[:3], np.zeros(3, int), np.array([12e6]),
                              deadline_s=np.array([0.25, np.inf, np.inf]))
    assert res2.transfer_s[0] <= 0.25 + 1e-4
    assert res2.objective >= (root.sum() ** 2) / 12.0 - 1e-6
    bad = allocate_bandwidth(s[:1], np.zeros(1, int), np.array([1e6]), infer_s=2.0,
                             deadline_s=1.0)
    assert bad.status == "infeasible"


def _known_cluster():
    from slo_opt.edge.cluster import Cluster
    from slo_opt.models.slot import SlotEngine

    e = SlotEngine(step_s=0.02, max_batch_tokens=256, kv_capacity_tokens=4096)
    c_ = SlotEngine(step_s=0.01, max_batch_tokens=256, kv_capacity_tokens=4096)
    return Cluster.from_dict({
        "nodes": {
            "a0": {"tier": "access"}, "a1": {"tier": "access"},
            "e0": {"tier": "edge", "engine": e, "idle_w": 5.0, "busy_w": 30.0},
            "e1": {"tier": "edge", "engine": e, "idle_w": 5.0, "busy_w": 40.0},
            "c": {"tier": "cloud", "engine": c_, "idle_w": 50.0, "busy_w": 300.0},
        },
        "links": [
            {"src": "a0", "dst": "e0", "latency_s": 0.002, "bandwidth_mbps": 100,
             "tx_power_w": 1.0},
            {"src": "a1", "dst": "e1", "latency_s": 0.002, "bandwidth_mbps": 100,
             "tx_power_w": 1.0},
            {"src": "a0", "dst": "a1", "latency_s": 0.001, "bandwidth_mbps": 1000,
             "tx_power_w": 0.5},
            {"src": "a0", "dst": "c", "latency_s": 0.03, "bandwidth_mbps": 300,
             "tx_power_w": 5.0},
        ],
    })


@pytest.mark.parametrize("seed", range(4))
def test_oracle_never_worse_than_any_dispatcher_on_known_instances(seed):
    """Fully known instance: no noise, no overlap between requests (so measured energy is the
    MILP's model energy + the constant idle energy), generous deadlines."""
    pytest.importorskip("highspy")
    from slo_opt.edge.dispatchers import DISPATCHERS, make
    from slo_opt.edge.simulation import AssignmentDispatcher, placement_inputs, simulate_cluster
    from slo_opt.request import Workload
    from slo_opt.solvers.placement_milp import PlacementInstance, solve_placement

    c = _known_cluster()
    rng = np.random.default_rng(seed)
    n = 12
    o = rng.integers(2, 30, n)
    arr = np.arange(n) * 2.0  # 2 s apart: at most 30 x 0.02 s of work each, no overlap
    w = Workload.from_arrays(arr, rng.integers(5, 200, n), o,
                             origin=rng.choice(["a0", "a1"], n),
                             e2e_slo_s=rng.choice([1.0, 1.5, 5.0], n),
                             class_label=np.where(o > 15, "long", "short"))
    horizon = float(arr[-1] + 5.0)
    pay = 2e5
    inp = placement_inputs(w, c, np.random.default_rng(9), payload_bytes=pay)
    inst = PlacementInstance(inp["energy_j"], inp["time_s"], inp["deadline_s"])
    res = solve_placement(inst)
    assert res.status == "optimal"
    const = float(inp["idle_w"].sum()) * horizon
    # exact cross-check: replaying the MILP assignment measures exactly its objective
    rep = simulate_cluster(w, c, AssignmentDispatcher(res.site_of), rng=np.random.default_rng(9),
                           horizon_s=horizon, payload_bytes=pay)
    assert rep.total_energy_j == pytest.approx(res.objective + const, rel=1e-9)
    qualifying = 0
    for name in sorted(DISPATCHERS):
        r = simulate_cluster(w, c, make(name), rng=np.random.default_rng(9), horizon_s=horizon,
                             payload_bytes=pay)
        if not r.records["met"].all():
            continue
        qualifying += 1
        assert res.objective + const <= r.total_energy_j + 1e-6, name
    assert qualifying >= 2
