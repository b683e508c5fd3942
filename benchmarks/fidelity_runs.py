"""Fidelity against real vLLM runs: simulate each run of ``vllm_runs/`` and compare per request.

Usage: ``python benchmarks/fidelity_runs.py [--traces ../shared/traces] [--out benchmarks/results]
[--quick]`` (also run by ``benchmarks/fidelity.py``).

For every run folder (``vllm_meta.json`` + ``vllm_requests.jsonl``) the run's own engine
configuration is read (GPU, model, ``max_num_batched_tokens``, ``max_num_seqs``, KV blocks,
block size, prefix caching); each request arrives at its ``queued_ts`` (the engine's clock; the
client's send times are batched by the busy engine loop). The simulator's vLLM v1 scheduler
runs the catalogue engine of that GPU and model; per request TTFT = first token - queued,
TPOT = (last - first) / (output - 1), e2e = last - queued, as in the run's README.

Reported per run and engine variant: the error of the p50/p90/p99 of TTFT, TPOT and e2e (sim /
real - 1), the mean absolute per-request error (seconds and relative), the two-sample
Kolmogorov-Smirnov statistic and p-value, and the band of each percentile error over KV
capacity +-1 block (a run whose queue is KV-bound is chaotic: one block moves which request is
preempted; a band, not one number). A step-level check reads the run's per-second time series:
in seconds without prompt tokens the decode step time is ``running / generation throughput``;
compared with the engine's pure-decode step at that batch and the KV-occupancy context.

Prefix caching: the run had it on. When the simulator's ``vllm`` scheduler exposes
``enable_prefix_caching``, it is switched on to match; otherwise the result says
``prefix_caching: "off (simulator lacks it)"``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.metrics import request_metrics
from slo_opt.models.catalog import get_engine, profiles_dir
from slo_opt.models.linear import LinearEngineModel
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate

ROOT = Path(__file__).resolve().parents[1]

#: The five coefficients the 4090 engine had before the builder (ms; simulators.md B.7,
#: fitted by hand to LLMServingSim's eager kernel sums). Kept only as the "before" row.
HAND_FIT_4090_MS = (17.11, 0.0417, 1.39e-4, 0.0708, 8.87e-6)

GPU_KEYS = {"rtx 4090": "rtx4090", "rtx pro 6000": "rtxpro6000", "h100": "h100",
            "h200": "h200", "a100": "a100"}
MODEL_KEYS = {"meta-llama/llama-3.1-8b": "llama-3.1-8b"}


@dataclasses.dataclass(frozen=True)
class RealRun:
    """One real vLLM run: its workload, measured per-request metrics and engine config."""

    name: str
    workload: Workload
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    gpu: str
    model: str
    max_num_batched_tokens: int
    max_num_seqs: int
    kv_blocks: int
    block_tokens: int
    prefix_caching: bool
    total_memory_bytes: int
    timeseries: tuple[dict[str, float], ...]


def load_run(folder: Path) -> RealRun:
    """Read a run folder (see the module docstring)."""
    meta = json.loads((folder / "vllm_meta.json").read_text())
    reqs = [json.loads(line) for line in (folder / "vllm_requests.jsonl").read_text().split("\n")
            if line.strip()]
    t0 = min(r["queued_ts"] for r in reqs)
    order = sorted(range(len(reqs)), key=lambda i: (reqs[i]["queued_ts"], i))
    reqs = [reqs[i] for i in order]
    arr = np.array([r["queued_ts"] - t0 for r in reqs])
    p = np.array([r["input_toks"] for r in reqs], dtype=np.int64)
    o = np.array([r["output_toks"] for r in reqs], dtype=np.int64)
    ttft = np.array([r["first_token_ts"] - r["queued_ts"] for r in reqs])
    e2e = np.array([r["last_token_ts"] - r["queued_ts"] for r in reqs])
    tpot = np.array([(r["last_token_ts"] - r["first_token_ts"]) / max(r["output_toks"] - 1, 1)
                     for r in reqs])
    dev = meta["hardware"]["device_name"].lower()
    gpu = next((v for k, v in GPU_KEYS.items() if k in dev), None)
    model = MODEL_KEYS.get(meta["model"].lower())
    if gpu is None or model is None:
        raise ValueError(f"{folder.name}: no catalogue engine for {dev!r} / {meta['model']!r}")
    kw = meta["engine_kwargs"]
    kv = meta["kv_cache"]
    ts: tuple[dict[str, float], ...] = ()
    tsp = folder / "vllm_timeseries.csv"
    if tsp.is_file():
        with open(tsp, newline="") as f:
            ts = tuple({k: float(v) for k, v in r.items()} for r in csv.DictReader(f))
    return RealRun(folder.name, Workload.from_arrays(arr, p, o, name=folder.name), ttft, tpot,
                   e2e, gpu, model, int(kw["max_num_batched_tokens"]), int(kw["max_num_seqs"]),
                   int(kv["num_gpu_blocks"]), int(kv["block_size"]),
                   bool(kv.get("enable_prefix_caching", False)),
                   int(meta["hardware"]["device_total_memory_bytes"]), ts)


def scheduler_for(run: RealRun, prefix_caching: bool | None = None) -> tuple[Any, str]:
    """vLLM v1 scheduler with the run's limits; prefix caching as the run had it if the
    simulator has it (``prefix_caching=False`` forces it off, for pinned comparisons)."""
    params: dict[str, Any] = {"max_num_batched_tokens": run.max_num_batched_tokens,
                              "max_num_seqs": run.max_num_seqs}
    cls = type(make("vllm"))
    names = {f.name for f in dataclasses.fields(cls)}
    state = "off (simulator lacks it)"
    if prefix_caching is False:
        state = "off (forced)"
    elif run.prefix_caching and "enable_prefix_caching" in names:
        params["enable_prefix_caching"] = True
        state = "on"
    elif not run.prefix_caching:
        state = "off (run had it off)"
    return make("vllm", **params), state


def engines_for(run: RealRun, kv_blocks: int) -> dict[str, Any]:
    """The engine variants compared on a run (built layerwise engine first)."""
    cap = kv_blocks * run.block_tokens
    name = f"{run.gpu}/{run.model}"
    kw = {"kv_capacity_tokens": cap, "max_batch_tokens": run.max_num_batched_tokens,
          "kv_block_tokens": run.block_tokens}
    out: dict[str, Any] = {}
    built = get_engine(name, kind="table", **kw)
    out["built (layerwise + measured graph gap)"] = built
    if hasattr(built, "graph_gap_s"):
        out["built, no graph correction"] = dataclasses.replace(
            built, graph_gap_s=0.0, eager_gap_s=0.0, graph_capture_sizes=())
    if hasattr(built, "warmup_s"):
        cal = profiles_dir() / "h200" / "calibration.json"
        extra = json.loads(cal.read_text())["cold_start"]["first_extra_s"] if cal.is_file() \
            else 0.0
        out["built + warm-up (H200 cold start)"] = dataclasses.replace(built, warmup_s=extra)
    out["built, linear fit"] = get_engine(name, kind="linear", **kw)
    out["roofline transfer"] = get_engine(name, kind="roofline", **kw)
    if run.gpu == "rtx4090":
        c0, cd, cc, cp, cq = (x * 1e-3 for x in HAND_FIT_4090_MS)
        out["hand fit (removed)"] = LinearEngineModel(
            name=name, c0_s=c0, c_decode_s=cd, c_ctx_s=cc, c_prefill_s=cp, c_prefill_sq_s=cq,
            kv_capacity_tokens=cap, max_batch_tokens=run.max_num_batched_tokens,
            kv_block_tokens=run.block_tokens)
    return out


def compare(run: RealRun, sim: dict[str, np.ndarray]) -> dict[str, Any]:
    """Percentile errors, per-request errors and KS test of one simulation."""
    from scipy.stats import ks_2samp

    out: dict[str, Any] = {}
    for key, real in (("ttft", run.ttft_s), ("tpot", run.tpot_s), ("e2e", run.e2e_s)):
        s = np.asarray(sim[f"{key}_s"], dtype=float)
        ok = np.isfinite(s) & np.isfinite(real) & (real > 0)
        r, s = real[ok], s[ok]
        pct = {f"p{q}_err_pct": 100.0 * (float(np.percentile(s, q)) / float(np.percentile(r, q))
                                          - 1.0) for q in (50, 90, 99)}
        ks = ks_2samp(s, r)
        out[key] = {**pct, "real_p50_s": float(np.percentile(r, 50)),
                    "sim_p50_s": float(np.percentile(s, 50)),
                    "mean_abs_err_s": float(np.mean(np.abs(s - r))),
                    "mean_abs_rel_err_pct": 100.0 * float(np.mean(np.abs(s / r - 1.0))),
                    "ks_stat": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
                    "n": int(ok.sum())}
    return out


def run_one(run: RealRun, engine: Any, prefix_caching: bool | None = None) -> dict[str, Any]:
    """Simulate ``run`` on ``engine``; errors and the prefix-caching state."""
    sched, state = scheduler_for(run, prefix_caching)
    w = run.workload
    warm = float(getattr(engine, "warmup_s", 0.0))
    if warm > 0:  # the engine starts its first step at warm: requests wait until then
        w = w.replace(arrival_s=np.maximum(w.arrival_s, warm))
    s = simulate(w, engine, sched)
    m = request_metrics(s, w)
    if warm > 0:  # latencies from the real arrival
        shift = w.arrival_s - run.workload.arrival_s
        m = {**m, "ttft_s": m["ttft_s"] + shift, "e2e_s": m["e2e_s"] + shift}
    res = compare(run, m)
    res["first25_ttft_p50_err_pct"] = 100.0 * (
        float(np.median(m["ttft_s"][:25])) / float(np.median(run.ttft_s[:25])) - 1.0)
    res["warmup_s"] = warm
    res["prefix_caching"] = state
    res["prefill_tokens_computed"] = int(np.sum(s.steps.prefill_tokens))
    res["prompt_tokens"] = int(np.sum(run.workload.prompt_tokens))
    res["steps"] = len(s.steps.start_s)
    return res


def decode_step_check(run: RealRun, engine: Any) -> dict[str, Any]:
    """Engine vs the run's decode step time in seconds with no prompt tokens (module doc)."""
    ts = run.timeseries
    pts = []
    cap = run.kv_blocks * run.block_tokens
    for a, b in itertools.pairwise(ts):
        if a["prompt_throughput"] == 0 and b["prompt_throughput"] == 0 and \
                b["gen_throughput"] > 0 and b["running"] > 0:
            running = 0.5 * (a["running"] + b["running"])
            real = running / b["gen_throughput"]
            ctx = 0.5 * (a["kv_cache_pct"] + b["kv_cache_pct"]) / 100.0 * cap
            bsz = max(1, round(running))
            pred = engine.step_time_s(BatchShape(decode_seqs=bsz, decode_context_tokens=int(ctx)))
            pts.append((real, pred))
    if not pts:
        return {"n": 0}
    r = np.array(pts)
    err = 100.0 * (r[:, 1] / r[:, 0] - 1.0)
    return {"n": len(pts), "median_err_pct": float(np.median(err)),
            "p10_err_pct": float(np.percentile(err, 10)),
            "p90_err_pct": float(np.percentile(err, 90)),
            "real_median_ms": 1e3 * float(np.median(r[:, 0])),
            "engine_median_ms": 1e3 * float(np.median(r[:, 1]))}


