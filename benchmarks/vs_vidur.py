"""slo_opt vs Vidur: simulated requests/s and latency agreement on the same trace.

Runs the Azure 2023 conversation trace (or ``--trace``, optionally its first ``--limit``
requests) through slo_opt's ``vllm`` and ``orca`` schedulers and -- when Vidur can be run --
through Vidur's ``vllm`` and ``orca`` replica schedulers on the same requests. Reports the
simulated requests/s of both (requests / wall time), their ratio and the agreement of the
latency predictions (p50/p90 TTFT and E2E, relative difference). Writes ``vs_vidur.json`` to
``--out``. Vidur is an optional external tool (Microsoft Research, MIT licence, MLSys'24): it
is run as a subprocess of its own checkout and virtualenv and is never a test dependency.

Setting Vidur up (outside this repository)::

    # checkout (profiling CSVs of 4 MiB and more may be missing from a partial mirror)
    git clone https://github.com/microsoft/vidur /tmp/vidur     # or a local mirror
    python -m venv /tmp/vidur-venv
    /tmp/vidur-venv/bin/pip install numpy pandas scikit-learn wandb kaleido ddsketch \\
        plotly_express matplotlib seaborn fasteners pyyaml randomname
    python benchmarks/vs_vidur.py --vidur-root /tmp/vidur --vidur-python /tmp/vidur-venv/bin/python

Vidur is found through ``--vidur-root DIR`` (its checkout: run with ``cwd=DIR`` and
``PYTHONPATH=DIR``) and ``--vidur-python PATH`` (its venv's interpreter; default the one
running this script), or, without ``--vidur-root``, an importable ``vidur`` package (run from
the package's parent folder, where Vidur looks for ``data/profiling``).

Vidur's configuration (verified against vidur/config/config.py at commit 7d47513; its CLI is
the flattened dataclass tree, ``--<snake_case(class)>_<field>``): trace-replay generator
(CSV columns ``arrived_at`` [s], ``num_prefill_tokens``, ``num_decode_tokens``), one replica,
execution-time predictor ``--vidur-predictor`` (Vidur's default is its random forest; the
committed run used Vidur's ``linear_regression`` predictor, because training the forests did
not finish within 12 minutes on one core here), no plots or chrome trace. TTFT is
Vidur's ``prefill_e2e_time`` and E2E its ``request_e2e_time`` in ``request_metrics.csv``
(both seconds from arrival, as slo_opt's ``ttft_s``/``e2e_s``).

Which model and GPU: Vidur needs ``mlp.csv`` *and* ``attention.csv`` under
``data/profiling/compute/<device>/<model>/``. ``--vidur-model auto`` picks the first of
:data:`PAIRINGS` whose two files exist (the H100 Llama-2-7B profile first). Each pairing names
the slo_opt engine it is compared with (``pairing`` in the JSON). In the mirror used for the
committed results every current ``attention.csv`` (all >= 4 MiB) was missing; the only Vidur
attention profile at hand was the A100 Llama-2-70B TP2 one of Vidur's first commit
(``data/profiling/a100/attention.csv``, blob ee3dec7, same columns less
``attn_kv_cache_save``, which Vidur then takes as 0), copied to
``data/profiling/compute/a100/meta-llama/Llama-2-70b-hf/attention.csv`` of the checkout. So
the committed run compares Vidur a100/Llama-2-70b-hf TP2 (a100_pairwise_nvlink) with slo_opt's
roofline transfer ``a100/llama-2-70b`` at ``tensor_parallel=2``.

Alignment with slo_opt (and the mismatches that remain):

* Lengths: Vidur's trace replay caps prompt+output at ``max_tokens`` (default 4096, also the
  Llama-2 context) by shortening the prompt; the same capped lengths are given to slo_opt
  (``clipped_requests`` in the JSON).
* KV capacity: Vidur's ``num_blocks`` is set to slo_opt's KV capacity / 16 (16-token blocks in
  both); slo_opt's capacity is vLLM's memory model over the ``tp`` GPUs (``kv_capacity_tokens``).
* vllm: ``batch_size_cap`` 256 = ``max_num_seqs``, ``max_tokens_in_batch`` 8192 =
  ``max_num_batched_tokens``. Mismatch: Vidur's vllm is vLLM v0 (whole prompts, prefill-only
  or decode-only batches, token cap on ``len(batch) * max(tokens)``), slo_opt's ``vllm`` is v1
  (chunked prefill mixed with decodes, running first). Vidur's preemption is recompute, too.
* orca: ``batch_size_cap`` 256 = ``max_batch_seqs``. Mismatch: Vidur caps Orca's batch at the
  number of worst-case (``max_tokens``) requests its memory planner fits in the GPUs (13 for
  Llama-2-70B TP2 on 2 x A100-80GB, whatever ``num_blocks`` says), and
  reserves ``max_tokens`` KV tokens per request; slo_opt's orca reserves prompt + true output
  (``max_tokens=None``) in the KV capacity and keeps the engine's 8192-token cap per iteration,
  which Vidur's orca does not have. ``--orca-batch-cap 13`` gives slo_opt's orca Vidur's
  effective sequence cap (the committed run uses it; ``params`` in the JSON rows).
* Step times: Vidur predicts per-operator times with its execution-time predictor (random
  forests by default; linear regression in the committed run) fitted to its profiles
  (plus a 10% attention batching overhead for GQA models, its default); slo_opt uses the
  roofline named in ``pairing``. Neither is calibrated on the other, so latency agreement is a
  sanity check of the joint (step time x scheduling) behaviour, not a validation.
* Vidur's execution-time predictor trains once per (model, device, TP, scheduler) and caches
  the models in ``--vidur-cache`` (default ``<vidur-root>/cache``). Before each timed run the
  benchmark runs Vidur on the first ``--vidur-warm-requests`` requests to fill that cache
  (``warmup_wall_s``, with ``cache_was_cold``); the timed run (``wall_s``) then excludes the
  training but still includes Vidur's process start, imports, loading the cached models and
  writing its metrics CSVs.

* Load: at its own arrival rate (~5.5 req/s) azure-conv overloads one Llama-2-70B TP2 replica
  in both simulators (p50 TTFT of minutes, growing with the trace), so latencies compare
  queueing; ``--time-scale 6`` stretches arrivals (same requests, ~0.9 req/s) for both.

Usage: ``python benchmarks/vs_vidur.py [--trace azure-conv] [--limit N] [--time-scale F]
[--vidur-root DIR] [--vidur-python PATH] [--vidur-predictor P] [--out benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import json
import os
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
from slo_opt.models.kv import get_shape, kv_capacity_tokens
from slo_opt.workloads.traces import available_traces, load_trace

BLOCK = 16
MAX_TOKENS = 4096  # Vidur's trace-replay max_tokens (prompt + output), Llama-2's context
VLLM_MAX_BATCHED_TOKENS = 8192  # slo_opt make("vllm") defaults
MAX_SEQS = 256  # slo_opt vllm max_num_seqs and orca max_batch_seqs

# (vidur device, vidur model, tensor parallel, vidur network device, slo_opt profile, kind)
PAIRINGS = [
    ("h100", "meta-llama/Llama-2-7b-hf", 1, "h100_pairwise_nvlink", "h100/llama-2-7b",
     "roofline"),
    ("a100", "meta-llama/Meta-Llama-3-8B", 1, "a100_pairwise_nvlink", "a100/llama-3.1-8b",
     None),
    ("a100", "meta-llama/Llama-2-7b-hf", 1, "a100_pairwise_nvlink", "a100/llama-2-7b",
     "roofline"),
    ("a100", "meta-llama/Llama-2-70b-hf", 2, "a100_pairwise_nvlink", "a100/llama-2-70b",
     "roofline"),
]


def latency_stats(ttft: np.ndarray, e2e: np.ndarray) -> dict:
    ok = np.isfinite(ttft) & np.isfinite(e2e)
    return {"completed": int(ok.sum()),
            "p50_ttft_s": float(np.median(ttft[ok])), "p90_ttft_s": float(np.percentile(ttft[ok], 90)),
            "p50_e2e_s": float(np.median(e2e[ok])), "p90_e2e_s": float(np.percentile(e2e[ok], 90))}


def clip_lengths(w, max_tokens: int = MAX_TOKENS):
    """Vidur's trace-replay rule: prompt -= max(0, prompt + output - max_tokens), >= 1 each."""
    p = np.maximum(np.asarray(w.prompt_tokens, np.int64), 1)
    o = np.maximum(np.asarray(w.output_tokens, np.int64), 1)
    p2 = p - np.maximum(p + o - max_tokens, 0)
    if (p2 < 1).any():
        raise ValueError(f"a request has >= {max_tokens} output tokens; raise max_tokens")
    n = int((p2 != np.asarray(w.prompt_tokens)).sum() + (o != np.asarray(w.output_tokens)).sum())
    return w.replace(prompt_tokens=p2, output_tokens=o), n


