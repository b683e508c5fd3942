"""SSJF reproduction (Qiu et al., AIOps'24, arXiv:2404.08509): ``slo-opt reproduce ssjf``.

Two modes (research/papers.md section 3 and decisions 23-28):

* ``faithful`` — a dedicated tiny *job-level* simulator that re-implements the authors' event
  loops (``model-serving/{fcfs,fcfs_dynamic,sjf,sjf_dynamic}.py`` of
  James-QiuHaoran/LLM-serving-with-proxy-models @4b866866): execution time
  ``0.1 s + 0.02 s x output tokens`` rounded to 10 ms, no batch slowdown (a static batch runs for
  its longest member, a continuous batch until its shortest member finishes, then everybody is
  re-queued and the batch re-formed), integer-second Poisson arrivals, sorted-gap Gamma arrivals,
  the FCFS batching-timeout wait (10 s) that SJF does not have, the authors' waiting-time
  counter, 50 jobs x 20 runs, rates 1..10 req/s, batch sizes 2..10, and the 25%-completion
  throughput (:func:`slo_opt.metrics.throughput_25pct_rps`). Output lengths are drawn from a
  piecewise-linear quantile function through the published vicuna-13b percentiles and the
  predictor is SSJF's 5-class confusion matrix (the released BERT predictions are not shipped).
* ``clean`` — our token-step simulator on the calibrated ``h100/llama-3.1-8b`` engine with the
  registered ``fcfs``/``sjf``/``ssjf`` schedulers (equally work-conserving), proper Poisson and
  Gamma (CV 2) arrivals and Azure-conversation-2023 lengths/arrivals, at offered loads relative to
  the engine's capacity.

Both report mean/p99 JCT, 25%-window and total throughput, SSJF vs FCFS vs oracle SJF vs a
mean-JCT lower bound (SRPT on one machine of speed ``B``, exact for no batching; plus
``slo_opt.solvers.jct_bounds`` when it is installed), over arrival rates, batch sizes and
predictor quality (random -> SSJF's matrix -> perfect classes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from slo_opt.metrics import throughput_25pct_rps
from slo_opt.request import Workload
from slo_opt.study.runrecord import git_sha, write_rows_csv
from slo_opt.workloads.predictors import ConfusionMatrixPredictor

try:
    from experiments._common import CHECKS, Progress, simulate_checked
except ImportError:  # run as a script or through ``slo-opt reproduce``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from experiments._common import CHECKS, Progress, simulate_checked

__all__ = [
    "VICUNA13B_QUANTILES",
    "faithful_arrivals",
    "main",
    "run_jobs",
    "srpt_mean_jct_s",
    "vicuna_lengths",
]

#: (quantile, output tokens) of vicuna-13b responses on LMSYS-Chat-1M after the authors'
#: ``1 < tokens < 512`` filter: p5 9, p25 41, p50 140, p75 294, p90 397, p99 502
#: (research/papers.md 3.4 [D]); end points 2 and 511 from the filter. Mean of the
#: interpolated distribution 179.5 tokens (published mean 176.8).
VICUNA13B_QUANTILES: tuple[tuple[float, float], ...] = (
    (0.0, 2.0), (0.05, 9.0), (0.25, 41.0), (0.50, 140.0), (0.75, 294.0), (0.90, 397.0),
    (0.99, 502.0), (1.0, 511.0),
)

#: SSJF's execution-time model (``job.py::create_jobs_from_llm_data``): seconds.
CONST_LATENCY_S = 0.1
PER_TOKEN_LATENCY_S = 0.02
#: ``util.py``: BATCH_WAIT_TIMEOUT (README says 5; the code uses 10).
BATCH_WAIT_TIMEOUT_S = 10.0
STARVATION_THRESHOLD_S = 100.0
STARVATION_FACTOR = 10.0

PAPER = {"jct_reduction_pct": (30.5, 39.6), "throughput_x": (2.2, 3.6)}


def vicuna_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """Output lengths sampled by inverse CDF from :data:`VICUNA13B_QUANTILES` (integers)."""
    q, x = np.array(VICUNA13B_QUANTILES).T
    return np.maximum(np.rint(np.interp(rng.random(n), q, x)), 2).astype(np.int64)


def faithful_arrivals(kind: str, n: int, rate: float, rng: np.random.Generator,
                      cv: float = 2.0) -> np.ndarray:
    """The authors' arrival generators (``job.py``), quirks included.

    ``poisson``: per-second Poisson counts, arrivals at integer seconds. ``gamma``: gamma gaps
    (shape ``1/cv^2``, scale ``cv^2/rate``) *sorted ascending* before the cumulative sum.
    """
    if kind == "poisson":
        counts = rng.poisson(rate, max(int(n / rate), 1))
        while counts.sum() < n:
            counts = np.append(counts, rng.poisson(rate, max(int(n / rate), 1)))
        return np.repeat(np.arange(counts.size, dtype=float), counts)[:n]
    if kind == "gamma":
        gaps = rng.gamma((1 / cv) ** 2, cv**2 / rate, n)
        return np.cumsum(np.sort(gaps))
    raise ValueError(f"unknown arrival kind {kind!r}")


def run_jobs(arrival_s: np.ndarray, exec_s: np.ndarray, *, policy: str, batching: str,
             batch_size: int, key_s: np.ndarray | None = None,
             guard_s: np.ndarray | None = None, timeout_s: float = BATCH_WAIT_TIMEOUT_S,
             threshold_s: float = STARVATION_THRESHOLD_S,
             factor: float = STARVATION_FACTOR, requeue_key: str = "original") -> np.ndarray:
    """The authors' job-level FCFS / SJF event loops; returns completion times.

    Parameters
    ----------
    arrival_s, exec_s : arrays
        Arrival and (true) execution times of the jobs, sorted by arrival.
    policy : {"fcfs", "sjf"}
        ``sjf`` orders by ``key_s`` (SSJF: predicted exec time) or, if ``key_s`` is None, by the
        true *remaining* exec time (oracle SJF, as the authors update ``execution_duration``).
    batching : {"none", "dynamic", "continuous"}
        Paper names; ``dynamic`` is the repo's STATIC_BATCHING (batch runs for its longest
        member), ``continuous`` the repo's DYNAMIC_BATCHING (runs until the shortest finishes).
    guard_s : array or None
        Exec time in the starvation guard's ``k x`` rule; None = true remaining time (authors).
    requeue_key : {"original", "remaining"}
        SSJF's key for jobs re-queued by continuous batching: the original prediction (the
        authors' ``sjf_dynamic.py``) or the predicted remaining time (prediction minus the
        time already served; an ablation).

    Notes
    -----
    FCFS waits until the last member of a full batch arrives, or ``timeout_s`` when the batch is
    not full (also after every re-batch in continuous mode); SJF never waits. We fix the authors'
    ``while curr_job_idx < len(job_list) - 1`` loop bound, which can drop the last job.
    """
    n = arrival_s.size
    rem = exec_s.astype(float).copy()
    fin = np.full(n, np.nan)
    cont = batching == "continuous"
    bsz = 1 if batching == "none" else batch_size
    if policy == "fcfs":
        q = deque(range(n))
        t = 0.0
        while q:
            if t < arrival_s[q[0]]:
                t = float(arrival_s[q[0]])
            batch = []
            while q and len(batch) < bsz and arrival_s[q[0]] <= t + timeout_s:
                batch.append(q.popleft())
            start = float(arrival_s[batch[-1]]) if len(batch) == bsz else t + timeout_s
            t = max(t, start)
            dur = min(rem[batch]) if cont else max(rem[batch])
            t += dur
            for j in batch:
                if rem[j] <= dur:
                    fin[j] = t
                else:
                    rem[j] = max(rem[j] - dur, 0.0)
                    q.appendleft(j)
        return fin
    if policy != "sjf":
        raise ValueError(f"unknown policy {policy!r}")
    if requeue_key not in ("original", "remaining"):
        raise ValueError(f"unknown requeue_key {requeue_key!r}")
    cw = np.zeros(n)
    t = prev = 0.0
    idx = 0
    q: list[int] = []
    while idx < n or q:
        if not q:
            t = max(t, float(arrival_s[idx]))
            while idx < n and arrival_s[idx] <= t:
                q.append(idx)
                idx += 1
        if key_s is None:
            key = rem
        elif requeue_key == "remaining":
            key = np.maximum(key_s - (exec_s - rem), 0.0)
        else:
            key = key_s
        by_wait = sorted(q, key=lambda j: cw[j], reverse=True)
        o = by_wait[0]
        g = rem[o] if guard_s is None else guard_s[o]
        q = by_wait if (cw[o] > threshold_s or cw[o] > g * factor) else sorted(q, key=lambda j: key[j])
        batch, q = q[:bsz], q[bsz:]
        dur = min(rem[batch]) if cont else max(rem[batch])
        t += dur
        while idx < n and arrival_s[idx] <= t:
            q.append(idx)
            idx += 1
        for j in batch:
            if rem[j] <= dur:
                fin[j] = t
            else:
                rem[j] = max(rem[j] - dur, 0.0)
                q.append(j)
        inc = t - prev
        prev = t
        for j in q:
            cw[j] += inc
    return fin


def srpt_mean_jct_s(arrival_s: np.ndarray, size_s: np.ndarray, speed: float = 1.0) -> float:
    """Mean flow time of preemptive SRPT on one machine of ``speed`` (optimal there).

    The solver layer's :func:`slo_opt.solvers.jct_bounds.srpt_mean_jct` on sizes
    ``size / speed``. A lower bound on the mean JCT of any schedule of ``speed`` unit-speed
    parallel servers (a batch of ``B`` non-slowing members, as in SSJF's model), combined by the
    caller with ``mean(size)``.
    """
    from slo_opt.solvers.jct_bounds import srpt_mean_jct

    if arrival_s.size == 0:
        return 0.0
    return srpt_mean_jct(arrival_s, np.asarray(size_s, float) / float(speed))


def _lower_bound(arrival_s: np.ndarray, exec_s: np.ndarray, servers: int) -> float:
    """Faithful-model bound: every job runs at least its exec time; B servers are no faster
    than one preemptive machine of speed B (SRPT optimal there)."""
    return max(float(np.mean(exec_s)), srpt_mean_jct_s(arrival_s, exec_s, float(servers)))


def _throughput(arrival_s: np.ndarray, finish_s: np.ndarray) -> float:
    w = Workload.from_arrays(np.sort(arrival_s), 1, 1)
    return throughput_25pct_rps(SimpleNamespace(finish_s=finish_s), w)  # type: ignore[arg-type]


def _row(base: dict[str, Any], arr: np.ndarray, fin: np.ndarray) -> dict[str, Any]:
    jct = fin - arr
    span = float(np.nanmax(fin) - arr.min())
    return {**base, "mean_jct_s": float(np.mean(jct)), "p99_jct_s": float(np.percentile(jct, 99)),
            "throughput_25pct_rps": _throughput(arr, fin),
            "throughput_total_rps": float(arr.size / span) if span > 0 else float("nan")}


# -- faithful mode ------------------------------------------------------------------------------


#: mean true length (tokens) of each of SSJF's five classes on vicuna-13b (papers.md 3.4 [D])
CLASS_MEAN_TOKENS = np.array([18.5, 87.4, 216.9, 380.0, 508.1])


def released_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(true output tokens, predicted class)`` of vicuna-13b rows of the authors' released
    5-class predictions (``model-serving/prediction/final/predictions_warmup_multi_cls_1000K.csv``
    of James-QiuHaoran/LLM-serving-with-proxy-models @4b866866, Apache-2.0; not shipped)."""
    import csv

    ln, cl = [], []
    with open(path, newline="") as f:
        rd = csv.DictReader(f)
        need = {"output_token_length", "predicted_length", "model"}
        if not need <= set(rd.fieldnames or ()):
            raise ValueError(f"{path}: expected columns {sorted(need)}, got {rd.fieldnames}")
        for r in rd:
            if r["model"] == "vicuna-13b":
                ln.append(int(r["output_token_length"]))
                cl.append(int(float(r["predicted_length"])))
    if not ln:
        raise ValueError(f"{path}: no vicuna-13b rows")
    c = np.asarray(cl, np.int64)
    if c.min() < 0 or c.max() > 4:
        raise ValueError(f"{path}: predicted classes outside 0..4")
    return np.asarray(ln, np.int64), c


def faithful(cfg: dict[str, Any], progress: Any = None) -> list[dict[str, Any]]:
    """Rows of the faithful job-level reproduction.

    ``lengths = "synthetic"``: vicuna-13b percentile lengths, predictions from the confusion
    matrix at each quality. ``lengths = "released"`` (only with ``cfg["released"]``): (true
    length, predicted class) pairs drawn from the authors' released predictions; SSJF keys on
    the class mapped to its mean length (``quality = "released"``) and, for comparison, on the
    confusion matrix (``quality = 0.5``) over the same lengths.
    """
    rows: list[dict[str, Any]] = []
    n = cfg["num_jobs"]
    rel = released_predictions(cfg["released"]) if cfg.get("released") else None
    sources = ["synthetic"] + (["released"] if rel is not None else [])
    for lsrc in sources:
        for arrival in cfg["arrivals"]:
            rates = cfg["rates"] if arrival == "poisson" else cfg["gamma_rates"]
            for ri, rate in enumerate(rates):
                for run in range(cfg["runs"]):
                    rng = np.random.default_rng([cfg["seed"], run, ri,
                                                 0 if arrival == "poisson" else 1])
                    arr = faithful_arrivals(arrival, n, rate, rng, cfg["gamma_cv"])
                    if rel is None or lsrc == "synthetic":
                        out = vicuna_lengths(n, rng)
                        cls = None
                    else:
                        idx = rng.integers(0, rel[0].size, n)
                        out, cls = rel[0][idx], rel[1][idx]
                    w = Workload.from_arrays(arr, 1, out)
                    exec_s = np.round(CONST_LATENCY_S + out * PER_TOKEN_LATENCY_S, 2)
                    preds = {}
                    quals = cfg["qualities"] if lsrc == "synthetic" else [0.5]
                    for q in quals:
                        p = ConfusionMatrixPredictor.with_quality(q, seed=int(rng.integers(2**31)))
                        preds[q] = np.round(CONST_LATENCY_S + p.predict_tokens(w)
                                            * PER_TOKEN_LATENCY_S, 2)
                    if cls is not None:
                        preds["released"] = np.round(CONST_LATENCY_S + CLASS_MEAN_TOKENS[cls]
                                                     * PER_TOKEN_LATENCY_S, 2)
                    for batching in cfg["batchings"]:
                        sizes = [1] if batching == "none" else cfg["batch_sizes"]
                        for b in sizes:
                            base = {"mode": "faithful", "lengths": lsrc, "arrival": arrival,
                                    "rate": rate, "run": run, "batching": batching,
                                    "batch_size": b}
                            kw = {"batching": batching, "batch_size": b,
                                  "timeout_s": cfg["timeout_s"]}
                            rows.append(_row({**base, "policy": "fcfs", "quality": ""}, arr,
                                             run_jobs(arr, exec_s, policy="fcfs", **kw)))
                            rows.append(_row({**base, "policy": "sjf", "quality": ""}, arr,
                                             run_jobs(arr, exec_s, policy="sjf", **kw)))
                            for q, pe in preds.items():
                                guard = None if cfg["guard"] == "true" else pe
                                rows.append(_row({**base, "policy": "ssjf", "quality": q}, arr,
                                                 run_jobs(arr, exec_s, policy="sjf", key_s=pe,
                                                          guard_s=guard,
                                                          requeue_key=cfg["requeue_key"],
                                                          **kw)))
                            lb = _lower_bound(arr, exec_s, b)
                            rows.append({**base, "policy": "lower_bound", "quality": "",
                                         "mean_jct_s": lb, "p99_jct_s": float("nan"),
                                         "throughput_25pct_rps": float("nan"),
                                         "throughput_total_rps": float("nan"),
                                         "bound_valid_for": f"job-level model, {b} server(s)"})
                if progress is not None:
                    progress.step(f"faithful {lsrc} {arrival} rate {rate}")
    return rows


# -- clean mode ---------------------------------------------------------------------------------


def _engine_bound(workload: Workload, engine: Any, max_seqs: int) -> dict[str, Any]:
    """Proven mean-JCT lower bound on the token-step engine (solver layer)."""
    from slo_opt.solvers.engine_jct import engine_mean_jct_bound

    bd = engine_mean_jct_bound(workload, engine, max_seqs)
    return {"mean_jct_s": bd.value_s, "bound_isolation_s": bd.isolation_s,
            "bound_srpt_s": bd.srpt_s, "bound_binding": bd.binding,
            "bound_valid_for": bd.valid_for}


def clean(cfg: dict[str, Any], progress: Any = None) -> list[dict[str, Any]]:
    """Rows of the clean token-step reproduction (every schedule checked by ``violations``)."""
    from slo_opt.models.catalog import get_engine
    from slo_opt.schedulers import make
    from slo_opt.schedulers.sjf import exec_time_estimate_s
    from slo_opt.workloads.generators import rescale_rate
    from slo_opt.workloads.traces import default_workload

    engine = get_engine(cfg["engine"])
    trace = default_workload()
    mean_exec = float(np.mean(exec_time_estimate_s(engine, trace, trace.output_tokens)))
    n = cfg["clean_requests"]
    rows: list[dict[str, Any]] = []
    for batching in cfg["batchings"]:
        sizes = [1] if batching == "none" else cfg["clean_batch_sizes"]
        for b in sizes:
            cap_rps = b / mean_exec
            for arrival in cfg["clean_arrivals"]:
                for li, load in enumerate(cfg["loads"]):
                    for run in range(cfg["clean_runs"]):
                        rng = np.random.default_rng([cfg["seed"], run, li, b, 7])
                        rate = load * cap_rps
                        if arrival == "azure":
                            s = int(rng.integers(0, len(trace) - n))
                            w = trace.subset(np.arange(s, s + n))
                            w = Workload.from_arrays(name="azure", **{
                                **w.columns(), "arrival_s": w.arrival_s - w.arrival_s[0]})
                            w = rescale_rate(w, rate)
                        else:
                            idx = rng.integers(0, len(trace), n)
                            gaps = (rng.exponential(1 / rate, n) if arrival == "poisson" else
                                    rng.gamma(1 / cfg["gamma_cv"] ** 2,
                                              cfg["gamma_cv"] ** 2 / rate, n))
                            w = Workload.from_arrays(np.cumsum(gaps), trace.prompt_tokens[idx],
                                                     trace.output_tokens[idx], name=arrival)
                        base = {"mode": "clean", "arrival": arrival, "rate": rate, "load": load,
                                "run": run, "batching": batching, "batch_size": b}
                        kw = {"batching": batching, "max_batch_seqs": b}
                        pols: list[tuple[str, Any, Any]] = [
                            ("fcfs", make("fcfs", **kw), ""), ("sjf", make("sjf", **kw), "")]
                        for q in cfg["clean_qualities"]:
                            pr = ConfusionMatrixPredictor.with_quality(q, seed=run)
                            pols.append(("ssjf", make("ssjf", predictor=pr, **kw), q))
                        for name, sch, q in pols:
                            s = simulate_checked(w, engine, sch)
                            rows.append(_row({**base, "policy": name, "quality": q}, w.arrival_s,
                                             s.finish_s))
                        rows.append({**base, "policy": "lower_bound", "quality": "",
                                     **_engine_bound(w, engine, b),
                                     "p99_jct_s": float("nan"),
                                     "throughput_25pct_rps": float("nan"),
                                     "throughput_total_rps": float("nan")})
                    if progress is not None:
                        progress.step(f"clean {batching} B={b} {arrival} load {load}")
    return rows


# -- tables and plots (pure functions of the rows) ----------------------------------------------


def _mean(rows: list[dict[str, Any]], key: str, **where: Any) -> float:
    v = [r[key] for r in rows if all(r.get(k) == x for k, x in where.items())]
    v = [x for x in v if isinstance(x, float | int) and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def headline(rows: list[dict[str, Any]], mode: str, ssjf_quality: Any = 0.5,
             lengths: str = "synthetic") -> list[dict[str, Any]]:
    """Per (arrival, batching, batch size): SSJF/SJF vs FCFS and the JCT bound.

    ``*_jct_reduction_pct`` = ``100 (1 - mean JCT / FCFS mean JCT)``, JCTs averaged over every
    rate (load) and run; ``ssjf_red_min/max_pct`` = the same per rate, smallest and largest;
    ``*_gap_pct`` = ``100 (mean JCT / lower bound - 1)`` (distance above the proven bound).
    """
    out = []
    mr = [r for r in rows if r["mode"] == mode and r.get("lengths", "synthetic") == lengths]
    keys = sorted({(r["arrival"], r["batching"], r["batch_size"]) for r in mr}, key=str)
    xkey = "rate" if mode == "faithful" else "load"
    for arrival, batching, b in keys:
        sel = {"arrival": arrival, "batching": batching, "batch_size": b}
        f = _mean(mr, "mean_jct_s", policy="fcfs", **sel)
        s = _mean(mr, "mean_jct_s", policy="ssjf", quality=ssjf_quality, **sel)
        o = _mean(mr, "mean_jct_s", policy="sjf", **sel)
        lb = _mean(mr, "mean_jct_s", policy="lower_bound", **sel)
        tf = _mean(mr, "throughput_25pct_rps", policy="fcfs", **sel)
        ts = _mean(mr, "throughput_25pct_rps", policy="ssjf", quality=ssjf_quality, **sel)
        per = []
        for x in sorted({r[xkey] for r in mr if all(r[k] == v for k, v in sel.items())}):
            fx = _mean(mr, "mean_jct_s", policy="fcfs", **sel, **{xkey: x})
            sx = _mean(mr, "mean_jct_s", policy="ssjf", quality=ssjf_quality, **sel, **{xkey: x})
            per.append(100 * (1 - sx / fx))
        out.append({"mode": mode, "lengths": lengths, "arrival": arrival, "batching": batching,
                    "batch_size": b, "ssjf_quality": ssjf_quality,
                    "fcfs_jct_s": f, "ssjf_jct_s": s, "sjf_jct_s": o, "lower_bound_jct_s": lb,
                    "ssjf_jct_reduction_pct": 100 * (1 - s / f),
                    "ssjf_red_min_pct": min(per) if per else float("nan"),
                    "ssjf_red_max_pct": max(per) if per else float("nan"),
                    "sjf_jct_reduction_pct": 100 * (1 - o / f),
                    "fcfs_gap_pct": 100 * (f / lb - 1), "ssjf_gap_pct": 100 * (s / lb - 1),
                    "sjf_gap_pct": 100 * (o / lb - 1),
                    "fcfs_p99_s": _mean(mr, "p99_jct_s", policy="fcfs", **sel),
                    "ssjf_p99_s": _mean(mr, "p99_jct_s", policy="ssjf", quality=ssjf_quality,
                                        **sel),
                    "throughput_x": ts / tf if tf else float("nan")})
    return out


def _plots(rows: list[dict[str, Any]], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return []
    files = []
    files += _reduction_plot(rows, out, plt)
    for mode in ("faithful", "clean"):
        mr = [r for r in rows if r["mode"] == mode and r.get("lengths", "synthetic") == "synthetic"]
        if not mr:
            continue
        xkey = "rate" if mode == "faithful" else "load"
        arrival = "poisson"
        combos = sorted({(r["batching"], r["batch_size"]) for r in mr}, key=str)
        fig, axes = plt.subplots(2, len(combos), figsize=(3.2 * len(combos), 5.5), squeeze=False)
        for c, (bat, b) in enumerate(combos):
            sel = [r for r in mr if r["batching"] == bat and r["batch_size"] == b
                   and r["arrival"] == arrival]
            xs = sorted({r[xkey] for r in sel})
            for pol, q, lab in (("fcfs", "", "FCFS"), ("ssjf", 0.5, "SSJF"), ("sjf", "", "SJF"),
                                ("lower_bound", "", "LB")):
                ys = [_mean(sel, "mean_jct_s", policy=pol, quality=q, **{xkey: x}) for x in xs]
                if np.isfinite(ys).any():
                    axes[0, c].plot(xs, ys, marker="o", label=lab)
                ts = [_mean(sel, "throughput_25pct_rps", policy=pol, quality=q, **{xkey: x})
                      for x in xs]
                if np.isfinite(ts).any():
                    axes[1, c].plot(xs, ts, marker="o", label=lab)
            axes[0, c].set_title(f"{bat} B={b}", fontsize=9)
            axes[1, c].set_xlabel("arrival rate (req/s)" if xkey == "rate"
                                  else "offered load (x capacity)")
        axes[0, 0].set_ylabel("mean JCT (s)")
        axes[1, 0].set_ylabel("throughput@25% (req/s)")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle(f"SSJF {mode} mode ({arrival} arrivals)")
        fig.tight_layout()
        f = out / f"ssjf_{mode}.png"
        fig.savefig(f, dpi=90)
        plt.close(fig)
        files.append(f.name)
        # predictor-quality sweep
        qs = sorted({r["quality"] for r in mr if r["policy"] == "ssjf"})
        if len(qs) > 1:
            fig, ax = plt.subplots(figsize=(4.5, 3.2))
            for bat in sorted({r["batching"] for r in mr}):
                sel = [r for r in mr if r["batching"] == bat and r["arrival"] == arrival]
                f0 = _mean(sel, "mean_jct_s", policy="fcfs")
                ys = [100 * (1 - _mean(sel, "mean_jct_s", policy="ssjf", quality=q) / f0) for q in qs]
                ax.plot(qs, ys, marker="o", label=bat)
                ax.axhline(100 * (1 - _mean(sel, "mean_jct_s", policy="sjf") / f0), ls=":", lw=0.8)
            ax.set_xlabel("predictor quality (0 random, 0.5 SSJF matrix, 1 perfect classes)")
            ax.set_ylabel("JCT reduction vs FCFS (%)")
            ax.legend(fontsize=7)
            fig.tight_layout()
            f = out / f"ssjf_{mode}_quality.png"
            fig.savefig(f, dpi=90)
            plt.close(fig)
            files.append(f.name)
    return files


def by_rate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over runs per (mode, lengths, arrival, batching, B, rate or load, policy,
    predictor quality): the compact table the report and figures are read from."""
    keys = ("mode", "lengths", "arrival", "batching", "batch_size", "rate", "load", "policy",
            "quality")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k, "") for k in keys), []).append(r)
    out = []
    for k, g in groups.items():
        row = dict(zip(keys, k))
        row["runs"] = len(g)
        for m in ("mean_jct_s", "p99_jct_s", "throughput_25pct_rps", "throughput_total_rps"):
            row[m] = _mean(g, m)
        out.append(row)
    return out


def _reduction_plot(rows: list[dict[str, Any]], out: Path, plt: Any) -> list[str]:
    """Faithful mode: SSJF's JCT change vs FCFS over the arrival rate, paper range shaded."""
    fr = [r for r in rows if r["mode"] == "faithful" and r["arrival"] == "poisson"]
    if not fr:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lo, hi = PAPER["jct_reduction_pct"]
    ax.axhspan(-hi, -lo, color="0.85", label=f"paper: -{lo}..-{hi} %")
    sizes = sorted({r["batch_size"] for r in fr if r["batching"] != "none"})
    b2 = 2 if 2 in sizes else (sizes[0] if sizes else 1)
    for lsrc, q, ls in (("synthetic", 0.5, "-"), ("released", "released", "--")):
        for bat, b, col in (("none", 1, "C0"), ("dynamic", b2, "C1"), ("continuous", b2, "C2")):
            sel = [r for r in fr if r.get("lengths", "synthetic") == lsrc and r["batching"] == bat
                   and r["batch_size"] == b]
            xs = sorted({r["rate"] for r in sel})
            if not xs:
                continue
            ys = [100 * (_mean(sel, "mean_jct_s", policy="ssjf", quality=q, rate=x)
                         / _mean(sel, "mean_jct_s", policy="fcfs", rate=x) - 1) for x in xs]
            lab = f"{bat} B={b}" + (" (authors' released predictions)" if lsrc == "released"
                                     else " (confusion-matrix predictor)")
            ax.plot(xs, ys, ls, marker="o", color=col, label=lab)
    ax.set_xlabel("arrival rate (req/s), Poisson, 50 jobs")
    ax.set_ylabel("SSJF mean JCT vs FCFS (%)")
    ax.set_title("SSJF JCT reduction over load (faithful job-level model)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    f = out / "ssjf_reduction.png"
    fig.savefig(f, dpi=90)
    plt.close(fig)
    return [f.name]


def _git_sha() -> str:
    return git_sha(__file__)


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    write_rows_csv(rows, path)


def config(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved configuration (full or ``--quick``)."""
    q = args.quick
    cfg = {
        "modes": ["faithful", "clean"] if args.mode == "both" else [args.mode],
        "seed": args.seed,
        "num_jobs": 50,
        "runs": 3 if q else (args.seeds or 20),
        "rates": [2, 8] if q else list(range(1, 11)),
        "gamma_rates": [0.05] if q else [0.01, 0.05, 0.09, 0.13, 0.17],
        "gamma_cv": 2.0,
        "arrivals": ["poisson"] if q else ["poisson", "gamma"],
        "batchings": ["none", "dynamic", "continuous"],
        "batch_sizes": [4] if q else [2, 4, 6, 8, 10],
        "qualities": [0.5] if q else [0.0, 0.25, 0.5, 0.75, 1.0],
        "guard": args.guard,
        "requeue_key": getattr(args, "requeue_key", "original"),
        "timeout_s": args.timeout_s,
        "engine": "h100/llama-3.1-8b",
        "clean_requests": 40 if q else 200,
        "clean_runs": 1 if q else (args.seeds or 5),
        "clean_batch_sizes": [8] if q else [4, 16],
        "clean_arrivals": ["poisson"] if q else ["poisson", "gamma", "azure"],
        "loads": [0.9] if q else [0.6, 0.9, 1.2],
        "clean_qualities": [0.5] if q else [0.0, 0.5, 1.0],
    }
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``slo-opt reproduce ssjf``)."""
    ap = argparse.ArgumentParser(
        prog="slo-opt reproduce ssjf", description=__doc__.split("\n")[0],
        epilog="Full run (default): faithful ~1.5 min (+1.5 min with --released-predictions), "
               "clean ~20 min on the shared 2-core machine (measured); --quick: < 1 min. "
               "Progress lines go to stderr.")
    ap.add_argument("--quick", action="store_true", help="small smoke-test configuration")
    ap.add_argument("--out", default="results/ssjf", help="output directory")
    ap.add_argument("--seeds", type=int, default=None, help="repetitions (default 20 / 5)")
    ap.add_argument("--seed", type=int, default=0, help="base seed")
    ap.add_argument("--mode", choices=["faithful", "clean", "both"], default="both")
    ap.add_argument("--guard", choices=["predicted", "true"], default="predicted",
                    help="exec time in SSJF's starvation guard (authors: true)")
    ap.add_argument("--timeout-s", type=float, default=BATCH_WAIT_TIMEOUT_S,
                    help="authors' BATCH_WAIT_TIMEOUT (FCFS idles this long on a partial batch)")
    ap.add_argument("--requeue-key", choices=["original", "remaining"], default="original",
                    help="SSJF key of jobs re-queued by continuous batching (authors: original)")
    ap.add_argument("--released-predictions", default=None, metavar="CSV",
                    help="the authors' predictions_warmup_multi_cls_1000K.csv: adds faithful "
                         "runs on its (true length, predicted class) pairs")
    args = ap.parse_args(argv)
    CHECKS["schedules"] = 0  # count this run's schedules only
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be >= 1")
    if not (args.timeout_s >= 0 and math.isfinite(args.timeout_s)):
        ap.error("--timeout-s must be finite and >= 0")
    if args.released_predictions is not None and not Path(args.released_predictions).is_file():
        ap.error(f"--released-predictions: no such file {args.released_predictions}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config(args)
    cfg["released"] = args.released_predictions
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    nf = (len(cfg["rates"]) + len(cfg["gamma_rates"]) * (len(cfg["arrivals"]) - 1)) * (
        2 if cfg["released"] else 1)
    nc = sum(len(cfg["clean_arrivals"]) * len(cfg["loads"]) * (
        1 if bat == "none" else len(cfg["clean_batch_sizes"])) for bat in cfg["batchings"])
    prog = Progress((nf if "faithful" in cfg["modes"] else 0)
                    + (nc if "clean" in cfg["modes"] else 0), "ssjf", quiet=args.quick)
    if "faithful" in cfg["modes"]:
        rows += faithful(cfg, prog)
    if "clean" in cfg["modes"]:
        rows += clean(cfg, prog)
    _write_csv(rows, out / "records.csv")
    _write_csv(by_rate(rows), out / "by_rate.csv")
    table = [h for m in cfg["modes"] for h in headline(rows, m)]
    if cfg["released"] and "faithful" in cfg["modes"]:
        table += headline(rows, "faithful", "released", lengths="released")
        table += headline(rows, "faithful", 0.5, lengths="released")
    _write_csv(table, out / "headline.csv")
    try:
        from importlib.metadata import version

        ver = version("slo_opt")
    except Exception:
        ver = ""
    meta = {"config": cfg, "version": ver, "git_sha": _git_sha(), "paper": PAPER,
            "wall_s": time.perf_counter() - t0, "python": sys.version.split()[0],
            "cwd": os.getcwd(), "schedules_checked": CHECKS["schedules"]}
    (out / "config.json").write_text(json.dumps(meta, indent=2, default=str))
    files = _plots(rows, out)
    print(f"{'mode':8} {'lengths':9} {'arrival':8} {'batching':10} {'B':>3} {'pred':>8} "
          f"{'FCFS':>8} {'SSJF':>8} {'SJF':>8} {'LB':>8} {'dJCT%':>7} {'range%':>13} "
          f"{'gap%':>6} {'thr x':>6}")
    for h in table:
        rng = f"{-h['ssjf_red_max_pct']:.1f}..{-h['ssjf_red_min_pct']:.1f}"
        print(f"{h['mode']:8} {h['lengths']:9} {h['arrival']:8} {h['batching']:10} "
              f"{h['batch_size']:>3} {h['ssjf_quality']!s:>8} "
              f"{h['fcfs_jct_s']:8.2f} {h['ssjf_jct_s']:8.2f} {h['sjf_jct_s']:8.2f} "
              f"{h['lower_bound_jct_s']:8.2f} {-h['ssjf_jct_reduction_pct']:7.1f} {rng:>13} "
              f"{h['ssjf_gap_pct']:6.1f} {h['throughput_x']:6.2f}")
    print(f"paper: JCT -{PAPER['jct_reduction_pct'][0]}..-{PAPER['jct_reduction_pct'][1]}%, "
          f"throughput x{PAPER['throughput_x'][0]}..x{PAPER['throughput_x'][1]}")
    print(f"{CHECKS['schedules']} token-step schedules checked by violations(); "
          f"wall {time.perf_counter() - t0:.0f} s")
    print(f"wrote {out}/records.csv, headline.csv, config.json, {', '.join(files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
