"""``slo-opt demo``: every registered scheduler on the shipped workload (table + plot), then
every scheduler next to the offline optimum of a small slotted instance."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.cli.common import (
    DEFAULT_PROFILE,
    TIME_UNITS,
    CLIError,
    build_scheduler,
    check_out_dir,
    dump_json,
    get_engine,
    load_workload,
    positive_float,
    positive_int,
    require_extra,
    slo_flags,
)
from slo_opt.cli.simulate import versions
from slo_opt.metrics import summary
from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.sim.simulator import simulate

__all__ = ["add_parser", "cmd_demo"]


_EPILOG = """examples:
  slo-opt demo                                  all schedulers, writes ./slo_opt_demo/
  slo-opt demo --scheduler vllm --scheduler sarathi --speedup 8 --out /tmp/demo
  slo-opt demo --no-gap                         skip the optimality-gap table (no solvers needed)

outputs: OUT/demo.json (every scheduler's summary, strict JSON) and OUT/demo.png (attainment,
p99 TTFT on a log scale with the TTFT SLO line, and the gap panel)."""


def add_parser(sub: Any) -> None:
    """Add ``demo`` to the sub-command parsers."""
    d = sub.add_parser("demo", help="every scheduler on the shipped workload: table + plot",
                       description="Run every registered scheduler on the shipped workload "
                       "(table + plot), then every scheduler next to the exact offline optimum "
                       "of a small slotted instance.", epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--trace", default=None, metavar="FILE|NAME",
                   help="trace file or shipped name (default: the shipped subset)")
    d.add_argument("--time-unit", choices=tuple(TIME_UNITS), default="s",
                   help="unit of the trace's arrival times (default s)")
    d.add_argument("--profile", default=DEFAULT_PROFILE, metavar="GPU/MODEL",
                   help=f"engine profile (default {DEFAULT_PROFILE})")
    d.add_argument("--speedup", type=positive_float, default=4.0, metavar="X",
                   help="compress arrival times by this factor, > 0 (default 4: near capacity)")
    d.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use only the first N requests (>= 1)")
    d.add_argument("--scheduler", "--schedulers", dest="schedulers", action="append",
                   metavar="NAME[,NAME...]",
                   help="schedulers to run, repeatable or comma-separated (default: all; "
                   "--schedulers is the old name)")
    d.add_argument("--out", default="slo_opt_demo", metavar="DIR",
                   help="output directory (default ./slo_opt_demo)")
    d.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bar (--no-progress is the old name)")
    d.add_argument("--no-gap", action="store_true",
                   help="skip the small-instance optimality-gap table (needs the solvers extra)")
    slo_flags(d)


def cmd_demo(a: argparse.Namespace) -> int:
    """Every registered scheduler on the shipped workload: table + plot."""
    from slo_opt.workloads.generators import time_scale

    names = ([n.strip() for x in a.schedulers for n in x.split(",") if n.strip()]
             if a.schedulers else sorted(SCHEDULERS))
    unknown = [n for n in names if n not in SCHEDULERS]
    if unknown:
        raise CLIError(f"--scheduler: unknown {unknown}; known: {sorted(SCHEDULERS)}")
    if not a.no_gap:
        require_extra("slo-opt demo (its optimality-gap table; --no-gap skips it)",
                      "pyomo", "highspy")
    out = check_out_dir(a.out)
    w = load_workload(a.trace, ttft=a.ttft_slo_s, tpot=a.tpot_slo_s, e2e=None, limit=a.limit,
                      time_unit=a.time_unit)
    if a.speedup != 1.0:
        w = time_scale(w, 1.0 / a.speedup)
    eng = get_engine(a.profile)
    rows = []
    from tqdm import tqdm

    for name in tqdm(names, desc="demo", unit="scheduler", leave=False, disable=a.quiet):
        sched = build_scheduler(name, {}, max_num_batched_tokens=None, max_num_seqs=None)
        t0 = time.perf_counter()
        s = simulate(w, eng, sched)
        sm = summary(s, w)
        sm["scheduler"] = name
        sm["wall_s"] = time.perf_counter() - t0
        rows.append(sm)
    hdr = (f"{'scheduler':<12} {'attain':>7} {'TTFT ok':>7} {'TPOT ok':>7} {'p50 TTFT':>9} "
           f"{'p99 TTFT':>9} {'mean TPOT':>9} {'mean e2e':>9} {'rej':>4} {'wall':>6}")
    ttft_slo = float(w.ttft_slo_s[0])
    print(f"workload: {w.name or 'default'} ({len(w)} requests, x{a.speedup:g} arrival rate), "
          f"engine: {a.profile}, SLO TTFT {ttft_slo:g}s / "
          f"TPOT {float(w.tpot_slo_s[0]):g}s")
    print(hdr)
    print("-" * len(hdr))
    for r in sorted(rows, key=lambda r: -r["attainment"]):
        print(f"{r['scheduler']:<12} {r['attainment']:>7.3f} {r['ttft_attainment']:>7.3f} "
              f"{r['tpot_attainment']:>7.3f} {r['p50_ttft_s']:>9.3f} {r['p99_ttft_s']:>9.3f} "
              f"{r['mean_tpot_s']:>9.4f} {r['mean_e2e_s']:>9.3f} {r['num_rejected']:>4d} "
              f"{r['wall_s']:>5.2f}s")
    gap = None if a.no_gap else _demo_gap(names)
    dump_json(out / "demo.json", {"rows": rows, "gap": gap, "ttft_slo_s": ttft_slo,
                                  "versions": versions()})
    png = _demo_plot(rows, gap, out / "demo.png", ttft_slo_s=ttft_slo)
    where = out.resolve()
    print(f"wrote {where / 'demo.json'}" + (f" and {where / 'demo.png'}" if png
                                            else " (matplotlib not installed: no plot)"))
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


def _demo_plot(rows: list[dict[str, Any]], gap: dict[str, Any] | None, path: Path, *,
               ttft_slo_s: float = float("nan")) -> Path | None:
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
    att = [r["attainment"] for r in rows]
    axes[0].bar(names, att, color="tab:blue")
    for i, v in enumerate(att):  # a zero bar is invisible: label every bar
        axes[0].text(i, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=6)
    axes[0].set_title("shipped workload, H100 profile", fontsize=9)
    axes[0].set_ylabel("SLO attainment")
    axes[0].set_ylim(0, 1.1)
    p99 = np.array([r["p99_ttft_s"] for r in rows], dtype=float)
    p50 = np.array([r["p50_ttft_s"] for r in rows], dtype=float)
    floor = 1e-3  # log scale: a 0 or undefined latency is drawn at 1 ms
    axes[1].bar(names, np.where(np.isfinite(p99), np.maximum(p99, floor), floor),
                color="tab:orange", label="p99 TTFT")
    axes[1].scatter(names, np.where(np.isfinite(p50), np.maximum(p50, floor), floor),
                    color="k", marker="_", s=80, zorder=3, label="p50 TTFT")
    axes[1].set_yscale("log")
    if np.isfinite(ttft_slo_s):
        axes[1].axhline(ttft_slo_s, color="r", ls="--", lw=1, label=f"TTFT SLO {ttft_slo_s:g} s")
    axes[1].set_ylabel("TTFT (s, log scale)")
    axes[1].legend(fontsize=7)
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
