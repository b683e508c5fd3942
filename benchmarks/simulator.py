"""Simulator throughput: simulated requests/s and iterations/s with and without fast-forward.

Two parts (issue 8):

1. **Traces**: ``vllm`` on the full Azure 2023 conversation and code traces and the Mooncake
   conversation and synthetic traces (overloaded, long prompts: long queues, chunked prefill,
   preemption) with the H100 Llama-3.1-8B engine profile, with and without fast-forward
   (without: on the first ``--no-ff-limit`` requests when given, labelled so). Traces not found
   (``../shared/traces`` or ``$SLO_OPT_TRACES_DIR``) are skipped.
2. **Scaling**: synthetic Poisson workloads of 10^3 .. ``--max-n`` requests (ShareGPT length
   table, ``--rate`` req/s, fixed seed) under ``vllm`` with fast-forward: wall time vs number of
   requests and the log-log slope (1 = linear growth). Without fast-forward only the two
   smallest sizes and the sizes up to ``--no-ff-max-n`` are run (measured speed-ups); a larger
   size without a step-by-step run is *extrapolated* linearly from the largest measured one
   and labelled ``extrapolated`` in the JSON.

3. **Policies** (issue 18): every registered scheduler (:data:`slo_opt.SCHEDULERS`, default
   parameters) on the Azure 2023 conversation and code traces and the Mooncake conversation
   trace (``--policy-traces``; the first ``--policy-limit`` requests of each when given,
   labelled ``requests`` in the JSON), with and without fast-forward: wall time, its ratio to
   ``vllm``'s on the same trace and mode, scheduler calls (``plan``) per request, iterations.
   The ``--profile-rows`` slowest rows are run again under cProfile and the functions with the
   largest own time are listed (``profiles`` in the JSON; profiling slows a run, so these
   timings are only proportions).

Usage: ``python benchmarks/simulator.py [--out benchmarks/results] [--max-n 1000000]
[--no-ff-limit N] [--no-ff-max-n N] [--rate 4.0] [--quick] [--parts traces,scaling,policies]
[--policy-limit N] [--profile-rows 3]``. The policies part writes ``simulator_policies.json``. Writes ``simulator.json`` and
``simulator_scaling.png``. Timings are wall-clock on whatever machine runs it (other jobs may
share the cores); the JSON records the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import platform
import pstats
import time
from pathlib import Path

import numpy as np

from slo_opt import SCHEDULERS, make, simulate
from slo_opt.metrics import summary
from slo_opt.models.catalog import get_engine
from slo_opt.request import SLO
from slo_opt.workloads.generators import EmpiricalLengths, synthetic, with_slo
from slo_opt.workloads.traces import available_traces, load_trace


class _Counting:
    """Counts ``plan`` calls (the simulator's decision points) of the wrapped scheduler."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def reset(self) -> None:
        self.inner.reset()
        self.calls = 0

    def plan(self, view):
        self.calls += 1
        return self.inner.plan(view)


def run(workload, engine, ff: bool, scheduler: str = "vllm") -> dict:
    sched = _Counting(make(scheduler))
    t0 = time.perf_counter()
    s = simulate(workload, engine, sched, fast_forward=ff)
    wall = time.perf_counter() - t0
    sm = summary(s, workload)
    return {"requests": len(workload), "fast_forward": ff, "wall_s": wall,
            "requests_per_s": len(workload) / wall, "plan_calls": sched.calls,
            "plan_calls_per_request": sched.calls / max(len(workload), 1),
            "iterations": s.num_steps,
            "iterations_per_s": s.num_steps / wall, "alloc_rows": len(s.allocs),
            "attainment": sm["attainment"], "p99_ttft_s": sm["p99_ttft_s"],
            "makespan_s": s.makespan_s}


def _print(tag: str, r: dict) -> None:
    print(f"{tag:<12} {r['requests']:>8} req  ff={r['fast_forward']!s:<5} {r['wall_s']:8.2f} s "
          f"{r['requests_per_s']:9.0f} req/s {r['iterations_per_s']:10.0f} it/s "
          f"({r['iterations']} iterations, {r['plan_calls_per_request']:.2f} plan calls/req)",
          flush=True)


def traces_part(eng, traces: list[str], no_ff_limit: int | None) -> list[dict]:
    out = []
    for name in traces:
        if name not in available_traces():
            print(f"{name}: not available (set SLO_OPT_TRACES_DIR); skipped")
            continue
        w = with_slo(load_trace(name), SLO(ttft_s=2.0, tpot_s=0.2))
        ff = run(w, eng, True)
        _print(name, ff)
        sub = w if no_ff_limit is None else w.head(no_ff_limit)
        noff = run(sub, eng, False)
        _print(name, noff)
        res = {"trace": name, "ff": ff, "no_ff": noff,
               "no_ff_subset": None if no_ff_limit is None else no_ff_limit,
               "speedup_requests_per_s": ff["requests_per_s"] / noff["requests_per_s"]}
        if no_ff_limit is not None:
            res["note"] = (f"no-FF measured on the first {no_ff_limit} requests; speed-up compares "
                           "req/s of the full FF run with req/s of that subset")
        print(f"{name}: fast-forward speed-up x{res['speedup_requests_per_s']:.1f}")
        out.append(res)
    return out


def scaling_part(eng, sizes: list[int], rate: float, no_ff_sizes: list[int], seed: int) -> dict:
    lengths = EmpiricalLengths.default()

    def sweep(ns: list[int], ff: bool) -> list[dict]:
        out = []
        for n in ns:
            w = synthetic(n, rate, lengths, np.random.default_rng(seed), name=f"poisson-{n}")
            out.append(run(w, eng, ff))
            _print("scaling", out[-1])
        return out

    rows = sweep(sizes, True)
    noff = sweep(no_ff_sizes, False)
    ns = np.array([r["requests"] for r in rows], float)
    ts = np.array([r["wall_s"] for r in rows], float)
    big = ns >= 1e4  # fixed start-up costs dominate the smallest size
    sel = big if big.sum() >= 2 else np.ones_like(big)
    slope = float(np.polyfit(np.log10(ns[sel]), np.log10(ts[sel]), 1)[0]) if sel.sum() >= 2 else math.nan
    res = {"rate_per_s": rate, "lengths": "EmpiricalLengths.default() (ShareGPT table)",
           "seed": seed, "ff": rows, "no_ff": noff, "loglog_slope_n_ge_1e4": slope}
    by_n = {r["requests"]: r for r in rows}
    res["speedup_measured"] = [
        {"requests": r["requests"], "ff_wall_s": by_n[r["requests"]]["wall_s"],
         "no_ff_wall_s": r["wall_s"], "speedup": r["wall_s"] / by_n[r["requests"]]["wall_s"]}
        for r in noff if r["requests"] in by_n]
    for sp in res["speedup_measured"]:
        print(f"fast-forward speed-up at {sp['requests']} requests (measured): x{sp['speedup']:.1f}")
    if noff and rows and noff[-1]["requests"] < rows[-1]["requests"]:
        ref = noff[-1]
        us_per_req = ref["wall_s"] / ref["requests"]
        big_ff = rows[-1]
        extrap = us_per_req * big_ff["requests"]
        res["no_ff_extrapolated"] = {
            "requests": big_ff["requests"], "wall_s": extrap, "extrapolated": True,
            "from_requests": ref["requests"],
            "speedup": extrap / big_ff["wall_s"],
            "note": "no-FF wall time extrapolated linearly from the largest measured no-FF size",
        }
        print(f"no-FF at {big_ff['requests']} requests (extrapolated from {ref['requests']}): "
              f"{extrap:.0f} s, fast-forward speed-up x{extrap / big_ff['wall_s']:.1f}")
    print(f"log-log slope of wall time vs requests (n >= 1e4): {slope:.3f}")
    return res


def _profile(workload, engine, scheduler: str, ff: bool, top: int = 12) -> list[dict]:
    """Own-time summary (cProfile) of one run: the ``top`` functions by own time."""
    pr = cProfile.Profile()
    pr.enable()
    simulate(workload, engine, make(scheduler), fast_forward=ff)
    pr.disable()
    st = pstats.Stats(pr, stream=io.StringIO())
    total = sum(v[2] for v in st.stats.values()) or 1.0  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    out = []
    for (fname, line, func), (_cc, nc, tt, ct, _callers) in rows:
        where = fname.split("/slo_opt/")[-1] if "/slo_opt/" in fname else fname.split("/")[-1]
        out.append({"function": f"{where}:{line}({func})", "calls": nc, "own_s": tt,
                    "cumulative_s": ct, "own_share": tt / total})
    return out


def policies_part(eng, traces: list[str], limit: int | None, profile_rows: int) -> dict:
    """Every registered scheduler on each trace, with and without fast-forward."""
    rows: list[dict] = []
    loaded = {}
    for name in traces:
        if name not in available_traces():
            print(f"{name}: not available (set SLO_OPT_TRACES_DIR); skipped")
            continue
        w = with_slo(load_trace(name), SLO(ttft_s=2.0, tpot_s=0.2))
        if limit is not None:
            w = w.head(limit)
        loaded[name] = w
        for ff in (True, False):
            ref = None
            for sched in SCHEDULERS:
                try:
                    r = run(w, eng, ff, sched)
                except Exception as exc:  # a policy that cannot run this trace: say so
                    print(f"{name} {sched} ff={ff}: {type(exc).__name__}: {exc}")
                    rows.append({"trace": name, "scheduler": sched, "fast_forward": ff,
                                 "error": f"{type(exc).__name__}: {exc}"})
                    continue
                r.update(trace=name, scheduler=sched)
                if sched == "vllm":
                    ref = r["wall_s"]
                r["wall_over_vllm"] = r["wall_s"] / ref if ref else math.nan
                rows.append(r)
                print(f"{name:<14} {sched:<12} ff={ff!s:<5} {r['wall_s']:8.2f} s "
                      f"x{r['wall_over_vllm']:5.1f} of vllm  "
                      f"{r['plan_calls_per_request']:8.2f} plan calls/req", flush=True)
    ok = [r for r in rows if "error" not in r]
    for r in ok:  # FF speed-up of each (trace, scheduler)
        other = next((o for o in ok if o["trace"] == r["trace"]
                      and o["scheduler"] == r["scheduler"] and not o["fast_forward"]), None)
        if r["fast_forward"] and other is not None:
            r["ff_speedup"] = other["wall_s"] / r["wall_s"]
    slow = sorted(ok, key=lambda r: -r["wall_s"])[:profile_rows]
    profiles = []
    for r in slow:
        print(f"profiling {r['trace']} {r['scheduler']} ff={r['fast_forward']}", flush=True)
        profiles.append({"trace": r["trace"], "scheduler": r["scheduler"],
                         "fast_forward": r["fast_forward"],
                         "top_own_time": _profile(loaded[r["trace"]], eng, r["scheduler"],
                                                  r["fast_forward"])})
        for f in profiles[-1]["top_own_time"][:6]:
            print(f"    {f['own_share']:6.1%} {f['calls']:>9} calls  {f['function']}")
    within3 = {t: all(r["wall_over_vllm"] <= 3.0 for r in ok
                      if r["trace"] == t and r["fast_forward"]) for t in loaded}
    return {"limit": limit, "rows": rows, "profiles": profiles,
            "every_scheduler_within_3x_of_vllm_ff": within3}


def plot(scal: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ns = [r["requests"] for r in scal["ff"]]
    ax.loglog(ns, [r["wall_s"] for r in scal["ff"]], "o-", label="fast-forward")
    if scal["no_ff"]:
        ax.loglog([r["requests"] for r in scal["no_ff"]], [r["wall_s"] for r in scal["no_ff"]],
                  "s-", label="step by step")
    ex = scal.get("no_ff_extrapolated")
    if ex:
        last = scal["no_ff"][-1]
        ax.loglog([last["requests"], ex["requests"]], [last["wall_s"], ex["wall_s"]], "s:",
                  color="C1", alpha=0.6, label="step by step (extrapolated)")
    ref = np.array([ns[0], ns[-1]], float)
    t0 = scal["ff"][-1]["wall_s"]
    ax.loglog(ref, t0 * ref / ns[-1], "k--", lw=0.8, label="linear")
    ax.set_xlabel("requests")
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"vllm, h100/llama-3.1-8b, Poisson {scal['rate_per_s']} req/s\n"
                 f"slope {scal['loglog_slope_n_ge_1e4']:.2f}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--profile", default="h100/llama-3.1-8b")
    ap.add_argument("--traces", default="azure-conv,azure-code,mooncake-conv,mooncake-synthetic")
    ap.add_argument("--no-ff-limit", type=int, default=None,
                    help="run the no-FF trace baselines on the first N requests only")
    ap.add_argument("--max-n", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ff-max-n", type=int, default=100_000,
                    help="largest synthetic size also run without fast-forward (measured)")
    ap.add_argument("--quick", action="store_true", help="small sizes only (smoke test)")
    ap.add_argument("--parts", default="traces,scaling,policies")
    ap.add_argument("--policy-traces", default="azure-conv,azure-code,mooncake-conv")
    ap.add_argument("--policy-limit", type=int, default=None,
                    help="policies part: the first N requests of each trace only")
    ap.add_argument("--profile-rows", type=int, default=3,
                    help="policies part: profile this many slowest rows")
    a = ap.parse_args(argv)
    eng = get_engine(a.profile)
    if a.quick:
        a.max_n = min(a.max_n, 3000)
        a.traces = "default"
    sizes = [n for n in (1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000) if n <= a.max_n]
    no_ff_sizes = [n for n in sizes if n in (1000, 10_000) or n <= a.no_ff_max_n]
    parts = {p for p in a.parts.split(",") if p}
    bad = parts - {"traces", "scaling", "policies"}
    if bad:
        ap.error(f"unknown --parts {sorted(bad)}; valid: traces, scaling, policies")
    machine = {"machine": platform.platform(), "python": platform.python_version(),
               "cpus": __import__("os").cpu_count()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if parts & {"traces", "scaling"}:
        traces = (traces_part(eng, [t for t in a.traces.split(",") if t], a.no_ff_limit)
                  if "traces" in parts else [])
        scal = scaling_part(eng, sizes, a.rate, no_ff_sizes, a.seed) if "scaling" in parts else {}
        res = {"profile": a.profile, "engine": repr(eng), "scheduler": "vllm", "traces": traces,
               "scaling": scal, **machine}
        (out / "simulator.json").write_text(json.dumps(res, indent=2))
        print(f"wrote {out / 'simulator.json'}")
        if scal:
            plot(scal, out / "simulator_scaling.png")
            print(f"wrote {out / 'simulator_scaling.png'}")
    if "policies" in parts:
        pol = policies_part(eng, [t for t in a.policy_traces.split(",") if t], a.policy_limit,
                            a.profile_rows)
        res = {"profile": a.profile, "engine": repr(eng), "policies": pol, **machine}
        (out / "simulator_policies.json").write_text(json.dumps(res, indent=2))
        print(f"wrote {out / 'simulator_policies.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
