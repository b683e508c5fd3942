"""Multi-site simulation speed: simulated requests per second of wall time.

Usage: ``python benchmarks/cluster.py [--out benchmarks/results] [--n 2000]``

* ``perllm-6site``: the PerLLM topology (5 edge + 1 cloud, ``experiments/configs``), D1 engines;
* ``synthetic-100site``: 10 access points, 80 edge and 20 cloud servers on a random connected
  metro/WAN graph (networkx ``random_regular_graph`` backbone), same engine types.

For each, Poisson arrivals at a moderate load, ``min_latency`` and ``perllm`` dispatchers. Prints and
writes ``cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np

from slo_opt.edge.cluster import Cluster
from slo_opt.edge.dispatchers import make
from slo_opt.edge.simulation import simulate_cluster
from slo_opt.workloads.generators import EmpiricalLengths, clip_lengths, synthetic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))


def synthetic_100(seed: int = 0) -> Cluster:
    """10 access points + 80 edge + 20 cloud servers on a random backbone of 10 routers."""
    rng = np.random.default_rng(seed)
    back = nx.random_regular_graph(3, 10, seed=seed)
    nodes: dict[str, dict] = {}
    links: list[dict] = []
    for r in back.nodes:
        nodes[f"r{r}"] = {"tier": "access"}
    for u, v in back.edges:
        links.append({"src": f"r{u}", "dst": f"r{v}", "latency_s": float(rng.uniform(0.002, 0.01)),
                      "bandwidth_mbps": 1000, "tx_power_w": 2.0})
    for a in range(10):
        nodes[f"a{a}"] = {"tier": "access"}
        links.append({"src": f"a{a}", "dst": f"r{a}", "latency_s": 0.001, "bandwidth_mbps": 1000})
    for e in range(80):
        nodes[f"e{e}"] = {"tier": "edge", "engine": "jetson-orin/llama-3.2-1b"}
        links.append({"src": f"r{e % 10}", "dst": f"e{e}", "latency_s": 0.002,
                      "bandwidth_mbps": 100, "noise": 0.2, "tx_power_w": 2.0})
    for c in range(20):
        nodes[f"c{c}"] = {"tier": "cloud", "engine": "a100/llama-3.1-8b"}
        links.append({"src": f"r{(3 * c) % 10}", "dst": f"c{c}", "latency_s": 0.02,
                      "bandwidth_mbps": 300, "noise": 0.2, "tx_power_w": 10.0})
    return Cluster.from_dict({"nodes": nodes, "links": links,
                              "origins": [f"a{a}" for a in range(10)]})


def bench(cluster: Cluster, n: int, rate: float, dispatcher: str) -> dict:
    rng = np.random.default_rng(0)
    w = clip_lengths(synthetic(n, rate, EmpiricalLengths.default(), rng), 1024, 256)
    w = w.replace(origin=rng.choice(np.array(cluster.origins, dtype=object), n), e2e_slo_s=30.0,
                  class_label="c")
    t0 = time.perf_counter()
    r = simulate_cluster(w, cluster, make(dispatcher), rng=np.random.default_rng(1))
    wall = time.perf_counter() - t0
    return {"sites": cluster.num_sites, "links": len(cluster.edge_list), "n": n,
            "rate_rps": rate, "dispatcher": dispatcher, "wall_s": round(wall, 3),
            "requests_per_s": round(n / wall, 1),
            "simulated_s": round(r.horizon_s, 1), "completed": int(r.records["served"].sum())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    from perllm import build_cluster  # experiments/perllm.py

    rows = []
    for label, cl, rate in (("perllm-6site", build_cluster("D1"), 20.0),
                            ("synthetic-100site", synthetic_100(), 200.0)):
        for d in ("min_latency", "perllm"):
            row = {"topology": label, **bench(cl, a.n, rate, d)}
            print(json.dumps(row))
            rows.append(row)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
            "machine": platform.machine()}
    (out / "cluster.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out / 'cluster.json'}")


if __name__ == "__main__":
    main()
