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

from slo_opt.runrecord import write_config, write_rows_csv

__all__ = ["main", "run"]


def _workload(kind: str, n: int, rate: float, rng: np.random.Generator) -> Any:
    from slo_opt.request import Workload
    from slo_opt.traces import default_workload

    tr = default_workload()
    idx = rng.integers(0, len(tr), n)
    p = tr.prompt_tokens[idx]
    if kind == "azure":
        o = tr.output_tokens[idx]
    else:  # heavy-tailed outputs, same median as Azure conv (~200 tokens), capped at 4096
        o = np.clip(np.rint(200 * np.exp(1.5 * rng.standard_normal(n))), 2, 4096)
    return Workload.from_arrays(np.cumsum(rng.exponential(1 / rate, n)), p, o, name=kind)


def run(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows: one per (lengths, kv, rate, seed, scheduler)."""
    from slo_opt.metrics import summary
    from slo_opt.models.catalog import get_engine
    from slo_opt.schedulers import make
    from slo_opt.simulator import simulate

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
                    for name, kw in pols.items():
                        t0 = time.perf_counter()
                        s = simulate(w, engine, make(name, **kw))
                        m = summary(s, w)
                        rows.append({
                            "lengths": lengths, "kv": kv_name,
                            "kv_capacity_tokens": engine.kv_capacity_tokens, "rate": rate,
                            "seed": seed, "scheduler": name, "mean_jct_s": m["mean_e2e_s"],
                            "p99_jct_s": m["p99_e2e_s"], "mean_ttft_s": m["mean_ttft_s"],
                            "p99_ttft_s": m["p99_ttft_s"], "num_events": m["num_preemptions"],
                            "swap_s": float(s.steps.swap_s.sum()),
                            "num_rejected": m["num_rejected"], "wall_s": time.perf_counter() - t0})
    return rows


def _mean(rows: list[dict[str, Any]], key: str, **where: Any) -> float:
    v = [r[key] for r in rows if all(r[k] == x for k, x in where.items())]
    v = [x for x in v if math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


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
        for name in ("fastserve", "orca", "vllm"):
            for i, key in enumerate(("mean_jct_s", "p99_jct_s")):
                ys = [_mean(rows, key, lengths=ln, kv=kv, rate=x, scheduler=name) for x in rates]
                axes[i, c].plot(rates, ys, marker="o", label=name)
        axes[0, c].set_title(f"{ln}, KV {kv}", fontsize=9)
        axes[1, c].set_xlabel("arrival rate (req/s)")
    axes[0, 0].set_ylabel("mean JCT (s)")
    axes[1, 0].set_ylabel("p99 JCT (s)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    f = out / "fastserve_jct.png"
    fig.savefig(f, dpi=90)
    plt.close(fig)
    return [f.name]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="slo-opt reproduce fastserve")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="results/fastserve")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    q = args.quick
    cfg = {"engine": "h100/llama-3.1-8b", "max_batch_seqs": 32, "seed": args.seed,
           "seeds": 1 if q else (args.seeds or 3), "num_requests": 40 if q else 300,
           "rates": [10.0] if q else [5.0, 10.0, 15.0, 20.0],
           "lengths": ["azure"] if q else ["azure", "heavy"],
           "kv": {"ample": None, "pressure": 32768}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = run(cfg)
    write_rows_csv(rows, out / "records.csv")
    write_config(out / "config.json", cfg, wall_s=time.perf_counter() - t0)
    files = _plot(rows, out)
    print(f"{'lengths':8} {'kv':9} {'rate':>5} {'sched':10} {'meanJCT':>8} {'p99JCT':>8} "
          f"{'meanTTFT':>9} {'p99TTFT':>8} {'events':>7}")
    for ln in cfg["lengths"]:
        for kv in cfg["kv"]:
            for rate in cfg["rates"]:
                for name in ("fastserve", "orca", "vllm"):
                    sel = {"lengths": ln, "kv": kv, "rate": rate, "scheduler": name}
                    print(f"{ln:8} {kv:9} {rate:5.1f} {name:10} "
                          f"{_mean(rows, 'mean_jct_s', **sel):8.2f} "
                          f"{_mean(rows, 'p99_jct_s', **sel):8.2f} "
                          f"{_mean(rows, 'mean_ttft_s', **sel):9.3f} "
                          f"{_mean(rows, 'p99_ttft_s', **sel):8.3f} "
                          f"{_mean(rows, 'num_events', **sel):7.0f}")
    print(f"wrote {out}/records.csv, config.json, {', '.join(files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