def slo_engine(profile: str, kind: str | None, tp: int):
    """slo_opt engine for the pairing: KV capacity of vLLM's memory model over ``tp`` GPUs."""
    shape = get_shape(profile.split("/", 1)[1])
    if tp == 1:
        return get_engine(profile, kind=kind)
    from slo_opt.models.hardware import get_gpu

    gpu = get_gpu(profile.split("/", 1)[0])
    cap = kv_capacity_tokens(tp * gpu.memory_bytes, shape, 0.9,
                             activation_reserve_bytes=tp * 1.5 * 2**30, block_tokens=BLOCK)
    eng = get_engine(profile, kind=kind, kv_capacity_tokens=cap)
    return dataclasses.replace(eng, tensor_parallel=tp)


def run_slo_opt(w, eng, scheduler: str, **params) -> dict:
    sched = make(scheduler, **params)
    t0 = time.perf_counter()
    s = simulate(w, eng, sched)
    wall = time.perf_counter() - t0
    m = request_metrics(s, w)
    return {"simulator": "slo_opt", "scheduler": scheduler, "params": repr(sched),
            "requests": len(w), "wall_s": wall, "requests_per_s": len(w) / wall,
            "iterations": s.num_steps,
            **latency_stats(np.asarray(m["ttft_s"]), np.asarray(m["e2e_s"]))}


