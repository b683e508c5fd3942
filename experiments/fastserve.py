"""FastServe vs Orca / vLLM on one engine: JCT and tail latency over load, with and without KV
pressure (``slo-opt reproduce fastserve``).

FastServe (Wu et al., arXiv:2305.05920) claims lower average / tail JCT than Orca and vLLM
thanks to skip-join MLFQ with token-level preemption and KV offload. We run the registered
``fastserve``, ``orca`` and ``vllm`` schedulers with the same batch-size cap on the calibrated
``h100/llama-3.1-8b`` engine, Poisson arrivals, and two length mixes: the Azure conversation
2023 trace (light-tailed outputs) and a heavy-tailed lognormal mix (where MLFQ, an approximation
of least-attained-service, should help). "KV pressure" shrinks the KV cache so that FastServe
must swap to host memory (charged ``KV bytes / host bandwidth`` by the simulator) and vLLM
must preempt.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.study.runrecord import write_config, write_rows_csv

try:
    from experiments._common import CHECKS, Progress, simulate_checked
except ImportError:  # run as a script or through ``slo-opt reproduce``
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from experiments._common import CHECKS, Progress, simulate_checked

__all__ = ["main", "run"]


def _workload(kind: str, n: int, rate: float, rng: np.random.Generator) -> Any:
    from slo_opt.request import Workload
    from slo_opt.workloads.traces import default_workload

    tr = default_workload()
    idx = rng.integers(0, len(tr), n)
    p = tr.prompt_tokens[idx]
    if kind == "azure":
        o = tr.output_tokens[idx]
    else:  # heavy-tailed outputs, same median as Azure conv (~200 tokens), capped at 4096
        o = np.clip(np.rint(200 * np.exp(1.5 * rng.standard_normal(n))), 2, 4096)
    return Workload.from_arrays(np.cumsum(rng.exponential(1 / rate, n)), p, o, name=kind)


def run(cfg: dict[str, Any], progress: Any = None) -> list[dict[str, Any]]:
    """Flat rows: one per (lengths, kv, rate, seed, scheduler), plus one ``lower_bound`` row
    per instance (proven mean-JCT lower bound on the same engine and batch cap,
    :func:`slo_opt.solvers.engine_jct.engine_mean_jct_bound`)."""
    from slo_opt.metrics import summary
    from slo_opt.models.catalog import get_engine
    from slo_opt.schedulers import make
    from slo_opt.solvers.engine_jct import engine_mean_jct_bound

    b = cfg["max_batch_seqs"]
    pols = {"fastserve": {"max_batch_seqs": b}, "orca": {"max_batch_seqs": b},
            "vllm": {"max_num_seqs": b}}
    rows = []
    for kv_name, kv in cfg["kv"].items():
        engine = get_engine(cfg["engine"], kv_capacity_tokens=kv)
        for lengths in cfg["lengths"]:
            for rate in cfg["rates"]:
                for seed in range(cfg["seeds"]):
                    rng = np.random.default_rng([cfg["seed"], seed, int(rate * 100)])
                    w = _workload(lengths, cfg["num_requests"], rate, rng)
                    bd = engine_mean_jct_bound(w, engine, b)
                    rows.append({
                        "lengths": lengths, "kv": kv_name,
                        "kv_capacity_tokens": engine.kv_capacity_tokens, "rate": rate,
                        "seed": seed, "scheduler": "lower_bound", "mean_jct_s": bd.value_s,
                        "bound_isolation_s": bd.isolation_s, "bound_srpt_s": bd.srpt_s,
                        "bound_binding": bd.binding, "bound_valid_for": bd.valid_for})
                    for name, kw in pols.items():
                        t0 = time.perf_counter()
                        s = simulate_checked(w, engine, make(name, **kw))
                        m = summary(s, w)
                        rows.append({
                            "lengths": lengths, "kv": kv_name,
                            "kv_capacity_tokens": engine.kv_capacity_tokens, "rate": rate,
                            "seed": seed, "scheduler": name, "mean_jct_s": m["mean_e2e_s"],
                            "p99_jct_s": m["p99_e2e_s"], "mean_ttft_s": m["mean_ttft_s"],
                            "p99_ttft_s": m["p99_ttft_s"], "num_events": m["num_preemptions"],
                            "swap_s": float(s.steps.swap_s.sum()),
                            "num_rejected": m["num_rejected"], "wall_s": time.perf_counter() - t0})
                    if progress is not None:
                        progress.step(f"{lengths} KV {kv_name} rate {rate} seed {seed}")
    return rows


def _mean(rows: list[dict[str, Any]], key: str, **where: Any) -> float:
    v = [r.get(key, math.nan) for r in rows if all(r.get(k) == x for k, x in where.items())]
    v = [x for x in v if isinstance(x, float | int) and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def headline(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (lengths, kv, rate): mean / p99 JCT per scheduler, the proven mean-JCT lower bound
    and each scheduler's gap ``100 (mean JCT / bound - 1)``; ratios vs FastServe."""
    out = []
    for ln in cfg["lengths"]:
        for kv in cfg["kv"]:
            for rate in cfg["rates"]:
                sel = {"lengths": ln, "kv": kv, "rate": rate}
                lb = _mean(rows, "mean_jct_s", scheduler="lower_bound", **sel)
                h: dict[str, Any] = {**sel, "lower_bound_s": lb}
                for n in ("fastserve", "orca", "vllm"):
                    m = _mean(rows, "mean_jct_s", scheduler=n, **sel)
                    h[n + "_mean_s"] = m
                    h[n + "_p99_s"] = _mean(rows, "p99_jct_s", scheduler=n, **sel)
                    h[n + "_gap_pct"] = 100 * (m / lb - 1)
                    h[n + "_mean_ttft_s"] = _mean(rows, "mean_ttft_s", scheduler=n, **sel)
                for n in ("orca", "vllm"):
                    h[f"{n}_over_fastserve_mean_x"] = h[n + "_mean_s"] / h["fastserve_mean_s"]
                    h[f"{n}_over_fastserve_p99_x"] = h[n + "_p99_s"] / h["fastserve_p99_s"]
                out.append(h)
    return out


