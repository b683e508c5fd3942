"""Cluster topology, transfer times/energy on a hand-computed topology, validation, energy."""

from __future__ import annotations

import json
import math

import networkx as nx
import numpy as np
import pytest

from slo_opt.edge.cluster import (
    Cluster,
    ClusterError,
    Link,
    PowerModel,
    Site,
    service_energy_j,
    service_time_s,
)
from slo_opt.edge.dispatchers import make
from slo_opt.edge.simulation import AssignmentDispatcher, simulate_cluster
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload


def slot(step_s=0.01, kv=4096):
    return SlotEngine(step_s=step_s, max_batch_tokens=256, kv_capacity_tokens=kv)


def hand_spec():
    # a -> r -> s: latency 0.01 + 0.02 = 0.03 s, bottleneck 5 MB/s (r -> s)
    # a -> s direct: latency 0.05 s (slower path by latency, faster by bandwidth)
    return {
        "nodes": {
            "a": {"tier": "access"},
            "r": {"tier": "access"},
            "s": {"tier": "edge", "engine": slot(), "idle_w": 10.0, "busy_w": 50.0},
        },
        "origins": ["a"],
        "links": [
            {"src": "a", "dst": "r", "latency_s": 0.01, "bandwidth_bytes_per_s": 10e6,
             "tx_power_w": 1.0},
            {"src": "r", "dst": "s", "latency_s": 0.02, "bandwidth_bytes_per_s": 5e6,
             "tx_power_w": 2.0, "noise": 0.2},
            {"src": "a", "dst": "s", "latency_s": 0.05, "bandwidth_bytes_per_s": 100e6,
             "bidirectional": False},
        ],
    }


def test_transfer_time_and_energy_hand_computed():
    c = Cluster.from_dict(hand_spec())
    assert c.route("a", "s").nodes == ("a", "r", "s")
    assert c.transfer_s("a", "s", 1e6) == pytest.approx(0.03 + 1e6 / 5e6)
    # energy: 1 W x 1e6/10e6 s + 2 W x 1e6/5e6 s
    assert c.transfer_energy_j("a", "s", 1e6) == pytest.approx(0.1 + 0.4)
    # back path s -> r -> a (the direct link is one-way)
    assert c.transfer_s("s", "a", 2e6) == pytest.approx(0.03 + 2e6 / 5e6)
    assert c.transfer_s("a", "a", 1e9) == 0.0
    # noisy bandwidth: factor 0.8 on r->s makes it the bottleneck at 4 MB/s
    f = np.ones(len(c.edge_list))
    f[c.edge_index[("r", "s")]] = 0.8
    assert c.transfer_s("a", "s", 1e6, f) == pytest.approx(0.03 + 1e6 / 4e6)
    assert c.transfer_energy_j("a", "s", 1e6, f) == pytest.approx(0.1 + 2.0 * 1e6 / 4e6)


def test_bandwidth_factors_bounds_and_determinism():
    c = Cluster.from_dict(hand_spec())
    a = np.array([c.draw_bandwidth_factors(np.random.default_rng(3)) for _ in range(2)])
    assert np.array_equal(a[0], a[1])
    many = np.vstack([c.draw_bandwidth_factors(np.random.default_rng(s)) for s in range(200)])
    k = c.edge_index[("r", "s")]
    assert many[:, k].min() >= 0.8 and many[:, k].max() <= 1.2
    assert many[:, k].std() > 0.05
    assert np.all(many[:, c.edge_index[("a", "r")]] == 1.0)


def test_toml_and_json_round_trip(tmp_path):
    spec = {
        "nodes": {"a": {"tier": "access"},
                  "e": {"tier": "edge", "engine": "h100/llama-3.1-8b"}},
        "links": [{"src": "a", "dst": "e", "latency_s": 0.001, "bandwidth_mbps": 100}],
    }
    (tmp_path / "c.json").write_text(json.dumps(spec))
    (tmp_path / "c.toml").write_text(
        '[nodes.a]\ntier = "access"\n[nodes.e]\ntier = "edge"\nengine = "h100/llama-3.1-8b"\n'
        '[[links]]\nsrc = "a"\ndst = "e"\nlatency_s = 0.001\nbandwidth_mbps = 100\n')
    for c in (Cluster.from_json(tmp_path / "c.json"), Cluster.from_toml(tmp_path / "c.toml")):
        assert c.sites == ("e",) and c.origins == ("a",)
        assert c.transfer_s("a", "e", 12.5e6) == pytest.approx(0.001 + 1.0)
        assert c.site("e").power.busy_w == 700.0  # H100 catalogue TDP


def test_example_config_loads():
    c = Cluster.from_toml("experiments/configs/perllm_cluster.toml")
    assert c.tiers == ("edge",) * 5 + ("cloud",)
    assert len(c.origins) == 5