def find_vidur(root: str | None, python: str | None) -> tuple[Path | None, str, str]:
    """(working dir, interpreter, status)."""
    py = python or sys.executable
    if root:
        r = Path(root).resolve()
        if not (r / "vidur" / "main.py").is_file():
            return None, py, f"--vidur-root {r}: no vidur/main.py there"
        return r, py, f"vidur checkout {r} run with {py}"
    spec = importlib.util.find_spec("vidur")
    if spec is None or not spec.submodule_search_locations:
        return None, py, ("vidur not found: pass --vidur-root (a checkout of "
                          "https://github.com/microsoft/vidur) and --vidur-python (its venv)")
    r = Path(next(iter(spec.submodule_search_locations))).resolve().parent
    return r, py, f"vidur importable from {r}"


def pick_pairing(root: Path, model: str) -> tuple | None:
    for p in PAIRINGS:
        if model not in ("auto", p[1]):
            continue
        d = root / "data" / "profiling" / "compute" / p[0] / p[1]
        if (d / "mlp.csv").is_file() and (d / "attention.csv").is_file():
            return p
    return None


def write_trace(w, path: Path) -> None:
    with path.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["arrived_at", "num_prefill_tokens", "num_decode_tokens"])
        for a, p, o in zip(w.arrival_s, w.prompt_tokens, w.output_tokens):
            wr.writerow([f"{a:.9f}", int(p), int(o)])


def vidur_cmd(python: str, pairing: tuple, scheduler: str, trace: Path, out: Path,
              cache: Path, num_blocks: int, threads: int, predictor: str) -> list[str]:
    dev, model, tp, net = pairing[:4]
    sc = f"{scheduler}_scheduler_config"
    rf = f"{predictor}_execution_time_predictor_config"
    cmd = [python, "-m", "vidur.main",
           "--replica_config_device", dev, "--replica_config_model_name", model,
           "--replica_config_tensor_parallel_size", str(tp),
           "--replica_config_network_device", net,
           "--cluster_config_num_replicas", "1",
           "--request_generator_config_type", "trace_replay",
           "--trace_request_generator_config_trace_file", str(trace),
           "--trace_request_generator_config_max_tokens", str(MAX_TOKENS),
           "--replica_scheduler_config_type", scheduler,
           f"--{sc}_batch_size_cap", str(MAX_SEQS), f"--{sc}_block_size", str(BLOCK),
           f"--{sc}_num_blocks", str(num_blocks),
           "--execution_time_predictor_config_type", predictor,
           f"--{rf}_prediction_max_batch_size", str(MAX_SEQS),
           f"--{rf}_num_training_job_threads", str(threads),
           "--metrics_config_output_dir", str(out), "--metrics_config_cache_dir", str(cache),
           "--no-metrics_config_store_plots", "--no-metrics_config_enable_chrome_trace",
           "--no-metrics_config_store_utilization_metrics"]
    # prefill-attention predictions up to 8192-token prefills: with the default 4096 both
    # schedulers met prefills of 4163 / 4184 tokens (KeyError in attn_prefill) although every
    # request has prompt + output <= max_tokens = 4096
    cmd += [f"--{rf}_prediction_max_prefill_chunk_size", str(VLLM_MAX_BATCHED_TOKENS)]
    if scheduler == "vllm":
        cmd += [f"--{sc}_max_tokens_in_batch", str(VLLM_MAX_BATCHED_TOKENS),
                # compute predictions must cover the largest batch (num_tokens 1..this)
                f"--{rf}_prediction_max_tokens_per_request", str(VLLM_MAX_BATCHED_TOKENS)]
    return cmd


