"""Inputs of the slotted placement MILP from an edge-cloud cluster and a workload.

:func:`slotted_inputs` turns a :class:`~slo_opt.edge.cluster.Cluster` and a workload into a
:class:`~slo_opt.solvers.placement_slotted.SlottedInstance` (the choice of per-site capacity and
service time under load is described in :mod:`slo_opt.solvers.placement_slotted`). It lives
here, on top of both, so that the formulation depends on the core only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from slo_opt.edge.cluster import service_time_s
from slo_opt.edge.simulation import SlotBandwidth, placement_inputs
from slo_opt.engine import BatchShape
from slo_opt.solvers.placement_slotted import SlottedInstance

__all__ = ["slotted_inputs"]


def slotted_inputs(workload: Any, cluster: Any, rng: np.random.Generator, *,
                   payload_bytes: Any = 0.0, slot_s: float = 1.0, slowdown: float = 0.25,
                   prefill_share: float = 0.3,
                   prompt_bytes_per_token: float = 4.0, result_bytes_per_token: float = 4.0,
                   bandwidth_slot_s: float = 1.0, links: bool = True) -> SlottedInstance:
    """Clairvoyant slotted instance of a workload on a :class:`~slo_opt.edge.cluster.Cluster`.

    Uses the realised bandwidth of the arrival slot (the draws of
    :func:`~slo_opt.edge.simulation.simulate_cluster` given a generator with the same seed) for the
    upload and the download, the model energy of
    :func:`~slo_opt.edge.simulation.placement_inputs`, and the concurrency budget / service time
    under load described in the module docstring (``slowdown``, ``prefill_share`` = phi).
    A prefill longer than the per-slot budget ``phi slot_s`` is charged the whole budget.
    """
    if not (slowdown >= 0 and math.isfinite(slowdown)):
        raise ValueError(f"slowdown must be finite and >= 0, got {slowdown}")
    if not 0 <= prefill_share < 1:
        raise ValueError(f"prefill_share must be in [0, 1), got {prefill_share}")
    seed_state = rng.bit_generator.state
    inp = placement_inputs(workload, cluster, rng, slot_s=bandwidth_slot_s,
                           prompt_bytes_per_token=prompt_bytes_per_token,
                           result_bytes_per_token=result_bytes_per_token,
                           payload_bytes=payload_bytes)
    rng2 = np.random.Generator(type(rng.bit_generator)())
    rng2.bit_generator.state = seed_state
    bw = SlotBandwidth(cluster, rng2, bandwidth_slot_s)
    n, m = len(workload), cluster.num_sites
    extra = np.broadcast_to(np.asarray(payload_bytes, float), (n,))
    ub = workload.prompt_tokens * float(prompt_bytes_per_token) + extra
    db = workload.output_tokens * float(result_bytes_per_token)
    arr = np.asarray(workload.arrival_s, float)
    origins = [str(o) if str(o) else cluster.origins[0] for o in workload.origin.tolist()]
    up = np.empty((n, m))
    down = np.empty((n, m))
    for i in range(n):
        up[i] = bw.up(origins[i], float(arr[i]), float(ub[i]))[0]
        down[i] = bw.down(origins[i], float(arr[i]), float(db[i]))[0]
    sites = [cluster.site(s) for s in cluster.sites]
    ctx = max(1, int(np.mean(workload.prompt_tokens + workload.output_tokens / 2)))
    conc = np.zeros(m, np.int64)
    ratio = np.ones(m)
    cache: dict[int, tuple[int, float]] = {}
    for j, s in enumerate(sites):
        e = s.engine
        if id(e) not in cache:
            kmax = max(1, int(e.kv_capacity_tokens) // ctx)
            base = float(e.step_time_s(BatchShape(decode_seqs=1, decode_context_tokens=ctx)))

            def step(b: int, e: Any = e) -> float:
                return float(e.step_time_s(BatchShape(decode_seqs=b,
                                                      decode_context_tokens=b * ctx)))
            lo_b, hi_b = 1, kmax
            while lo_b < hi_b:  # largest b with step(b) <= (1 + slowdown) base
                mid = (lo_b + hi_b + 1) // 2
                if step(mid) <= (1 + slowdown) * base * (1 + 1e-12):
                    lo_b = mid
                else:
                    hi_b = mid - 1
            cache[id(e)] = (lo_b, step(lo_b) / base)
        conc[j], ratio[j] = cache[id(e)]
    svc_cache: dict[tuple[int, int, int], float] = {}

    def svc(e: Any, p: int, o: int) -> float:
        k = (id(e), p, o)
        v = svc_cache.get(k)
        if v is None:
            v = svc_cache[k] = service_time_s(e, p, o)
        return v

    infer = np.empty((n, m))
    pre = np.empty((n, m))
    for i in range(n):
        p, o = int(workload.prompt_tokens[i]), int(workload.output_tokens[i])
        for j, s in enumerate(sites):
            infer[i, j] = svc(s.engine, p, o)
            pre[i, j] = svc(s.engine, p, 1)
    budget = prefill_share * slot_s
    service = pre + (infer - pre) * ratio[None, :] / (1.0 - prefill_share)
    peak = (workload.prompt_tokens + workload.output_tokens).astype(float)
    kw: dict[str, Any] = {}
    if prefill_share > 0:
        kw.update(prefill_s=np.minimum(pre, budget), prefill_capacity_s=np.full(m, budget))
    if links:
        kw.update(link_bytes=inp["link_bytes"],
                  link_slot=np.floor(arr / slot_s).astype(np.int64),
                  link_capacity_bytes=inp["link_capacity_bytes_per_s"] * slot_s)
    return SlottedInstance(
        release_s=arr[:, None] + up, service_s=np.maximum(service, 1e-9), tail_s=down,
        due_s=arr + np.asarray(workload.e2e_slo_s, float), energy_j=inp["energy_j"],
        concurrency=conc, slot_s=slot_s, kv_tokens=peak,
        kv_capacity_tokens=np.array([s.engine.kv_capacity_tokens for s in sites], float),
        **kw)
