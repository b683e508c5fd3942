"""SLICE reproduction: SLO attainment and completion time over load, on the SLICE edge profile
and on our H100 profile (``slo-opt reproduce slice``).

SLICE (Zhou et al., arXiv:2510.18544) claims up to 35x SLO attainment and 3.4x task completion
time versus Orca and FastServe on an edge GPU. Studies (each a set of flat rows):

* ``load`` -- SLICE (faithful defaults), SLICE-skip, SLICE-tuned (spread mask, ``ratio`` 0.85:
  a 15% margin for the prefill time that ``T_period`` ignores), Orca, FastServe, vLLM and EDF on the edge workload
  (:mod:`slo_opt.slice_workload`) over a Poisson load sweep, on
  ``slice-edge/chatglm2-6b-int4`` (the paper's published ``l(k)``) and ``h100/llama-3.1-8b``;
* ``slope`` -- the same at one heavy load on affine engines ``l(k) = l(1) + s (k - 1)``, sweeping
  the slope ``s`` (where SLICE's gain comes from);
* ``decisions`` -- each recorded SLICE selection vs the per-cycle admission MILP's optimum;
* ``bound`` -- small instances on a slotted engine: every policy's utility vs the offline
  whole-horizon utility MILP (an upper bound).

Baselines on the edge use the same batch cap as SLICE (16 tasks: the paper's engine and the
published ``l(k)`` table stop at 15-16); on the H100 they use 256.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.runrecord import write_rows_csv

__all__ = ["main", "run"]

EDGE = "slice-edge/chatglm2-6b-int4"
H100 = "h100/llama-3.1-8b"
CLASSES = ("rt_short", "rt_long", "nrt_short", "nrt_long")


def _policies(profile: str, names: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    cap = 16 if profile == "edge" else 256
    table = {
        "slice": ("slice", {}),
        "slice_skip": ("slice", {"stop_rule": "skip"}),
        "slice_tuned": ("slice", {"placement": "spread", "ratio": 0.85}),
        "orca": ("orca", {"max_batch_seqs": cap}),
        "fastserve": ("fastserve", {"max_batch_seqs": cap}),
        "vllm": ("vllm", {"max_num_seqs": cap}),
        "edf": ("edf", {"max_batch_seqs": cap}),
    }
    return {k: table[k] for k in names}


def _metrics(sched: Any, w: Any) -> dict[str, Any]:
    from slo_opt.metrics import request_metrics

    m = request_metrics(sched, w)
    met = m["slo_met"]
    lab = np.asarray(w.class_label, dtype=object)
    u = w.utility
    e2e = m["e2e_s"]
    row: dict[str, Any] = {
        "attainment": float(met.mean()),
        "attainment_weighted": float((u * met).sum() / u.sum()),
        "utility": float((u * met).sum()),
        "mean_completion_s": float(np.nanmean(e2e)) if np.isfinite(e2e).any() else math.nan,
        "p99_completion_s": float(np.nanpercentile(e2e, 99)) if np.isfinite(e2e).any() else math.nan,
        "num_rejected": int(m["rejected"].sum()),
        "num_unfinished": int((~m["finished"] & ~m["rejected"]).sum()),
    }
    rt = np.array([str(x).startswith("rt") for x in lab])
    for name, sel in (("rt", rt), ("nrt", ~rt), *((c, lab == c) for c in CLASSES)):
        row[f"attainment_{name}"] = float(met[sel].mean()) if sel.any() else math.nan
        v = e2e[sel]
        row[f"mean_completion_{name}_s"] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
    return row


def _affine_engine(slope_s: float, l1_s: float, edge: Any) -> Any:
    from slo_opt.models.linear import LinearEngineModel

    return LinearEngineModel(
        name=f"affine-slope-{slope_s * 1e3:g}ms", c0_s=l1_s - slope_s, c_decode_s=slope_s,
        c_prefill_s=float(edge.prefill_fallback_s_per_token),
        kv_capacity_tokens=int(edge.kv_capacity_tokens), kv_block_tokens=int(edge.kv_block_tokens),
        max_batch_tokens=int(edge.max_batch_tokens))


def run(cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """All studies; returns ``{"records": ..., "decisions": ..., "bound": ...}`` flat rows."""
    from slo_opt.models.catalog import get_engine
    from slo_opt.schedulers import make
    from slo_opt.simulator import simulate
    from slo_opt.slice_workload import edge_workload
    from slo_opt.solvers.slice_milp import cycle_instance_from_decision, solve_cycle

    records: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    engines = {"edge": get_engine(EDGE), "h100": get_engine(H100)}

    def one(study: str, profile: str, engine: Any, rate: float, seed: int, extra: dict) -> None:
        w = edge_workload(cfg["num_requests"], rate, np.random.default_rng([cfg["seed"], seed]))
        for label, (reg, params) in _policies(profile, cfg["schedulers"]).items():
            rec = reg == "slice" and study == "load"
            s = make(reg, **params, **({"record_decisions": True} if rec else {}))
            t0 = time.perf_counter()
            sched = simulate(w, engine, s)
            row = {"study": study, "profile": profile, "rate_per_s": rate, "seed": seed,
                   "scheduler": label, **extra, **_metrics(sched, w),
                   "sim_wall_s": time.perf_counter() - t0}
            records.append(row)
            if rec:
                for d in s.decisions[: cfg["max_decisions"]]:
                    opt = solve_cycle(cycle_instance_from_decision(d))
                    decisions.append({
                        "profile": profile, "rate_per_s": rate, "seed": seed, "scheduler": label,
                        "num_candidates": len(d["candidates"]),
                        "greedy_utility": d["selected_utility"], "milp_utility": opt.utility,
                        "milp_status": opt.status, "milp_wall_s": opt.wall_s})

    for profile in cfg["profiles"]:
        for rate in cfg["rates"][profile]:
            for seed in range(cfg["seeds"]):
                one("load", profile, engines[profile], rate, seed, {"slope_ms": math.nan})
    edge = engines["edge"]
    for slope_ms in cfg["slopes_ms"]:
        eng = _affine_engine(slope_ms * 1e-3, 0.014, edge)
        for seed in range(cfg["seeds"]):
            one("slope", "edge", eng, cfg["slope_rate"], seed, {"slope_ms": slope_ms})
    return {"records": records, "decisions": decisions, "bound": _bound_study(cfg)}


def _bound_study(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Small slotted instances: each policy's utility vs the whole-horizon MILP bound."""
    from slo_opt.metrics import request_metrics
    from slo_opt.models.slot import SlotEngine
    from slo_opt.request import Workload
    from slo_opt.schedulers import make
    from slo_opt.simulator import simulate
    from slo_opt.solvers.slice_milp import solve_horizon

    eng = SlotEngine(step_s=0.05, max_batch_tokens=48, kv_capacity_tokens=1024)
    rows = []
    for inst in range(cfg["bound_instances"]):
        rng = np.random.default_rng([cfg["seed"], 1000 + inst])
        n = cfg["bound_requests"]
        rt = rng.random(n) < 0.25
        w = Workload.from_arrays(
            np.cumsum(rng.exponential(1 / cfg["bound_rate"], n)), rng.integers(8, 33, n),
            rng.integers(2, 13, n), ttft_slo_s=np.where(rt, 0.25, 0.5),
            tpot_slo_s=np.where(rt, 0.05, 0.12), utility=np.where(rt, 100.0, 1.0),
            class_label=np.where(rt, "rt_short", "nrt_short").astype(object))
        h = solve_horizon(w, eng, time_limit_s=cfg["bound_time_limit_s"])
        total = float(w.utility.sum())
        base = {"instance": inst, "num_requests": n, "milp_status": h.status,
                "milp_wall_s": h.wall_s, "bound_weighted": h.bound / total,
                "incumbent_weighted": h.utility / total}
        for label, (reg, params) in _policies("edge", cfg["schedulers"]).items():
            sched = simulate(w, eng, make(reg, **params))
            met = request_metrics(sched, w)["slo_met"]
            rows.append({**base, "scheduler": label,
                         "attainment_weighted": float((w.utility * met).sum()) / total})
    return rows