def _run(cmd, cwd: Path, timeout_s: float) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(cwd), WANDB_MODE="disabled")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout_s, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"vidur exited {p.returncode}: {(p.stderr or p.stdout).strip()[-800:]}")
    return wall, p.stdout + p.stderr


def run_vidur(w, scheduler: str, root: Path, python: str, pairing: tuple, num_blocks: int,
              cache: Path, warm_requests: int, threads: int, timeout_s: float,
              predictor: str) -> dict:
    """Warm Vidur's predictor cache on a prefix of the trace, then time the full run."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vs_vidur_") as d:
        d = Path(d)
        write_trace(w.head(min(warm_requests, len(w))), d / "warm.csv")
        warm_wall, log = _run(vidur_cmd(python, pairing, scheduler, d / "warm.csv", d / "warm",
                                        cache, num_blocks, threads, predictor), root, timeout_s)
        cold = "Trained model" in log  # Vidur logs each predictor it had to train

        write_trace(w, d / "trace.csv")
        wall, log = _run(vidur_cmd(python, pairing, scheduler, d / "trace.csv", d / "run",
                                   cache, num_blocks, threads, predictor), root, timeout_s)
        if "Trained model" in log:
            raise RuntimeError("vidur trained predictors in the timed run (cache not warm)")
        metrics = sorted((d / "run").rglob("request_metrics.csv"))
        if not metrics:
            raise RuntimeError("vidur wrote no request_metrics.csv")
        rows = list(csv.DictReader(metrics[-1].open()))
    ttft = np.array([float(r["prefill_e2e_time"] or "nan") for r in rows])
    e2e = np.array([float(r["request_e2e_time"] or "nan") for r in rows])
    return {"simulator": "vidur", "scheduler": scheduler, "requests": len(w), "wall_s": wall,
            "requests_per_s": len(w) / wall, "num_blocks": num_blocks,
            "warmup_requests": min(warm_requests, len(w)), "warmup_wall_s": warm_wall,
            "cache_was_cold": cold,
            "note": ("wall_s: the Vidur CLI process on the whole trace with its predictor "
                     "cache warm (start-up, imports, cached-model loading and metrics writing "
                     "included, training excluded); warmup_wall_s: the warm-up run on a "
                     "prefix, which trains the predictors when cache_was_cold"),
            **latency_stats(ttft, e2e)}


def agreement(r: dict, v: dict) -> dict:
    out = {}
    for k in ("p50_ttft_s", "p90_ttft_s", "p50_e2e_s", "p90_e2e_s"):
        out[k] = {"slo_opt": r[k], "vidur": v[k],
                  "rel_diff": (r[k] - v[k]) / v[k] if v[k] else float("nan")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default="azure-conv")
    ap.add_argument("--limit", type=int, default=None, help="first N requests only")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="multiply arrival times (both simulators), e.g. 6 so that one "
                         "Llama-2-70B TP2 replica is not overloaded by azure-conv")
    ap.add_argument("--vidur-root", default=os.environ.get("VIDUR_ROOT"),
                    help="Vidur checkout (default $VIDUR_ROOT, else an importable vidur)")
    ap.add_argument("--vidur-python", default=os.environ.get("VIDUR_PYTHON"),
                    help="interpreter of Vidur's venv (default $VIDUR_PYTHON, else this one)")
    ap.add_argument("--vidur-model", default="auto",
                    help="Vidur model name of a PAIRINGS entry, or auto")
    ap.add_argument("--vidur-cache", default=None,
                    help="Vidur predictor cache (default <vidur-root>/cache)")
    ap.add_argument("--vidur-warm-requests", type=int, default=50)
    ap.add_argument("--vidur-predictor", default="random_forrest",
                    choices=["random_forrest", "linear_regression"],
                    help="Vidur's execution-time predictor (random_forrest is its default)")
    ap.add_argument("--vidur-threads", type=int, default=1,
                    help="scikit-learn jobs for Vidur's one-off predictor training")
    ap.add_argument("--vidur-timeout-s", type=float, default=3600)
    ap.add_argument("--orca-batch-cap", type=int, default=None,
                    help="slo_opt orca's max_batch_seqs (e.g. Vidur's memory-planner cap, 13 "
                         "for Llama-2-70B TP2 on A100s, to align the two Orcas); default 256")
    ap.add_argument("--profile", default=None,
                    help="slo_opt profile when Vidur is not run (default h100/llama-3.1-8b)")
    a = ap.parse_args(argv)
    name = a.trace if a.trace in available_traces() else "default"
    if name != a.trace:
        print(f"{a.trace}: not available (set SLO_OPT_TRACES_DIR); using the shipped 'default' head")
    w = load_trace(name)
    if a.limit:
        w = w.head(a.limit)
    w, clipped = clip_lengths(w)
    if a.time_scale != 1.0:
        w = w.replace(arrival_s=np.asarray(w.arrival_s, float) * a.time_scale)

    root, py, why = find_vidur(a.vidur_root, a.vidur_python)
    pairing = pick_pairing(root, a.vidur_model) if root else None
    if root and pairing is None:
        why += (f"; no pairing with both mlp.csv and attention.csv under {root}/data/profiling"
                "/compute (see the module docstring)")
    ok = pairing is not None
    print(f"Vidur: {why}")
    if ok:
        profile, kind, tp = pairing[4], pairing[5], pairing[2]
    else:
        profile, kind, tp = a.profile or "h100/llama-3.1-8b", None, 1
    eng = slo_engine(profile, kind, tp)
    num_blocks = eng.kv_capacity_tokens // BLOCK
    cache = Path(a.vidur_cache) if a.vidur_cache else (root / "cache" if root else None)

    rows, agree = [], {}
    for sched in ("vllm", "orca"):
        params = ({"max_batch_seqs": a.orca_batch_cap}
                  if sched == "orca" and a.orca_batch_cap else {})
        r = run_slo_opt(w, eng, sched, **params)
        r["params"] = params
        rows.append(r)
        print(f"slo_opt {sched:<5} {r['requests']} req in {r['wall_s']:.2f} s = "
              f"{r['requests_per_s']:.0f} req/s (p50 TTFT {r['p50_ttft_s']:.3f} s, "
              f"p50 E2E {r['p50_e2e_s']:.2f} s)", flush=True)
        if not ok:
            continue
        try:
            v = run_vidur(w, sched, root, py, pairing, num_blocks, cache,
                          a.vidur_warm_requests, a.vidur_threads, a.vidur_timeout_s,
                          a.vidur_predictor)
        except Exception as exc:  # report and go on: slo_opt's numbers still stand
            print(f"vidur {sched} failed: {exc}")
            rows.append({"simulator": "vidur", "scheduler": sched, "error": str(exc)})
            continue
        rows.append(v)
        ratio = r["requests_per_s"] / v["requests_per_s"]
        agree[sched] = {"slo_opt_over_vidur_requests_per_s": ratio, **agreement(r, v)}
        print(f"vidur   {sched:<5} {v['requests']} req in {v['wall_s']:.2f} s = "
              f"{v['requests_per_s']:.1f} req/s (warm-up {v['warmup_requests']} req "
              f"{v['warmup_wall_s']:.1f} s, cache {'cold' if v['cache_was_cold'] else 'warm'});"
              f" slo_opt/vidur = x{ratio:.0f}", flush=True)
        for k, d in agree[sched].items():
            if isinstance(d, dict):
                print(f"    {k}: slo_opt {d['slo_opt']:.3f} vs vidur {d['vidur']:.3f} "
                      f"({d['rel_diff']:+.1%})")
    res = {"trace": name, "requests": len(w), "time_scale": a.time_scale,
           "clipped_requests": clipped,
           "max_tokens": MAX_TOKENS, "vidur_available": ok, "vidur_status": why,
           "pairing": {"vidur": ({"device": pairing[0], "model": pairing[1],
                                  "tensor_parallel": pairing[2], "network_device": pairing[3],
                                  "execution_time_predictor": a.vidur_predictor,
                                  "num_blocks": num_blocks, "block_size": BLOCK}
                                 if ok else None),
                       "slo_opt": {"profile": profile, "kind": kind or "native",
                                   "tensor_parallel": tp,
                                   "kv_capacity_tokens": int(eng.kv_capacity_tokens),
                                   "engine": repr(eng)}},
           "agreement": agree, "rows": rows,
           "machine": platform.platform(), "python": platform.python_version(),
           "cpu_count": os.cpu_count()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vs_vidur.json").write_text(json.dumps(res, indent=2))
    print(f"wrote {out / 'vs_vidur.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
