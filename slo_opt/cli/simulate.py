"""``slo-opt simulate`` (one scheduler on one trace), ``slo-opt schedulers`` and
``slo-opt profiles`` (what can be simulated)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from slo_opt import __version__
from slo_opt.cli.common import (
    DEFAULT_PROFILE,
    build_scheduler,
    get_engine,
    json_default,
    load_workload,
    parse_params,
    slo_flags,
    write_records,
)
from slo_opt.metrics import request_records, summary
from slo_opt.schedulers import SCHEDULERS, scheduler_params
from slo_opt.sim.simulator import simulate

__all__ = ["add_parsers", "cmd_profiles", "cmd_schedulers", "cmd_simulate"]


def add_parsers(sub: Any) -> None:
    """Add ``simulate``, ``schedulers`` and ``profiles`` to the sub-command parsers."""
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
    (out / "summary.json").write_text(json.dumps(sm, indent=2, default=json_default))
    print(f"{a.scheduler} on {a.profile}: {len(w)} requests, attainment {sm['attainment']:.3f}, "
          f"p99 TTFT {sm['p99_ttft_s']:.3f}s, mean e2e {sm['mean_e2e_s']:.3f}s, "
          f"{sm['num_rejected']} rejected  ({wall:.2f}s wall)")
    print(f"wrote {out / 'records.csv'} and {out / 'summary.json'}")
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
