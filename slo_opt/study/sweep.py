"""Parameter sweeps: a grid of workloads x schedulers (x parameters) x engines x seeds.

A sweep is described by a TOML file (``slo-opt sweep CONFIG.toml``) or built in Python::

    name = "example"
    seeds = [0, 1]                    # or an int n: seeds 0..n-1

    [[workloads]]
    name = "chat"
    kind = "synthetic"                # or "trace"
    num_requests = 300
    rate_per_s = 4.0
    ttft_slo_s = 2.0
    tpot_slo_s = 0.2

    [[schedulers]]
    name = "vllm"
    params = { max_num_batched_tokens = 4096 }
    grid = { max_num_seqs = [64, 256] }   # one run per value (cartesian product over keys)

    [[engines]]
    name = "h100"
    profile = "h100/llama-3.1-8b"

Every run is a pure function of its :class:`RunSpec` (configuration and seed): the workload
is drawn from ``numpy.random.default_rng(seed)`` and the simulator is deterministic. Hence the
``local`` executor (a process pool) and the ``ray`` executor (Ray tasks, on a local Ray or an
existing cluster given by ``address``) return identical rows. Each finished run is written to
``OUT/runs/<run_id>.json`` at once, so an interrupted sweep resumes where it stopped
(``resume=True`` skips runs whose file exists). The result is one tidy table, one row per
run (configuration columns + :func:`slo_opt.metrics.summary`), written as ``results.csv``
and, when pyarrow is installed, ``results.parquet``, next to ``config.json`` (package version,
git sha, the resolved configuration). Wall-clock times are kept out of the table (they differ
between executors) and recorded per run in the run files.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt._moved import forward

__all__ = [
    "EngineSpec",
    "RunSpec",
    "SchedulerSpec",
    "Sweep",
    "SweepConfigError",
    "WorkloadSpec",
    "run_one",
    "run_sweep",
]

RUN_FORMAT = 2  # bump when the row format changes (old run files are then recomputed)


class SweepConfigError(ValueError):
    """A sweep configuration is malformed (unknown key, wrong type, bad value)."""


# -- validation helpers -------------------------------------------------------------------------
def _check_keys(where: str, d: Mapping[str, Any], allowed: Iterable[str],
                required: Iterable[str] = ()) -> None:
    if not isinstance(d, Mapping):
        raise SweepConfigError(f"{where}: expected a table, got {type(d).__name__}")
    allowed = set(allowed)
    for k in d:
        if k not in allowed:
            raise SweepConfigError(f"{where}: unknown key {k!r}; allowed: {sorted(allowed)}")
    for k in required:
        if k not in d:
            raise SweepConfigError(f"{where}: missing required key {k!r}")


def _num(where: str, x: Any, *, integer: bool = False, positive: bool = True,
         allow_inf: bool = False) -> Any:
    ok_types = (int,) if integer else (int, float)
    if isinstance(x, bool) or not isinstance(x, ok_types):
        raise SweepConfigError(f"{where}: expected {'an integer' if integer else 'a number'}, "
                               f"got {x!r}")
    if not allow_inf and not math.isfinite(x):
        raise SweepConfigError(f"{where}: must be finite, got {x!r}")
    if positive and not x > 0:
        raise SweepConfigError(f"{where}: must be > 0, got {x!r}")
    return x


def _str(where: str, x: Any) -> str:
    if not isinstance(x, str) or not x:
        raise SweepConfigError(f"{where}: expected a non-empty string, got {x!r}")
    return x


def _scalar_params(where: str, d: Any) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise SweepConfigError(f"{where}: expected a table, got {d!r}")
    for k, v in d.items():
        if not isinstance(v, bool | int | float | str):
            raise SweepConfigError(f"{where}.{k}: expected a scalar, got {v!r}")
    return dict(d)


# -- specs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkloadSpec:
    """How to build one workload from a seed.

    Parameters
    ----------
    name : str
        Label used in the results table.
    kind : {"synthetic", "trace"}
        ``synthetic``: :func:`slo_opt.workloads.generators.synthetic`; ``trace``: a named trace or CSV path
        (:func:`slo_opt.workloads.traces.load_trace`).
    num_requests : int, optional
        Synthetic: number of requests (required). Trace: keep only the first ``num_requests``.
    rate_per_s : float, optional
        Synthetic: mean arrival rate (required). Trace: rescale arrivals to this mean rate.
    arrival : {"poisson", "gamma"}
        Synthetic arrival law; ``cv`` is the gamma coefficient of variation.
    lengths : str
        Synthetic lengths: ``"default"`` (the shipped ShareGPT table, resampled) or
        ``"fixed"`` (``prompt_tokens`` / ``output_tokens``).
    trace : str, optional
        Trace name or path (``kind = "trace"``).
    ttft_slo_s, tpot_slo_s, e2e_slo_s : float
        One SLO for every request (``inf``: none); applied when any is finite.
    """

    name: str
    kind: str = "synthetic"
    num_requests: int | None = None
    rate_per_s: float | None = None
    arrival: str = "poisson"
    cv: float = 1.0
    lengths: str = "default"
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    trace: str | None = None
    ttft_slo_s: float = math.inf
    tpot_slo_s: float = math.inf
    e2e_slo_s: float = math.inf

    def __post_init__(self) -> None:
        w = f"workload {self.name!r}"
        _str(f"{w}.name", self.name)
        if self.kind not in ("synthetic", "trace"):
            raise SweepConfigError(f"{w}.kind: must be 'synthetic' or 'trace', got {self.kind!r}")
        if self.num_requests is not None:
            _num(f"{w}.num_requests", self.num_requests, integer=True)
        if self.rate_per_s is not None:
            _num(f"{w}.rate_per_s", self.rate_per_s)
        for k in ("ttft_slo_s", "tpot_slo_s", "e2e_slo_s"):
            _num(f"{w}.{k}", getattr(self, k), allow_inf=True)
        if self.kind == "synthetic":
            if self.num_requests is None or self.rate_per_s is None:
                raise SweepConfigError(f"{w}: synthetic workloads need num_requests and rate_per_s")
            if self.arrival not in ("poisson", "gamma"):
                raise SweepConfigError(f"{w}.arrival: must be 'poisson' or 'gamma'")
            _num(f"{w}.cv", self.cv)
            if self.lengths not in ("default", "fixed"):
                raise SweepConfigError(f"{w}.lengths: must be 'default' or 'fixed', "
                                       f"got {self.lengths!r}")
            if self.lengths == "fixed":
                if self.prompt_tokens is None or self.output_tokens is None:
                    raise SweepConfigError(f"{w}: lengths='fixed' needs prompt_tokens and "
                                           "output_tokens")
                _num(f"{w}.prompt_tokens", self.prompt_tokens, integer=True)
                _num(f"{w}.output_tokens", self.output_tokens, integer=True)
            if self.trace is not None:
                raise SweepConfigError(f"{w}.trace: only for kind = 'trace'")
        else:
            if self.trace is None:
                raise SweepConfigError(f"{w}: kind = 'trace' needs trace = NAME_OR_PATH")
            _str(f"{w}.trace", self.trace)

    def build(self, seed: int) -> Any:
        """The workload for ``seed`` (a pure function of this spec and the seed)."""
        from slo_opt.request import SLO
        from slo_opt.workloads.generators import (
            EmpiricalLengths,
            FixedLengths,
            rescale_rate,
            synthetic,
            with_slo,
        )

        rng = np.random.default_rng(seed)
        slo = SLO(ttft_s=self.ttft_slo_s, tpot_s=self.tpot_slo_s, e2e_s=self.e2e_slo_s)
        has_slo = any(math.isfinite(x) for x in (self.ttft_slo_s, self.tpot_slo_s, self.e2e_slo_s))
        if self.kind == "synthetic":
            lengths = (EmpiricalLengths.default() if self.lengths == "default"
                       else FixedLengths(int(self.prompt_tokens), int(self.output_tokens)))
            return synthetic(int(self.num_requests), float(self.rate_per_s), lengths, rng,
                             arrival=self.arrival, cv=float(self.cv),  # type: ignore[arg-type]
                             classes=slo if has_slo else None, name=self.name)
        from slo_opt.workloads.traces import load_trace

        w = load_trace(str(self.trace))
        if self.num_requests is not None:
            w = w.head(int(self.num_requests))
        if self.rate_per_s is not None:
            w = rescale_rate(w, float(self.rate_per_s))
        return with_slo(w, slo, rng) if has_slo else w


@dataclass(frozen=True)
class SchedulerSpec:
    """A registered scheduler with fixed ``params`` and a ``grid`` of values to sweep."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from slo_opt.schedulers import SCHEDULERS, scheduler_params

        where = f"scheduler {self.name!r}"
        if self.name not in SCHEDULERS:
            raise SweepConfigError(f"{where}: unknown scheduler; known: {sorted(SCHEDULERS)}")
        valid = scheduler_params(self.name)
        _scalar_params(f"{where}.params", self.params)
        if not isinstance(self.grid, Mapping):
            raise SweepConfigError(f"{where}.grid: expected a table of lists")
        for k in list(self.params) + list(self.grid):
            if k not in valid:
                raise SweepConfigError(f"{where}: unknown parameter {k!r}; valid: {sorted(valid)}")
        for k, vs in self.grid.items():
            if not isinstance(vs, list) or not vs:
                raise SweepConfigError(f"{where}.grid.{k}: expected a non-empty list")
            _scalar_params(f"{where}.grid.{k}", {str(i): v for i, v in enumerate(vs)})
            if k in self.params:
                raise SweepConfigError(f"{where}: parameter {k!r} is both in params and grid")
        # fail early on invalid values
        for p in self.expand():
            self.make(p)

    def expand(self) -> list[dict[str, Any]]:
        """Every parameter combination (params + one value per grid key), in grid order."""
        keys = list(self.grid)
        return [dict(self.params, **dict(zip(keys, vals)))
                for vals in itertools.product(*(self.grid[k] for k in keys))]

    def make(self, params: Mapping[str, Any]) -> Any:
        from slo_opt.schedulers import make

        try:
            return make(self.name, **params)
        except (TypeError, ValueError) as exc:
            raise SweepConfigError(f"scheduler {self.name!r} with {dict(params)}: {exc}") from None


