"""slo_opt vs Vidur: simulated requests/s on the same trace with the same scheduler family.

Runs the Azure 2023 conversation trace (or ``--trace``, optionally its first ``--limit``
requests) through slo_opt's ``vllm`` (vLLM v1 style) and ``orca`` schedulers on the H100
Llama-3.1-8B engine profile, and, **only when Vidur is importable**, through Vidur's
``vllm`` and ``orca`` replica schedulers on the same requests. Reports simulated requests/s of
both, their ratio, and -- when Vidur ran -- the agreement of their latency predictions (median
and p90 TTFT / E2E, relative difference). Writes ``vs_vidur.json`` to ``--out``.

Optional install (never a test dependency)::

    pip install vidur            # Microsoft Research, MLSys'24; Python >= 3.10
    # Vidur reads its profiling CSVs from its repository's data/ folder and model configs
    # that its PyPI build fetches from the Hugging Face hub; without network access or a
    # checkout of https://github.com/microsoft/vidur (run from its root) it cannot simulate.

Comparability: Vidur predicts step times with random-forest models fitted to its own A100/H100
profiles, slo_opt with the linear profile named by ``--profile``. Latency agreement is therefore
only meaningful as a sanity check of the same order of magnitude, unless both are calibrated
from the same measurements; the JSON says which engine models were used.

Usage: ``python benchmarks/vs_vidur.py [--trace azure-conv] [--limit N] [--out benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from slo_opt import make, simulate
from slo_opt.metrics import request_metrics
from slo_opt.models.catalog import get_engine
from slo_opt.traces import available_traces, load_trace


def latency_stats(ttft: np.ndarray, e2e: np.ndarray) -> dict:
    ok = np.isfinite(ttft) & np.isfinite(e2e)
    return {"p50_ttft_s": float(np.median(ttft[ok])), "p90_ttft_s": float(np.percentile(ttft[ok], 90)),
            "p50_e2e_s": float(np.median(e2e[ok])), "p90_e2e_s": float(np.percentile(e2e[ok], 90))}


def run_slo_opt(w, eng, scheduler: str) -> dict:
    t0 = time.perf_counter()
    s = simulate(w, eng, make(scheduler))
    wall = time.perf_counter() - t0
    m = request_metrics(s, w)
    return {"simulator": "slo_opt", "scheduler": scheduler, "requests": len(w), "wall_s": wall,
            "requests_per_s": len(w) / wall, "iterations": s.num_steps,
            **latency_stats(np.asarray(m["ttft_s"]), np.asarray(m["e2e_s"]))}


def vidur_status() -> tuple[bool, str]:
    if importlib.util.find_spec("vidur") is None:
        return False, ("vidur is not installed (optional: `pip install vidur`; it needs network "
                       "access to the Hugging Face hub and its repository's profiling data)")
    return True, "vidur importable"


def run_vidur(w, scheduler: str, workdir: Path, timeout_s: float) -> dict:
    """Run Vidur's CLI on the same requests (trace-replay request generator)."""
    trace = workdir / "trace.csv"
    with trace.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["arrived_at", "num_prefill_tokens", "num_decode_tokens"])
        for a, p, o in zip(w.arrival_s, w.prompt_tokens, w.output_tokens):
            wr.writerow([f"{a:.9f}", int(p), int(o)])
    out = workdir / f"vidur_{scheduler}"
    cmd = [sys.executable, "-m", "vidur.main",
           "--replica_config_device", "h100", "--replica_config_model_name",
           "meta-llama/Meta-Llama-3-8B",
           "--cluster_config_num_replicas", "1",
           "--request_generator_config_type", "trace_replay",
           "--trace_request_generator_config_trace_file", str(trace),
           "--replica_scheduler_config_type", {"vllm": "vllm", "orca": "orca"}[scheduler],
           "--metrics_config_output_dir", str(out), "--no-metrics_config_store_plots"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"vidur exited {p.returncode}: {p.stderr.strip()[-600:]}")
    metrics = sorted(out.rglob("request_metrics.csv"))
    res = {"simulator": "vidur", "scheduler": scheduler, "requests": len(w), "wall_s": wall,
           "requests_per_s": len(w) / wall,
           "note": "wall time of the Vidur CLI process (includes its start-up)"}
    if metrics:
        rows = list(csv.DictReader(metrics[-1].open()))
        ttft = np.array([float(r.get("prefill_e2e_time", "nan")) for r in rows])
        e2e = np.array([float(r.get("request_e2e_time", "nan")) for r in rows])
        res.update(latency_stats(ttft, e2e))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default="azure-conv")
    ap.add_argument("--limit", type=int, default=None, help="first N requests only")
    ap.add_argument("--profile", default="h100/llama-3.1-8b")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--vidur-timeout-s", type=float, default=3600)
    a = ap.parse_args(argv)
    name = a.trace if a.trace in available_traces() else "default"
    if name != a.trace:
        print(f"{a.trace}: not available (set SLO_OPT_TRACES_DIR); using the shipped 'default' head")
    w = load_trace(name)
    if a.limit:
        w = w.head(a.limit)
    eng = get_engine(a.profile)
    ok, why = vidur_status()
    print(f"Vidur: {why}")
    rows = []
    for sched in ("vllm", "orca"):
        r = run_slo_opt(w, eng, sched)
        rows.append(r)
        print(f"slo_opt {sched:<5} {r['requests']} req in {r['wall_s']:.2f} s = "
              f"{r['requests_per_s']:.0f} req/s (p50 TTFT {r['p50_ttft_s']:.3f} s, "
              f"p50 E2E {r['p50_e2e_s']:.2f} s)")
        if ok:
            try:
                with tempfile.TemporaryDirectory() as d:
                    v = run_vidur(w, sched, Path(d), a.vidur_timeout_s)
                rows.append(v)
                ratio = r["requests_per_s"] / v["requests_per_s"]
                print(f"vidur   {sched:<5} {v['requests_per_s']:.0f} req/s; slo_opt/vidur = x{ratio:.1f}")
                if "p50_e2e_s" in v:
                    for k in ("p50_ttft_s", "p90_ttft_s", "p50_e2e_s", "p90_e2e_s"):
                        rel = (r[k] - v[k]) / v[k] if v[k] else float("nan")
                        print(f"    {k}: slo_opt {r[k]:.3f} vs vidur {v[k]:.3f} ({rel:+.1%})")
            except Exception as exc:  # report and go on: slo_opt's numbers still stand
                why = f"vidur failed: {exc}"
                print(why)
                rows.append({"simulator": "vidur", "scheduler": sched, "error": str(exc)})
    res = {"trace": name, "requests": len(w), "profile": a.profile, "engine": repr(eng),
           "vidur_available": ok, "vidur_status": why, "rows": rows,
           "machine": platform.platform(), "python": platform.python_version()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vs_vidur.json").write_text(json.dumps(res, indent=2))
    print(f"wrote {out / 'vs_vidur.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
