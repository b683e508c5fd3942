"""Metrics as pure functions of a :class:`~slo_opt.schedule.Schedule` and its workload.

The one place where TTFT, TPOT, e2e, SLO attainment and goodput are defined. The offline
formulations are *tested* to score their schedules exactly as these functions do (replay check).

Definitions
-----------
* TTFT = end of the step emitting output token 1 - arrival.
* TPOT = (finish - first token) / (output_tokens - 1): mean time per output token after the
  first (SLICE's and vLLM's definition); ``0`` for single-token outputs.
* e2e = JCT = finish - arrival (queueing included, SSJF's JCT).
* A request meets its SLO iff it finished, was not rejected, and TTFT, TPOT and e2e are each
  within target (+ :data:`SLO_TOL_S` float tolerance).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slo_opt.request import Workload
from slo_opt.schedule import EventKind, Schedule

__all__ = [
    "SLO_TOL_S",
    "SUMMARY_KEYS",
    "attainment",
    "goodput_tokens",
    "percentile",
    "request_metrics",
    "request_records",
    "summary",
    "throughput_25pct_rps",
]

#: Absolute tolerance when comparing a latency with its SLO (floating point only).
SLO_TOL_S = 1e-9


def request_metrics(schedule: Schedule, workload: Workload) -> dict[str, np.ndarray]:
    """Per-request latency columns and SLO flags.

    Returns
    -------
    dict
        ``arrival_s, first_scheduled_s, first_token_s, finish_s, queue_s, ttft_s, tpot_s, e2e_s,
        finished, rejected, ttft_met, tpot_met, e2e_met, slo_met`` (NaN where undefined).
    """
    if schedule.num_requests != len(workload):
        raise ValueError(f"schedule has {schedule.num_requests} requests, workload {len(workload)}")
    arr = workload.arrival_s
    ft = schedule.first_token_s
    fin = schedule.finish_s
    finished = schedule.finish_step >= 0
    out_tok = workload.output_tokens
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out_tok > 1, (fin - ft) / np.maximum(out_tok - 1, 1), 0.0)
    tpot = np.where(finished, tpot, np.nan)
    ttft = ft - arr
    e2e = fin - arr
    first_sched = np.full(len(workload), np.nan)
    a = schedule.allocs
    if len(a):
        first_step = np.full(len(workload), np.iinfo(np.int64).max)
        np.minimum.at(first_step, a.request, a.step)
        has = first_step < np.iinfo(np.int64).max
        first_sched[has] = schedule.steps.start_s[first_step[has]]
    ok = finished & ~schedule.rejected
    with np.errstate(invalid="ignore"):
        ttft_met = ok & (ttft <= workload.ttft_slo_s + SLO_TOL_S)
        tpot_met = ok & (tpot <= workload.tpot_slo_s + SLO_TOL_S)
        e2e_met = ok & (e2e <= workload.e2e_slo_s + SLO_TOL_S)
    return {
        "arrival_s": np.asarray(arr, float),
        "first_scheduled_s": first_sched,
        "first_token_s": ft,
        "finish_s": fin,
        "queue_s": first_sched - arr,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "finished": finished,
        "rejected": np.asarray(schedule.rejected, bool),
        "ttft_met": ttft_met,
        "tpot_met": tpot_met,
        "e2e_met": e2e_met,
        "slo_met": ttft_met & tpot_met & e2e_met,
    }


def attainment(schedule: Schedule, workload: Workload, *, weighted: bool = False,
               criterion: str = "slo") -> float:
    """Fraction of requests meeting their SLO (rejected and unfinished requests count as misses).

    Parameters
    ----------
    weighted : bool
        Weight each request by its ``utility`` (SLICE's objective, normalised).
    criterion : {"slo", "ttft", "tpot", "e2e"}
        Which flag to count.
    """
    n = len(workload)
    if n == 0:
        return 1.0
    met = request_metrics(schedule, workload)[f"{criterion}_met"]
    if weighted:
        u = workload.utility
        tot = float(u.sum())
        return float((u * met).sum() / tot) if tot > 0 else 1.0
    return float(met.sum() / n)


def goodput_tokens(schedule: Schedule, workload: Workload) -> int:
    """Output tokens of requests that met their SLO (the MILP's ``goodput`` objective)."""
    met = request_metrics(schedule, workload)["slo_met"]
    return int(workload.output_tokens[met].sum())


def percentile(x: np.ndarray, q: float) -> float:
    """``q``-th percentile of the finite values of ``x`` (NaN if none)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size else float("nan")


def throughput_25pct_rps(schedule: Schedule, workload: Workload, percentage: float = 25.0) -> float:
    """SSJF's early-window throughput: requests finished per second when ``percentage``% have finished.

    Notes
    -----
    Follows the SSJF authors' ``get_throughput(job_list, percentage=25)`` (papers.md 3.3):
    sort completion times, ``pos = int(percentile(range(n), 25))``, return
    ``pos / finish[pos]`` with times measured from the first arrival.
    """
    fin = np.sort(schedule.finish_s[np.isfinite(schedule.finish_s)])
    if fin.size == 0:
        return 0.0
    pos = int(np.percentile(np.arange(fin.size), percentage))
    t0 = float(workload.arrival_s[0]) if len(workload) else 0.0
    t = fin[pos] - t0
    return float(pos / t) if t > 0 else float("nan")


#: The keys of :func:`summary`, in its order.
SUMMARY_KEYS: tuple[str, ...] = (
    "num_requests", "num_finished", "num_rejected", "num_steps", "num_preemptions", "makespan_s",
    "attainment", "attainment_weighted", "ttft_attainment", "tpot_attainment", "goodput_tokens",
    "goodput_rps", "throughput_rps", "throughput_tokens_per_s",
    *(f"{s}_{k}" for k in ("ttft_s", "tpot_s", "e2e_s") for s in ("mean", "p50", "p90", "p99")))


def summary(schedule: Schedule, workload: Workload) -> dict[str, Any]:
    """Headline numbers of one run (JSON-serialisable)."""
    m = request_metrics(schedule, workload)
    n = len(workload)
    fin = m["finished"]
    span = schedule.makespan_s - (float(workload.arrival_s[0]) if n else 0.0)
    out_tokens = int(workload.output_tokens[fin].sum())
    hit = schedule.events.kind == int(EventKind.CACHE_HIT)
    n_hits = int(np.count_nonzero(hit))
    hit_tokens = int(schedule.events.tokens[hit].sum())
    pc = schedule.meta.get("prefix_cache") if isinstance(schedule.meta, dict) else None
    res: dict[str, Any] = {
        "num_requests": n,
        "num_finished": int(fin.sum()),
        "num_rejected": int(m["rejected"].sum()),
        "num_steps": schedule.num_steps,
        "num_preemptions": len(schedule.events) - n_hits,
        # prefix caching (vLLM's prefix-cache hit counters): hits from the event table,
        # the queried tokens from the simulator's counters when it recorded them
        "num_cache_hits": n_hits,
        "cache_hit_tokens": hit_tokens,
        "prefix_cache_hit_rate": (float(pc["hit_tokens"]) / pc["query_tokens"]
                                  if pc and pc.get("query_tokens") else 0.0),
        "makespan_s": schedule.makespan_s,
        "attainment": attainment(schedule, workload),
        "attainment_weighted": attainment(schedule, workload, weighted=True),
        "ttft_attainment": float(m["ttft_met"].mean()) if n else 1.0,
        "tpot_attainment": float(m["tpot_met"].mean()) if n else 1.0,
        "goodput_tokens": int(workload.output_tokens[m["slo_met"]].sum()),
        "goodput_rps": float(m["slo_met"].sum() / span) if span > 0 else float("nan"),
        "throughput_rps": float(fin.sum() / span) if span > 0 else float("nan"),
        "throughput_tokens_per_s": float(out_tokens / span) if span > 0 else float("nan"),
    }
    for k in ("ttft_s", "tpot_s", "e2e_s"):
        v = m[k]
        res[f"mean_{k}"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        for q in (50, 90, 99):
            res[f"p{q}_{k}"] = percentile(v, q)
    return res


def request_records(schedule: Schedule, workload: Workload, engine: Any = None
                    ) -> dict[str, np.ndarray]:
    """One row per request, the columns of ``records.csv``.

    ``reject_reason`` is empty for a request that was not rejected; for a rejected one it is
    ``exceeds_kv_capacity`` when its peak KV (``prompt + output - 1`` tokens) exceeds the
    ``engine``'s ``kv_capacity_tokens`` (the simulator's admission rule), else ``scheduler``
    (the policy rejected it); ``rejected`` when no engine is given.
    """
    m = request_metrics(schedule, workload)
    rej = np.asarray(m["rejected"], bool)
    reason = np.where(rej, "rejected", "").astype(object)
    if engine is not None and getattr(engine, "kv_capacity_tokens", None) is not None:
        peak = (np.asarray(workload.prompt_tokens, np.int64)
                + np.asarray(workload.output_tokens, np.int64) - 1)
        too_long = peak > int(engine.kv_capacity_tokens)
        reason[rej] = np.where(too_long[rej], "exceeds_kv_capacity", "scheduler")
    return {
        "id": np.arange(len(workload)),
        "arrival_s": m["arrival_s"],
        "prompt_tokens": np.asarray(workload.prompt_tokens),
        "output_tokens": np.asarray(workload.output_tokens),
        "first_token_s": m["first_token_s"],
        "finish_s": m["finish_s"],
        "ttft_s": m["ttft_s"],
        "tpot_s": m["tpot_s"],
        "e2e_s": m["e2e_s"],
        "slo_met": m["slo_met"],
        "rejected": m["rejected"],
        "class": np.asarray(workload.class_label),
        "reject_reason": reason,
    }