PAPER = {"mean_jct_x_vs_orca": 5.1, "p99_jct_x_vs_orca": 6.4,
         "throughput_x_vs_vllm_mean": 31.4, "throughput_x_vs_vllm_p99": 17.9}
"""FastServe's claims: v1 (vs Orca, average / tail JCT, [R]) and v3 (vs vLLM, throughput at the
same average / tail latency requirement, [P])."""


def rate_at_latency(rows: list[dict[str, Any]], cfg: dict[str, Any], key: str,
                    target_s: float) -> list[dict[str, Any]]:
    """Per (lengths, kv, scheduler): the largest arrival rate whose ``key`` (mean or p99 JCT,
    seed mean) stays <= ``target_s``, linearly interpolated between measured rates (0 if even
    the lightest load misses, ``>= max rate`` marked when the heaviest still meets it)."""
    out = []
    rates = sorted(cfg["rates"])
    for ln in cfg["lengths"]:
        for kv in cfg["kv"]:
            for n in ("fastserve", "orca", "vllm"):
                ys = [_mean(rows, key, lengths=ln, kv=kv, rate=r, scheduler=n) for r in rates]
                best, capped = 0.0, False
                for i, (r, y) in enumerate(zip(rates, ys)):
                    if y <= target_s:
                        best = r
                        if i == len(rates) - 1:
                            capped = True
                        continue
                    if i > 0 and ys[i - 1] <= target_s:
                        best = rates[i - 1] + (target_s - ys[i - 1]) * (r - rates[i - 1]) / (
                            y - ys[i - 1])
                    break
                out.append({"lengths": ln, "kv": kv, "scheduler": n, "metric": key,
                            "target_s": target_s, "max_rate": best, "at_max_measured": capped})
    return out


