"""``slo-opt solve``: every scheduler next to the offline optimum and the bounds."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import numpy as np

__all__ = ["main", "solve_all"]


_EPILOG = """examples:
  slo-opt solve                          30 synthetic requests at 3x token capacity
  slo-opt solve --n 20 --load 2 --scheduler vllm sarathi --time-limit 30
  slo-opt solve --trace azure-conv --n 25 --length-scale 0.05 --out runs/solve
  slo-opt solve --trace AzureLLMInferenceTrace_conv.csv --n 1000 --load 1.5 \
      --profile h100/llama-3.1-8b --time-limit 120 --out runs/cert
                                         real lengths on the calibrated engine (see below)

With --profile GPU/MODEL: real-length mode. The trace's requests keep their real lengths; the
slotted engine's slot is the longest real step of <= --max-num-batched-tokens (default 2048)
tokens of the profile's LinearEngineModel. Every scheduler is simulated on the slotted engine
(each schedule re-checked by checks.violations) and on the LinearEngineModel itself; the slotted
bound is the Lagrangian bound (solvers/lagrangian.py), the linear-engine bound its time-cell
version. --load rescales arrivals to that multiple of the slotted token capacity (default: the
trace's own times). Writes certificate.json (n, best_value, best_source, bound, bound_source,
gap, valid_for, schedulers, wall_s, linear_engine) into --out; progress goes to stderr.

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
    p.add_argument("--load", type=positive_float, default=None, metavar="X",
                   help="load in multiples of the token capacity, > 0 (default 3 for the "
                   "synthetic workload: SLOs bind, schedulers differ; with --profile: the "
                   "trace's own arrival times)")
    p.add_argument("--profile", default=None, metavar="GPU/MODEL",
                   help="real-length mode on this calibrated engine (e.g. h100/llama-3.1-8b)")
    p.add_argument("--ttft-slo-s", type=positive_float, default=2.0, metavar="S",
                   help="TTFT SLO of every request in real-length mode, s (default 2)")
    p.add_argument("--tpot-slo-s", type=positive_float, default=0.2, metavar="S",
                   help="TPOT SLO of every request in real-length mode, s (default 0.2)")
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
    engine_flags(p)
    p.add_argument("--bucket-slots", type=positive_int, default=8, metavar="N",
                   help="fluid-bound bucket size in slots, >= 1 (default 8)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write solve.json and certificate.json into this directory")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
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
    t_start = time.perf_counter()
    names = sorted(SCHEDULERS) if not a.scheduler else a.scheduler
    unknown = sorted(set(names) - set(SCHEDULERS))
    if unknown:
        raise CLIError(f"--scheduler: unknown {unknown}; known: {sorted(SCHEDULERS)}")
    if a.out:
        check_out_dir(a.out)
    if a.profile is not None:
        return _main_real(a, names)
    engine = default_engine(a.step_s, a.max_num_batched_tokens or 256,
                            a.kv_capacity_tokens or 2048)
    if a.trace is None:
        w = scaled_workload(a.n, 3.0 if a.load is None else a.load,
                            np.random.default_rng(a.seed), engine)
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
    bounds = {k: res[k]["bound"] for k in ("lp", "fluid")}
    bounds["milp"] = m["bound"]
    ok = {k: v for k, v in bounds.items() if v is not None and math.isfinite(v)}
    sched = {k: h["attainment"] for k, h in res["heuristics"].items()}
    cands = dict(sched)
    if inc is not None:
        cands["goodput_milp"] = inc
    best_src = max(cands, key=lambda k: cands[k])
    bsrc = min(ok, key=lambda k: ok[k]) if ok else "none"
    cert = {"n": len(w), "best_value": cands[best_src], "best_source": best_src,
            "bound": ok.get(bsrc), "bound_source": bsrc,
            "gap": _gap(ok.get(bsrc), cands[best_src]),
            "valid_for": _slot_valid(engine), "schedulers": sched,
            "wall_s": time.perf_counter() - t_start}
    print(f"certified {_num(cert['best_value'])} ({best_src}), bound {_num(cert['bound'])} "
          f"({bsrc}), gap {_num(cert['gap'])}; valid for {cert['valid_for']}")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        from slo_opt.cli.common import strict_json

        with open(os.path.join(a.out, "solve.json"), "w") as f:
            json.dump(strict_json(res), f, indent=2, default=float, allow_nan=False)
        with open(os.path.join(a.out, "certificate.json"), "w") as f:
            json.dump(strict_json(cert), f, indent=2, default=float, allow_nan=False)
    return 0


