"""PerLLM reproduction (Yang et al., arXiv:2405.14636): ``slo-opt reproduce perllm``.

Setup (``shared/research/papers.md`` section 2.5 and decisions 16-22; every unknown is a
documented choice, see ``papers/perllm.md``):

* topology ``experiments/configs/perllm_cluster.toml``: 5 access points, 5 edge servers, 1 cloud
  server; edge links 100 Mbps, cloud WAN 300 Mbps, +-20 % bandwidth noise redrawn per 1 s slot;
* two model deployments (small at the edge, larger in the cloud):
  D1 = Jetson AGX Orin / Llama-3.2-1B at the edge, A100 / Llama-3.1-8B in the cloud;
  D2 = Jetson AGX Orin / Llama-3.2-3B at the edge, A100 / Qwen2.5-7B in the cloud;
* workload: Poisson arrivals, ShareGPT lengths (clipped to 1024 prompt / 256 output tokens),
  origins uniform over the 5 access points, three service classes whose processing-time
  requirement is a multiple (2x, 4x, 8x) of the request's unloaded processing time on its best
  server (decision 22), with upload payloads 0 / 0.2 MB / 1 MB;
* load: each deployment's saturation is *measured* (:func:`measure_saturation`: the largest
  completion throughput of the load-balancing dispatchers under a 100 req/s overload) and the
  sweep runs at fixed fractions of it (0.2x .. 1.2x);
* policies: every registered dispatcher (``perllm`` with delta, lambda tuned on a separate seed,
  :func:`tune`; ``perllm_default`` keeps delta = sqrt(2), lambda = 1);
* bound: per instance, the per-site fluid LP bound on deadline-met requests
  (:func:`slo_opt.solvers.window_fluid.site_fluid_bound` with step planes of each site's
  engine): proven for every dispatcher and every site scheduler with at most 256 decode
  sequences per step, given the realised bandwidth draws;
* planners (not bounds), on a smaller instance set: the per-epoch placement MILP (``oracle``),
  the replay-and-tighten planner (``planner``) and the time-slotted MILP (``slotted_oracle``);
* energy: per-step batch-aware power (:mod:`slo_opt.models.power`) + idle + transmission,
  reported in total and per on-time request, split busy / idle / transmission;
* every site schedule is checked by :func:`slo_opt.checks.violations` (releases as arrivals).

Comparators behind the paper's 2.2x / 2.1x / 1.6x are not named in the available text; we use
Random, Round-robin and UCB (decision 21), and also report the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.edge.cluster import Cluster, service_time_s
from slo_opt.edge.dispatchers import DISPATCHERS, make
from slo_opt.edge.simulation import AssignmentDispatcher, placement_inputs, simulate_cluster
from slo_opt.request import Workload
from slo_opt.study.runrecord import git_sha, write_rows_csv
from slo_opt.workloads.generators import EmpiricalLengths, clip_lengths, synthetic

try:
    from experiments._common import CHECKS, Progress, check_site_schedules, ci95
except ImportError:  # run as a script or through ``slo-opt reproduce``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from experiments._common import CHECKS, Progress, check_site_schedules, ci95

__all__ = ["DEPLOYMENTS", "PAPER", "bound_inputs", "build_cluster", "build_workload", "curves",
           "main", "measure_saturation", "oracle_assignment", "planner_assignment",
           "slotted_assignment", "tune"]

PAPER = {"throughput_x": (2.2, 2.1, 1.6), "energy_reduction_pct": 50.0}
COMPARATORS = ("random", "round_robin", "ucb")
DEPLOYMENTS = {
    "D1": ("jetson-orin/llama-3.2-1b", "a100/llama-3.1-8b"),
    "D2": ("jetson-orin/llama-3.2-3b", "a100/qwen2.5-7b"),
}
#: (label, deadline multiple of best unloaded processing time, upload payload bytes, share)
CLASSES = (("interactive", 2.0, 0.0, 0.4), ("standard", 4.0, 2e5, 0.4), ("batch", 8.0, 1e6, 0.2))
CONFIG = Path(__file__).resolve().parent / "configs" / "perllm_cluster.toml"
THETA_J_PER_S = 100.0  # oracle/regret lateness penalty (J per second late)


def build_cluster(deployment: str) -> Cluster:
    """The 5-edge + 1-cloud topology with deployment ``D1`` or ``D2``'s engines."""
    with open(CONFIG, "rb") as f:
        spec = tomllib.load(f)
    edge, cloud = DEPLOYMENTS[deployment]
    for nd in spec["nodes"].values():
        if nd.get("tier") == "edge":
            nd["engine"] = edge
        elif nd.get("tier") == "cloud":
            nd["engine"] = cloud
    return Cluster.from_dict(spec)


def build_workload(cluster: Cluster, n: int, rate: float,
                   rng: np.random.Generator) -> tuple[Workload, np.ndarray]:
    """Requests with origins, classes and deadlines; returns (workload, payload bytes)."""
    w = clip_lengths(synthetic(n, rate, EmpiricalLengths.default(), rng), 1024, 256)
    origin = rng.choice(np.array(cluster.origins, dtype=object), n)
    k = rng.choice(len(CLASSES), n, p=[c[3] for c in CLASSES])
    label = np.array([CLASSES[i][0] for i in k], dtype=object)
    mult = np.array([CLASSES[i][1] for i in k])
    pay = np.array([CLASSES[i][2] for i in k])
    engines = {id(cluster.site(s).engine): cluster.site(s).engine for s in cluster.sites}
    best = np.array([min(service_time_s(e, int(p), int(o)) for e in engines.values())
                     for p, o in zip(w.prompt_tokens, w.output_tokens)])
    net = 0.05 + pay / (100e6 / 8)  # latency + payload over an edge link
    return w.replace(origin=origin, class_label=label, e2e_slo_s=mult * (best + net)), pay