def evaluate(traces: Path, quick: bool = False) -> dict[str, Any]:
    """All runs under ``<traces>/vllm_runs``: variants, KV band, decode-step check."""
    out: dict[str, Any] = {}
    folder = traces / "vllm_runs"
    for d in sorted(p for p in folder.iterdir() if (p / "vllm_meta.json").is_file()):
        run = load_run(d)
        entry: dict[str, Any] = {"gpu": run.gpu, "model": run.model,
                                 "kv_blocks": run.kv_blocks,
                                 "max_num_batched_tokens": run.max_num_batched_tokens,
                                 "max_num_seqs": run.max_num_seqs,
                                 "run_prefix_caching": run.prefix_caching, "variants": {}}
        engines = engines_for(run, run.kv_blocks)
        if quick:
            engines = dict(list(engines.items())[:1])
        for label, eng in engines.items():
            entry["variants"][label] = run_one(run, eng)
            entry["variants"][label]["decode_step_check"] = decode_step_check(run, eng)
        head = next(iter(engines))
        band: dict[str, dict[str, list[float]]] = {}
        for dk in ((-1, 1) if not quick else ()):
            eng = engines_for(run, run.kv_blocks + dk)[head]
            r = run_one(run, eng)
            for key in ("ttft", "tpot", "e2e"):
                for q in ("p50_err_pct", "p90_err_pct", "p99_err_pct"):
                    band.setdefault(key, {}).setdefault(q, []).append(r[key][q])
        for key, d2 in band.items():
            for q, vals in d2.items():
                base = entry["variants"][head][key][q]
                d2[q] = [min([base, *vals]), max([base, *vals])]
        entry["kv_pm1_block_band"] = {"engine": head, **band}
        from slo_opt.models.kv import get_shape, kv_capacity_tokens

        entry["kv_formula_blocks"] = kv_capacity_tokens(
            run.total_memory_bytes, get_shape(run.model), 0.9, run.block_tokens,
            max_num_batched_tokens=run.max_num_batched_tokens,
            max_num_seqs=run.max_num_seqs) // run.block_tokens
        out[run.name] = entry
    return out


