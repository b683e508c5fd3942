"""A/B digests: prove that a refactor or a speed change leaves every result bit-identical.

A fixed set of runs, each reduced to a sha256 digest of its result arrays:

* every registered scheduler (:data:`slo_opt.SCHEDULERS`), with a few parameter variants each
  (chunked prefill on/off, batching modes, preemption, proactive offload, ...), on four
  workloads -- the shipped Azure conversation head (``slo_opt/data``), subsets of the Azure code
  and Mooncake conversation traces (``../shared/traces`` or ``$SLO_OPT_TRACES_DIR``; skipped and
  listed when absent), and a small-KV synthetic workload that forces recompute preemptions,
  swaps and rejections -- on the H100 Llama-3.1-8B profile (linear model, with admission
  windows), plus runs on its roofline and table models and on a slot-aligned
  :class:`~slo_opt.models.slot.SlotEngine`; each with fast-forward on and off. The digest
  covers the Schedule's arrays (steps, run-length allocations, events, first-token and finish
  steps, rejections); a second digest covers its meta data (scheduler, params, engine,
  workload; not the wall time). A run that raises is digested as its exception.
* edge-cloud co-simulations (every registered dispatcher) on a small fixed topology: digest of
  the per-request records, the per-site energy columns and every site's schedule;
* one tiny solver certificate (schedulers vs the offline optimum and bounds), when the solver
  back-ends are installed.

Usage::

    python benchmarks/ab.py --out before.json          # record (about a minute or two)
    python benchmarks/ab.py --out after.json
    python benchmarks/ab.py --compare before.json after.json   # exit 1 on any difference
    python benchmarks/ab.py --list                     # run ids only
    python benchmarks/ab.py --only 'vllm*' --out x.json   # a subset (fnmatch on run ids)

The script imports through the public API and falls back between the package's current and
former module paths, so the same file runs on both sides of a layout change.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from slo_opt import SCHEDULERS, SLO, Workload, make, simulate

# -- imports that survive layout moves -------------------------------------------------------


def _module(*names: str) -> ModuleType:
    """The first of ``names`` that imports (newest path first; old paths quietly)."""
    err: Exception | None = None
    for n in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return importlib.import_module(n)
        except ModuleNotFoundError as e:
            err = e
    raise ImportError(f"none of {names} importable") from err


def _traces() -> ModuleType:
    return _module("slo_opt.workloads.traces", "slo_opt.traces")


def _generators() -> ModuleType:
    return _module("slo_opt.workloads.generators", "slo_opt.workload")


def _edge() -> tuple[ModuleType, ModuleType, ModuleType]:
    return (_module("slo_opt.edge.cluster", "slo_opt.cluster"),
            _module("slo_opt.edge.simulation", "slo_opt.cluster_sim"),
            _module("slo_opt.edge.dispatchers", "slo_opt.dispatchers"))


def _certificate() -> Callable[..., Any]:
    return _module("slo_opt.study.certificate",
                   "slo_opt.solvers.pattern_milp").solve_with_certificate


# -- digests ----------------------------------------------------------------------------------


def _update(h: Any, name: str, a: Any) -> None:
    a = np.asarray(a)
    if a.dtype == object:
        b = json.dumps([str(x) for x in a.ravel().tolist()]).encode()
        h.update(f"{name}:object:{a.shape}:".encode() + b)
        return
    a = np.ascontiguousarray(a)
    h.update(f"{name}:{a.dtype.str}:{a.shape}:".encode())
    h.update(a.tobytes())


def schedule_arrays(s: Any) -> Iterator[tuple[str, np.ndarray]]:
    """Every array of a :class:`~slo_opt.schedule.Schedule`, named."""
    yield "num_requests", np.array([s.num_requests], np.int64)
    for k in ("start_s", "end_s", "prefill_tokens", "decode_seqs", "context_tokens", "swap_s"):
        yield f"steps.{k}", getattr(s.steps, k)
    for k in ("request", "step", "tokens", "num_steps"):
        yield f"allocs.{k}", getattr(s.allocs, k)
    for k in ("step", "request", "kind", "tokens"):
        yield f"events.{k}", getattr(s.events, k)
    yield "first_token_step", s.first_token_step
    yield "finish_step", s.finish_step
    yield "rejected", s.rejected


def schedule_digest(s: Any) -> str:
    """sha256 over the schedule's arrays (dtype, shape and bytes of each)."""
    h = hashlib.sha256()
    for name, a in schedule_arrays(s):
        _update(h, name, a)
    return h.hexdigest()


def meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of a schedule's meta data without its wall time."""
    m = {k: v for k, v in meta.items() if k != "wall_s"}
    return hashlib.sha256(json.dumps(m, sort_keys=True, default=repr).encode()).hexdigest()


def _error_digest(e: BaseException) -> str:
    return "error:" + type(e).__name__ + ":" + hashlib.sha256(str(e).encode()).hexdigest()[:16]


# -- the fixed set ----------------------------------------------------------------------------

#: Parameter variants per scheduler (the default first); a scheduler registered later and not
#: listed here runs with its defaults only.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "vllm": [{}, {"chunked_prefill": False}, {"max_num_batched_tokens": 1024, "max_num_seqs": 32,
                                              "long_prefill_token_threshold": 256}],
    "sarathi": [{}, {"max_num_batched_tokens": 256, "chunked_prefill": False}],
    "fcfs": [{}, {"batching": "dynamic", "batch_wait_timeout_s": 0.05, "max_batch_seqs": 16},
             {"batching": "none"}],
    "edf": [{}, {"max_batch_seqs": 16}],
    "least_slack": [{}, {"preemption": True, "max_preemptions": 2}],
    "orca": [{}, {"max_batch_seqs": 16, "max_tokens": 4096}],
    "sjf": [{}, {"starvation_threshold_s": 1.0}],
    "ssjf": [{}, {"requeue_key": "remaining"}],
    "fastserve": [{}, {"offload_watermark": 0.2, "num_queues": 4}],
    "slice": [{}, {"stop_rule": "skip", "pacing": "paced"}],
}

SLO_DEFAULT = SLO(ttft_s=2.0, tpot_s=0.2)


def _engine(kind: str, **kw: Any) -> Any:
    from slo_opt.models.catalog import get_engine

    return get_engine("h100/llama-3.1-8b", kind=kind, **kw)


def _workloads() -> tuple[dict[str, Callable[[], Workload]], list[str]]:
    """Workload factories by id, and the ids skipped (trace not found)."""
    tr = _traces()
    gen = _generators()
    out: dict[str, Callable[[], Workload]] = {
        "azure-conv-250": lambda: tr.default_workload().head(250),
    }
    skipped = []
    avail = tr.available_traces()
    for name, n in (("azure-code", 200), ("mooncake-conv", 120)):
        if name in avail:
            out[f"{name}-{n}"] = (lambda name=name, n=n: gen.with_slo(
                tr.load_trace(name).head(n), SLO_DEFAULT))
        else:
            skipped.append(f"{name}-{n}")

    def small_kv() -> Workload:
        lengths = gen.EmpiricalLengths.default()
        return gen.synthetic(80, 8.0, lengths, np.random.default_rng(7), classes=SLO_DEFAULT,
                             name="smallkv-80")

    out["smallkv-80"] = small_kv
    return out, skipped


def _engines() -> dict[str, Callable[[], Any]]:
    from slo_opt.models.slot import SlotEngine

    return {
        "h100-linear": lambda: _engine("linear"),
        "h100-roofline": lambda: _engine("roofline"),
        "h100-table": lambda: _engine("table"),
        # 6,144 tokens of KV (384 blocks): long requests are rejected, the rest preempt/swap
        "h100-linear-kv6k": lambda: _engine("linear", kv_capacity_tokens=6144,
                                            max_batch_tokens=2048),
        "slot": lambda: SlotEngine(step_s=0.02, max_batch_tokens=2048, kv_capacity_tokens=65536,
                                   kv_block_tokens=16),
    }


#: (workload id, engine id) pairs every scheduler runs on with its default parameters; the
#: other variants run on the pairs marked True.
PAIRS: list[tuple[str, str, bool]] = [
    ("azure-conv-250", "h100-linear", True),
    ("azure-conv-250", "slot", False),
    ("azure-code-200", "h100-linear", False),
    ("azure-code-200", "h100-roofline", True),
    ("mooncake-conv-120", "h100-linear", True),
    ("mooncake-conv-120", "h100-table", False),
    ("smallkv-80", "h100-linear-kv6k", True),
]


