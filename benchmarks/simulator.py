"""Simulator throughput: simulated requests/s and iterations/s of `vllm` on the Azure conv 2023
trace (19,366 requests) with the H100 Llama-3.1-8B engine profile, with and without fast-forward.

Usage: ``python benchmarks/simulator.py [--out benchmarks/results] [--no-ff-limit N]``.
Without fast-forward the run is limited to the first N requests (default 3000) and labelled so.
Writes ``simulator.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from slo_opt import make, simulate
from slo_opt.metrics import summary
from slo_opt.models.catalog import get_engine
from slo_opt.request import SLO
from slo_opt.traces import load_trace
from slo_opt.workload import with_slo


def run(workload, engine, ff: bool) -> dict:
    t0 = time.perf_counter()
    s = simulate(workload, engine, make("vllm"), fast_forward=ff)
    wall = time.perf_counter() - t0
    sm = summary(s, workload)
    return {"requests": len(workload), "fast_forward": ff, "wall_s": wall,
            "requests_per_s": len(workload) / wall, "iterations": s.num_steps,
            "iterations_per_s": s.num_steps / wall, "alloc_rows": len(s.allocs),
            "attainment": sm["attainment"], "p99_ttft_s": sm["p99_ttft_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--trace", default="azure-conv")
    ap.add_argument("--profile", default="h100/llama-3.1-8b")
    ap.add_argument("--no-ff-limit", type=int, default=3000)
    a = ap.parse_args(argv)
    w = with_slo(load_trace(a.trace), SLO(ttft_s=2.0, tpot_s=0.2))
    eng = get_engine(a.profile)
    rows = [run(w, eng, True), run(w.head(a.no_ff_limit), eng, True),
            run(w.head(a.no_ff_limit), eng, False)]
    speedup = rows[1]["requests_per_s"] / rows[2]["requests_per_s"]
    res = {"trace": a.trace, "profile": a.profile, "engine": repr(eng), "rows": rows,
           "fast_forward_speedup_on_subset": speedup, "machine": platform.platform(),
           "python": platform.python_version()}
    for r in rows:
        print(f"{r['requests']:>6} requests  ff={r['fast_forward']!s:<5}  {r['wall_s']:7.2f} s  "
              f"{r['requests_per_s']:9.0f} req/s  {r['iterations_per_s']:9.0f} it/s  "
              f"({r['iterations']} iterations)")
    print(f"fast-forward speed-up on the first {a.no_ff_limit} requests: x{speedup:.1f}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulator.json").write_text(json.dumps(res, indent=2))
    print(f"wrote {out / 'simulator.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
