"""``slo-opt solve``: every scheduler next to the offline optimum and the bounds."""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

import numpy as np

__all__ = ["main", "solve_all"]


_EPILOG = """examples:
  slo-opt solve                          30 synthetic requests at 3x token capacity
  slo-opt solve --n 20 --load 2 --scheduler vllm sarathi --time-limit 30
  slo-opt solve --trace azure-conv --n 25 --length-scale 0.05 --out runs/solve

prints each scheduler's SLO attainment, the MILP optimum (incumbent and bound), the LP and fluid
bounds; a bound of 0 prints as 0.0000, an unavailable one as n/a."""


def _parser() -> argparse.ArgumentParser:
    from slo_opt.cli.common import (
        Parser,
        engine_flags,
        nonneg_int,
        positive_float,
        positive_int,
    )

    p = Parser(prog="slo-opt solve", description=(
        "Compare schedulers with the exact SLO-attainment optimum (slotted engine) and its "
        "LP / fluid bounds."), epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trace", default=None, metavar="FILE|NAME",
                   help="trace name or file (default: a scaled synthetic workload at --load)")
    p.add_argument("--n", type=nonneg_int, default=30, metavar="N",
                   help="number of requests, >= 0 (default 30)")
    p.add_argument("--load", type=positive_float, default=3.0, metavar="X",
                   help="synthetic load in multiples of the token capacity, > 0 (default 3: "
                   "SLOs bind, schedulers differ)")
    p.add_argument("--seed", type=nonneg_int, default=0, metavar="N",
                   help="seed of the synthetic workload's numpy Generator (default 0)")
    p.add_argument("--length-scale", type=positive_float, default=0.1, metavar="X",
                   help="trace lengths are multiplied by this, > 0 (default 0.1)")
    p.add_argument("--scheduler", nargs="*", default=None, metavar="NAME",
                   help="schedulers to compare (default: all registered)")
    p.add_argument("--time-limit", type=positive_float, default=60.0, metavar="S",
                   help="MILP time limit in seconds, > 0 (default 60)")
    p.add_argument("--step-s", type=positive_float, default=0.05, metavar="S",
                   help="slot length of the slotted engine in seconds, > 0 (default 0.05)")
    engine_flags(p, defaults={"max_num_batched_tokens": 256, "kv_capacity_tokens": 2048})
    p.add_argument("--bucket-slots", type=positive_int, default=8, metavar="N",
                   help="fluid-bound bucket size in slots, >= 1 (default 8)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write solve.json into this directory")
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


def _num(x: float | None) -> str:
    """``x`` to 4 decimals; 0 prints as 0.0000, ``None`` / NaN as n/a."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4f}"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from slo_opt.cli.common import CLIError, check_out_dir
    from slo_opt.schedulers import SCHEDULERS
    from slo_opt.solvers.scenarios import default_engine, scale_trace, scaled_workload

    a = _parser().parse_args(argv)
    names = sorted(SCHEDULERS) if not a.scheduler else a.scheduler
    unknown = sorted(set(names) - set(SCHEDULERS))
    if unknown:
        raise CLIError(f"--scheduler: unknown {unknown}; known: {sorted(SCHEDULERS)}")
    if a.out:
        check_out_dir(a.out)
    engine = default_engine(a.step_s, a.max_num_batched_tokens, a.kv_capacity_tokens)
    if a.trace is None:
        w = scaled_workload(a.n, a.load, np.random.default_rng(a.seed), engine)
    else:
        from slo_opt.workloads.traces import default_workload, load_trace

        try:
            base = default_workload() if a.trace == "default" else load_trace(a.trace)
        except (OSError, ValueError) as exc:
            raise CLIError(f"--trace: {exc}") from None
        w = scale_trace(base, a.n, a.length_scale)
    if len(w) == 0:
        raise CLIError("--n 0 / --trace: no requests to solve (empty workload)")
    res = solve_all(w, engine, names, time_limit_s=a.time_limit, bucket_slots=a.bucket_slots)
    res.pop("schedule", None)
    m = res["milp"]
    print(f"{len(w)} requests, {res['num_slots']} slots of {engine.step_s} s "
          f"(B={engine.max_batch_tokens}, M={engine.kv_capacity_tokens})")
    print(f"{'policy':<22}{'attainment':>12}")
    for name, h in sorted(res["heuristics"].items(), key=lambda kv: -kv[1]["attainment"]):
        print(f"{name:<22}{h['attainment']:>12.4f}")
    inc = m["incumbent"]
    print(f"{'OPT (MILP ' + m['status'] + ')':<22}{_num(inc):>12}"
          f"   bound {_num(m['bound'])}  {m['wall_s']:.1f} s")
    print(f"{'LP bound':<22}{_num(res['lp']['bound']):>12}   {res['lp']['wall_s']:.1f} s")
    print(f"{'fluid bound':<22}{_num(res['fluid']['bound']):>12}   "
          f"{res['fluid']['wall_s']:.1f} s")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        from slo_opt.cli.common import strict_json

        with open(os.path.join(a.out, "solve.json"), "w") as f:
            json.dump(strict_json(res), f, indent=2, default=float, allow_nan=False)
    return 0


#: The name of :func:`main` in 0.1 (``slo_opt.solvers.cli_solve``).
cli_solve = main