def _param_id(p: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(p.items())) or "default"


class Run:
    """One A/B run: an id and a thunk returning its record (digests + a few counts)."""

    def __init__(self, rid: str, fn: Callable[[], dict[str, Any]]) -> None:
        self.id = rid
        self.fn = fn


def simulator_runs() -> tuple[list[Run], list[str]]:
    wls, skipped = _workloads()
    engs = _engines()
    cache: dict[str, Any] = {}

    def get(kind: str, key: str, fn: Callable[[], Any]) -> Any:
        k = f"{kind}:{key}"
        if k not in cache:
            cache[k] = fn()
        return cache[k]

    runs: list[Run] = []
    for name in sorted(SCHEDULERS):
        for iv, params in enumerate(VARIANTS.get(name, [{}])):
            for wid, eid, variants in PAIRS:
                if wid not in wls or (iv and not variants):
                    continue
                for ff in (True, False):
                    rid = f"sim/{name}[{_param_id(params)}]/{wid}/{eid}/{'ff' if ff else 'step'}"

                    def fn(name=name, params=params, wid=wid, eid=eid, ff=ff) -> dict[str, Any]:
                        w = get("w", wid, wls[wid])
                        e = get("e", eid, engs[eid])
                        s = simulate(w, e, make(name, **params), fast_forward=ff,
                                     max_steps=2_000_000)
                        return {"digest": schedule_digest(s), "meta": meta_digest(s.meta),
                                "steps": int(s.num_steps), "events": len(s.events),
                                "rejected": int(np.count_nonzero(s.rejected))}

                    runs.append(Run(rid, fn))
    return runs, [f"sim/*/{w}" for w in skipped]


_TOPOLOGY = {
    "origins": ["a0", "a1"],
    "nodes": {
        "a0": {"tier": "access"}, "a1": {"tier": "access"},
        "e0": {"tier": "edge", "engine": "jetson-orin/llama-3.2-1b"},
        "e1": {"tier": "edge", "engine": "jetson-orin/llama-3.2-1b"},
        "cloud": {"tier": "cloud", "engine": "a100/llama-3.1-8b"},
    },
    "links": [
        {"src": "a0", "dst": "e0", "latency_s": 0.002, "bandwidth_mbps": 100, "noise": 0.2,
         "tx_power_w": 2.0},
        {"src": "a1", "dst": "e1", "latency_s": 0.002, "bandwidth_mbps": 100, "noise": 0.2,
         "tx_power_w": 2.0},
        {"src": "a0", "dst": "cloud", "latency_s": 0.02, "bandwidth_mbps": 300, "noise": 0.2,
         "tx_power_w": 10.0},
        {"src": "a1", "dst": "cloud", "latency_s": 0.02, "bandwidth_mbps": 300, "noise": 0.2,
         "tx_power_w": 10.0},
    ],
}


def cluster_runs() -> list[Run]:
    cl_mod, sim_mod, disp = _edge()
    gen = _generators()
    runs = []
    for name in sorted(disp.DISPATCHERS):
        for rate in (6.0, 40.0):
            def fn(name: str = name, rate: float = rate) -> dict[str, Any]:
                cluster = cl_mod.Cluster.from_dict(_TOPOLOGY)
                rng = np.random.default_rng(11)
                w = gen.clip_lengths(gen.synthetic(300, rate, gen.EmpiricalLengths.default(), rng),
                                     1024, 256)
                w = w.replace(origin=rng.choice(np.array(cluster.origins, dtype=object), len(w)),
                              e2e_slo_s=20.0, class_label="c")
                r = sim_mod.simulate_cluster(w, cluster, disp.make(name),
                                             rng=np.random.default_rng(12))
                h = hashlib.sha256()
                for k in sorted(r.records):
                    _update(h, f"records.{k}", r.records[k])
                for k in sorted(r.site_energy):
                    _update(h, f"site_energy.{k}", r.site_energy[k])
                for site in sorted(r.schedules):
                    for k, a in schedule_arrays(r.schedules[site]):
                        _update(h, f"{site}.{k}", a)
                h.update(repr((r.sites, r.tiers, r.horizon_s)).encode())
                return {"digest": h.hexdigest(), "served": int(np.count_nonzero(r.records["served"]))}

            runs.append(Run(f"edge/{name}/rate{rate:g}", fn))
    return runs