@dataclass(frozen=True)
class EngineSpec:
    """An engine: a catalogue profile (:func:`slo_opt.models.get_engine`) or a slot engine.

    ``profile`` with optional ``kv_capacity_tokens`` / ``max_batch_tokens`` overrides, or
    ``kind = "slot"`` with ``step_s``, ``max_batch_tokens``, ``kv_capacity_tokens``.
    """

    name: str
    profile: str | None = None
    kind: str | None = None
    kv_capacity_tokens: int | None = None
    max_batch_tokens: int | None = None
    step_s: float | None = None
    kv_block_tokens: int | None = None

    def __post_init__(self) -> None:
        where = f"engine {self.name!r}"
        _str(f"{where}.name", self.name)
        for k in ("kv_capacity_tokens", "max_batch_tokens", "kv_block_tokens"):
            if getattr(self, k) is not None:
                _num(f"{where}.{k}", getattr(self, k), integer=True)
        if self.kind == "slot":
            if self.profile is not None:
                raise SweepConfigError(f"{where}: give either profile or kind = 'slot'")
            for k in ("step_s", "max_batch_tokens", "kv_capacity_tokens"):
                if getattr(self, k) is None:
                    raise SweepConfigError(f"{where}: kind = 'slot' needs {k}")
            _num(f"{where}.step_s", self.step_s)
        elif self.kind is None or self.kind == "profile":
            if self.profile is None:
                raise SweepConfigError(f"{where}: needs profile = NAME (or kind = 'slot')")
            if self.step_s is not None:
                raise SweepConfigError(f"{where}.step_s: only for kind = 'slot'")
        else:
            raise SweepConfigError(f"{where}.kind: must be 'profile' or 'slot', got {self.kind!r}")
        try:
            self.build()
        except SweepConfigError:
            raise
        except Exception as exc:  # unknown profile, bad override
            raise SweepConfigError(f"{where}: {exc}") from None

    def build(self) -> Any:
        """The engine model."""
        if self.kind == "slot":
            from slo_opt.models import SlotEngine

            return SlotEngine(step_s=float(self.step_s), max_batch_tokens=int(self.max_batch_tokens),
                              kv_capacity_tokens=int(self.kv_capacity_tokens),
                              kv_block_tokens=int(self.kv_block_tokens or 1), name=self.name)
        from slo_opt.models import get_engine

        kw: dict[str, Any] = {}
        for k in ("kv_capacity_tokens", "max_batch_tokens", "kv_block_tokens"):
            if getattr(self, k) is not None:
                kw[k] = int(getattr(self, k))
        return get_engine(str(self.profile), **kw)


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: everything :func:`run_one` needs (picklable, hashable id)."""

    workload: WorkloadSpec
    scheduler: str
    params: tuple[tuple[str, Any], ...]
    engine: EngineSpec
    seed: int
    fast_forward: bool = True

    def config(self) -> dict[str, Any]:
        """JSON-able description (what the id hashes)."""
        return {
            "workload": _asdict(self.workload),
            "scheduler": self.scheduler,
            "params": dict(self.params),
            "engine": _asdict(self.engine),
            "seed": self.seed,
            "fast_forward": self.fast_forward,
            "format": RUN_FORMAT,
            # the trace file's content, not only its path: an edited trace is a new run
            "trace_sha256": _file_sha256(self.workload.trace),
        }

    @property
    def run_id(self) -> str:
        """Stable 16-hex-digit id of the configuration."""
        blob = json.dumps(self.config(), sort_keys=True, default=_json_default)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_sha256(path: str | None) -> str | None:
    """SHA-256 of a trace file's bytes (``None`` for a named trace or no trace), cached per
    (path, size, modification time)."""
    if path is None or not Path(path).is_file():
        return None
    st = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(x: Any) -> Any:
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return repr(x)


def _asdict(x: Any) -> dict[str, Any]:
    d = dataclasses.asdict(x)
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in d.items()}


_TOP_KEYS = ("name", "seeds", "fast_forward", "workloads", "schedulers", "engines")
_WORKLOAD_KEYS = tuple(f.name for f in dataclasses.fields(WorkloadSpec))
_SCHED_KEYS = ("name", "params", "grid")
_ENGINE_KEYS = tuple(f.name for f in dataclasses.fields(EngineSpec))


@dataclass(frozen=True)
class Sweep:
    """A grid of runs: ``workloads x schedulers (x their grids) x engines x seeds``."""

    name: str
    workloads: tuple[WorkloadSpec, ...]
    schedulers: tuple[SchedulerSpec, ...]
    engines: tuple[EngineSpec, ...]
    seeds: tuple[int, ...] = (0,)
    fast_forward: bool = True

    def __post_init__(self) -> None:
        _str("sweep.name", self.name)
        for what in ("workloads", "schedulers", "engines"):
            items = getattr(self, what)
            if not items:
                raise SweepConfigError(f"sweep {self.name!r}: needs at least one of {what}")
            if what != "schedulers":
                names = [x.name for x in items]
                dup = sorted({x for x in names if names.count(x) > 1})
                if dup:
                    raise SweepConfigError(f"sweep {self.name!r}: duplicate {what} names {dup}")
        if not self.seeds:
            raise SweepConfigError("sweep.seeds: needs at least one seed")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise SweepConfigError(f"sweep.seeds: expected integers >= 0, got {s!r}")
        if not isinstance(self.fast_forward, bool):
            raise SweepConfigError("sweep.fast_forward: expected true or false")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sweep:
        """Validate a parsed TOML document; unknown keys raise :class:`SweepConfigError`."""
        _check_keys("sweep", d, _TOP_KEYS, required=("workloads", "schedulers", "engines"))
        seeds = d.get("seeds", [0])
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            if seeds < 1:
                raise SweepConfigError(f"sweep.seeds: an integer count must be >= 1, got {seeds}")
            seeds = list(range(seeds))
        if not isinstance(seeds, list):
            raise SweepConfigError(f"sweep.seeds: expected an integer or a list, got {seeds!r}")

        def tables(key: str) -> list[Mapping[str, Any]]:
            v = d[key]
            if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
                raise SweepConfigError(f"sweep.{key}: expected an array of tables ([[{key}]])")
            return v

        wl, sc, en = [], [], []
        for i, t in enumerate(tables("workloads")):
            _check_keys(f"workloads[{i}]", t, _WORKLOAD_KEYS, required=("name",))
            wl.append(_construct(WorkloadSpec, f"workloads[{i}]", t))
        for i, t in enumerate(tables("schedulers")):
            _check_keys(f"schedulers[{i}]", t, _SCHED_KEYS, required=("name",))
            sc.append(_construct(SchedulerSpec, f"schedulers[{i}]", t))
        for i, t in enumerate(tables("engines")):
            _check_keys(f"engines[{i}]", t, _ENGINE_KEYS, required=("name",))
            en.append(_construct(EngineSpec, f"engines[{i}]", t))
        return cls(name=d.get("name", "sweep"), workloads=tuple(wl), schedulers=tuple(sc),
                   engines=tuple(en), seeds=tuple(seeds),
                   fast_forward=d.get("fast_forward", True))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Sweep:
        """Read and validate a TOML sweep file."""
        p = Path(path)
        try:
            with p.open("rb") as f:
                d = tomllib.load(f)
        except FileNotFoundError:
            raise SweepConfigError(f"{p}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise SweepConfigError(f"{p}: invalid TOML: {exc}") from None
        try:
            return cls.from_dict(d)
        except SweepConfigError as exc:
            raise SweepConfigError(f"{p}: {exc}") from None

    # -- grid -------------------------------------------------------------------------------
    def runs(self) -> list[RunSpec]:
        """All runs, in grid order (workload, scheduler, params, engine, seed)."""
        out = []
        for w in self.workloads:
            for s in self.schedulers:
                for p in s.expand():
                    for e in self.engines:
                        for seed in self.seeds:
                            out.append(RunSpec(w, s.name, tuple(sorted(p.items())), e, int(seed),
                                               self.fast_forward))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able configuration record."""
        return {
            "name": self.name,
            "seeds": list(self.seeds),
            "fast_forward": self.fast_forward,
            "workloads": [_asdict(w) for w in self.workloads],
            "schedulers": [_asdict(s) for s in self.schedulers],
            "engines": [_asdict(e) for e in self.engines],
        }