# -- tables and plots (pure functions of the rows) --------------------------------------------


def _mean(rows: list[dict[str, Any]], key: str, **where: Any) -> float:
    v = [float(r[key]) for r in rows if all(r.get(k) == x for k, x in where.items())]
    v = [x for x in v if math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def headline(rows: list[dict[str, Any]], profile: str, rates: Sequence[float]) -> dict[str, Any]:
    """Max over loads of SLICE/baseline attainment and baseline/SLICE completion time."""
    out: dict[str, Any] = {}
    for base in ("orca", "fastserve"):
        att, ct = [], []
        for rate in rates:
            s = _mean(rows, "attainment", study="load", profile=profile, rate_per_s=rate,
                      scheduler="slice")
            b = _mean(rows, "attainment", study="load", profile=profile, rate_per_s=rate,
                      scheduler=base)
            att.append(s / b if b > 0 else math.inf if s > 0 else math.nan)
            cs = _mean(rows, "mean_completion_s", study="load", profile=profile, rate_per_s=rate,
                       scheduler="slice")
            cb = _mean(rows, "mean_completion_s", study="load", profile=profile, rate_per_s=rate,
                       scheduler=base)
            ct.append(cb / cs if cs > 0 else math.nan)
        fin = [a for a in att if math.isfinite(a)]
        out[f"attainment_x_vs_{base}"] = max(fin) if fin else math.nan
        out[f"attainment_x_vs_{base}_inf"] = any(math.isinf(a) for a in att)
        fct = [c for c in ct if math.isfinite(c)]
        out[f"completion_x_vs_{base}"] = max(fct) if fct else math.nan
    return out


def _plot(res: dict[str, list[dict[str, Any]]], cfg: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["records"]
    files = []
    names = list(_policies("edge", cfg["schedulers"]))
    for profile in cfg["profiles"]:
        rates = cfg["rates"][profile]
        fig, ax = plt.subplots(1, 4, figsize=(17, 3.6))
        for name in names:
            sel = {"study": "load", "profile": profile, "scheduler": name}
            for j, key in enumerate(("attainment", "attainment_rt", "attainment_nrt",
                                     "mean_completion_s")):
                ax[j].plot(rates, [_mean(rows, key, rate_per_s=r, **sel) for r in rates],
                           marker="o", label=name)
        for j, t in enumerate(("SLO attainment (all)", "real-time tasks", "non-real-time tasks",
                               "mean completion time (s)")):
            ax[j].set_title(t)
            ax[j].set_xlabel("arrival rate (tasks/s)")
        ax[0].legend(fontsize=7)
        fig.suptitle(f"SLICE reproduction, {EDGE if profile == 'edge' else H100}")
        fig.tight_layout()
        f = out / f"slice_load_{profile}.png"
        fig.savefig(f, dpi=80)
        plt.close(fig)
        files.append(f.name)
    slopes = cfg["slopes_ms"]
    if slopes:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        for name in names:
            sel = {"study": "slope", "scheduler": name}
            ax[0].plot(slopes, [_mean(rows, "attainment", slope_ms=s, **sel) for s in slopes],
                       marker="o", label=name)
            ax[1].plot(slopes, [_mean(rows, "mean_completion_s", slope_ms=s, **sel)
                                for s in slopes], marker="o", label=name)
        ax[0].set_title(f"SLO attainment at {cfg['slope_rate']} tasks/s")
        ax[1].set_title("mean completion time (s)")
        for a in ax:
            a.set_xlabel("slope of l(k) (ms per extra task), l(1) = 14 ms")
        ax[0].legend(fontsize=7)
        fig.tight_layout()
        f = out / "slice_slope.png"
        fig.savefig(f, dpi=80)
        plt.close(fig)
        files.append(f.name)
    return files


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    write_rows_csv(rows, path)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="slo-opt reproduce slice")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="results/slice")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    q = args.quick
    cfg: dict[str, Any] = {
        "seed": args.seed, "seeds": 1 if q else (args.seeds or 3),
        "num_requests": 40 if q else 300,
        "profiles": ["edge", "h100"],
        "rates": {"edge": [0.3, 1.0] if q else [0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5],
                  "h100": [20.0] if q else [2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0]},
        "schedulers": ["slice", "orca", "fastserve"] if q else
        ["slice", "slice_skip", "slice_tuned", "orca", "fastserve", "vllm", "edf"],
        "slopes_ms": [0.0, 11.5] if q else [0.0, 2.0, 4.0, 8.0, 11.5, 13.0],
        "slope_rate": 0.6,
        "max_decisions": 10 if q else 60,
        "bound_instances": 1 if q else 8, "bound_requests": 6 if q else 8,
        "bound_rate": 8.0, "bound_time_limit_s": 10.0 if q else 30.0,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = run(cfg)
    _write_csv(out / "records.csv", res["records"])
    _write_csv(out / "decisions.csv", res["decisions"])
    _write_csv(out / "bound.csv", res["bound"])
    heads = {p: headline(res["records"], p, cfg["rates"][p]) for p in cfg["profiles"]}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except Exception:
        sha = ""
    try:
        from importlib.metadata import version

        ver = version("slo_opt")
    except Exception:
        ver = ""
    (out / "config.json").write_text(json.dumps(
        {"config": cfg, "git_sha": sha, "version": ver, "headline": heads,
         "wall_s": time.perf_counter() - t0}, indent=2, default=str))
    files = _plot(res, cfg, out)
    rows = res["records"]
    names = list(_policies("edge", cfg["schedulers"]))
    for p in cfg["profiles"]:
        print(f"== {p}: attainment (all / rt / nrt) and mean completion time (s)")
        print(f"{'rate':>6} " + " ".join(f"{n:>24}" for n in names))
        for rate in cfg["rates"][p]:
            cells = []
            for n in names:
                sel = {"study": "load", "profile": p, "rate_per_s": rate, "scheduler": n}
                cells.append(f"{_mean(rows, 'attainment', **sel):.2f}/"
                             f"{_mean(rows, 'attainment_rt', **sel):.2f}/"
                             f"{_mean(rows, 'attainment_nrt', **sel):.2f} "
                             f"{_mean(rows, 'mean_completion_s', **sel):7.2f}s")
            print(f"{rate:6.2f} " + " ".join(f"{c:>24}" for c in cells))
        print("headline:", json.dumps(heads[p]))
    print(f"== slope sweep at {cfg['slope_rate']} tasks/s: attainment")
    for s in cfg["slopes_ms"]:
        print(f"{s:5.1f} ms " + " ".join(
            f"{n}={_mean(rows, 'attainment', study='slope', slope_ms=s, scheduler=n):.2f}"
            for n in names))
    d = res["decisions"]
    if d:
        g = np.array([r["greedy_utility"] for r in d])
        o = np.array([r["milp_utility"] for r in d])
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(o > 0, g / np.where(o > 0, o, 1), 1.0)
        print(f"== decisions: {len(d)}; greedy optimal in {np.mean(np.isclose(g, o)):.1%}; "
              f"min greedy/MILP utility {ratio.min():.3f}, mean {ratio.mean():.4f}")
    b = res["bound"]
    if b:
        print("== offline bound (utility-weighted attainment): MILP bound "
              f"{np.mean([r['bound_weighted'] for r in b if r['scheduler'] == names[0]]):.3f}; "
              + " ".join(f"{n}={_mean(b, 'attainment_weighted', scheduler=n):.3f}" for n in names))
    print(f"wrote {out}/records.csv, decisions.csv, bound.csv, config.json, {', '.join(files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