def _gap(bound: float | None, value: float) -> float | None:
    """``(bound - value) / value`` (``None`` without a bound; ``inf`` for a zero value)."""
    if bound is None or not math.isfinite(bound):
        return None
    return max(bound - value, 0.0) / value if value > 0 else (0.0 if bound <= 0 else math.inf)


def _slot_valid(engine: Any) -> str:
    from slo_opt.solvers.lagrangian import slot_valid_for

    return slot_valid_for(engine)


def _main_real(a: argparse.Namespace, names: list[str]) -> int:
    """Real-length mode (``--profile``): see the epilog."""
    import sys

    from slo_opt.checks import violations
    from slo_opt.cli.common import CLIError, get_engine, strict_json
    from slo_opt.metrics import attainment
    from slo_opt.models.linear import LinearEngineModel
    from slo_opt.schedulers import make
    from slo_opt.sim.simulator import simulate
    from slo_opt.solvers.base import Instance
    from slo_opt.solvers.goodput_milp import request_windows
    from slo_opt.solvers.lagrangian import slot_lagrangian_bound, time_lagrangian_bound
    from slo_opt.solvers.real_length import real_length_workload, slot_engine_for
    from slo_opt.workloads.traces import load_trace

    t_start = time.perf_counter()

    def say(msg: str) -> None:
        if not a.quiet:
            print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    if a.trace is None:
        raise CLIError("--profile needs --trace FILE|NAME (real-length mode)")
    lin = get_engine(a.profile, kv_capacity_tokens=a.kv_capacity_tokens)
    if not isinstance(lin, LinearEngineModel):
        raise CLIError(f"--profile: {a.profile} is a {type(lin).__name__}; real-length mode "
                       "needs a LinearEngineModel profile")
    try:
        base = load_trace(a.trace)
    except (OSError, ValueError) as exc:
        raise CLIError(f"--trace: {exc}") from None
    if a.n < 1 or a.n > len(base):
        raise CLIError(f"--n: must be 1..{len(base)} for this trace, got {a.n}")
    B = a.max_num_batched_tokens or 2048
    head = base.head(a.n)
    se = slot_engine_for(lin, B, int(np.max(head.prompt_tokens + head.output_tokens)))
    w = real_length_workload(base, a.n, a.load, se, ttft_slo_s=a.ttft_slo_s,
                             tpot_slo_s=a.tpot_slo_s) if a.load is not None else \
        head.replace(arrival_s=head.arrival_s - head.arrival_s.min(),
                     ttft_slo_s=np.full(a.n, a.ttft_slo_s), tpot_slo_s=np.full(a.n, a.tpot_slo_s),
                     e2e_slo_s=np.full(a.n, math.inf))
    # every met request finishes by arrival + TTFT + TPOT (O - 1): later slots cannot matter
    horizon = math.ceil((float(w.arrival_s.max()) + a.ttft_slo_s + 1.0 + (a.tpot_slo_s + 1e-3)
                             * float(np.max(w.output_tokens))) / se.step_s) + 2
    inst = Instance(w, se, num_slots=horizon)
    too_long = int(np.sum(w.work_tokens > se.kv_capacity_tokens))
    say(f"{a.n} requests, slot {se.step_s * 1e3:.1f} ms (B={B}, M={se.kv_capacity_tokens}), "
        f"horizon {horizon} slots; {int(request_windows(inst)['servable'].sum())} servable, "
        f"{too_long} longer than the KV capacity (counted as missed)")
    sched_slot: dict[str, float] = {}
    sched_lin: dict[str, float] = {}
    for name in names:
        try:
            s = simulate(w, se, make(name), max_steps=50_000_000)
        except Exception as exc:  # a policy that cannot run this instance is no candidate
            say(f"{name}: cannot run on the slotted engine ({type(exc).__name__}: {exc})")
            continue
        bad = violations(s, w, se)
        if bad:
            say(f"{name}: schedule rejected by checks.violations ({bad[0]})")
            continue
        sched_slot[name] = float(attainment(s, w))
        try:
            sched_lin[name] = float(attainment(simulate(w, lin, make(name),
                                                        max_steps=50_000_000), w))
        except Exception as exc:
            say(f"{name}: cannot run on {lin.name} ({type(exc).__name__})")
        say(f"{name}: slotted {sched_slot[name]:.4f}, linear {sched_lin.get(name, math.nan):.4f}")
    if not sched_slot:
        raise CLIError("no scheduler produced a valid schedule on the slotted engine")
    best_src = max(sched_slot, key=lambda k: sched_slot[k])
    best = sched_slot[best_src]
    budget = max(1.0, a.time_limit - (time.perf_counter() - t_start))
    say(f"slotted Lagrangian bound ({budget * 0.6:.0f} s), incumbent {best:.4f} ({best_src})")
    lb = slot_lagrangian_bound(inst, time_limit_s=0.6 * budget, target=best,
                               progress=lambda i, b: say(f"  iteration {i}: bound {b:.4f}"))
    say(f"linear-engine Lagrangian bound ({budget * 0.3:.0f} s)")
    best_lin = max(sched_lin.values(), default=0.0)
    tb = time_lagrangian_bound(w, lin, cell_s=max(se.step_s, 0.05), time_limit_s=0.3 * budget,
                               target=best_lin)
    cert = {"n": a.n, "best_value": best, "best_source": f"heuristic:{best_src}",
            "bound": lb.bound, "bound_source": f"slot_lagrangian ({lb.iterations} iterations, "
            f"{lb.stop})", "gap": _gap(lb.bound, best), "valid_for": lb.valid_for,
            "schedulers": sched_slot, "wall_s": time.perf_counter() - t_start,
            "engine": {"slot_step_s": se.step_s, "max_batch_tokens": B,
                       "kv_capacity_tokens": se.kv_capacity_tokens, "profile": a.profile},
            "requests_longer_than_kv": too_long,
            "linear_engine": {"valid_for": tb.valid_for, "bound": tb.bound,
                              "bound_source": f"time_lagrangian ({tb.iterations} iterations, "
                              f"{tb.stop})", "schedulers": sched_lin,
                              "best_value": best_lin,
                              "gap": _gap(tb.bound, best_lin)}}
    print(f"{a.n} requests of {a.trace} on {a.profile}: slot {se.step_s * 1e3:.1f} ms, B={B}")
    print(f"{'policy':<14}{'slotted':>10}{'gap':>9}{'linear':>10}{'gap':>9}")
    for name in sorted(sched_slot, key=lambda k: -sched_slot[k]):
        sl, li = sched_slot[name], sched_lin.get(name)
        print(f"{name:<14}{sl:>10.4f}{_num(_gap(lb.bound, sl)):>9}"
              f"{_num(li):>10}{_num(_gap(tb.bound, li) if li is not None else None):>9}")
    print(f"certified {best:.4f} ({best_src}), bound {lb.bound:.4f}, gap {_num(cert['gap'])}; "
          f"valid for {lb.valid_for}")
    print(f"linear engine: best {best_lin:.4f}, bound {tb.bound:.4f}, gap "
          f"{_num(cert['linear_engine']['gap'])}; valid for {tb.valid_for}")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "certificate.json"), "w") as f:
            json.dump(strict_json(cert), f, indent=2, default=float, allow_nan=False)
    return 0


#: The name of :func:`main` in 0.1 (``slo_opt.solvers.cli_solve``).
cli_solve = main