def _construct(cls: type, where: str, t: Mapping[str, Any]) -> Any:
    try:
        return cls(**dict(t))
    except SweepConfigError as exc:
        raise SweepConfigError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise SweepConfigError(f"{where}: {exc}") from None


# -- one run ------------------------------------------------------------------------------------
def run_one(run: RunSpec) -> dict[str, Any]:
    """Simulate one run and return its row (a pure function of ``run``).

    The row holds the configuration columns (``run_id``, ``workload``, ``scheduler``,
    ``params`` as sorted JSON, one ``param.<name>`` column per parameter, ``engine``, ``seed``)
    and :func:`slo_opt.metrics.summary`. The wall time is returned under the private key
    ``_wall_s`` (kept out of the table).
    """
    from slo_opt.metrics import summary
    from slo_opt.sim.simulator import simulate

    t0 = time.perf_counter()
    workload = run.workload.build(run.seed)
    engine = run.engine.build()
    sched = SchedulerSpec(run.scheduler).make(dict(run.params))
    schedule = simulate(workload, engine, sched, fast_forward=run.fast_forward)
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "workload": run.workload.name,
        "scheduler": run.scheduler,
        "params": json.dumps(dict(run.params), sort_keys=True),
        "engine": run.engine.name,
        "seed": run.seed,
    }
    for k, v in run.params:
        row[f"param.{k}"] = v
    for k, v in summary(schedule, workload).items():
        row[k] = float(v) if isinstance(v, np.floating) else (int(v) if isinstance(v, np.integer) else v)
    row["_wall_s"] = time.perf_counter() - t0
    return row


