"""``slo-opt demo``: every registered scheduler on the shipped workload (table + plot), then
every scheduler next to the offline optimum of a small slotted instance."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.cli.common import (
    DEFAULT_PROFILE,
    build_scheduler,
    get_engine,
    json_default,
    load_workload,
    slo_flags,
)
from slo_opt.metrics import summary
from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.sim.simulator import simulate

__all__ = ["add_parser", "cmd_demo"]


def add_parser(sub: Any) -> None:
    """Add ``demo`` to the sub-command parsers."""
    d = sub.add_parser("demo", help="every scheduler on the shipped workload: table + plot")
    d.add_argument("--trace", default=None, help="trace file or name (default: shipped subset)")
    d.add_argument("--profile", default=DEFAULT_PROFILE)
    d.add_argument("--speedup", type=float, default=4.0,
                   help="compress arrival times by this factor (default 4: near capacity)")
    d.add_argument("--limit", type=int, default=None, help="use only the first N requests")
    d.add_argument("--schedulers", default=None, help="comma-separated subset")
    d.add_argument("--out", default="slo_opt_demo")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--no-gap", action="store_true",
                   help="skip the small-instance optimality-gap table (needs the solvers extra)")
    slo_flags(d)


def cmd_demo(a: argparse.Namespace) -> int:
    """Every registered scheduler on the shipped workload: table + plot."""
    from slo_opt.workloads.generators import time_scale

    w = load_workload(a.trace, ttft=a.ttft_slo_s, tpot=a.tpot_slo_s, e2e=None, limit=a.limit)
    if a.speedup != 1.0:
        w = time_scale(w, 1.0 / a.speedup)
    eng = get_engine(a.profile)
    names = a.schedulers.split(",") if a.schedulers else sorted(SCHEDULERS)
    rows = []
    try:
        from tqdm import tqdm

        it = tqdm(names, desc="demo", unit="scheduler", leave=False, disable=a.no_progress)
    except ImportError:  # pragma: no cover
        it = names
    for name in it:
        sched = build_scheduler(name, {}, max_num_batched_tokens=None, max_num_seqs=None)
        t0 = time.perf_counter()
        s = simulate(w, eng, sched)
        sm = summary(s, w)
        sm["scheduler"] = name
        sm["wall_s"] = time.perf_counter() - t0
        rows.append(sm)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    hdr = (f"{'scheduler':<12} {'attain':>7} {'TTFT ok':>7} {'TPOT ok':>7} {'p50 TTFT':>9} "
           f"{'p99 TTFT':>9} {'mean TPOT':>9} {'mean e2e':>9} {'rej':>4} {'wall':>6}")
    print(f"workload: {w.name or 'default'} ({len(w)} requests, x{a.speedup:g} arrival rate), "
          f"engine: {a.profile}, SLO TTFT {float(w.ttft_slo_s[0]):g}s / "
          f"TPOT {float(w.tpot_slo_s[0]):g}s")
    print(hdr)
    print("-" * len(hdr))
    for r in sorted(rows, key=lambda r: -r["attainment"]):
        print(f"{r['scheduler']:<12} {r['attainment']:>7.3f} {r['ttft_attainment']:>7.3f} "
              f"{r['tpot_attainment']:>7.3f} {r['p50_ttft_s']:>9.3f} {r['p99_ttft_s']:>9.3f} "
              f"{r['mean_tpot_s']:>9.4f} {r['mean_e2e_s']:>9.3f} {r['num_rejected']:>4d} "
              f"{r['wall_s']:>5.2f}s")
    gap = None if a.no_gap else _demo_gap(names)
    (out / "demo.json").write_text(json.dumps({"rows": rows, "gap": gap},
                                              indent=2, default=json_default))
    png = _demo_plot(rows, gap, out / "demo.png")
    print(f"wrote {out / 'demo.json'}" + (f" and {png}" if png else " (no matplotlib: no plot)"))
    return 0


def _demo_gap(names: list[str], n: int = 40, load: float = 3.0, seed: int = 0,
              time_limit_s: float = 30.0) -> dict[str, Any] | None:
    """Every scheduler vs the exact offline optimum and its LP bound on a small slotted instance.

    The instance comes from :func:`slo_opt.solvers.scenarios.scaled_workload` (scaled-down
    lengths, TTFT SLO 2-8 slots, TPOT 1.5 slots) on the 50 ms / 256-token / 2,048-KV-token
    ``SlotEngine``, where the simulator and the MILP share exact semantics.
    """
    try:
        from slo_opt.solvers import GoodputMILP, Instance, solve
        from slo_opt.solvers.scenarios import default_engine, scaled_workload
    except ImportError as exc:
        print(f"(optimality gap skipped: solvers not installed: {exc})")
        return None
    from slo_opt.metrics import attainment

    eng = default_engine()
    w = scaled_workload(n, load, np.random.default_rng(seed), eng, ttft_slots=(2.0, 8.0))
    heur = {k: attainment(simulate(w, eng, make(k)), w) for k in names}
    opt = solve(GoodputMILP(), Instance(w, eng), time_limit_s=time_limit_s)
    lp = solve(GoodputMILP(), Instance(w, eng), relax=True, time_limit_s=time_limit_s)
    print(f"\noptimality gap: {n} requests at {load:g}x token capacity on SlotEngine(50 ms, "
          f"256 tokens, 2048 KV tokens), seed {seed}")
    inc = opt.incumbent if opt.incumbent is not None else float("nan")
    print(f"{'offline MILP':<14} {inc:>7.3f}  ({opt.status.value}, bound {opt.bound:.3f}, "
          f"{opt.wall_s:.1f}s)")
    print(f"{'LP bound':<14} {lp.bound:>7.3f}")
    for k, v in sorted(heur.items(), key=lambda kv: -kv[1]):
        print(f"{k:<14} {v:>7.3f}  ({v / inc:.0%} of the optimum)" if inc > 0 else f"{k:<14} {v:>7.3f}")
    return {"n": n, "load": load, "seed": seed, "milp_status": opt.status.value,
            "milp_incumbent": opt.incumbent, "milp_bound": opt.bound, "lp_bound": lp.bound,
            "schedulers": heur}


def _demo_plot(rows: list[dict[str, Any]], gap: dict[str, Any] | None, path: Path
               ) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = sorted(rows, key=lambda r: -r["attainment"])
    names = [r["scheduler"] for r in rows]
    ncol = 3 if gap is not None else 2
    fig, axes = plt.subplots(1, ncol, figsize=(5 * ncol, 3.8))
    axes[0].bar(names, [r["attainment"] for r in rows], color="tab:blue")
    axes[0].set_title("shipped workload, H100 profile", fontsize=9)
    axes[0].set_ylabel("SLO attainment")
    axes[0].set_ylim(0, 1.05)
    axes[1].bar(names, [r["p99_ttft_s"] for r in rows], color="tab:orange")
    axes[1].set_ylabel("p99 TTFT (s)")
    if gap is not None:
        h = sorted(gap["schedulers"].items(), key=lambda kv: -kv[1])
        axes[2].bar([k for k, _ in h], [v for _, v in h], color="tab:green")
        if gap["milp_incumbent"] is not None:
            axes[2].axhline(gap["milp_incumbent"], color="k", ls="--", lw=1,
                            label=f"offline optimum ({gap['milp_status']})")
        axes[2].axhline(gap["lp_bound"], color="grey", ls=":", lw=1, label="LP bound")
        axes[2].set_ylim(0, 1.05)
        axes[2].set_title(f"small slotted instance (n={gap['n']}, load {gap['load']:g}x)",
                          fontsize=9)
        axes[2].set_ylabel("SLO attainment")
        axes[2].legend(fontsize=7)
    for ax in axes:
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
