"""The ``slo-opt`` command line: demo, simulate, schedulers, profiles, profile, solve, sweep,
reproduce.

Strings live only here, at the outer boundary; everything inside is typed.
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib
import json
import math
import runpy
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt import __version__
from slo_opt.metrics import request_records, summary
from slo_opt.request import Workload
from slo_opt.schedulers import SCHEDULERS, make, scheduler_params
from slo_opt.simulator import simulate

__all__ = ["main"]

DEFAULT_PROFILE = "h100/llama-3.1-8b"


class CLIError(Exception):
    """A user error at the command line (printed without a traceback)."""


# -- helpers ------------------------------------------------------------------------------
def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values parsed as Python literals when possible."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise CLIError(f"--param expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


def get_engine(profile: str, *, kind: str | None = None, kv_capacity_tokens: int | None = None,
               max_batch_tokens: int | None = None) -> Any:
    """Resolve ``GPU/MODEL`` through the profile catalogue (errors list the valid names)."""
    from slo_opt.models import catalog

    kwargs: dict[str, Any] = {}
    if kind is not None:
        kwargs["kind"] = kind
    if kv_capacity_tokens is not None:
        kwargs["kv_capacity_tokens"] = kv_capacity_tokens
    if max_batch_tokens is not None:
        kwargs["max_batch_tokens"] = max_batch_tokens
    try:
        return catalog.get_engine(profile, **kwargs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def load_workload(trace: str | None, *, ttft: float | None, tpot: float | None,
                  e2e: float | None, limit: int | None = None) -> Workload:
    """Load a trace (path or shipped name); apply SLO overrides or the default SLO."""
    from slo_opt import traces
    from slo_opt.workload import with_slo

    try:
        w = traces.default_workload() if trace in (None, "default") else traces.load_trace(trace)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if limit is not None:
        w = w.head(limit)
    no_slo = not (np.isfinite(w.ttft_slo_s).any() or np.isfinite(w.tpot_slo_s).any()
                  or np.isfinite(w.e2e_slo_s).any())
    if ttft is not None or tpot is not None or e2e is not None or no_slo:
        d = traces.DEFAULT_SLO
        from slo_opt.request import SLO

        slo = SLO(ttft_s=d.ttft_s if ttft is None else ttft,
                  tpot_s=d.tpot_s if tpot is None else tpot,
                  e2e_s=math.inf if e2e is None else e2e)
        w = with_slo(w, slo)
    return w


def build_scheduler(name: str, params: dict[str, Any], *, max_num_batched_tokens: int | None,
                    max_num_seqs: int | None) -> Any:
    """``make`` with the engine-style flags mapped onto the scheduler's own field names."""
    if name not in SCHEDULERS:
        raise CLIError(f"unknown scheduler {name!r}; known: {sorted(SCHEDULERS)}")
    fields = scheduler_params(name)
    for flag, value, candidates in (
        ("--max-num-batched-tokens", max_num_batched_tokens,
         ("max_num_batched_tokens", "max_batch_tokens")),
        ("--max-num-seqs", max_num_seqs, ("max_num_seqs", "max_batch_seqs", "max_tasks")),
    ):
        if value is None:
            continue
        target = next((c for c in candidates if c in fields), None)
        if target is None:
            raise CLIError(f"{flag} does not apply to scheduler {name!r} "
                           f"(parameters: {sorted(fields)})")
        params.setdefault(target, value)
    try:
        return make(name, **params)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def write_records(path: Path, rec: dict[str, np.ndarray]) -> None:
    """Write column dict as CSV (one row per request)."""
    cols = list(rec)
    with open(path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(cols)
        for row in zip(*(rec[c].tolist() for c in cols)):
            wr.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    return str(o)


# -- commands -----------------------------------------------------------------------------
def cmd_simulate(a: argparse.Namespace) -> int:
    """Simulate one scheduler on one trace; write records.csv and summary.json."""
    w = load_workload(a.trace, ttft=a.ttft_slo_s, tpot=a.tpot_slo_s, e2e=a.e2e_slo_s,
                      limit=a.limit)
    eng = get_engine(a.profile, kind=a.engine_kind, kv_capacity_tokens=a.kv_capacity_tokens)
    sched = build_scheduler(a.scheduler, parse_params(a.param),
                            max_num_batched_tokens=a.max_num_batched_tokens,
                            max_num_seqs=a.max_num_seqs)
    t0 = time.perf_counter()
    s = simulate(w, eng, sched, progress=not a.no_progress and len(w) >= 2000)
    wall = time.perf_counter() - t0
    sm = summary(s, w)
    sm.update({"scheduler": a.scheduler, "params": s.meta.get("params", {}), "profile": a.profile,
               "engine": repr(eng), "trace": a.trace or "default", "wall_s": wall,
               "slo_opt_version": __version__})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "records.csv", request_records(s, w))
    (out / "summary.json").write_text(json.dumps(sm, indent=2, default=_json_default))
    print(f"{a.scheduler} on {a.profile}: {len(w)} requests, attainment {sm['attainment']:.3f}, "
          f"p99 TTFT {sm['p99_ttft_s']:.3f}s, mean e2e {sm['mean_e2e_s']:.3f}s, "
          f"{sm['num_rejected']} rejected  ({wall:.2f}s wall)")
    print(f"wrote {out / 'records.csv'} and {out / 'summary.json'}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """Every registered scheduler on the shipped workload: table + plot."""
    from slo_opt.workload import time_scale

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
                                              indent=2, default=_json_default))
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


def cmd_schedulers(a: argparse.Namespace) -> int:
    """List registered schedulers and their parameters."""
    for name in sorted(SCHEDULERS):
        params = ", ".join(f"{k}={v!r}" for k, v in scheduler_params(name).items())
        doc = (SCHEDULERS[name].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<12} {doc}\n{'':<12} {params}")
    return 0


def cmd_profiles(a: argparse.Namespace) -> int:
    """List engine profiles with their source."""
    from slo_opt.models.catalog import list_profiles

    for name, source, desc in list_profiles():
        print(f"{name:<32} {source:<16} {desc}")
    return 0


def _delegate(module: str, func: str, argv: list[str], what: str) -> int:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise CLIError(f"{what} needs {module} ({exc}); install the matching extra") from None
    fn = getattr(mod, func, None)
    if fn is None:
        raise CLIError(f"{what} is not available in this build ({module}.{func} missing)")
    rc = fn(argv)
    return int(rc or 0)


def experiments_dir() -> Path:
    """The repository's ``experiments/`` folder (next to the package, or under the cwd)."""
    for base in (Path(__file__).resolve().parent.parent, Path.cwd()):
        d = base / "experiments"
        if d.is_dir():
            return d
    raise CLIError("experiments/ not found: run `slo-opt reproduce` from a clone of the repository")


def cmd_reproduce(a: argparse.Namespace, rest: list[str]) -> int:
    """Run ``experiments/<paper>.py``'s ``main(argv)``."""
    d = experiments_dir()
    papers = sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_"))
    if a.paper not in papers:
        raise CLIError(f"unknown paper {a.paper!r}; available: {papers}")
    ns = runpy.run_path(str(d / f"{a.paper}.py"), run_name="slo_opt_reproduce")
    return int(ns["main"](rest) or 0)


# -- parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``slo-opt``."""
    p = argparse.ArgumentParser(prog="slo-opt", description=__doc__)
    p.add_argument("--version", action="version", version=f"slo_opt {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def slo_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--ttft-slo-s", type=float, help="override every request's TTFT SLO")
        sp.add_argument("--tpot-slo-s", type=float, help="override every request's TPOT SLO")

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

    s = sub.add_parser("simulate", help="simulate one scheduler on a trace")
    s.add_argument("--trace", default=None, help="trace file (Azure/Mooncake/plain CSV) or name")
    s.add_argument("--scheduler", required=True)
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="scheduler parameter")
    s.add_argument("--profile", default=DEFAULT_PROFILE, help="GPU/MODEL engine profile")
    s.add_argument("--engine-kind", default=None, choices=("linear", "table", "roofline"))
    s.add_argument("--max-num-batched-tokens", type=int, default=None)
    s.add_argument("--max-num-seqs", type=int, default=None)
    s.add_argument("--kv-capacity-tokens", type=int, default=None)
    s.add_argument("--e2e-slo-s", type=float, default=None)
    s.add_argument("--limit", type=int, default=None, help="use only the first N requests")
    s.add_argument("--out", required=True)
    s.add_argument("--no-progress", action="store_true")
    slo_flags(s)

    sub.add_parser("schedulers", help="list schedulers and their parameters")
    sub.add_parser("profiles", help="list engine profiles and their sources")
    sub.add_parser("profile", help="GPU profiling sweep (needs CUDA + PyTorch)", add_help=False)
    sub.add_parser("solve", help="offline optimum / bounds vs schedulers", add_help=False)
    sub.add_parser("sweep", help="run a TOML sweep (local or ray)", add_help=False)
    r = sub.add_parser("reproduce", help="run a paper reproduction from experiments/")
    r.add_argument("paper")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``slo-opt``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in ("profile", "solve", "sweep"):
            target = {"profile": ("slo_opt.models.gpu_profile", "main", "slo-opt profile"),
                      "solve": ("slo_opt.solvers", "cli_solve", "slo-opt solve"),
                      "sweep": ("slo_opt.sweep", "cli_main", "slo-opt sweep")}[argv[0]]
            return _delegate(target[0], target[1], argv[1:], target[2])
        if len(argv) >= 2 and argv[0] == "reproduce" and not argv[1].startswith("-"):
            return cmd_reproduce(argparse.Namespace(paper=argv[1]), argv[2:])
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        if args.cmd == "reproduce":
            return cmd_reproduce(args, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return {"demo": cmd_demo, "simulate": cmd_simulate, "schedulers": cmd_schedulers,
                "profiles": cmd_profiles}[args.cmd](args)
    except CLIError as exc:
        print(f"slo-opt: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


