"""Helpers shared by the ``slo-opt`` commands: user errors, ``KEY=VALUE`` parameters, engines,
workloads and schedulers from command-line strings, CSV/JSON output.

Strings live only here, at the outer boundary; everything inside is typed.
"""

from __future__ import annotations

import argparse
import ast
import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.request import Workload
from slo_opt.schedulers import SCHEDULERS, make, scheduler_params

__all__ = ["DEFAULT_PROFILE", "CLIError", "build_scheduler", "get_engine", "json_default",
           "load_workload", "parse_params", "slo_flags", "write_records"]

DEFAULT_PROFILE = "h100/llama-3.1-8b"


class CLIError(Exception):
    """A user error at the command line (printed without a traceback)."""


def slo_flags(sp: argparse.ArgumentParser) -> None:
    """The ``--ttft-slo-s`` / ``--tpot-slo-s`` overrides of a command."""
    sp.add_argument("--ttft-slo-s", type=float, help="override every request's TTFT SLO")
    sp.add_argument("--tpot-slo-s", type=float, help="override every request's TPOT SLO")


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
    from slo_opt.workloads import traces
    from slo_opt.workloads.generators import with_slo

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


def json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    return str(o)