def print_table(res: dict[str, Any]) -> None:
    """Markdown table of the percentile errors."""
    for run, e in res.items():
        print(f"\n{run} ({e['gpu']}, KV {e['kv_blocks']} blocks; formula "
              f"{e.get('kv_formula_blocks')})")
        print("| engine | prefix caching | TTFT p50/p90/p99 % | TPOT p50/p90/p99 % | "
              "e2e p50/p90/p99 % | KS D (TTFT/TPOT/e2e) | decode-step check median % |")
        print("|---|---|---|---|---|---|---|")
        for label, v in e["variants"].items():
            def trip(k: str, v: dict = v) -> str:
                return "/".join(f"{v[k][q]:+.1f}" for q in ("p50_err_pct", "p90_err_pct",
                                                            "p99_err_pct"))
            ks = "/".join(f"{v[k]['ks_stat']:.2f}" for k in ("ttft", "tpot", "e2e"))
            dc = v.get("decode_step_check", {}).get("median_err_pct", math.nan)
            print(f"| {label} | {v['prefix_caching']} | {trip('ttft')} | {trip('tpot')} | "
                  f"{trip('e2e')} | {ks} | {dc:+.1f} |")
        band = e.get("kv_pm1_block_band", {})
        for key in ("ttft", "tpot", "e2e"):
            if key in band:
                print(f"  KV +-1 block band ({band['engine']}), {key}: " + ", ".join(
                    f"{q[:3]} [{lo:+.1f}, {hi:+.1f}]" for q, (lo, hi) in band[key].items()))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--quick", action="store_true", help="built engine only, no KV band")
    args = ap.parse_args(argv)
    res = evaluate(Path(args.traces), quick=args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity_runs.json").write_text(json.dumps(res, indent=1) + "\n")
    print_table(res)
    print("wrote", out / "fidelity_runs.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