def certificate_runs() -> list[Run]:
    def fn() -> dict[str, Any]:
        from slo_opt.solvers import Instance
        from slo_opt.solvers.scenarios import default_engine, scaled_workload

        e = default_engine()
        w = scaled_workload(10, 3.0, np.random.default_rng(3), e)
        c = _certificate()(Instance(w, e), 30.0)
        h = hashlib.sha256()
        h.update(repr((c.value, c.source, c.bound, c.bound_source,
                       sorted(c.candidates.items()), sorted(c.bounds.items()))).encode())
        h.update(schedule_digest(c.schedule).encode())
        return {"digest": h.hexdigest(), "value": c.value, "bound": c.bound}

    return [Run("cert/scaled-n10-load3", fn)]


def all_runs() -> tuple[list[Run], list[str]]:
    sims, skipped = simulator_runs()
    runs = sims + cluster_runs()
    try:
        import highspy  # noqa: F401
        import pyomo  # noqa: F401
    except ImportError:
        skipped.append("cert/* (solver back-ends not installed)")
    else:
        runs += certificate_runs()
    return runs, skipped


# -- record / compare -------------------------------------------------------------------------


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def record(out: Path, only: str | None) -> int:
    runs, skipped = all_runs()
    if only:
        runs = [r for r in runs if fnmatch.fnmatch(r.id, only)]
    res: dict[str, Any] = {}
    t_all = time.perf_counter()
    for i, r in enumerate(runs):
        t0 = time.perf_counter()
        try:
            rec = r.fn()
        except Exception as e:  # a run that raises is a result too (same error on both sides)
            rec = {"digest": _error_digest(e)}
        rec["wall_s"] = round(time.perf_counter() - t0, 4)
        res[r.id] = rec
        print(f"[{i + 1}/{len(runs)}] {r.id} {rec['digest'][:16]} {rec['wall_s']:.2f}s",
              flush=True)
    doc = {"meta": {"git_sha": _git_sha(), "python": platform.python_version(),
                    "numpy": np.__version__, "machine": platform.machine(),
                    "traces_dir": os.environ.get("SLO_OPT_TRACES_DIR"),
                    "wall_s": round(time.perf_counter() - t_all, 2), "skipped": skipped},
           "runs": res}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True))
    print(f"{len(res)} runs in {doc['meta']['wall_s']:.1f} s -> {out}"
          + (f"; skipped: {skipped}" if skipped else ""))
    return 0


def compare(a: Path, b: Path) -> int:
    ra = json.loads(a.read_text())["runs"]
    rb = json.loads(b.read_text())["runs"]
    bad = 0
    for rid in sorted(set(ra) | set(rb)):
        if rid not in ra or rid not in rb:
            print(f"only in {'A' if rid in ra else 'B'}: {rid}")
            bad += 1
            continue
        da, db = ra[rid], rb[rid]
        diffs = [k for k in ("digest", "meta") if da.get(k) != db.get(k)]
        if diffs:
            print(f"DIFFERS ({'+'.join(diffs)}): {rid}")
            bad += 1
    common = len(set(ra) & set(rb))
    ta = sum(r.get("wall_s", 0.0) for r in ra.values())
    tb = sum(r.get("wall_s", 0.0) for r in rb.values())
    ratio = tb / ta if ta > 0 else math.nan
    if bad:
        print(f"{bad} of {len(set(ra) | set(rb))} runs differ")
        return 1
    print(f"all {common} runs identical (wall A {ta:.1f} s, B {tb:.1f} s, B/A {ratio:.2f}; "
          "one run each, not a benchmark)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", type=Path, help="run the A/B set and write digests to this JSON")
    g.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"),
                   help="compare two digest files; exit 1 on any difference")
    g.add_argument("--list", action="store_true", help="print the run ids")
    ap.add_argument("--only", help="fnmatch pattern on run ids (with --out / --list)")
    a = ap.parse_args(argv)
    if a.compare:
        return compare(*a.compare)
    if a.list:
        runs, skipped = all_runs()
        for r in runs:
            if not a.only or fnmatch.fnmatch(r.id, a.only):
                print(r.id)
        if skipped:
            print(f"skipped: {skipped}", file=sys.stderr)
        return 0
    return record(a.out, a.only)


if __name__ == "__main__":
    sys.exit(main())