@pytest.mark.parametrize("mutate, match", [
    (lambda s: s["links"].append({"src": "a", "dst": "zz", "bandwidth_mbps": 1}), "unknown node 'zz'"),
    (lambda s: s["links"].pop(1), "no path from"),
    (lambda s: s["links"][0].pop("bandwidth_bytes_per_s"), "needs bandwidth"),
    (lambda s: s["links"][0].update(colour="red"), "unknown key"),
    (lambda s: s["nodes"]["s"].update(tier="fog"), "tier must be one of"),
    (lambda s: s["nodes"]["s"].pop("engine"), "needs an 'engine'"),
    (lambda s: s.update(origins=["nowhere"]), "unknown origin"),
    (lambda s: s["links"][0].update(noise=1.5), "noise"),
])
def test_validation_errors(mutate, match):
    spec = hand_spec()
    mutate(spec)
    with pytest.raises(ClusterError, match=match):
        Cluster.from_dict(spec)


def test_disconnected_origin_named():
    spec = hand_spec()
    spec["nodes"]["b"] = {"tier": "access"}
    spec["origins"] = ["a", "b"]
    with pytest.raises(ClusterError, match="origin 'b' is disconnected"):
        Cluster.from_dict(spec)


def test_graph_constructor_type_checks():
    g = nx.DiGraph()
    g.add_node("x", site="not a site")
    with pytest.raises(ClusterError, match="needs a Site"):
        Cluster(g)
    g = nx.DiGraph()
    g.add_node("e", site=Site("edge", slot(), PowerModel(1, 2)))
    g.add_node("a", site=Site("access"))
    g.add_edge("a", "e", link=(1, 2))
    with pytest.raises(ClusterError, match="needs a Link"):
        Cluster(g)
    with pytest.raises(ClusterError):
        Link(-1.0, 1.0)
    with pytest.raises(ClusterError):
        PowerModel(10.0, 5.0)


def test_service_time_slot_engine():
    e = slot(0.02)
    assert service_time_s(e, 100, 5) == pytest.approx(5 * 0.02)
    assert service_time_s(e, 600, 1) == pytest.approx(3 * 0.02)  # 3 prefill chunks of <=256


def _two_site():
    return Cluster.from_dict({
        "nodes": {
            "a": {"tier": "access"},
            "e": {"tier": "edge", "engine": slot(0.02), "idle_w": 5.0, "busy_w": 30.0},
            "c": {"tier": "cloud", "engine": slot(0.01), "idle_w": 50.0, "busy_w": 300.0},
        },
        "links": [
            {"src": "a", "dst": "e", "latency_s": 0.002, "bandwidth_mbps": 100, "noise": 0.2,
             "tx_power_w": 1.0},
            {"src": "a", "dst": "c", "latency_s": 0.02, "bandwidth_mbps": 300, "noise": 0.2,
             "tx_power_w": 5.0},
        ],
    })


def test_idle_energy_over_empty_horizon():
    c = _two_site()
    w = Workload.from_arrays([0.0, 1.0], [10, 10], [5, 5], origin="a")
    r = simulate_cluster(w, c, AssignmentDispatcher([-1, -1]), rng=np.random.default_rng(0),
                         horizon_s=100.0)
    assert r.site_energy["busy_j"].sum() == 0.0 and r.site_energy["tran_j"].sum() == 0.0
    assert r.site_energy["idle_j"] == pytest.approx([5.0 * 100, 50.0 * 100])
    assert r.total_energy_j == pytest.approx(5500.0)
    assert r.records["rejected"].all() and not r.records["served"].any()


def test_energy_conservation():
    c = _two_site()
    rng = np.random.default_rng(1)
    n = 40
    w = Workload.from_arrays(np.sort(rng.uniform(0, 5, n)), rng.integers(1, 200, n),
                             rng.integers(1, 50, n), origin="a", e2e_slo_s=3.0)
    r = simulate_cluster(w, c, make("round_robin"), rng=np.random.default_rng(2),
                         payload_bytes=1e5)
    se, rec = r.site_energy, r.records
    assert r.total_energy_j == pytest.approx(se["busy_j"].sum() + se["idle_j"].sum()
                                             + se["tran_j"].sum())
    # busy energy split over requests sums to the sites' busy energy
    assert rec["energy_busy_j"].sum() == pytest.approx(se["busy_j"].sum())
    assert rec["energy_tran_j"].sum() == pytest.approx(se["tran_j"].sum())
    # slot engine: busy time = steps x step_s; busy + idle time = horizon per site
    for j, name in enumerate(r.sites):
        sch = r.schedules[name]
        step = c.site(name).engine.step_s
        assert se["busy_s"][j] == pytest.approx(sch.num_steps * step)
        p = c.site(name).power
        assert se["idle_j"][j] / p.idle_w + se["busy_j"][j] / p.busy_w == pytest.approx(
            r.horizon_s)
    assert rec["served"].all()
    ok = rec["served"]
    assert np.allclose(rec["e2e_s"][ok], (rec["done_s"] - rec["arrival_s"])[ok])
    assert (rec["up_s"][ok] > 0).all() and (rec["queue_s"][ok] >= -1e-12).all()
    assert np.allclose((rec["up_s"] + rec["queue_s"] + rec["inference_s"] + rec["down_s"])[ok],
                       rec["e2e_s"][ok])


