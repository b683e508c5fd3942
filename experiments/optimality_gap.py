"""Optimality-gap study: every scheduler vs the exact optimum (small) and vs bounds (large).

``python experiments/optimality_gap.py [--quick] [--out DIR] [--seeds N]`` writes
``records.csv``, ``config.json`` and ``optimality_gap.png``. See ``papers/optimality-gap.md``.

Small instances: the exact SLO-attainment MILP on the slotted engine (warm-started with the best
heuristic; its LP relaxation and the fluid bound). Large instances: the fluid bound only. Model
mismatch: the MILP plan is replayed (``simulator.replay``) on a LinearEngineModel whose
full-budget step equals the slot, and scored again ("optimum under model mismatch").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from slo_opt.checks import violations
from slo_opt.metrics import attainment
from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.sim.simulator import replay, simulate
from slo_opt.solvers import GoodputMILP, Instance, solve
from slo_opt.solvers.fluid_bound import FluidBound
from slo_opt.solvers.scenarios import default_engine, scaled_workload
from slo_opt.study.runrecord import git_sha


@dataclass
class Config:
    loads: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0, 3.0])
    n_small: int = 30
    n_large: int = 1000
    seeds: int = 2
    time_limit_s: float = 30.0
    bucket_slots: int = 8


def mismatch_engine(slot):
    """A LinearEngineModel whose 256-token prefill step lasts one slot; decode steps are
    shorter (60% fixed cost + per-token cost), so replayed plans run earlier than slotted."""
    from slo_opt.models.linear import LinearEngineModel

    D, B = slot.step_s, slot.max_batch_tokens
    return LinearEngineModel(name="linear-mismatch", c0_s=0.6 * D, c_prefill_s=0.4 * D / B,
                             c_decode_s=0.4 * D / B, c_ctx_s=0.0,
                             kv_capacity_tokens=slot.kv_capacity_tokens, kv_block_tokens=1,
                             max_batch_tokens=B)


def run(cfg: Config):
    rows = []
    eng = default_engine()
    names = sorted(SCHEDULERS)
    for load in cfg.loads:
        for seed in range(cfg.seeds):
            for size, n in (("small", cfg.n_small), ("large", cfg.n_large)):
                w = scaled_workload(n, load, np.random.default_rng(seed), eng)
                inst = Instance(w, eng)
                base = {"load": load, "seed": seed, "size": size, "n": n}
                scheds = {}
                for name in names:
                    s = simulate(w, eng, make(name))
                    scheds[name] = s
                    rows.append({**base, "policy": name, "kind": "heuristic",
                                 "value": attainment(s, w), "status": "", "wall_s": ""})
                fb = solve(FluidBound(bucket_slots=cfg.bucket_slots), inst,
                           time_limit_s=cfg.time_limit_s)
                rows.append({**base, "policy": "fluid_bound", "kind": "bound", "value": fb.bound,
                             "status": fb.status.value, "wall_s": fb.wall_s})
                if size != "small":
                    continue
                best = max(names, key=lambda k: attainment(scheds[k], w))
                lp = solve(GoodputMILP(), inst, relax=True, time_limit_s=cfg.time_limit_s)
                rows.append({**base, "policy": "lp_bound", "kind": "bound", "value": lp.bound,
                             "status": lp.status.value, "wall_s": lp.wall_s})
                res = solve(GoodputMILP(), inst, time_limit_s=cfg.time_limit_s, rel_gap=1e-4,
                            warm_start=scheds[best])
                rows.append({**base, "policy": "opt", "kind": "opt", "value": res.incumbent,
                             "status": res.status.value, "wall_s": res.wall_s})
                rows.append({**base, "policy": "opt_bound", "kind": "bound", "value": res.bound,
                             "status": res.status.value, "wall_s": res.wall_s})
                if res.schedule is not None:
                    assert violations(res.schedule, w, eng) == []
                    mm = mismatch_engine(eng)
                    rep = replay(res.schedule, w, mm)
                    ok = violations(rep, w, mm) == []
                    rows.append({**base, "policy": "opt_mismatch", "kind": "opt_mismatch",
                                 "value": attainment(rep, w) if ok else float("nan"),
                                 "status": "feasible" if ok else "invalid", "wall_s": ""})
                    for name in names:  # heuristics on the same realistic engine
                        rows.append({**base, "policy": name, "kind": "heuristic_mismatch",
                                     "value": attainment(simulate(w, mm, make(name)), w),
                                     "status": "", "wall_s": ""})
    return rows


def mean_by(rows, size, kind_filter):
    out = {}
    for r in rows:
        if r["size"] != size or not kind_filter(r) or r["value"] in ("", None):
            continue
        out.setdefault((r["policy"], r["load"]), []).append(float(r["value"]))
    return {k: float(np.mean(v)) for k, v in out.items()}


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, size in zip(axes, ("small", "large")):
        m = mean_by(rows, size, lambda r: r["kind"] in ("heuristic", "opt", "bound",
                                                       "opt_mismatch"))
        for pol in sorted({p for p, _ in m}):
            loads = sorted(ld for p, ld in m if p == pol)
            style = "-" if pol not in ("opt", "opt_bound", "lp_bound", "fluid_bound",
                                       "opt_mismatch") else "--"
            lw = 2.5 if pol in ("opt", "fluid_bound") else 1.2
            ax.plot(loads, [m[(pol, ld)] for ld in loads], style, marker="o", lw=lw, label=pol)
        n = next((r["n"] for r in rows if r["size"] == size), 0)
        ax.set_title(f"{size} instances (n = {n})")
        ax.set_xlabel("offered load (x token capacity)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("SLO attainment")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _git_sha():
    return git_sha(__file__)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="out/optimality_gap")
    ap.add_argument("--seeds", type=int, default=None)
    a = ap.parse_args(argv)
    cfg = Config()
    if a.quick:
        cfg = Config(loads=[1.0, 3.0], n_small=10, n_large=150, seeds=1, time_limit_s=5.0)
    if a.seeds is not None:
        cfg.seeds = a.seeds
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    rows = run(cfg)
    keys = ["load", "seed", "size", "n", "policy", "kind", "value", "status", "wall_s"]
    with open(os.path.join(a.out, "records.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        wr.writerows(rows)
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("slo_opt")
    except PackageNotFoundError:
        ver = "unknown"
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"config": asdict(cfg), "quick": a.quick, "version": ver, "git_sha": _git_sha(),
                   "wall_s": time.time() - t0}, f, indent=1)
    plot(rows, os.path.join(a.out, "optimality_gap.png"))
    return rows


if __name__ == "__main__":
    main()
