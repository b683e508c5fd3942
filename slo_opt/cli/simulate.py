"""``slo-opt simulate`` (one scheduler on one trace), ``slo-opt schedulers`` and
``slo-opt profiles`` (what can be simulated)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from slo_opt import __version__
from slo_opt.cli.common import (
    DEFAULT_PROFILE,
    FORMATS,
    TIME_UNITS,
    build_scheduler,
    check_out_dir,
    dump_json,
    engine_flags,
    get_engine,
    load_workload,
    parse_params,
    positive_float,
    positive_int,
    slo_flags,
    write_records,
)
from slo_opt.metrics import request_records, summary
from slo_opt.schedulers import SCHEDULERS, scheduler_params
from slo_opt.sim.simulator import simulate

__all__ = ["add_parsers", "cmd_profiles", "cmd_schedulers", "cmd_simulate"]


_EPILOG = """examples:
  slo-opt simulate --scheduler vllm --out runs/vllm
  slo-opt simulate --trace azure-conv --scheduler sarathi --max-num-batched-tokens 512 \\
      --param chunked_prefill=true --ttft-slo-s 2 --out runs/sarathi --format parquet
  slo-opt simulate --trace my.csv --time-unit ms --scheduler fcfs --limit 1000 --out runs/fcfs

outputs: OUT/records.csv (or .parquet; one row per request) and OUT/summary.json (headline
numbers, the SLO, engine, scheduler parameters and package versions; strict JSON, null for
undefined values). `slo-opt schedulers` lists every scheduler's parameters."""


def add_parsers(sub: Any) -> None:
    """Add ``simulate``, ``schedulers`` and ``profiles`` to the sub-command parsers."""
    s = sub.add_parser("simulate", help="simulate one scheduler on a trace",
                       description="Simulate one scheduler on one trace with an engine profile "
                       "and write per-request records and a summary.", epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--trace", default=None, metavar="FILE|NAME",
                   help="trace file (Azure/Mooncake/plain CSV) or shipped name (default: the "
                   "shipped Azure conversation subset)")
    s.add_argument("--time-unit", choices=tuple(TIME_UNITS), default="s",
                   help="unit of the trace's arrival times (default s)")
    s.add_argument("--scheduler", required=True, metavar="NAME",
                   help=f"scheduler name, one of: {', '.join(sorted(SCHEDULERS))}")
    s.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="scheduler parameter, repeatable; converted by the parameter's type "
                   "(true/false for booleans); `slo-opt schedulers` lists them")
    s.add_argument("--profile", default=DEFAULT_PROFILE, metavar="GPU/MODEL",
                   help=f"engine profile (default {DEFAULT_PROFILE}; `slo-opt profiles` lists them)")
    s.add_argument("--engine-kind", default=None, choices=("linear", "table", "roofline"),
                   help="engine latency model (default: the profile's own)")
    engine_flags(s)
    s.add_argument("--e2e-slo-s", type=positive_float, default=None, metavar="S",
                   help="end-to-end latency SLO, seconds (> 0; default none)")
    slo_flags(s)
    s.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use only the first N requests (>= 1)")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="output directory (created; must not be a file)")
    s.add_argument("--format", choices=FORMATS, default="csv",
                   help="records file format (default csv)")
    s.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bar (--no-progress is the old name)")

    sub.add_parser("schedulers", help="list schedulers and their parameters",
                   description="List every registered scheduler with its parameters and defaults.")
    sub.add_parser("profiles", help="list engine profiles and their sources",
                   description="List every engine profile (GPU/MODEL) with its data source.")


def _slo_of(w: Any) -> dict[str, Any]:
    """The SLO of a workload: one value per kind if uniform, else min/max."""
    out: dict[str, Any] = {}
    for k in ("ttft_slo_s", "tpot_slo_s", "e2e_slo_s"):
        v = np.asarray(getattr(w, k), dtype=float)
        lo, hi = float(v.min()), float(v.max())
        out[k] = lo if lo == hi else {"min": lo, "max": hi}
    return out


def versions() -> dict[str, str]:
    """Versions of Python, slo_opt and the numeric libraries a result depends on."""
    import platform

    return {"python": platform.python_version(), "slo_opt": __version__,
            "numpy": np.__version__}


def overload_note(rec: dict[str, np.ndarray], attainment: float) -> str | None:
    """One line if the run looks overloaded (nothing met its SLO and the queue grew: the TTFT
    of the last tenth of requests is > 10x that of the first tenth), else ``None``."""
    ttft = np.asarray(rec["ttft_s"], dtype=float)
    n = len(ttft)
    if n < 10 or attainment > 0.0:
        return None
    k = max(n // 10, 1)
    first, last = np.nanmedian(ttft[:k]), np.nanmedian(ttft[-k:])
    if not (np.isfinite(first) and np.isfinite(last)) or last <= 10 * max(first, 1e-9):
        return None
    return (f"note: overloaded: attainment 0 and the queue grows (median TTFT {first:.3g} s for "
            f"the first tenth of requests, {last:.3g} s for the last): lower the arrival rate or "
            "use a larger engine")


def cmd_simulate(a: argparse.Namespace) -> int:
    """Simulate one scheduler on one trace; write records and summary.json."""
    out = check_out_dir(a.out)
    w = load_workload(a.trace, ttft=a.ttft_slo_s, tpot=a.tpot_slo_s, e2e=a.e2e_slo_s,
                      limit=a.limit, time_unit=a.time_unit)
    eng = get_engine(a.profile, kind=a.engine_kind, kv_capacity_tokens=a.kv_capacity_tokens)
    sched = build_scheduler(a.scheduler, parse_params(a.param),
                            max_num_batched_tokens=a.max_num_batched_tokens,
                            max_num_seqs=a.max_num_seqs)
    t0 = time.perf_counter()
    s = simulate(w, eng, sched, progress=not a.quiet and len(w) >= 2000)
    wall = time.perf_counter() - t0
    sm = summary(s, w)
    rec = request_records(s, w, eng)
    sm.update({"scheduler": a.scheduler, "params": s.meta.get("params", {}), "profile": a.profile,
               "engine": repr(eng), "trace": a.trace or "default", "time_unit": a.time_unit,
               "slo": _slo_of(w), "seed": None, "wall_s": wall, "versions": versions(),
               "slo_opt_version": __version__})
    rpath = write_records(out / f"records.{a.format}", rec, format=a.format)
    dump_json(out / "summary.json", sm)

    def f(x: Any, spec: str) -> str:
        return "n/a" if x is None or not np.isfinite(x) else format(x, spec)

    print(f"{a.scheduler} on {a.profile}: {len(w)} requests, attainment {sm['attainment']:.3f}, "
          f"p99 TTFT {f(sm['p99_ttft_s'], '.3f')}s, mean e2e {f(sm['mean_e2e_s'], '.3f')}s, "
          f"{sm['num_rejected']} rejected  ({wall:.2f}s wall)")
    note = overload_note(rec, sm["attainment"])
    if note:
        print(note)
    print(f"wrote {rpath} and {out / 'summary.json'}")
    return 0


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