def test_missing_origin_is_an_error():
    c = Cluster.from_toml("experiments/configs/perllm_cluster.toml")
    w = Workload.from_arrays([0.0], [10], [5])
    with pytest.raises(ValueError, match="no origin"):
        simulate_cluster(w, c, make("random"), rng=np.random.default_rng(0))
    w = Workload.from_arrays([0.0], [10], [5], origin="mars")
    with pytest.raises(ValueError, match="unknown origin 'mars'"):
        simulate_cluster(w, c, make("random"), rng=np.random.default_rng(0))
    assert math.isfinite(c.transfer_s("a0", "cloud", 1.0))


def test_catalogue_sites_get_batch_aware_power():
    c = Cluster.from_toml("experiments/configs/perllm_cluster.toml")
    for s in c.sites:
        p = c.site(s).power
        assert p.batch_aware and p.busy_w == p.batch.gpu.max_power_w
    # explicit idle_w/busy_w in the description: the two-level fallback
    assert not _two_site().site("e").power.batch_aware


def test_vectorised_step_power_equals_models_power():
    from slo_opt.engine import BatchShape

    p = PowerModel.from_catalog("a100/llama-3.1-8b")
    e = Cluster.from_toml("experiments/configs/perllm_cluster.toml").site("cloud").engine
    rng = np.random.default_rng(0)
    shapes = [BatchShape(decode_seqs=0)]
    for _ in range(40):
        ps = int(rng.integers(0, 3))
        pt = int(rng.integers(ps, 600)) if ps else 0
        ds = int(rng.integers(0 if ps else 1, 64))
        shapes.append(BatchShape(prefill_tokens=pt, prefill_seqs=ps,
                                 prefill_context_tokens=pt + int(rng.integers(0, 900)) if ps else 0,
                                 decode_seqs=ds, decode_context_tokens=ds * int(rng.integers(1, 900))))
    dt = np.array([float(e.step_time_s(b)) if b.num_tokens else 0.01 for b in shapes])
    got = p.step_power_w([b.prefill_tokens for b in shapes], [b.decode_seqs for b in shapes],
                         [b.context_tokens for b in shapes], dt, [b.prefill_seqs for b in shapes],
                         [b.prefill_context_tokens for b in shapes])
    want = [p.batch.power_w(b, t) for b, t in zip(shapes, dt)]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[0] == p.idle_w
    assert (got >= p.idle_w).all() and (got <= p.busy_w + 1e-9).all()
    # service_energy_j: batch-of-one energy, time equal to service_time_s
    t, ej = service_energy_j(e, p, 300, 20)
    assert t == pytest.approx(service_time_s(e, 300, 20), rel=1e-12)
    assert p.idle_w * t < ej < p.busy_w * t


def test_batch_aware_energy_conservation():
    c = Cluster.from_toml("experiments/configs/perllm_cluster.toml")
    rng = np.random.default_rng(4)
    n = 60
    w = Workload.from_arrays(np.sort(rng.uniform(0, 3, n)), rng.integers(1, 400, n),
                             rng.integers(1, 60, n), origin=rng.choice(list(c.origins), n),
                             e2e_slo_s=5.0)
    r = simulate_cluster(w, c, make("round_robin"), rng=np.random.default_rng(5))
    se, rec = r.site_energy, r.records
    assert rec["served"].all()
    assert rec["energy_busy_j"].sum() == pytest.approx(se["busy_j"].sum(), rel=1e-12)
    assert r.total_energy_j == pytest.approx(se["busy_j"].sum() + se["idle_j"].sum()
                                             + se["tran_j"].sum(), rel=1e-12)
    for j, name in enumerate(r.sites):
        p = c.site(name).power
        # busy energy lies between idle and max power over the busy time, and depends on load
        assert p.idle_w * se["busy_s"][j] <= se["busy_j"][j] <= p.busy_w * se["busy_s"][j]
        assert se["idle_j"][j] == pytest.approx(p.idle_w * (r.horizon_s - se["busy_s"][j]))
        per_site = rec["energy_busy_j"][rec["site"] == j].sum()
        assert per_site == pytest.approx(se["busy_j"][j], rel=1e-9, abs=1e-9)
    assert (se["busy_j"] < np.array([c.site(s).power.busy_w for s in r.sites])
            * se["busy_s"]).any()
