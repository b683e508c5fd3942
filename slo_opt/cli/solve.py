"""``slo-opt solve``: every scheduler next to the offline optimum and the bounds."""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

import numpy as np

__all__ = ["main", "solve_all"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slo-opt solve", description=(
        "Compare schedulers with the exact SLO-attainment optimum (slotted engine) and its "
        "LP / fluid bounds."))
    p.add_argument("--trace", default=None, help="trace name or file (default: a scaled "
                   "synthetic workload at --load)")
    p.add_argument("--n", type=int, default=30, help="number of requests (default 30)")
    p.add_argument("--load", type=float, default=1.2, help="synthetic load (default 1.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--length-scale", type=float, default=0.1,
                   help="trace lengths are multiplied by this (default 0.1)")
    p.add_argument("--scheduler", nargs="*", default=None,
                   help="schedulers to compare (default: all registered)")
    p.add_argument("--time-limit", type=float, default=60.0, help="MILP time limit in s")
    p.add_argument("--step-s", type=float, default=0.05)
    p.add_argument("--max-batch-tokens", type=int, default=256)
    p.add_argument("--kv-capacity-tokens", type=int, default=2048)
    p.add_argument("--bucket-slots", type=int, default=8, help="fluid-bound bucket size")
    p.add_argument("--out", default=None, help="write solve.json into this directory")
    return p


def solve_all(workload: Any, engine: Any, schedulers: list[str], *, time_limit_s: float,
              bucket_slots: int = 8, milp: bool = True) -> dict[str, Any]:
    """Heuristics' attainment, the MILP optimum (incumbent, bound), the LP and fluid bounds."""
    from slo_opt.metrics import attainment
    from slo_opt.schedulers import make
    from slo_opt.sim.simulator import simulate
    from slo_opt.solvers.base import Instance, solve
    from slo_opt.solvers.fluid_bound import FluidBound
    from slo_opt.solvers.goodput_milp import GoodputMILP

    inst = Instance(workload, engine)
    out: dict[str, Any] = {"num_requests": len(workload), "num_slots": inst.num_slots,
                           "heuristics": {}}
    for name in schedulers:
        s = simulate(workload, engine, make(name))
        out["heuristics"][name] = {"attainment": attainment(s, workload),
                                   "preemptions": len(s.events)}
    fb = solve(FluidBound(bucket_slots=bucket_slots), inst, time_limit_s=time_limit_s)
    out["fluid"] = {"status": fb.status.value, "bound": fb.bound, "wall_s": fb.wall_s}
    if milp:
        lp = solve(GoodputMILP(), inst, relax=True, time_limit_s=time_limit_s)
        out["lp"] = {"status": lp.status.value, "bound": lp.bound, "wall_s": lp.wall_s}
        res = solve(GoodputMILP(), inst, time_limit_s=time_limit_s, rel_gap=1e-4)
        out["milp"] = {"status": res.status.value, "incumbent": res.incumbent,
                       "bound": res.bound, "gap": res.mip_gap, "wall_s": res.wall_s,
                       **res.size}
        out["schedule"] = res.schedule
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from slo_opt.schedulers import SCHEDULERS
    from slo_opt.solvers.scenarios import default_engine, scale_trace, scaled_workload

    a = _parser().parse_args(argv)
    if a.n < 0 or not a.time_limit >= 0:
        raise SystemExit("--n must be >= 0 and --time-limit >= 0")
    engine = default_engine(a.step_s, a.max_batch_tokens, a.kv_capacity_tokens)
    if a.trace is None:
        w = scaled_workload(a.n, a.load, np.random.default_rng(a.seed), engine)
    else:
        from slo_opt.workloads.traces import default_workload, load_trace

        base = default_workload() if a.trace == "default" else load_trace(a.trace)
        w = scale_trace(base, a.n, a.length_scale)
    names = sorted(SCHEDULERS) if not a.scheduler else a.scheduler
    unknown = sorted(set(names) - set(SCHEDULERS))
    if unknown:
        raise SystemExit(f"unknown scheduler(s) {unknown}; known: {sorted(SCHEDULERS)}")
    res = solve_all(w, engine, names, time_limit_s=a.time_limit, bucket_slots=a.bucket_slots)
    res.pop("schedule", None)
    m = res["milp"]
    print(f"{len(w)} requests, {res['num_slots']} slots of {engine.step_s} s "
          f"(B={engine.max_batch_tokens}, M={engine.kv_capacity_tokens})")
    print(f"{'policy':<22}{'attainment':>12}")
    for name, h in sorted(res["heuristics"].items(), key=lambda kv: -kv[1]["attainment"]):
        print(f"{name:<22}{h['attainment']:>12.4f}")
    inc = m["incumbent"]
    print(f"{'OPT (MILP ' + m['status'] + ')':<22}{(inc if inc is not None else math.nan):>12.4f}"
          f"   bound {m['bound']:.4f}  {m['wall_s']:.1f} s")
    print(f"{'LP bound':<22}{res['lp']['bound'] or math.nan:>12.4f}   {res['lp']['wall_s']:.1f} s")
    print(f"{'fluid bound':<22}{res['fluid']['bound'] or math.nan:>12.4f}   "
          f"{res['fluid']['wall_s']:.1f} s")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "solve.json"), "w") as f:
            json.dump(res, f, indent=2, default=float)
    return 0


#: The name of :func:`main` in 0.1 (``slo_opt.solvers.cli_solve``).
cli_solve = main
