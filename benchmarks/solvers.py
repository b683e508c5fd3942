"""Solve time vs instance size for the exact MILP (to proven optimality) and each bound.

Run: ``python benchmarks/solvers.py [--quick] [--out DIR]``. Writes ``solvers.json`` and
``solvers.png``. ``pattern`` rows: the pattern MILP (formulation A, a primal) inside
:func:`slo_opt.study.certificate.solve_with_certificate`, with the certificate gap between
the best feasible schedule and the best proven bound (per-slot MILP dual bound, its LP, fluid). Instances: :func:`slo_opt.solvers.scenarios.scaled_workload` (scaled-down
lengths) on the default ``SlotEngine`` (50 ms, B = 256, M = 2048), seed 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from slo_opt.metrics import attainment
from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.sim.simulator import simulate
from slo_opt.solvers import GoodputMILP, Instance, solve
from slo_opt.solvers.fluid_bound import FluidBound
from slo_opt.solvers.scenarios import default_engine, scaled_workload


def _inst(n: int, load: float, seed: int = 1):
    e = default_engine()
    w = scaled_workload(n, load, np.random.default_rng(seed), e)
    return w, e, Instance(w, e)


def _windows_slots(inst: Instance) -> int:
    from slo_opt.solvers.goodput_milp import request_windows

    win = request_windows(inst)
    ok = win["servable"]
    return int((win["u"][ok] - win["r"][ok] + 1).sum())


def bench_milp(sizes, loads, time_limit_s):
    rows = []
    for load in loads:
        for n in sizes:
            w, e, inst = _inst(n, load)
            scheds = {k: simulate(w, e, make(k)) for k in sorted(SCHEDULERS)}
            best = max(scheds, key=lambda k: attainment(scheds[k], w))
            res = solve(GoodputMILP(), inst, time_limit_s=time_limit_s, rel_gap=1e-4,
                        warm_start=scheds[best])
            row = {"kind": "milp", "n": n, "load": load, "request_slots": _windows_slots(inst),
                   "status": res.status.value, "incumbent": res.incumbent, "bound": res.bound,
                   "gap": res.mip_gap, "wall_s": res.wall_s, "build_s": res.build_s,
                   "best_heuristic": best,
                   "best_heuristic_attainment": attainment(scheds[best], w), **res.size}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def bench_bound(kind, sizes, loads, time_limit_s):
    rows = []
    for load in loads:
        for n in sizes:
            _w, _e, inst = _inst(n, load)
            f = FluidBound() if kind == "fluid" else GoodputMILP()
            res = solve(f, inst, relax=(kind == "lp"), time_limit_s=time_limit_s)
            row = {"kind": kind, "n": n, "load": load, "request_slots": _windows_slots(inst),
                   "status": res.status.value, "bound": res.bound, "wall_s": res.wall_s,
                   "build_s": res.build_s, **res.size}
            print(json.dumps(row), flush=True)
            rows.append(row)
            if res.wall_s > time_limit_s:
                break
    return rows


def bench_pattern(sizes, loads, time_limit_s):
    from slo_opt.study.certificate import solve_with_certificate

    rows = []
    for load in loads:
        for n in sizes:
            _w, _e, inst = _inst(n, load)
            c = solve_with_certificate(inst, time_limit_s)
            pm = c.solves["pattern_milp"]
            row = {"kind": "pattern", "n": n, "load": load, "request_slots": _windows_slots(inst),
                   "status": pm["status"], "incumbent": pm["incumbent"],
                   "pattern_restricted_bound": pm["bound"], "wall_s": pm["wall_s"],
                   "build_s": pm["build_s"], "cols": pm["cols"], "rows": pm["rows"],
                   "nnz": pm["nnz"], "certificate_value": c.value, "certificate_source": c.source,
                   "certificate_bound": c.bound, "certificate_bound_source": c.bound_source,
                   "certificate_gap": c.gap, "candidates": c.candidates, "bounds": c.bounds,
                   "stage_wall_s": c.wall_s,
                   "per_slot_milp": {k: c.solves["goodput_milp"][k] for k in
                                     ("status", "incumbent", "bound", "wall_s")}
                   if "goodput_milp" in c.solves else None}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for kind, mk in (("milp", "o"), ("pattern", "D"), ("lp", "s"), ("fluid", "^")):
        for load in sorted({r["load"] for r in rows if r["kind"] == kind}):
            pts = [r for r in rows if r["kind"] == kind and r["load"] == load]
            if not pts:
                continue
            x = [r["request_slots"] for r in pts]
            y = [r["wall_s"] for r in pts]
            ax.plot(x, y, marker=mk, label=f"{kind} (load {load:g})")
            for r in pts:
                if kind in ("milp", "pattern") and r["status"] != "optimal":
                    ax.annotate("limit", (r["request_slots"], r["wall_s"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("instance size: sum over requests of window slots (requests x slots)")
    ax.set_ylabel("wall time [s]")
    ax.axhline(60, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/out")
    ap.add_argument("--time-limit", type=float, default=60.0)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    if a.quick:
        rows = bench_milp([10, 20], [1.5], 10) + bench_bound("lp", [50], [1.5], 10) + \
            bench_bound("fluid", [200], [1.5], 10) + bench_pattern([30], [3.0], 10)
    else:
        rows = (bench_milp([10, 25, 50, 75, 100], [1.5, 3.0], a.time_limit)
                + bench_bound("lp", [100, 250, 500, 1000, 2000], [1.5, 3.0], a.time_limit)
                + bench_bound("fluid", [500, 1000, 2000, 5000, 10000], [1.5, 3.0], a.time_limit)
                + bench_pattern([50, 100, 200, 400], [1.5, 3.0], a.time_limit))
    opt = [r for r in rows if r["kind"] == "milp" and r["status"] == "optimal"
           and r["wall_s"] <= a.time_limit]
    summary = {
        "largest_n_milp_optimal": max((r["n"] for r in opt), default=0),
        "largest_n_lp_bound": max((r["n"] for r in rows if r["kind"] == "lp"
                                   and r["status"] == "optimal" and r["wall_s"] <= a.time_limit),
                                  default=0),
        "largest_n_fluid_bound": max((r["n"] for r in rows if r["kind"] == "fluid"
                                      and r["status"] == "optimal"
                                      and r["wall_s"] <= a.time_limit), default=0),
        "pattern_certificate_gap": {f"n{r['n']}-load{r['load']:g}": r["certificate_gap"]
                                    for r in rows if r["kind"] == "pattern"},
    }
    out = {"rows": rows, "summary": summary, "time_limit_s": a.time_limit,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "total_s": time.time() - t0}
    with open(os.path.join(a.out, "solvers.json"), "w") as f:
        json.dump(out, f, indent=1)
    plot(rows, os.path.join(a.out, "solvers.png"))
    print(json.dumps(summary))
    return out


if __name__ == "__main__":
    main()