def oracle_assignment(w: Workload, cluster: Cluster, pay: np.ndarray, seed: int,
                      epoch_s: float, time_limit_s: float,
                      capacity_s: dict[int, np.ndarray] | None = None,
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-epoch placement MILP (slack-penalty deadlines, compute and link capacities).

    ``capacity_s`` maps an epoch index to per-site compute-time capacities (default
    ``epoch_s`` for every site); an epoch whose tightened capacities make the MILP infeasible
    is re-solved with the default (recorded in ``stats["relaxed"]``).
    """
    from slo_opt.solvers.placement_milp import PlacementInstance, solve_placement

    inp = placement_inputs(w, cluster, np.random.default_rng(seed), payload_bytes=pay)
    site_of = np.full(len(w), -1, np.int64)
    ep = np.floor(inp["arrival_s"] / epoch_s).astype(int)
    stats: dict[str, Any] = {"epochs": 0, "optimal": 0, "objective": 0.0, "bound": 0.0,
                             "wall_s": 0.0, "relaxed": 0}
    li, lj, le, lb = inp["link_bytes"]
    default = np.full(cluster.num_sites, epoch_s)
    for k in np.unique(ep):
        idx = np.flatnonzero(ep == k)
        pos = np.full(len(w), -1)
        pos[idx] = np.arange(idx.size)
        sel = pos[li] >= 0
        caps = [default] if capacity_s is None or int(k) not in capacity_s else [
            capacity_s[int(k)], default]
        for cap in caps:
            inst = PlacementInstance(
                inp["energy_j"][idx], inp["time_s"][idx], inp["deadline_s"][idx],
                load_s=inp["load_s"][idx], capacity_s=cap,
                link_bytes=(pos[li[sel]], lj[sel], le[sel], lb[sel]),
                link_capacity_bytes=inp["link_capacity_bytes_per_s"] * epoch_s,
                deadline_penalty=THETA_J_PER_S, reject_penalty=None)
            res = solve_placement(inst, time_limit_s=time_limit_s, mip_rel_gap=1e-4)
            stats["wall_s"] += res.wall_s
            if res.has_solution:
                break
            stats["relaxed"] += cap is not default
        stats["epochs"] += 1
        stats["optimal"] += res.status == "optimal"
        if res.has_solution:
            site_of[idx] = res.site_of
            stats["objective"] += res.objective
            stats["bound"] += res.bound
        else:  # no incumbent: fall back to the cheapest on-time site per request
            e = np.where(np.isfinite(inst.energy_j), inst.energy_j, np.inf)
            site_of[idx] = np.argmin(e, axis=1)
    return site_of, {**stats, "inputs": inp}


def planner_assignment(w: Workload, cluster: Cluster, pay: np.ndarray, seed: int,
                       epoch_s: float, time_limit_s: float, iterations: int,
                       first: tuple[np.ndarray, dict[str, Any]] | None = None,
                       ) -> tuple[np.ndarray, dict[str, Any]]:
    """Offline *planner* (not a bound): epoch MILP + replay-and-tighten.

    1. solve the epoch MILP (:func:`oracle_assignment`);
    2. replay its assignment through :func:`simulate_cluster` (same workload, same network
       draws: the planner is clairvoyant about both);
    3. for every (epoch, site) with deadline misses, set that epoch's compute capacity of the
       site to the load the MILP put there times ``clip(1 / overload, 0.25, 0.9)``, where
       ``overload`` is the mean ``e2e / deadline`` of the missed requests (engine-rejected
       ones count as 2), and re-solve;
    4. repeat ``iterations`` times; keep the replay with the most met deadlines (ties: least
       energy).

    The MILP ignores queueing, so tightening is how the replayed queueing feeds back into the
    plan. The result is a feasible online schedule of a clairvoyant heuristic: it is neither an
    upper bound on goodput nor a lower bound on energy.
    """
    m = cluster.num_sites
    site_of, st = first if first is not None else oracle_assignment(
        w, cluster, pay, seed, epoch_s, time_limit_s)
    inp = st["inputs"]
    ep = np.floor(inp["arrival_s"] / epoch_s).astype(int)
    caps: dict[int, np.ndarray] = {}
    best: tuple[tuple[int, float], np.ndarray, int] | None = None
    hist = []
    wall = st["wall_s"]
    for it in range(iterations + 1):
        r = simulate_cluster(w, cluster, AssignmentDispatcher(site_of),
                             rng=np.random.default_rng(seed), payload_bytes=pay)
        rec = r.records
        met = rec["met"]
        score = (int(met.sum()), -r.total_energy_j)
        hist.append({"iteration": it, "met": score[0], "energy_j": round(r.total_energy_j, 3)})
        if best is None or score > best[0]:
            best = (score, site_of.copy(), it)
        miss = (site_of >= 0) & ~met
        if it == iterations or not miss.any():
            break
        ratio = np.where(rec["served"], rec["e2e_s"] / rec["deadline_s"], 2.0)
        for k in np.unique(ep[miss]):
            for j in np.unique(site_of[miss & (ep == k)]):
                sel = (ep == k) & (site_of == j)
                over = float(np.mean(ratio[sel & miss]))
                used = float(inp["load_s"][sel, j].sum())
                cap = caps.setdefault(int(k), np.full(m, epoch_s))
                cap[j] = min(cap[j], used * float(np.clip(1.0 / max(over, 1e-9), 0.25, 0.9)))
        site_of, st = oracle_assignment(w, cluster, pay, seed, epoch_s, time_limit_s, caps)
        wall += st["wall_s"]
    assert best is not None
    return best[1], {"planner_best_iteration": best[2], "planner_history": hist,
                     "planner_milp_wall_s": wall}


def slotted_assignment(w: Workload, cluster: Cluster, pay: np.ndarray, seed: int,
                       slot_s: float, time_limit_s: float, shares: Sequence[float],
                       ) -> tuple[np.ndarray, dict[str, Any]]:
    """Time-slotted, queueing-aware MILP (:mod:`slo_opt.solvers.placement_slotted`), replayed.

    One lexicographic solve (most deadlines met, then least model energy) per prefill share
    ``phi`` in ``shares``; each plan's sites are replayed through :func:`simulate_cluster`
    (same workload and network draws) and the replay with most met deadlines (ties: least
    energy) is kept. Requests the MILP cannot fit on time are rejected at dispatch. Clairvoyant
    about arrivals, lengths and bandwidth; the site schedulers are not told the planned start
    slots, so the MILP's count is a plan, not a bound on the replay.
    """
    from slo_opt.solvers.placement_slotted import solve_slotted
    from slo_opt.study.placement import slotted_inputs

    best: tuple[tuple[int, float], np.ndarray, dict[str, Any]] | None = None
    wall = 0.0
    for phi in shares:
        inst = slotted_inputs(w, cluster, np.random.default_rng(seed), payload_bytes=pay,
                              slot_s=slot_s, prefill_share=phi)
        res = solve_slotted(inst, time_limit_s=time_limit_s)
        wall += res.wall_s
        r = simulate_cluster(w, cluster, AssignmentDispatcher(res.site_of),
                             rng=np.random.default_rng(seed), payload_bytes=pay)
        score = (int(r.records["met"].sum()), -r.total_energy_j)
        st = {"slotted_phi": phi, "slotted_status": res.status, "slotted_milp_met": res.met,
              "slotted_milp_met_bound": res.met_bound,
              "slotted_milp_energy_j": round(res.energy_j, 3),
              "slotted_milp_energy_bound_j": round(res.energy_bound, 3),
              "slotted_cols": res.num_cols}
        if best is None or score > best[0]:
            best = (score, res.site_of.copy(), st)
    assert best is not None
    return best[1], {**best[2], "slotted_milp_wall_s": round(wall, 3)}


def _model_cost(inp: dict[str, Any], site_of: np.ndarray) -> np.ndarray:
    """Per-request MILP cost of an assignment: model energy + theta x model lateness."""
    i = np.flatnonzero(site_of >= 0)
    c = np.full(site_of.size, np.nan)
    j = site_of[i]
    late = np.maximum(inp["time_s"][i, j] - inp["deadline_s"][i], 0.0)
    c[i] = inp["energy_j"][i, j] + THETA_J_PER_S * late
    return c


TUNING_SEED = 99  #: workload/network seed of the CS-UCB tuning runs (never a reported seed)


def _dispatcher(name: str, seed: int, params: dict[str, Any]) -> Any:
    kw = dict(params)
    if "seed" in DISPATCHERS[name].__dataclass_fields__:
        kw["seed"] = seed
    return make(name, **kw)


def tune(cfg: dict[str, Any], sat: dict[str, float],
         ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Grid over CS-UCB's ``delta`` x ``lam`` on the tuning seed; best by mean goodput.

    Uses workload seed ``TUNING_SEED`` (the reported runs use seeds ``0 .. seeds-1``), every
    deployment and the loads ``cfg["tune_loads"]`` x its measured saturation. Ties: the
    earlier grid point.
    """
    rows: list[dict[str, Any]] = []
    for dep in cfg["deployments"]:
        cluster = build_cluster(dep)
        for rate in [round(f * sat[dep], 3) for f in cfg["tune_loads"]]:
            w, pay = build_workload(cluster, cfg["n"], rate,
                                    np.random.default_rng([TUNING_SEED, int(rate * 1000)]))
            for delta in cfg["tune_delta"]:
                for lam in cfg["tune_lam"]:
                    r = simulate_cluster(w, cluster, make("perllm", delta=delta, lam=lam,
                                                          seed=TUNING_SEED),
                                         rng=np.random.default_rng(1000 + TUNING_SEED),
                                         payload_bytes=pay)
                    s = r.summary()
                    rows.append({"deployment": dep, "rate_rps": rate, "delta": delta,
                                 "lam": lam, "goodput_rps": round(s["goodput_rps"], 6),
                                 "deadline_satisfaction": round(s["deadline_satisfaction"], 6),
                                 "energy_per_completed_j": round(s["energy_per_completed_j"], 6)})
    grid = [(d, lam) for d in cfg["tune_delta"] for lam in cfg["tune_lam"]]
    score = [np.mean([r["goodput_rps"] for r in rows if (r["delta"], r["lam"]) == g])
             for g in grid]
    d, lam = grid[int(np.argmax(score))]
    print(f"CS-UCB tuning (seed {TUNING_SEED}): best delta={d} lam={lam} "
          f"(mean goodput {max(score):.3f} req/s)", file=sys.stderr)
    return {"delta": float(d), "lam": float(lam)}, rows


def _git_sha() -> str:
    return git_sha(__file__)


# -- saturation, bound, runs ----------------------------------------------------------------

SAT_DISPATCHERS = ("least_loaded", "min_latency", "round_robin", "random")
MAX_SEQS = 256  #: vLLM's max_num_seqs, the site schedulers' decode cap (bound validity)


def measure_saturation(dep: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Largest completion throughput (req/s) of the load-balancing dispatchers under overload.

    ``cfg["sat_n"]`` requests at ``cfg["sat_rate"]`` req/s (well above capacity); throughput
    = completed requests / (last result delivery - first arrival). The saturation of the
    deployment is the maximum over :data:`SAT_DISPATCHERS`.
    """
    cluster = build_cluster(dep)
    w, pay = build_workload(cluster, cfg["sat_n"], cfg["sat_rate"],
                            np.random.default_rng([TUNING_SEED, 7]))
    out: dict[str, float] = {}
    for d in SAT_DISPATCHERS:
        r = simulate_cluster(w, cluster, _dispatcher(d, 0, {}),
                             rng=np.random.default_rng(1000 + TUNING_SEED), payload_bytes=pay)
        check_site_schedules(r, w, cluster)
        rec = r.records
        span = float(np.nanmax(rec["done_s"]) - rec["arrival_s"][0])
        out[d] = round(float(rec["served"].sum()) / span, 2)
    best = max(out, key=lambda k: out[k])
    return {"saturation_rps": out[best], "by": best, "throughputs": out,
            "offered_rps": cfg["sat_rate"], "n": cfg["sat_n"]}


def bound_inputs(w: Workload, cluster: Cluster, pay: np.ndarray, net_seed: int,
                 max_seqs: int = MAX_SEQS) -> dict[str, Any]:
    """Inputs of the per-site batch-resolved fluid bound, from the replay's network draws.

    ``release`` = arrival + upload at the arrival slot's bandwidth (what the simulator uses);
    ``latest_finish`` = arrival + deadline - the fastest download over every slot the result
    could leave in; per site the decode-step floors of each batch-size group, each request's
    own prefill floor + context time (``inf`` where the KV cache cannot hold it) and its fixed
    work (:mod:`slo_opt.solvers.engine_bounds`).
    """
    from slo_opt.edge.simulation import SlotBandwidth
    from slo_opt.metrics import SLO_TOL_S

    n, m = len(w), cluster.num_sites
    bw = SlotBandwidth(cluster, np.random.default_rng(net_seed), 1.0)
    up_b = w.prompt_tokens * 4.0 + pay
    dn_b = w.output_tokens * 4.0
    arr = np.asarray(w.arrival_s, float)
    dl = np.asarray(w.e2e_slo_s, float)
    rel = np.empty((n, m))
    fin = np.empty((n, m))
    origins = [str(o) for o in w.origin]
    for i in range(n):
        u, _ = bw.up(origins[i], arr[i], float(up_b[i]))
        rel[i] = arr[i] + u
        k0, k1 = bw.slot(arr[i]), bw.slot(arr[i] + dl[i])
        dmin = np.min([bw.down(origins[i], k * bw.slot_s, float(dn_b[i]))[0]
                       for k in range(k0, k1 + 1)], axis=0)
        fin[i] = arr[i] + dl[i] + SLO_TOL_S - dmin
    from slo_opt.models.roofline import RooflineEngineModel
    from slo_opt.solvers.engine_bounds import (
        _roofline_terms,
        ctx_s_per_token,
        decode_step_floor_s,
        prefill_floor_s,
        request_ctx_tokens,
    )
    from slo_opt.solvers.tpot_fluid import batch_groups, prefill_extra_s_per_token

    p, o = w.prompt_tokens, w.output_tokens
    groups = batch_groups(max_seqs, exact_up_to=8, ratio=1.5)
    ctx = request_ctx_tokens(p, o)
    ng = len(groups)
    floors = np.empty((m, ng))
    own = np.empty((n, m))
    # capacity planes: (a) the step floor with context reads and linear prompt cost; (b) for
    # roofline sites, lam = 0 of max(weights, GEMM): per step o + s k + (g + h) k, per prompt
    # token g (the prefill compute the floor alone does not charge)
    cap_f = [np.empty((m, ng)), np.empty((m, ng))]
    cap_x = [np.empty((n, m)), np.empty((n, m))]
    for j, s in enumerate(cluster.sites):
        e = cluster.site(s).engine
        fk = np.array([decode_step_floor_s(e, k) for k in range(1, max_seqs + 1)])
        floors[j] = [fk[lo - 1:hi].min() for lo, hi in groups]
        a_c = ctx_s_per_token(e)
        own[:, j] = prefill_floor_s(e, p) + a_c * ctx
        own[p + o - 1 > e.kv_capacity_tokens, j] = math.inf
        cap_f[0][j] = floors[j]
        cap_x[0][:, j] = prefill_extra_s_per_token(e) * p + a_c * ctx
        if isinstance(e, RooflineEngineModel):
            ov, ps, _, g, gh, _ = _roofline_terms(e)
            cap_f[1][j] = [ov + (ps + g + gh) * lo for lo, _ in groups]
            cap_x[1][:, j] = g * p + a_c * ctx
        else:
            cap_f[1][j] = cap_f[0][j]
            cap_x[1][:, j] = cap_x[0][:, j]
    return {"release_s": rel, "latest_finish_s": fin, "decodes": np.maximum(o - 1, 0),
            "floors_s": floors, "group_hi": np.array([hi for _, hi in groups]),
            "own_s": own, "cap_floors_s": cap_f, "cap_fixed_s": cap_x}


def fluid_bound(w: Workload, cluster: Cluster, pay: np.ndarray, net_seed: int,
                cfg: dict[str, Any]) -> dict[str, Any]:
    """The per-site fluid LP bound on deadline-met requests of one instance."""
    from slo_opt.solvers.window_fluid import site_batch_fluid_bound

    inp = bound_inputs(w, cluster, pay, net_seed)
    b = site_batch_fluid_bound(
        inp["release_s"], inp["latest_finish_s"], inp["decodes"], inp["floors_s"],
        inp["group_hi"], inp["own_s"], inp["cap_floors_s"], inp["cap_fixed_s"],
        cell_s=cfg["bound_cell_s"],
        time_limit_s=cfg["bound_time_limit_s"],
        valid_for=f"{len(cluster.sites)}-site cluster: every dispatcher, site schedulers with <= "
                  f"{MAX_SEQS} decodes per step, realised bandwidth")
    win = inp["latest_finish_s"] - inp["release_s"]
    unl = win >= inp["own_s"] + inp["decodes"][:, None] * inp["floors_s"].min(axis=1)[None, :]
    return {"met_bound": b.value, "bound_status": str(getattr(b.status, "value", b.status)),
            "bound_wall_s": round(b.wall_s, 3), "bound_cols": b.num_cols,
            "feasible_alone": int(unl.any(axis=1).sum()), "bound_valid_for": b.valid_for}


def _window(w: Workload, frac: float) -> np.ndarray:
    """Requests arriving after the first ``frac`` of the arrival span (warm-up dropped)."""
    a = np.asarray(w.arrival_s, float)
    return a >= a[0] + frac * (a[-1] - a[0])


def _metrics(r: Any, w: Workload, win: np.ndarray) -> dict[str, Any]:
    s = r.summary()
    rec = r.records
    met = rec["met"]
    a = np.asarray(w.arrival_s, float)
    span = float(a[win][-1] - a[win][0]) if win.sum() > 1 else math.nan
    lab = rec["class_label"]
    out = {k: round(v, 6) for k, v in s.items()}
    out.update({
        "satisfaction": float(met[win].mean()),
        "goodput_rps": float(met[win].sum()) / span,
        "energy_per_met_j": s["energy_j"] / max(s["met"], 1.0),
        "idle_share": s["idle_j"] / s["energy_j"], "busy_share": s["busy_j"] / s["energy_j"],
        "tran_share": s["tran_j"] / s["energy_j"]})
    for c in CLASSES:
        sel = win & (lab == c[0])
        out[f"satisfaction_{c[0]}"] = float(met[sel].mean()) if sel.any() else math.nan
    return out


def run(cfg: dict[str, Any], sat: dict[str, float], perllm_params: dict[str, float],
        progress: Any = None) -> list[dict[str, Any]]:
    """The load sweep: every dispatcher + the fluid bound per (deployment, load, seed)."""
    rows: list[dict[str, Any]] = []
    for dep in cfg["deployments"]:
        cluster = build_cluster(dep)
        for f in cfg["loads"]:
            rate = round(f * sat[dep], 3)
            for seed in range(cfg["seeds"]):
                w, pay = build_workload(cluster, cfg["n"], rate,
                                        np.random.default_rng([seed, int(rate * 1000)]))
                net_seed = 1000 + seed
                win = _window(w, cfg["warmup_frac"])
                base = {"deployment": dep, "load": f, "rate_rps": rate, "seed": seed}
                bd = fluid_bound(w, cluster, pay, net_seed, cfg)
                nwin = int(win.sum())
                rows.append({**base, "policy": "fluid_bound", **bd,
                             "satisfaction": min(bd["met_bound"], len(w)) / len(w),
                             "n": len(w), "n_window": nwin})
                pols = [(d, _dispatcher(d, seed, perllm_params if d == "perllm" else {}))
                        for d in cfg["dispatchers"]]
                pols.append(("perllm_default", _dispatcher("perllm", seed, {})))
                for name, kw in cfg["variants"].items():
                    pols.append((name, _dispatcher(kw["dispatcher"], seed, kw["params"])))
                for name, disp in pols:
                    t0 = time.perf_counter()
                    r = simulate_cluster(w, cluster, disp, rng=np.random.default_rng(net_seed),
                                         payload_bytes=pay)
                    check_site_schedules(r, w, cluster)
                    rows.append({**base, "policy": name, **_metrics(r, w, win),
                                 "met_all": int(r.records["met"].sum()),
                                 "wall_s": round(time.perf_counter() - t0, 3)})
                if progress is not None:
                    progress.step(f"{dep} load {f} ({rate} req/s) seed {seed}")
    return rows


def run_planners(cfg: dict[str, Any], sat: dict[str, float],
                 progress: Any = None) -> list[dict[str, Any]]:
    """Clairvoyant planners (epoch MILP, replay-and-tighten, time-slotted MILP) on a smaller
    instance set, next to the best dispatcher and the fluid bound of the same instances."""
    rows: list[dict[str, Any]] = []
    for dep in cfg["deployments"]:
        cluster = build_cluster(dep)
        for f in cfg["planner_loads"]:
            rate = round(f * sat[dep], 3)
            w, pay = build_workload(cluster, cfg["planner_n"], rate,
                                    np.random.default_rng([0, int(rate * 1000), 5]))
            net_seed = 1000
            base = {"deployment": dep, "load": f, "rate_rps": rate, "n": len(w)}
            bd = fluid_bound(w, cluster, pay, net_seed, cfg)
            rows.append({**base, "policy": "fluid_bound", "met": bd["met_bound"], **bd})
            oracle, ost = oracle_assignment(w, cluster, pay, net_seed, cfg["epoch_s"],
                                            cfg["milp_time_limit_s"])
            plan, pst = planner_assignment(w, cluster, pay, net_seed, cfg["epoch_s"],
                                           cfg["planner_time_limit_s"],
                                           cfg["planner_iterations"], first=(oracle, ost))
            slotted, sst = slotted_assignment(w, cluster, pay, net_seed, cfg["slotted_slot_s"],
                                              cfg["slotted_time_limit_s"], cfg["slotted_shares"])
            pols: list[tuple[str, Any, dict[str, Any]]] = [
                ("oracle", AssignmentDispatcher(oracle, name="oracle"),
                 {"milp_optimal_epochs": f"{ost['optimal']}/{ost['epochs']}"}),
                ("planner", AssignmentDispatcher(plan, name="planner"),
                 {"planner_met_by_iteration": " ".join(str(h["met"]) for h in
                                                       pst["planner_history"])}),
                ("slotted_oracle", AssignmentDispatcher(slotted, name="slotted_oracle"), sst)]
            pols += [(d, _dispatcher(d, 0, {}), {}) for d in cfg["dispatchers"]]
            for name, disp, extra in pols:
                r = simulate_cluster(w, cluster, disp, rng=np.random.default_rng(net_seed),
                                     payload_bytes=pay)
                check_site_schedules(r, w, cluster)
                s = r.summary()
                rows.append({**base, "policy": name, "met": int(s["met"]),
                             "energy_per_met_j": s["energy_j"] / max(s["met"], 1.0), **extra})
            if progress is not None:
                progress.step(f"planners {dep} load {f}")
    return rows


class _Logged:
    """Wraps a dispatcher; logs, for each request it places, the placement-time prediction
    (``ClusterView.predicted_e2e_s``, the estimate CS-UCB's time constraint uses) and the
    unloaded inference time of the chosen site."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "logged")
        self.log: dict[int, tuple[float, float]] = {}

    def reset(self) -> None:
        self.inner.reset()
        self.log = {}

    def choose(self, view: Any) -> int | None:
        j = self.inner.choose(view)
        if j is not None:
            self.log[view.rid] = (float(view.predicted_e2e_s()[j]), float(view.infer_s[j]))
        return j

    def observe(self, feedback: Any) -> None:
        self.inner.observe(feedback)


def diagnose(cfg: dict[str, Any], sat: dict[str, float], perllm_params: dict[str, float],
             ) -> list[dict[str, Any]]:
    """Why CS-UCB meets fewer deadlines than random at light load: per policy and service
    class, the share sent to the edge, deadline satisfaction there and in the cloud, and the
    realised / predicted e2e of CS-UCB's constraint estimate."""
    rows: list[dict[str, Any]] = []
    pols = [("perllm", perllm_params), ("perllm_default", {}), ("random", {}), ("ucb", {}),
            ("min_latency", {})] + [(k, v["params"]) for k, v in cfg["variants"].items()]
    for dep in cfg["deployments"]:
        cluster = build_cluster(dep)
        edge = np.array([t == "edge" for t in cluster.tiers])
        for f in cfg["diagnose_loads"]:
            rate = round(f * sat[dep], 3)
            for seed in range(cfg["diagnose_seeds"]):
                w, pay = build_workload(cluster, cfg["n"], rate,
                                        np.random.default_rng([seed, int(rate * 1000)]))
                for name, params in pols:
                    reg = {"perllm_default": "perllm"}.get(name, name)
                    if name in cfg["variants"]:
                        reg = cfg["variants"][name]["dispatcher"]
                    disp = _Logged(_dispatcher(reg, seed, params))
                    r = simulate_cluster(w, cluster, disp, rng=np.random.default_rng(1000 + seed),
                                         payload_bytes=pay)
                    rec = r.records
                    site = rec["site"]
                    on_edge = np.where(site >= 0, edge[np.maximum(site, 0)], False)
                    pred = np.array([disp.log.get(i, (math.nan, math.nan))[0]
                                     for i in range(len(w))])
                    for c in [x[0] for x in CLASSES]:
                        sel = rec["class_label"] == c
                        e, cl = sel & on_edge, sel & ~on_edge & (site >= 0)
                        ratio = (rec["e2e_s"] / pred)[e]
                        rows.append({
                            "deployment": dep, "load": f, "rate_rps": rate, "seed": seed,
                            "policy": name, "class": c, "n": int(sel.sum()),
                            "edge_share": float(on_edge[sel].mean()),
                            "satisfaction": float(rec["met"][sel].mean()),
                            "satisfaction_edge": float(rec["met"][e].mean()) if e.any()
                            else math.nan,
                            "satisfaction_cloud": float(rec["met"][cl].mean()) if cl.any()
                            else math.nan,
                            "edge_e2e_over_predicted": float(np.nanmedian(ratio))
                            if e.any() else math.nan,
                            "edge_e2e_over_deadline_missed": float(np.nanmedian(
                                (rec["e2e_s"] / rec["deadline_s"])[e & ~rec["met"]]))
                            if (e & ~rec["met"]).any() else math.nan,
                            "busiest_site_share": float(np.bincount(site[sel & (site >= 0)],
                                                                    minlength=len(edge)).max()
                                                        / max(int(sel.sum()), 1))})
    return rows


# -- curves, headline, plots (pure functions of the rows) -------------------------------------


def _vals(rows: list[dict[str, Any]], key: str, **where: Any) -> list[float]:
    v = [r.get(key) for r in rows if all(r.get(k) == x for k, x in where.items())]
    return [float(x) for x in v if isinstance(x, int | float) and math.isfinite(x)]


def _mean(rows: list[dict[str, Any]], key: str, **where: Any) -> float:
    v = _vals(rows, key, **where)
    return float(np.mean(v)) if v else math.nan


def _paired(rows: list[dict[str, Any]], key: str, a: str, b: str, fn: Any,
            **where: Any) -> tuple[float, float]:
    """``fn(a's value, b's value)`` per seed, then mean and 95 % CI half-width."""
    va = {r["seed"]: r.get(key) for r in rows if r["policy"] == a
          and all(r.get(k) == x for k, x in where.items())}
    out = []
    for r in rows:
        if r["policy"] == b and all(r.get(k) == x for k, x in where.items()) and r["seed"] in va:
            x, y = va[r["seed"]], r.get(key)
            if isinstance(x, int | float) and isinstance(y, int | float):
                v = fn(float(x), float(y))
                if math.isfinite(v):
                    out.append(v)
    return ci95(out)


def curves(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per deployment, load and comparator: CS-UCB's goodput ratio and energy reductions
    (total physical energy, energy per on-time request), paired per seed, with 95 % CIs."""
    out = []
    deps = sorted({r["deployment"] for r in rows})
    pols = sorted({r["policy"] for r in rows} - {"perllm", "fluid_bound"})
    for dep in deps:
        for f in sorted({r["load"] for r in rows if r["deployment"] == dep}):
            sel = {"deployment": dep, "load": f}
            for pol in pols:
                g = _paired(rows, "goodput_rps", "perllm", pol,
                            lambda x, y: x / y if y > 0 else math.nan, **sel)
                et = _paired(rows, "energy_j", "perllm", pol, lambda x, y: 100 * (1 - x / y),
                             **sel)
                em = _paired(rows, "energy_per_met_j", "perllm", pol,
                             lambda x, y: 100 * (1 - x / y), **sel)
                out.append({**sel, "rate_rps": _mean(rows, "rate_rps", **sel),
                            "comparator": pol, "goodput_x": g[0], "goodput_x_ci": g[1],
                            "energy_total_reduction_pct": et[0],
                            "energy_total_reduction_ci": et[1],
                            "energy_per_met_reduction_pct": em[0],
                            "energy_per_met_reduction_ci": em[1],
                            "perllm_satisfaction": _mean(rows, "satisfaction", policy="perllm",
                                                         **sel),
                            "comparator_satisfaction": _mean(rows, "satisfaction", policy=pol,
                                                             **sel),
                            "bound_satisfaction": _mean(rows, "satisfaction",
                                                        policy="fluid_bound", **sel)})
    return out


def results_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (deployment, load, policy): deadline satisfaction (mean, CI), the bound and the gap
    (bound - policy, percentage points), energy totals, per on-time request and shares."""
    out = []
    for dep in sorted({r["deployment"] for r in rows}):
        for f in sorted({r["load"] for r in rows if r["deployment"] == dep}):
            sel = {"deployment": dep, "load": f}
            ub = _mean(rows, "satisfaction", policy="fluid_bound", **sel)
            for pol in sorted({r["policy"] for r in rows} - {"fluid_bound"}):
                m, h = ci95(_vals(rows, "satisfaction", policy=pol, **sel))
                out.append({**sel, "rate_rps": _mean(rows, "rate_rps", **sel), "policy": pol,
                            "satisfaction": m, "satisfaction_ci": h, "bound": ub,
                            "gap_pts": 100 * (ub - m),
                            **{k: _mean(rows, k, policy=pol, **sel) for k in (
                                "goodput_rps", "energy_j", "energy_per_met_j", "busy_share",
                                "idle_share", "tran_share", "edge_share",
                                "satisfaction_interactive", "satisfaction_standard",
                                "satisfaction_batch")}})
    return out


def _plots(rows: list[dict[str, Any]], cur: list[dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    deps = sorted({r["deployment"] for r in rows})
    # claim 1: throughput ratio vs the three comparators, paper values marked
    fig, axes = plt.subplots(1, len(deps), figsize=(6.5 * len(deps), 4.2), squeeze=False)
    for ax, dep in zip(axes[0], deps):
        for comp, pv, col in zip(COMPARATORS, PAPER["throughput_x"], ("C0", "C1", "C2")):
            pts = [c for c in cur if c["deployment"] == dep and c["comparator"] == comp]
            xs = [c["load"] for c in pts]
            ys = [c["goodput_x"] for c in pts]
            err = [c["goodput_x_ci"] if math.isfinite(c["goodput_x_ci"]) else 0 for c in pts]
            ax.errorbar(xs, ys, yerr=err, marker="o", color=col, capsize=2,
                        label=f"CS-UCB / {comp}")
            ax.axhline(pv, color=col, ls=":", lw=1, label=f"paper vs comparator: {pv}x")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_xlabel("offered load (x measured saturation)")
        ax.set_ylabel("goodput ratio (deadline-met req/s, CS-UCB / comparator)")
        ax.set_title(f"{dep}: claim 2.2x / 2.1x / 1.6x throughput")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "perllm_throughput_ratio.png", dpi=85)
    plt.close(fig)
    files.append("perllm_throughput_ratio.png")
    # claim 2: energy reduction, total and per on-time request
    fig, axes = plt.subplots(1, len(deps), figsize=(6.5 * len(deps), 4.2), squeeze=False)
    for ax, dep in zip(axes[0], deps):
        for comp, col in zip(COMPARATORS, ("C0", "C1", "C2")):
            pts = [c for c in cur if c["deployment"] == dep and c["comparator"] == comp]
            xs = [c["load"] for c in pts]
            ax.plot(xs, [c["energy_total_reduction_pct"] for c in pts], "-", marker="o",
                    color=col, label=f"total energy vs {comp}")
            ax.plot(xs, [c["energy_per_met_reduction_pct"] for c in pts], "--", marker="s",
                    color=col, label=f"energy per on-time request vs {comp}")
        ax.axhline(PAPER["energy_reduction_pct"], color="k", ls=":", label="paper: > 50 %")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("offered load (x measured saturation)")
        ax.set_ylabel("energy reduction of CS-UCB (%)")
        ax.set_title(f"{dep}: claim > 50 % lower energy cost")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "perllm_energy.png", dpi=85)
    plt.close(fig)
    files.append("perllm_energy.png")
    # context: deadline satisfaction of every policy with the bound
    pols = sorted({r["policy"] for r in rows})
    fig, axes = plt.subplots(1, len(deps), figsize=(6.5 * len(deps), 4.2), squeeze=False)
    for ax, dep in zip(axes[0], deps):
        loads = sorted({r["load"] for r in rows if r["deployment"] == dep})
        for pol in pols:
            ms = [ci95(_vals(rows, "satisfaction", deployment=dep, load=f, policy=pol))
                  for f in loads]
            bold = pol in ("perllm", "fluid_bound")
            ax.errorbar(loads, [m[0] for m in ms],
                        yerr=[0 if not math.isfinite(m[1]) else m[1] for m in ms],
                        marker="" if pol == "fluid_bound" else "o", capsize=2,
                        lw=2.2 if bold else 1, ls=":" if pol == "fluid_bound" else "-",
                        color="k" if pol == "fluid_bound" else None,
                        label="proven upper bound (fluid LP)" if pol == "fluid_bound" else pol)
        ax.set_xlabel("offered load (x measured saturation)")
        ax.set_ylabel("deadline satisfaction (fraction on time)")
        ax.set_title(f"{dep}: every dispatcher (mean over seeds, 95 % CI)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "perllm_satisfaction.png", dpi=85)
    plt.close(fig)
    files.append("perllm_satisfaction.png")
    return files


def config(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved configuration (full or ``--quick``)."""
    variants = {"perllm_penalty": {"dispatcher": "perllm", "params": {"penalty": 1.0}}}
    common = {"warmup_frac": 0.1, "bound_cell_s": 1.0, "bound_time_limit_s": 120.0,
              "sat_rate": 100.0, "dispatchers": sorted(DISPATCHERS), "variants": variants,
              "tune_delta": [0.5, 1.0, 2.0], "tune_lam": [0.5, 1.0], "epoch_s": 10.0,
              "slotted_slot_s": 1.0}
    if args.quick:
        return {**common, "deployments": ["D1"], "loads": [0.2, 1.0], "n": 150,
                "diagnose_loads": [0.2], "diagnose_seeds": 1,
                "seeds": args.seeds or 1, "sat_n": 400, "tune_loads": [0.6], "tune_n": 100,
                "planners": False, "planner_loads": [0.6], "planner_n": 100,
                "milp_time_limit_s": 5.0, "planner_time_limit_s": 2.0, "planner_iterations": 1,
                "slotted_time_limit_s": 5.0, "slotted_shares": [0.35]}
    return {**common, "deployments": ["D1", "D2"], "loads": [0.2, 0.4, 0.6, 0.8, 1.0, 1.2],
            "n": 800, "seeds": args.seeds or 3, "sat_n": 1500, "tune_loads": [0.2, 0.6, 1.0],
            "diagnose_loads": [0.2, 0.4], "diagnose_seeds": 2,
            "tune_n": 300, "planners": not args.no_planners, "planner_loads": [0.2, 0.6, 1.0],
            "planner_n": 300, "milp_time_limit_s": 10.0, "planner_time_limit_s": 5.0,
            "planner_iterations": 2, "slotted_time_limit_s": 10.0,
            "slotted_shares": [0.35]}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``slo-opt reproduce perllm [--quick] [--out DIR] [--seeds N]``)."""
    ap = argparse.ArgumentParser(
        prog="slo-opt reproduce perllm", description=__doc__.split("\n")[0],
        epilog="Full run (default): about an hour on the shared 2-core machine (sweep ~45 min, "
               "planners and diagnosis ~15 min), progress on stderr; --quick: < 1 min "
               "(--no-planners skips the MILP planners).")
    ap.add_argument("--quick", action="store_true", help="small CI-sized run (< 60 s)")
    ap.add_argument("--out", default="results/perllm", help="output folder")
    ap.add_argument("--seeds", type=int, default=0, help="repetitions per load (0 = default)")
    ap.add_argument("--n", type=int, default=0,
                    help="requests per (deployment, load, seed) (0 = default: 800, quick 150)")
    ap.add_argument("--no-planners", action="store_true",
                    help="skip the clairvoyant-planner study (epoch / slotted MILPs)")
    args = ap.parse_args(argv)
    CHECKS["schedules"] = 0  # count this run's schedules only
    if args.seeds < 0:
        ap.error("--seeds must be >= 0")
    if args.n < 0 or 0 < args.n < 50:
        ap.error("--n must be 0 (default) or >= 50")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config(args)
    if args.n:
        cfg["n"] = args.n
    t0 = time.perf_counter()
    sat_info = {dep: measure_saturation(dep, cfg) for dep in cfg["deployments"]}
    sat = {dep: v["saturation_rps"] for dep, v in sat_info.items()}
    for dep, v in sat_info.items():
        print(f"{dep}: measured saturation {v['saturation_rps']} req/s ({v['by']}; "
              f"{v['throughputs']} at {v['offered_rps']} req/s offered)", file=sys.stderr)
    tcfg = {**cfg, "n": cfg["tune_n"]}
    best, tuning = tune(tcfg, sat)
    n = len(cfg["deployments"]) * (len(cfg["loads"]) * cfg["seeds"]
                                   + (len(cfg["planner_loads"]) if cfg["planners"] else 0))
    prog = Progress(n, "perllm", quiet=args.quick)
    rows = run(cfg, sat, best, prog)
    planners = run_planners(cfg, sat, prog) if cfg["planners"] else []
    diag = diagnose(cfg, sat, best)
    cur = curves(rows)
    table = results_table(rows)
    write_rows_csv(tuning, out / "tuning.csv")
    write_rows_csv(rows, out / "records.csv")
    write_rows_csv(cur, out / "curves.csv")
    write_rows_csv(table, out / "table.csv")
    if planners:
        write_rows_csv(planners, out / "planners.csv")
    write_rows_csv(diag, out / "diagnose.csv")
    from slo_opt import __version__ as ver

    meta = {"config": cfg, "saturation": sat_info, "perllm_tuned": best,
            "tuning_seed": TUNING_SEED, "version": ver, "git_sha": _git_sha(), "paper": PAPER,
            "comparators": COMPARATORS, "classes": CLASSES, "cluster": str(CONFIG.name),
            "deployments": DEPLOYMENTS, "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_count": os.cpu_count(), "schedules_checked": CHECKS["schedules"]}
    (out / "config.json").write_text(json.dumps(meta, indent=2, default=str))
    files = _plots(rows, cur, out)
    for dep in cfg["deployments"]:
        print(f"== {dep} (saturation {sat[dep]} req/s): deadline satisfaction "
              "(bound | perllm | comparators), goodput x and energy reduction vs each comparator")
        for f in cfg["loads"]:
            cs = [c for c in cur if c["deployment"] == dep and c["load"] == f
                  and c["comparator"] in COMPARATORS]
            if not cs:
                continue
            print(f"load {f:.1f}x ({cs[0]['rate_rps']:.1f} req/s): bound "
                  f"{cs[0]['bound_satisfaction']:.3f} perllm {cs[0]['perllm_satisfaction']:.3f} | "
                  + " | ".join(f"{c['comparator']} {c['comparator_satisfaction']:.3f} "
                               f"x{c['goodput_x']:.2f} E {c['energy_total_reduction_pct']:+.0f}% "
                               f"E/met {c['energy_per_met_reduction_pct']:+.0f}%" for c in cs))
    print(f"{CHECKS['schedules']} site schedules checked by violations(); "
          f"wall {time.perf_counter() - t0:.0f} s")
    print(f"wrote {out}/records.csv, table.csv, curves.csv, tuning.csv, config.json"
          + (", planners.csv" if planners else "") + f", {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
