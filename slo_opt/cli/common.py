"""Helpers shared by the ``slo-opt`` commands: user errors, ``KEY=VALUE`` parameters, engines,
workloads and schedulers from command-line strings, CSV/JSON output.

Strings live only here, at the outer boundary; everything inside is typed.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from slo_opt.request import Workload
from slo_opt.schedulers import SCHEDULERS, make, scheduler_params

__all__ = ["DEFAULT_PROFILE", "CLIError", "Parser", "build_scheduler", "check_out_dir",
           "dump_json", "get_engine", "json_default", "load_workload", "number", "parse_params",
           "require_extra", "slo_flags", "strict_json", "write_records"]

DEFAULT_PROFILE = "h100/llama-3.1-8b"
#: ``--format`` choices of the records files.
FORMATS = ("csv", "parquet")
#: ``--time-unit`` choices and their factor to seconds.
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
#: Largest accepted arrival time (s): beyond it float64 resolves less than ~0.1 ms.
MAX_ARRIVAL_S = 1e11
#: A trace spanning more than this many seconds (30 days) warns about its time unit.
WARN_SPAN_S = 30 * 86400.0


class CLIError(Exception):
    """A user error at the command line (printed without a traceback)."""


class Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line (``PROG: error: MSG``,
    exit status 2) instead of the usage block followed by the message; ``--help`` shows the
    usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(kind: type = float, *, gt: float | None = None, ge: float | None = None,
           le: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type=`` converting to ``kind`` (int or float) within a range; its error
    (``argument --FLAG: must be ...``) names the allowed range and the value given."""
    parts = [f"> {gt:g}" if gt is not None else "", f">= {ge:g}" if ge is not None else "",
             f"<= {le:g}" if le is not None else ""]
    rng = " and ".join(x for x in parts if x)
    what = ("an integer" if kind is int else "a finite number") + (f" {rng}" if rng else "")

    def conv(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if (not math.isfinite(v) or (gt is not None and not v > gt)
                or (ge is not None and not v >= ge) or (le is not None and not v <= le)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    conv.__name__ = kind.__name__
    return conv


#: Common ``type=`` converters.
positive_float = number(float, gt=0)
nonneg_float = number(float, ge=0)
positive_int = number(int, ge=1)
nonneg_int = number(int, ge=0)


def slo_flags(sp: argparse.ArgumentParser) -> None:
    """The ``--ttft-slo-s`` / ``--tpot-slo-s`` overrides of a command."""
    sp.add_argument("--ttft-slo-s", type=positive_float, metavar="S",
                    help="override every request's TTFT SLO, seconds (> 0)")
    sp.add_argument("--tpot-slo-s", type=positive_float, metavar="S",
                    help="override every request's TPOT SLO, seconds per token (> 0)")


def engine_flags(sp: argparse.ArgumentParser, *, defaults: dict[str, int] | None = None
                 ) -> None:
    """The engine arguments, named as vLLM's engine arguments (``--max-num-batched-tokens``,
    ``--max-num-seqs``) plus ``--kv-capacity-tokens``; ``defaults`` gives a command's own."""
    d = defaults or {}

    def dflt(k: str) -> str:
        return f" (default {d[k]})" if k in d else " (default: the scheduler's / profile's)"

    sp.add_argument("--max-num-batched-tokens", "--max-batch-tokens",
                    dest="max_num_batched_tokens", type=positive_int,
                    default=d.get("max_num_batched_tokens"), metavar="N",
                    help="token budget of one engine step, >= 1" + dflt("max_num_batched_tokens")
                    + "; --max-batch-tokens is a deprecated alias")
    sp.add_argument("--max-num-seqs", type=positive_int, default=d.get("max_num_seqs"),
                    metavar="N", help="most running sequences, >= 1" + dflt("max_num_seqs"))
    sp.add_argument("--kv-capacity-tokens", type=positive_int,
                    default=d.get("kv_capacity_tokens"), metavar="N",
                    help="KV-cache capacity in tokens, >= 1" + dflt("kv_capacity_tokens"))


#: Deprecated flag names and their replacements (warned about by :func:`warn_deprecated`).
DEPRECATED_FLAGS = {"--max-batch-tokens": "--max-num-batched-tokens",
                    "--schedulers": "--scheduler", "--no-progress": "--quiet"}


def warn_deprecated(argv: Sequence[str]) -> None:
    """A ``FutureWarning`` (shown to users on stderr) for every old flag name in ``argv``."""
    for arg in argv:
        new = DEPRECATED_FLAGS.get(arg.split("=", 1)[0])
        if new is not None:
            warnings.warn(f"{arg.split('=', 1)[0]} is deprecated; use {new}",
                          FutureWarning, stacklevel=2)


#: Which extra provides which module (for "install slo_opt[EXTRA]" messages).
EXTRA_OF = {"pyomo": "solvers", "highspy": "solvers", "cvxpy": "solvers", "scipy": "solvers",
            "matplotlib": "experiments", "ray": "ray", "torch": "torch"}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(what: str, *modules: str) -> None:
    """Raise :class:`CLIError` up front, before any work, if a module ``what`` needs is not
    installed, naming the extra that provides it."""
    missing = [m for m in modules if not _importable(m)]
    if not missing:
        return
    extras = sorted({EXTRA_OF.get(m, m) for m in missing})
    if extras == ["torch"]:
        raise CLIError(f"{what} needs PyTorch with CUDA (missing: {', '.join(missing)}); "
                       "install torch for your GPU, see https://pytorch.org")
    spec = ",".join(e for e in extras if e != "torch")
    raise CLIError(f"{what} needs the {spec!r} extra (missing: {', '.join(missing)}); "
                   f"pip install \"slo_opt[{spec}]\"")


def check_out_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Create output directory ``path`` (and parents) and check it is writable, before any
    work; a path that is a file, or a directory that cannot be created or written, is a
    :class:`CLIError` naming ``flag``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"{flag} {str(p)!r} is an existing file; give a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"{flag} {str(p)!r}: cannot create directory ({exc.strerror})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {str(p)!r}: directory is not writable")
    return p


def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values parsed as Python literals when possible (strings
    otherwise; :meth:`slo_opt.registry.Registry.convert` converts them by field type)."""
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
                  e2e: float | None, limit: int | None = None, time_unit: str = "s"
                  ) -> Workload:
    """Load a trace (path or shipped name); apply SLO overrides or the default SLO.

    Arrival times are in ``time_unit`` (``s``, ``ms``, ``us``, ``ns``) and converted to
    seconds. An empty workload is an error; arrivals beyond :data:`MAX_ARRIVAL_S` (float64
    cannot then resolve a step: epoch nanoseconds read as seconds) are an error, a span longer
    than :data:`WARN_SPAN_S` warns.
    """
    from slo_opt.workloads import traces
    from slo_opt.workloads.generators import with_slo

    try:
        w = traces.default_workload() if trace in (None, "default") else traces.load_trace(trace)
    except (OSError, ValueError) as exc:
        raise CLIError(f"--trace: {exc}") from None
    if limit is not None:
        w = w.head(limit)
    if len(w) == 0:
        raise CLIError(f"--trace {trace or 'default'!r}: no requests (empty workload)")
    scale = TIME_UNITS[time_unit]
    if scale != 1.0:
        from slo_opt.workloads.generators import time_scale

        w = time_scale(w, scale)
    arr = np.asarray(w.arrival_s, dtype=float)
    if not np.isfinite(arr).all() or float(np.abs(arr).max()) > MAX_ARRIVAL_S:
        raise CLIError(
            f"--trace {trace!r}: arrival times up to {float(np.abs(arr).max()):.3g} s exceed "
            f"{MAX_ARRIVAL_S:.0e} s (epoch time in ms/us/ns?): pass --time-unit ms|us|ns or "
            "subtract the first arrival")
    span = float(arr.max() - arr.min())
    if span > WARN_SPAN_S:
        warnings.warn(f"trace {trace!r} spans {span / 86400:.1f} days of arrivals; if its times "
                      "are not seconds pass --time-unit", stacklevel=2)
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
        return make(name, **SCHEDULERS.convert(name, params, text=True))
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def write_records(path: Path, rec: dict[str, np.ndarray], *, format: str = "csv") -> Path:
    """Write a column dict (one row per request) as CSV or Parquet through
    :func:`slo_opt.study.tables.write_table`; returns the path written."""
    from slo_opt.study.tables import write_table

    return write_table(path, rec, format="parquet" if format == "parquet" else "csv")


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf) replaced by ``None`` and numpy scalars
    by Python ones, so that ``json.dumps(..., allow_nan=False)`` writes strict JSON."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dump_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (no bare ``NaN``; see :func:`strict_json`)."""
    path.write_text(json.dumps(strict_json(obj), indent=2, default=json_default,
                               allow_nan=False) + "\n")


def json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    return str(o)