# -- executors ----------------------------------------------------------------------------------
def _run_local(runs: Sequence[RunSpec], workers: int | None,
               on_done: Callable[[RunSpec, dict[str, Any]], None]) -> None:
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(runs) <= 1:
        for r in runs:
            on_done(r, run_one(r))
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(runs))) as pool:
        todo = {pool.submit(run_one, r): r for r in runs}
        while todo:
            done, _ = wait(todo, return_when=FIRST_COMPLETED)
            for f in done:
                on_done(todo.pop(f), f.result())


def _run_ray(runs: Sequence[RunSpec], address: str | None, num_cpus: int,
             on_done: Callable[[RunSpec, dict[str, Any]], None]) -> None:
    try:
        import ray
    except ImportError:
        raise RuntimeError("executor='ray' needs Ray: pip install 'slo_opt[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(run_one)
        refs = {remote.remote(r): r for r in runs}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                on_done(refs[ref], ray.get(ref))
    finally:
        if started:
            ray.shutdown()


# -- driver -------------------------------------------------------------------------------------
def _git_sha() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=False)
        return out.stdout.strip() or None
    except Exception:  # pragma: no cover - no git
        return None


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_json_default))
    os.replace(tmp, path)


def _load_done(path: Path, run: RunSpec) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("run_id") != run.run_id or "row" not in rec:
        return None
    return rec["row"]