def _plot(rows: list[dict[str, Any]], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return []
    combos = sorted({(r["lengths"], r["kv"]) for r in rows})
    fig, axes = plt.subplots(2, len(combos), figsize=(3.3 * len(combos), 5.5), squeeze=False)
    for c, (ln, kv) in enumerate(combos):
        rates = sorted({r["rate"] for r in rows})
        for name in ("fastserve", "orca", "vllm", "lower_bound"):
            for i, key in enumerate(("mean_jct_s", "p99_jct_s")):
                ys = [_mean(rows, key, lengths=ln, kv=kv, rate=x, scheduler=name) for x in rates]
                if np.isfinite(ys).any():
                    axes[i, c].plot(rates, ys, marker="o" if name != "lower_bound" else "",
                                    ls="-" if name != "lower_bound" else ":", color=None
                                    if name != "lower_bound" else "k",
                                    label=name if name != "lower_bound" else
                                    "proven lower bound (mean)")
        axes[0, c].set_title(f"{ln}, KV {kv}", fontsize=9)
        axes[1, c].set_xlabel("arrival rate (req/s)")
    axes[0, 0].set_ylabel("mean JCT (s)")
    axes[1, 0].set_ylabel("p99 JCT (s)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    f = out / "fastserve_jct.png"
    fig.savefig(f, dpi=90)
    plt.close(fig)
    files = [f.name]
    rates = sorted({r["rate"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, pv, lab in ((axes[0], "mean_jct_s", PAPER["mean_jct_x_vs_orca"], "mean"),
                             (axes[1], "p99_jct_s", PAPER["p99_jct_x_vs_orca"], "p99")):
        for c, (ln, kv) in enumerate(combos):
            for base, ls in (("orca", "-"), ("vllm", "--")):
                ys = [_mean(rows, key, lengths=ln, kv=kv, rate=x, scheduler=base)
                      / _mean(rows, key, lengths=ln, kv=kv, rate=x, scheduler="fastserve")
                      for x in rates]
                ax.plot(rates, ys, ls, marker="o", color=f"C{c}", label=f"{base} / fastserve, "
                        f"{ln}, KV {kv}")
        ax.axhline(pv, color="k", ls=":", label=f"paper (v1, vs Orca): up to {pv}x")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("arrival rate (req/s)")
        ax.set_ylabel(f"{lab} JCT ratio (baseline / FastServe)")
        ax.set_title(f"Claim: {lab} JCT up to {pv}x better than Orca")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    f = out / "fastserve_ratio.png"
    fig.savefig(f, dpi=90)
    plt.close(fig)
    files.append(f.name)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        prog="slo-opt reproduce fastserve", description=__doc__.split("\n")[0],
        epilog="Full run: ~10 min on the shared 2-core machine (progress on stderr); "
               "--quick: < 1 min.")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="results/fastserve")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    CHECKS["schedules"] = 0  # count this run's schedules only
    q = args.quick
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be >= 1")
    cfg = {"engine": "h100/llama-3.1-8b", "max_batch_seqs": 32, "seed": args.seed,
           "seeds": 1 if q else (args.seeds or 3), "num_requests": 40 if q else 300,
           "rates": [10.0] if q else [2.5, 5.0, 7.5, 10.0, 15.0, 20.0],
           "latency_targets_s": {"mean_jct_s": [5.0, 10.0, 20.0], "p99_jct_s": [15.0, 30.0, 60.0]},
           "lengths": ["azure"] if q else ["azure", "heavy"],
           "kv": {"ample": None, "pressure": 32768}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = len(cfg["kv"]) * len(cfg["lengths"]) * len(cfg["rates"]) * cfg["seeds"]
    rows = run(cfg, Progress(n, "fastserve", quiet=q))
    write_rows_csv(rows, out / "records.csv")
    head = headline(rows, cfg)
    write_rows_csv(head, out / "headline.csv")
    at = [x for key, ts in cfg["latency_targets_s"].items() for t in ts
          for x in rate_at_latency(rows, cfg, key, t)]
    write_rows_csv(at, out / "rate_at_latency.csv")
    write_config(out / "config.json", cfg, wall_s=time.perf_counter() - t0,
                 schedules_checked=CHECKS["schedules"], paper=PAPER)
    files = _plot(rows, out)
    print(f"{'lengths':8} {'kv':9} {'rate':>5} {'LB':>7} " + " ".join(
        f"{n + ' mean/p99 (gap%)':>26}" for n in ("fastserve", "orca", "vllm")))
    for h in head:
        print(f"{h['lengths']:8} {h['kv']:9} {h['rate']:5.1f} {h['lower_bound_s']:7.2f} " + " ".join(
            f"{h[n + '_mean_s']:7.2f}/{h[n + '_p99_s']:7.2f} ({h[n + '_gap_pct']:5.0f}%)"
            for n in ("fastserve", "orca", "vllm")))
    print("== largest arrival rate (req/s) meeting a latency target (interpolated; '>=' = "
          "still met at the heaviest rate measured)")
    for x in at:
        if x["scheduler"] == "fastserve":
            o = {y["scheduler"]: y for y in at if all(y[k] == x[k] for k in (
                "lengths", "kv", "metric", "target_s"))}
            print(f"{x['lengths']:6} KV {x['kv']:8} {x['metric']:10} <= {x['target_s']:5.1f} s: "
                  + " ".join(f"{n} {'>=' if o[n]['at_max_measured'] else ''}"
                             f"{o[n]['max_rate']:.1f}" for n in ("fastserve", "orca", "vllm")))
    print(f"{CHECKS['schedules']} schedules checked by violations()")
    print(f"wrote {out}/records.csv, config.json, {', '.join(files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
