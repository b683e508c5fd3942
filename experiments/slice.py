"""SLICE reproduction: SLO attainment and completion time over load, on the SLICE edge profile
and on our H100 profile (``slo-opt reproduce slice``).

SLICE (Zhou et al., arXiv:2510.18544) claims up to 35x SLO attainment and 3.4x task completion
time versus Orca and FastServe on an edge GPU. Studies (each a set of flat rows):

* ``load`` -- SLICE (faithful defaults: cycle restarts at column 0 on every re-selection, as
  the authors' ``SLICE::ConstructMatrix`` resets ``dynamicMatrixIndex``), SLICE without the
  restart (``slice_norestart``), SLICE-skip, SLICE-tuned (spread mask, ``ratio`` 0.85: a 15 %
  margin for the prefill time that ``T_period`` ignores), Orca, FastServe, vLLM and EDF on the
  edge workload (:mod:`slo_opt.workloads.edge`) over a Poisson load sweep, on
  ``slice-edge/chatglm2-6b-int4`` (the paper's published ``l(k)``) and ``h100/llama-3.1-8b``;
  every instance also gets the batch-size-resolved fluid LP bound
  (:mod:`slo_opt.solvers.tpot_fluid`), a proven upper bound on the attainment of every policy
  with the same batch cap on that engine (scheduler ``fluid_bound``);
* ``slope`` -- the same at one heavy load on affine engines ``l(k) = l(1) + s (k - 1)``, sweeping
  the slope ``s`` (where SLICE's gain comes from);
* ``decisions`` -- each recorded SLICE selection vs the per-cycle admission MILP's optimum;
* ``bound`` -- small instances on a slotted engine over load: every policy's attainment and
  utility vs the offline whole-horizon MILP's proven optimum (``solve_horizon``).

Baselines on the edge use the same batch cap as SLICE (16 tasks: the paper's engine and the
published ``l(k)`` table stop at 15-16); on the H100 they use 256. Every simulated schedule is
checked by :func:`slo_opt.checks.violations`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.study.runrecord import write_config, write_rows_csv

try:
    from experiments._common import CHECKS, Progress, ci95, simulate_checked
except ImportError:  # run as a script or through ``slo-opt reproduce``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from experiments._common import CHECKS, Progress, ci95, simulate_checked

__all__ = ["PAPER", "headline", "main", "ratio_curves", "run"]

EDGE = "slice-edge/chatglm2-6b-int4"
H100 = "h100/llama-3.1-8b"
CLASSES = ("rt_short", "rt_long", "nrt_short", "nrt_long")
PAPER = {"attainment_x": 35.0, "completion_x": 3.4}
CAP = {"edge": 16, "h100": 256}


def _policies(profile: str, names: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    cap = CAP[profile]
    table = {
        "slice": ("slice", {}),
        "slice_norestart": ("slice", {"restart_on_replan": False}),
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


def _fluid_row(w: Any, engine: Any, profile: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from slo_opt.solvers.tpot_fluid import tpot_fluid_bound

    b = tpot_fluid_bound(w, engine, CAP[profile], cell_s=cfg["fluid_cell_s"],
                         time_limit_s=cfg["fluid_time_limit_s"])
    bu = tpot_fluid_bound(w, engine, CAP[profile], weights="utility", cell_s=cfg["fluid_cell_s"],
                          time_limit_s=cfg["fluid_time_limit_s"])
    return {"attainment": b.fraction, "attainment_weighted": bu.fraction,
            "bound_status": str(b.status.value if hasattr(b.status, "value") else b.status),
            "bound_wall_s": b.wall_s + bu.wall_s, "bound_valid_for": b.valid_for}


def run(cfg: dict[str, Any], progress: Any = None) -> dict[str, list[dict[str, Any]]]:
    """All studies; returns ``{"records": ..., "decisions": ..., "bound": ...}`` flat rows."""
    from slo_opt.models.catalog import get_engine
    from slo_opt.schedulers import make
    from slo_opt.solvers.slice_milp import cycle_instance_from_decision, solve_cycle
    from slo_opt.workloads.edge import edge_workload

    records: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    engines = {"edge": get_engine(EDGE), "h100": get_engine(H100)}

    def one(study: str, profile: str, engine: Any, rate: float, seed: int, extra: dict) -> None:
        w = edge_workload(cfg["num_requests"], rate, np.random.default_rng([cfg["seed"], seed]))
        base = {"study": study, "profile": profile, "rate_per_s": rate, "seed": seed, **extra}
        for label, (reg, params) in _policies(profile, cfg["schedulers"]).items():
            rec = reg == "slice" and study == "load" and label == "slice"
            s = make(reg, **params, **({"record_decisions": True} if rec else {}))
            t0 = time.perf_counter()
            sched = simulate_checked(w, engine, s)
            records.append({**base, "scheduler": label, **_metrics(sched, w),
                            "sim_wall_s": time.perf_counter() - t0})
            if rec:
                for d in s.decisions[: cfg["max_decisions"]]:
                    opt = solve_cycle(cycle_instance_from_decision(d))
                    decisions.append({
                        "profile": profile, "rate_per_s": rate, "seed": seed, "scheduler": label,
                        "num_candidates": len(d["candidates"]),
                        "greedy_utility": d["selected_utility"], "milp_utility": opt.utility,
                        "milp_status": opt.status, "milp_wall_s": opt.wall_s})
        if study == "load" and profile in cfg["fluid_profiles"]:
            records.append({**base, "scheduler": "fluid_bound", **_fluid_row(w, engine, profile,
                                                                            cfg)})
        if progress is not None:
            progress.step(f"{study} {profile} rate {rate} seed {seed}"
                          + (f" slope {extra['slope_ms']} ms" if study == "slope" else ""))

    for profile in cfg["profiles"]:
        for rate in cfg["rates"][profile]:
            for seed in range(cfg["seeds"]):
                one("load", profile, engines[profile], rate, seed, {"slope_ms": math.nan})
    edge = engines["edge"]
    for slope_ms in cfg["slopes_ms"]:
        eng = _affine_engine(slope_ms * 1e-3, 0.014, edge)
        for seed in range(cfg["seeds"]):
            one("slope", "edge", eng, cfg["slope_rate"], seed, {"slope_ms": slope_ms})
    return {"records": records, "decisions": decisions, "bound": _bound_study(cfg, progress)}


def _bound_study(cfg: dict[str, Any], progress: Any = None) -> list[dict[str, Any]]:
    """Small slotted instances over load: each policy vs the whole-horizon MILP's optimum.

    Two objectives per instance: utility (SLICE's) and attainment (count, all utilities 1).
    """
    from slo_opt.metrics import request_metrics
    from slo_opt.models.slot import SlotEngine
    from slo_opt.request import Workload
    from slo_opt.schedulers import make
    from slo_opt.solvers.slice_milp import solve_horizon

    eng = SlotEngine(step_s=0.05, max_batch_tokens=cfg["bound_batch_tokens"],
                     kv_capacity_tokens=1024)
    rows = []
    for rate in cfg["bound_rates"]:
        for inst in range(cfg["bound_instances"]):
            rng = np.random.default_rng([cfg["seed"], 1000 + inst, int(rate * 10)])
            n = cfg["bound_requests"]
            rt = rng.random(n) < 0.25
            kw = {"ttft_slo_s": np.where(rt, 0.25, 0.5), "tpot_slo_s": np.where(rt, 0.05, 0.12),
                  "class_label": np.where(rt, "rt_short", "nrt_short").astype(object)}
            arr = np.cumsum(rng.exponential(1 / rate, n))
            p, o = rng.integers(8, 33, n), rng.integers(2, 13, n)
            w = Workload.from_arrays(arr, p, o, utility=np.where(rt, 100.0, 1.0), **kw)
            w1 = Workload.from_arrays(arr, p, o, utility=np.ones(n), **kw)
            hu = solve_horizon(w, eng, time_limit_s=cfg["bound_time_limit_s"])
            hc = solve_horizon(w1, eng, time_limit_s=cfg["bound_time_limit_s"])
            total = float(w.utility.sum())
            base = {"rate_per_s": rate, "instance": inst, "num_requests": n,
                    "status_weighted": hu.status, "status_count": hc.status,
                    "milp_wall_s": hu.wall_s + hc.wall_s,
                    "bound_weighted": hu.bound / total, "optimum_weighted": hu.utility / total,
                    "bound_attainment": hc.bound / n, "optimum_attainment": hc.utility / n}
            for label, (reg, params) in _policies("edge", cfg["schedulers"]).items():
                sched = simulate_checked(w, eng, make(reg, **params))
                met = request_metrics(sched, w)["slo_met"]
                rows.append({**base, "scheduler": label, "attainment": float(met.mean()),
                             "attainment_weighted": float((w.utility * met).sum()) / total})
            if progress is not None:
                progress.step(f"bound rate {rate} instance {inst}")
    return rows


# -- tables and plots (pure functions of the rows) --------------------------------------------


def _vals(rows: list[dict[str, Any]], key: str, **where: Any) -> list[float]:
    v = [float(r[key]) for r in rows if all(r.get(k) == x for k, x in where.items())
         and r.get(key) not in (None, "")]
    return [x for x in v if math.isfinite(x)]


def _mean(rows: list[dict[str, Any]], key: str, **where: Any) -> float:
    v = _vals(rows, key, **where)
    return float(np.mean(v)) if v else math.nan


def ratio_curves(rows: list[dict[str, Any]], profile: str, rates: Sequence[float],
                 policy: str = "slice") -> list[dict[str, Any]]:
    """Per rate and baseline: ``policy``/baseline attainment (all, RT, nRT) and
    baseline/``policy`` mean completion time (all, RT, nRT); seed means first."""
    out = []
    for base in ("orca", "fastserve"):
        for rate in rates:
            sel = {"study": "load", "profile": profile, "rate_per_s": rate}
            r: dict[str, Any] = {"profile": profile, "rate_per_s": rate, "policy": policy,
                                 "baseline": base}
            for cls in ("", "_rt", "_nrt"):
                s = _mean(rows, f"attainment{cls}", scheduler=policy, **sel)
                b = _mean(rows, f"attainment{cls}", scheduler=base, **sel)
                r[f"{policy}_attainment{cls}"] = s
                r[f"base_attainment{cls}"] = b
                r[f"attainment{cls}_x"] = s / b if b > 0 else (math.inf if s > 0 else math.nan)
                key = "mean_completion_s" if not cls else f"mean_completion{cls}_s"
                cs = _mean(rows, key, scheduler=policy, **sel)
                cb = _mean(rows, key, scheduler=base, **sel)
                r[f"completion{cls}_x"] = cb / cs if cs > 0 else math.nan
            r["fluid_bound"] = _mean(rows, "attainment", scheduler="fluid_bound", **sel)
            out.append(r)
    return out


def headline(rows: list[dict[str, Any]], profile: str, rates: Sequence[float],
             policy: str = "slice") -> dict[str, Any]:
    """Maxima over the load curve (and the rate where each is reached)."""
    cur = ratio_curves(rows, profile, rates, policy)
    out: dict[str, Any] = {}
    for base in ("orca", "fastserve"):
        for key in ("attainment_x", "attainment_rt_x", "attainment_nrt_x", "completion_x",
                    "completion_rt_x", "completion_nrt_x"):
            pts = [(r[key], r["rate_per_s"]) for r in cur if r["baseline"] == base
                   and math.isfinite(r[key])]
            best = max(pts) if pts else (math.nan, math.nan)
            out[f"{key}_vs_{base}"] = best[0]
            out[f"{key}_vs_{base}_at"] = best[1]
            out[f"{key}_vs_{base}_inf"] = any(math.isinf(r[key]) for r in cur
                                              if r["baseline"] == base)
    return out


def _mark_max(ax: Any, xs: Sequence[float], ys: Sequence[float], color: str) -> None:
    pts = [(y, x) for x, y in zip(xs, ys) if math.isfinite(y)]
    if pts:
        y, x = max(pts)
        ax.plot([x], [y], marker="*", ms=14, color=color, zorder=5)
        ax.annotate(f"max {y:.1f}x @ {x:g}", (x, y), textcoords="offset points", xytext=(4, 6),
                    fontsize=7, color=color)


def _plot(res: dict[str, list[dict[str, Any]]], cfg: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["records"]
    files = []
    rates = cfg["rates"]["edge"]
    # claim 1: attainment ratio over load
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for ax, cls, title in zip(axes, ("", "_rt", "_nrt"), ("all tasks", "real-time tasks",
                                                            "non-real-time tasks")):
        for pol, ls in (("slice", "-"), ("slice_norestart", "--")):
            if pol not in cfg["schedulers"]:
                continue
            cur = ratio_curves(rows, "edge", rates, pol)
            for base, col in (("orca", "C0"), ("fastserve", "C1")):
                ys = [r[f"attainment{cls}_x"] for r in cur if r["baseline"] == base]
                ys = [y if math.isfinite(y) else math.nan for y in ys]
                ax.plot(rates, ys, ls, marker="o", color=col if pol == "slice" else
                        ("C2" if base == "orca" else "C3"), label=f"{pol} / {base}")
                _mark_max(ax, rates, ys, col if pol == "slice" else ("C2" if base == "orca"
                                                                     else "C3"))
        ax.axhline(PAPER["attainment_x"], color="k", ls=":", label="paper: up to 35x")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("arrival rate (tasks/s)")
        ax.set_title(title)
    axes[0].set_ylabel("SLO attainment ratio (SLICE / baseline)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Claim: up to 35x SLO attainment vs Orca / FastServe ({EDGE}; inf = baseline 0)")
    fig.tight_layout()
    fig.savefig(out / "slice_attainment_ratio.png", dpi=80)
    plt.close(fig)
    files.append("slice_attainment_ratio.png")
    # claim 2: completion time ratio over load
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for ax, cls, title in zip(axes, ("", "_rt", "_nrt"), ("all tasks", "real-time tasks",
                                                            "non-real-time tasks")):
        cur = ratio_curves(rows, "edge", rates, "slice")
        for base, col in (("orca", "C0"), ("fastserve", "C1")):
            ys = [r[f"completion{cls}_x"] for r in cur if r["baseline"] == base]
            ax.plot(rates, ys, marker="o", color=col, label=f"{base} / slice")
            _mark_max(ax, rates, ys, col)
        ax.axhline(PAPER["completion_x"], color="k", ls=":", label="paper: 3.4x")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_xlabel("arrival rate (tasks/s)")
        ax.set_title(title)
    axes[0].set_ylabel("mean completion time ratio (baseline / SLICE)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Claim: 3.4x task completion time vs Orca / FastServe ({EDGE})")
    fig.tight_layout()
    fig.savefig(out / "slice_completion_ratio.png", dpi=80)
    plt.close(fig)
    files.append("slice_completion_ratio.png")
    # context: absolute attainment with the proven bound, per profile
    names = list(_policies("edge", cfg["schedulers"]))
    for profile in cfg["profiles"]:
        prates = cfg["rates"][profile]
        fig, ax = plt.subplots(1, 4, figsize=(17, 3.6))
        for name in [*names, "fluid_bound"]:
            sel = {"study": "load", "profile": profile, "scheduler": name}
            for j, key in enumerate(("attainment", "attainment_rt", "attainment_nrt",
                                     "mean_completion_s")):
                if name == "fluid_bound" and key != "attainment":
                    continue
                ms = [ci95(_vals(rows, key, rate_per_s=r, **sel)) for r in prates]
                ys = [m[0] for m in ms]
                if not np.isfinite(ys).any():
                    continue
                err = [0.0 if not math.isfinite(m[1]) else m[1] for m in ms]
                ax[j].errorbar(prates, ys, yerr=err, marker="o" if name != "fluid_bound" else "",
                               ls="-" if name != "fluid_bound" else ":", capsize=2,
                               color="k" if name == "fluid_bound" else None,
                               label=name if name != "fluid_bound" else
                               "proven upper bound (fluid LP)")
        for j, t in enumerate(("SLO attainment (all tasks)", "real-time tasks",
                               "non-real-time tasks", "mean completion time (s)")):
            ax[j].set_title(t)
            ax[j].set_xlabel("arrival rate (tasks/s)")
        ax[0].set_ylabel("fraction of tasks meeting TTFT+TPOT(+e2e)")
        ax[0].legend(fontsize=6)
        fig.suptitle(f"SLICE reproduction, {EDGE if profile == 'edge' else H100} "
                     "(mean over seeds, 95 % CI)")
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
        ax[0].set_ylabel("fraction of tasks meeting their SLOs")
        ax[1].set_title("mean completion time (s)")
        ax[1].set_ylabel("seconds")
        for a in ax:
            a.set_xlabel("slope of l(k) (ms per extra task), l(1) = 14 ms")
        ax[0].legend(fontsize=7)
        fig.tight_layout()
        f = out / "slice_slope.png"
        fig.savefig(f, dpi=80)
        plt.close(fig)
        files.append(f.name)
    return files


def config(args: argparse.Namespace) -> dict[str, Any]:
    """The resolved configuration (full or ``--quick``)."""
    q = args.quick
    return {
        "seed": args.seed, "seeds": 1 if q else (args.seeds or 3),
        "num_requests": 40 if q else 300,
        "profiles": ["edge", "h100"],
        "rates": {"edge": [0.3, 1.0] if q else [0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5],
                  "h100": [20.0] if q else [2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0]},
        "schedulers": ["slice", "slice_norestart", "orca", "fastserve"] if q else
        ["slice", "slice_norestart", "slice_skip", "slice_tuned", "orca", "fastserve", "vllm",
         "edf"],
        "fluid_profiles": ["edge"] if q else ["edge", "h100"],
        "fluid_cell_s": 0.5, "fluid_time_limit_s": 120.0,
        "slopes_ms": [0.0, 11.5] if q else [0.0, 2.0, 4.0, 8.0, 11.5, 13.0],
        "slope_rate": 0.6,
        "max_decisions": 10 if q else 60,
        "bound_rates": [40.0] if q else [10.0, 20.0, 40.0, 80.0],
        "bound_instances": 1 if q else 3, "bound_requests": 12,
        "bound_batch_tokens": 32, "bound_time_limit_s": 10.0 if q else 30.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        prog="slo-opt reproduce slice", description=__doc__.split("\n")[0],
        epilog="Full run (default): ~15 min on 2 cores, progress on stderr; --quick: < 1 min.")
    ap.add_argument("--quick", action="store_true", help="small CI-sized run (< 60 s)")
    ap.add_argument("--out", default="results/slice", help="output folder")
    ap.add_argument("--seeds", type=int, default=None, help="repetitions per load (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="base seed")
    args = ap.parse_args(argv)
    CHECKS["schedules"] = 0  # count this run's schedules only
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be >= 1")
    cfg = config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = (sum(len(v) for v in cfg["rates"].values()) + len(cfg["slopes_ms"])) * cfg["seeds"] \
        + len(cfg["bound_rates"]) * cfg["bound_instances"]
    res = run(cfg, Progress(n, "slice", quiet=args.quick))
    write_rows_csv(res["records"], out / "records.csv")
    write_rows_csv(res["decisions"], out / "decisions.csv")
    write_rows_csv(res["bound"], out / "bound.csv")
    curves = [c for p in cfg["profiles"] for pol in ("slice", "slice_norestart")
              if pol in cfg["schedulers"] for c in ratio_curves(res["records"], p,
                                                                cfg["rates"][p], pol)]
    write_rows_csv(curves, out / "ratio_curves.csv")
    heads = {p: headline(res["records"], p, cfg["rates"][p]) for p in cfg["profiles"]}
    write_config(out / "config.json", cfg, headline=heads, paper=PAPER,
                 wall_s=time.perf_counter() - t0, schedules_checked=CHECKS["schedules"])
    files = _plot(res, cfg, out)
    rows = res["records"]
    names = [*_policies("edge", cfg["schedulers"]), "fluid_bound"]
    for p in cfg["profiles"]:
        print(f"== {p}: attainment all / rt / nrt (mean completion s); fluid_bound = proven "
              "upper bound on attainment")
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
        h = heads[p]
        print(f"max over load: attainment x {h['attainment_x_vs_orca']:.1f} vs orca "
              f"(@{h['attainment_x_vs_orca_at']}), {h['attainment_x_vs_fastserve']:.1f} vs "
              f"fastserve (@{h['attainment_x_vs_fastserve_at']}); completion x "
              f"{h['completion_x_vs_orca']:.2f} / {h['completion_x_vs_fastserve']:.2f}, RT only "
              f"{h['completion_rt_x_vs_orca']:.2f} (@{h['completion_rt_x_vs_orca_at']}) / "
              f"{h['completion_rt_x_vs_fastserve']:.2f}")
    print(f"== slope sweep at {cfg['slope_rate']} tasks/s: attainment")
    for s in cfg["slopes_ms"]:
        print(f"{s:5.1f} ms " + " ".join(
            f"{n}={_mean(rows, 'attainment', study='slope', slope_ms=s, scheduler=n):.2f}"
            for n in names[:-1]))
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
        print("== small slotted instances: whole-horizon MILP optimum vs policies "
              "(attainment / utility-weighted)")
        for rate in cfg["bound_rates"]:
            print(f"rate {rate:5.1f}: optimum {_mean(b, 'optimum_attainment', rate_per_s=rate):.3f}"
                  f"/{_mean(b, 'optimum_weighted', rate_per_s=rate):.3f} " + " ".join(
                      f"{n}={_mean(b, 'attainment', rate_per_s=rate, scheduler=n):.3f}/"
                      f"{_mean(b, 'attainment_weighted', rate_per_s=rate, scheduler=n):.3f}"
                      for n in names[:-1]))
    print(f"{CHECKS['schedules']} schedules checked by violations(); "
          f"wall {time.perf_counter() - t0:.0f} s")
    print(f"wrote {out}/records.csv, ratio_curves.csv, decisions.csv, bound.csv, config.json, "
          f"{', '.join(files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