#: Leading columns of ``results.csv``, in this order; then ``param.*`` (sorted), then the
#: summary's columns in :func:`slo_opt.metrics.summary` order, then any others (sorted).
_LEAD = ("run_id", "workload", "scheduler", "params", "engine", "seed")


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column order independent of where a row came from (a fresh run or a resumed run file,
    which stores keys sorted): a resumed sweep writes the same columns in the same order."""
    from slo_opt.metrics import SUMMARY_KEYS

    keys: set[str] = set()
    for r in rows:
        keys.update(r)
    lead = [k for k in _LEAD if k in keys]
    params = sorted(k for k in keys if k.startswith("param."))
    summ = [k for k in SUMMARY_KEYS if k in keys]
    rest = sorted(keys - set(lead) - set(params) - set(summ))
    return lead + params + summ + rest


def write_table(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``results.csv`` and ``results.parquet`` through
    :func:`slo_opt.study.tables.write_table` (the one table writer)."""
    from slo_opt.study.tables import write_table as write

    out = Path(out_dir)
    cols = _columns(rows)
    ordered = [{k: r.get(k) for k in cols} for r in rows]
    return [write(out / "results.csv", ordered, format="csv"),
            write(out / "results.parquet", ordered, format="parquet")]


def run_sweep(
    sweep: Sweep,
    executor: str = "local",
    address: str | None = None,
    out_dir: str | os.PathLike[str] = "sweep_out",
    resume: bool = True,
    progress: bool = True,
    *,
    workers: int | None = None,
    num_cpus: int = 2,
) -> list[dict[str, Any]]:
    """Run every run of ``sweep`` and return the tidy table as a list of rows (grid order).

    Parameters
    ----------
    sweep : Sweep
        The grid.
    executor : {"local", "ray"}
        ``local``: a process pool of ``workers`` processes (default: all cores; 1 runs
        inline). ``ray``: one Ray task per run, on the cluster at ``address`` or, when ``None``,
        on a local Ray started with ``num_cpus`` CPUs (shut down afterwards).
    address : str, optional
        Ray cluster address (``"auto"``, ``"ray://host:10001"``); only with ``executor="ray"``.
    out_dir : path
        Receives ``runs/<run_id>.json`` (one per finished run), ``results.csv``,
        ``results.parquet`` (with pyarrow) and ``config.json``.
    resume : bool
        Skip runs whose run file already exists (same configuration id).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    list of dict
        One row per run: configuration columns and :func:`slo_opt.metrics.summary`.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if address is not None and executor != "ray":
        raise ValueError("address is only meaningful with executor='ray'")
    out = Path(out_dir)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    from slo_opt import __version__

    _write_json_atomic(out / "config.json", {
        "package": "slo_opt", "version": __version__, "git_sha": _git_sha(),
        "python": sys.version.split()[0], "executor": executor, "address": address,
        "config": sweep.to_dict(), "num_runs": len(sweep.runs()),
    })
    runs = sweep.runs()
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise SweepConfigError("sweep has duplicate runs (identical configuration twice)")
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for r in runs:
        row = _load_done(runs_dir / f"{r.run_id}.json", r) if resume else None
        if row is not None:
            rows[r.run_id] = row
        else:
            todo.append(r)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=f"sweep {sweep.name}",
                   unit="run")

    def on_done(r: RunSpec, row: dict[str, Any]) -> None:
        wall = row.pop("_wall_s", None)
        _write_json_atomic(runs_dir / f"{r.run_id}.json",
                           {"run_id": r.run_id, "config": r.config(), "row": row, "wall_s": wall})
        rows[r.run_id] = row
        if bar is not None:
            bar.update(1)

    try:
        if executor == "local":
            _run_local(todo, workers, on_done)
        else:
            _run_ray(todo, address, num_cpus, on_done)
    finally:
        if bar is not None:
            bar.close()
    table = [rows[i] for i in ids]
    write_table(table, out)
    return table


# the command line moved to slo_opt.cli.sweep
__getattr__ = forward(__name__, {"cli_main": "slo_opt.cli.sweep"})
