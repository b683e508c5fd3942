"""Edge-cloud topology: typed :class:`Site` nodes and :class:`Link` edges on a networkx DiGraph.

A :class:`Cluster` is a frozen ``networkx.DiGraph`` whose nodes carry a :class:`Site` under the
attribute ``"site"`` and whose edges carry a :class:`Link` under ``"link"``; nothing else is read.
Sites with an engine *serve* requests (tier ``"edge"`` or ``"cloud"``); ``"access"`` nodes have
no engine and are where users attach (request origins) or routers.

Network model (PerLLM [Yang et al. 2024, arXiv:2405.14636], system model as rebuilt in
``shared/research/papers.md`` section 2.3 [Rec]):

* a transfer of ``nbytes`` from ``src`` to ``dst`` follows the minimum-latency path and takes
  ``sum(latency_s) + nbytes / min(bandwidth * factor)`` seconds (store-and-forward is *not*
  modelled: the bottleneck link sets the rate, as in a pipelined flow);
* bandwidth noise: each link has a relative ``noise`` (PerLLM: +-20 %); a *decision slot* draws
  one factor per link, uniform in ``[1 - noise, 1 + noise]``, from an explicit
  ``numpy.random.Generator`` (:meth:`Cluster.draw_bandwidth_factors`);
* transmission energy: each link spends ``tx_power_w`` while serialising the bytes at its own
  (noisy) rate, ``E = sum_e tx_power_w_e * nbytes / (bandwidth_e * factor_e)``; this is PerLLM's
  ``E_tran = P_tran * D_tran`` applied per hop.

Power model: :class:`PowerModel`. ``idle_w`` is drawn whenever the site is on and not
computing. During an engine iteration the power is

* *batch-aware* when the site's engine is a catalogue profile ``<gpu>/<model>`` for which
  :func:`slo_opt.models.power.power_model` resolves (``PowerModel.batch``): ``P(step) = idle +
  compute_w * u_flops + memory_w * u_mem`` clipped to ``[idle, max]``, evaluated per step of the
  site's :class:`~slo_opt.schedule.StepTable` (:meth:`PowerModel.steps_energy_j`);
* *two-level* otherwise (fallback: engines without a catalogue power model, e.g. ``SlotEngine``,
  or a description that gives ``idle_w`` and ``busy_w`` explicitly): ``busy_w`` per busy second.

Notes
-----
Deviations from the paper: links are not shared between concurrent transfers (no contention;
the placement MILP's per-epoch link rows are the only bandwidth-capacity model). The step table
records ``prefill_tokens``, ``decode_seqs`` and the total ``context_tokens`` of a step but not
how the context splits between prefill and decode sequences; the attention-FLOP term of the
batch-aware model therefore uses ``prefill_seqs`` = number of multi-token allocations of the
step (at least 1 if it prefills) and ``prefill_context_tokens`` = the step's context for pure
prefill steps (exact) and = ``prefill_tokens`` for mixed steps (a lower bound on the chunk's
attention). Memory bytes (weights + all context KV) are exact.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import numpy as np

from slo_opt.engine import BatchShape, EngineModel, decode_step_times_s

__all__ = [
    "Cluster",
    "ClusterError",
    "Link",
    "PowerModel",
    "Route",
    "Site",
    "saturated_throughput_tokens_per_s",
    "service_energy_j",
    "service_time_s",
]

MBPS = 1e6 / 8.0  #: bytes per second in one megabit per second

Tier = Literal["edge", "cloud", "access"]
TIERS = ("edge", "cloud", "access")


class ClusterError(ValueError):
    """A cluster description is invalid (message names the node, link or pair)."""


@dataclass(frozen=True, slots=True)
class PowerModel:
    """Power model of one site: batch-aware when ``batch`` is set, else two-level.

    Parameters
    ----------
    idle_w : float
        Power while on and not computing (W).
    busy_w : float
        Two-level model: power during an engine iteration (W), >= ``idle_w``. With ``batch``
        set it is the board power limit (an upper bound on any step's power).
    source : str
        Provenance of the numbers.
    batch : slo_opt.models.power.PowerModel, optional
        Utilisation-driven step power (its ``idle_w`` must equal ``idle_w``).
    """

    idle_w: float
    busy_w: float
    source: str = ""
    batch: Any = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.idle_w) and self.idle_w >= 0):
            raise ClusterError(f"PowerModel.idle_w must be finite and >= 0, got {self.idle_w}")
        if not (math.isfinite(self.busy_w) and self.busy_w >= self.idle_w):
            raise ClusterError(
                f"PowerModel.busy_w must be finite and >= idle_w={self.idle_w}, got {self.busy_w}")
        if self.batch is not None:
            for a in ("gpu", "shape", "idle_w", "compute_w", "memory_w"):
                if not hasattr(self.batch, a):
                    raise ClusterError(f"PowerModel.batch must be a slo_opt.models.power."
                                       f"PowerModel (missing {a!r})")
            if self.batch.idle_w != self.idle_w:
                raise ClusterError(f"PowerModel.idle_w={self.idle_w} differs from the batch "
                                   f"model's idle_w={self.batch.idle_w}")

    @classmethod
    def from_gpu(cls, key: str) -> PowerModel:
        """Two-level model: catalogue idle power and board power limit (``"h100"``)."""
        from slo_opt.models.hardware import get_gpu

        g = get_gpu(key)
        return cls(g.idle_power_w, g.max_power_w,
                   f"hardware catalogue {g.key}: idle {g.sources.get('idle_power_w', '')}; "
                   f"busy = max power ({g.sources.get('max_power_w', '')})")

    @classmethod
    def from_catalog(cls, name: str) -> PowerModel:
        """Batch-aware model of a catalogue profile ``<gpu>/<model>``.

        Falls back to :meth:`from_gpu` (two-level) when ``slo_opt.models.power`` cannot build a
        model for ``name`` (unknown model shape, published-table alias).
        """
        from slo_opt.models.power import power_model

        try:
            pm = power_model(name)
        except (ValueError, KeyError):
            return cls.from_gpu(name.partition("/")[0])
        return cls(float(pm.idle_w), float(pm.gpu.max_power_w),
                   f"slo_opt.models.power.power_model({name!r}): {pm.source}", pm)

    @property
    def batch_aware(self) -> bool:
        """Whether step power depends on the batch (``batch`` is set)."""
        return self.batch is not None

    def step_power_w(self, prefill_tokens: Any, decode_seqs: Any, context_tokens: Any,
                     step_s: Any, prefill_seqs: Any = None,
                     prefill_context_tokens: Any = None) -> np.ndarray:
        """Vectorised board power of steps (W); ``busy_w`` for non-empty steps if two-level.

        Same formula as :meth:`slo_opt.models.power.PowerModel.power_w` (checked equal in
        ``tests/edge/test_cluster.py``), element-wise. ``prefill_seqs`` defaults to 1 per prefilling
        step and ``prefill_context_tokens`` to ``prefill_tokens``.
        """
        pt = np.asarray(prefill_tokens, float)
        ds = np.asarray(decode_seqs, float)
        ctx = np.asarray(context_tokens, float)
        dt = np.asarray(step_s, float)
        ntok = pt + ds
        if self.batch is None:
            return np.where(ntok > 0, self.busy_w, self.idle_w) + 0.0 * dt
        from slo_opt.models.kv import kv_bytes_per_token, weight_bytes

        b = self.batch
        ps = np.ones_like(pt) if prefill_seqs is None else np.asarray(prefill_seqs, float)
        pc = pt if prefill_context_tokens is None else np.asarray(prefill_context_tokens, float)
        q = pt * pc / np.maximum(ps, 1.0)
        flops = b.shape.flops_per_token * ntok + b.shape.attn_flops_per_token_pair * q
        nbytes = weight_bytes(b.shape) + ctx * kv_bytes_per_token(b.shape)
        pos = dt > 0
        safe = np.where(pos, dt, 1.0)
        uf = np.where(pos, np.minimum(flops / (safe * b.gpu.peak_bf16_flops_per_s), 1.0), 0.0)
        um = np.where(pos, np.minimum(nbytes / (safe * b.gpu.memory_bandwidth_bytes_per_s), 1.0),
                      0.0)
        p = np.clip(b.idle_w + b.compute_w * uf + b.memory_w * um, b.idle_w, b.gpu.max_power_w)
        return np.where(ntok > 0, p, b.idle_w)

    def steps_energy_j(self, steps: Any, prefill_seqs: Any = None) -> np.ndarray:
        """Joules of each row of a :class:`~slo_opt.schedule.StepTable` (power x duration).

        ``prefill_seqs`` (per step) is optional; see the module Notes for the context split.
        """
        dur = np.asarray(steps.end_s, float) - np.asarray(steps.start_s, float)
        pt = np.asarray(steps.prefill_tokens)
        ds = np.asarray(steps.decode_seqs)
        ctx = np.asarray(steps.context_tokens)
        pc = np.where(ds == 0, ctx, pt)
        return self.step_power_w(pt, ds, ctx, dur, prefill_seqs, pc) * dur

    def energy_j(self, busy_s: float, horizon_s: float) -> tuple[float, float]:
        """Two-level (busy energy, idle energy) of ``busy_s`` busy seconds within ``horizon_s``."""
        if busy_s > horizon_s * (1 + 1e-9) + 1e-9:
            raise ValueError(f"busy time {busy_s} exceeds the horizon {horizon_s}")
        return self.busy_w * busy_s, self.idle_w * max(horizon_s - busy_s, 0.0)


@dataclass(frozen=True)
class Site:
    """One node of the topology.

    Parameters
    ----------
    tier : {"edge", "cloud", "access"}
        ``"access"`` nodes have no engine (user attachment points, routers).
    engine : EngineModel, optional
        Step-time and KV model; required for edge and cloud sites.
    power : PowerModel, optional
        Required for edge and cloud sites.
    scheduler : str, optional
        Per-site scheduler name (``None``: the simulation's default).
    """

    tier: Tier
    engine: EngineModel | None = None
    power: PowerModel | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ClusterError(f"tier must be one of {TIERS}, got {self.tier!r}")
        if self.tier == "access":
            if self.engine is not None:
                raise ClusterError("an access node cannot have an engine")
        else:
            if self.engine is None or self.power is None:
                raise ClusterError(f"a {self.tier} site needs an engine and a power model")

    @property
    def serves(self) -> bool:
        """Whether the site has an engine."""
        return self.engine is not None


@dataclass(frozen=True, slots=True)
class Link:
    """A directed network link.

    Parameters
    ----------
    latency_s : float
        Propagation latency (>= 0).
    bandwidth_bytes_per_s : float
        Nominal rate (> 0).
    noise : float
        Relative bandwidth noise in [0, 1): each decision slot scales the rate by a factor drawn
        uniformly from ``[1 - noise, 1 + noise]`` (PerLLM: 0.2).
    tx_power_w : float
        Power spent while this link serialises bytes (transmission energy).
    """

    latency_s: float
    bandwidth_bytes_per_s: float
    noise: float = 0.0
    tx_power_w: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ClusterError(f"Link.latency_s must be finite and >= 0, got {self.latency_s}")
        if not self.bandwidth_bytes_per_s > 0:
            raise ClusterError(f"Link.bandwidth_bytes_per_s must be > 0, got "
                               f"{self.bandwidth_bytes_per_s}")
        if not 0 <= self.noise < 1:
            raise ClusterError(f"Link.noise must be in [0, 1), got {self.noise}")
        if not (math.isfinite(self.tx_power_w) and self.tx_power_w >= 0):
            raise ClusterError(f"Link.tx_power_w must be finite and >= 0, got {self.tx_power_w}")


@dataclass(frozen=True)
class Route:
    """Minimum-latency path between two nodes: its latency and the indices of its links."""

    nodes: tuple[str, ...]
    latency_s: float
    links: np.ndarray = field(repr=False)


class Cluster:
    """Sites (node attribute ``"site"``) and links (edge attribute ``"link"``).

    Parameters
    ----------
    graph : networkx.DiGraph
        Typed topology; it is copied and frozen.
    origins : sequence of str, optional
        Nodes where requests may enter; default: every access node, or every node if there are
        none. Each origin must reach every serving site and be reached back from it.

    Raises
    ------
    ClusterError
        Untyped node or edge, no serving site, unknown origin, or an origin that cannot reach a
        serving site (or be reached from it).
    """

    def __init__(self, graph: nx.DiGraph, origins: Any = None) -> None:
        if not isinstance(graph, nx.DiGraph):
            raise ClusterError(f"graph must be a networkx.DiGraph, got {type(graph).__name__}")
        for n, d in graph.nodes(data=True):
            if not isinstance(d.get("site"), Site):
                raise ClusterError(f"node {n!r} needs a Site under 'site'")
        for u, v, d in graph.edges(data=True):
            if not isinstance(d.get("link"), Link):
                raise ClusterError(f"edge {(u, v)!r} needs a Link under 'link'")
        self.graph = nx.freeze(graph.copy())
        self.nodes: tuple[str, ...] = tuple(graph.nodes)
        self.sites: tuple[str, ...] = tuple(n for n in self.nodes if self.site(n).serves)
        if not self.sites:
            raise ClusterError("the cluster has no serving (edge or cloud) site")
        self.site_index = {s: i for i, s in enumerate(self.sites)}
        self.tiers: tuple[str, ...] = tuple(self.site(s).tier for s in self.sites)
        self.edge_list: tuple[tuple[str, str], ...] = tuple(graph.edges)
        self.edge_index = {e: k for k, e in enumerate(self.edge_list)}
        lk = [self.link(u, v) for u, v in self.edge_list]
        self.bandwidth_bytes_per_s = np.array([x.bandwidth_bytes_per_s for x in lk], float)
        self.noise = np.array([x.noise for x in lk], float)
        self.tx_power_w = np.array([x.tx_power_w for x in lk], float)
        self.latency_s = np.array([x.latency_s for x in lk], float)
        if origins is None:
            acc = tuple(n for n in self.nodes if self.site(n).tier == "access")
            origins = acc or self.nodes
        self.origins: tuple[str, ...] = tuple(origins)
        for o in self.origins:
            if o not in self.graph:
                raise ClusterError(f"unknown origin {o!r}; nodes: {sorted(map(str, self.nodes))}")
        self._routes: dict[tuple[str, str], Route] = {}
        self._dist: dict[str, dict[str, float]] = {}
        self._paths: dict[str, dict[str, list[str]]] = {}
        for o in self.origins:
            for s in self.sites:
                for a, b in ((o, s), (s, o)):
                    if a != b and self._route_or_none(a, b) is None:
                        raise ClusterError(
                            f"no path from {a!r} to {b!r}: origin {o!r} is disconnected from "
                            f"site {s!r} (missing link?)")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Cluster:
        """Build from a description.

        Format (TOML shown; JSON is the same structure)::

            origins = ["a0"]                      # optional
            [nodes.a0]
            tier = "access"
            [nodes.e0]
            tier = "edge"
            engine = "jetson-orin/llama-3.2-1b"    # catalogue name, or an EngineModel object
            idle_w = 15.0                          # optional: both given -> two-level model;
            busy_w = 60.0                          # default: batch-aware catalogue model
            scheduler = "vllm"                     # optional
            [[links]]
            src = "a0"
            dst = "e0"
            latency_s = 0.002
            bandwidth_mbps = 100                   # or bandwidth_bytes_per_s
            noise = 0.2                            # optional
            tx_power_w = 2.0                       # optional
            bidirectional = true                   # optional (default true)
        """
        if not isinstance(spec, Mapping):
            raise ClusterError(f"cluster spec must be a mapping, got {type(spec).__name__}")
        unknown = set(spec) - {"nodes", "links", "origins", "name"}
        if unknown:
            raise ClusterError(f"unknown top-level key(s) {sorted(unknown)}; "
                               "valid: ['links', 'name', 'nodes', 'origins']")
        nodes = spec.get("nodes")
        if not isinstance(nodes, Mapping) or not nodes:
            raise ClusterError("cluster spec needs a non-empty 'nodes' table")
        g = nx.DiGraph()
        for name, nd in nodes.items():
            g.add_node(str(name), site=_site_from_dict(str(name), nd))
        for k, ld in enumerate(spec.get("links", ())):
            if not isinstance(ld, Mapping):
                raise ClusterError(f"link {k}: expected a table, got {type(ld).__name__}")
            valid = {"src", "dst", "latency_s", "bandwidth_mbps", "bandwidth_bytes_per_s",
                     "noise", "tx_power_w", "bidirectional"}
            bad = set(ld) - valid
            if bad:
                raise ClusterError(f"link {k}: unknown key(s) {sorted(bad)}; valid: {sorted(valid)}")
            try:
                src, dst = str(ld["src"]), str(ld["dst"])
            except KeyError as exc:
                raise ClusterError(f"link {k}: missing {exc.args[0]!r}") from None
            for end in (src, dst):
                if end not in g:
                    raise ClusterError(f"link {k} ({src!r} -> {dst!r}): unknown node {end!r}; "
                                       f"known: {sorted(g.nodes)}")
            if "bandwidth_bytes_per_s" in ld:
                bw = float(ld["bandwidth_bytes_per_s"])
            elif "bandwidth_mbps" in ld:
                bw = float(ld["bandwidth_mbps"]) * MBPS
            else:
                raise ClusterError(f"link {k} ({src!r} -> {dst!r}): needs bandwidth_mbps or "
                                   "bandwidth_bytes_per_s")
            try:
                link = Link(float(ld.get("latency_s", 0.0)), bw, float(ld.get("noise", 0.0)),
                            float(ld.get("tx_power_w", 0.0)))
            except ClusterError as exc:
                raise ClusterError(f"link {k} ({src!r} -> {dst!r}): {exc}") from None
            g.add_edge(src, dst, link=link)
            if ld.get("bidirectional", True):
                g.add_edge(dst, src, link=link)
        return cls(g, spec.get("origins"))

    @classmethod
    def from_toml(cls, path: str | Path) -> Cluster:
        """Read :meth:`from_dict`'s format from a TOML file."""
        with open(path, "rb") as f:
            return cls.from_dict(tomllib.load(f))

    @classmethod
    def from_json(cls, path: str | Path) -> Cluster:
        """Read :meth:`from_dict`'s format from a JSON file."""
        with open(path) as f:
            return cls.from_dict(json.load(f))

    # -- accessors --------------------------------------------------------------------------
    def site(self, name: str) -> Site:
        """The :class:`Site` of a node."""
        try:
            return self.graph.nodes[name]["site"]
        except KeyError:
            raise ClusterError(f"unknown node {name!r}; known: {sorted(map(str, self.nodes))}") \
                from None

    def link(self, u: str, v: str) -> Link:
        """The :class:`Link` of an edge."""
        try:
            return self.graph.edges[u, v]["link"]
        except KeyError:
            raise ClusterError(f"no link {u!r} -> {v!r}") from None

    @property
    def num_sites(self) -> int:
        """Number of serving sites."""
        return len(self.sites)

    def __repr__(self) -> str:
        return (f"<Cluster: {len(self.sites)} sites ({', '.join(self.tiers)}), "
                f"{len(self.edge_list)} links, origins {list(self.origins)}>")

    # -- routing ---------------------------------------------------------------------------
    def _route_or_none(self, src: str, dst: str) -> Route | None:
        key = (src, dst)
        r = self._routes.get(key)
        if r is not None:
            return r
        if src not in self._dist:
            dist, paths = nx.single_source_dijkstra(
                self.graph, src, weight=lambda u, v, d: d["link"].latency_s)
            self._dist[src], self._paths[src] = dist, paths
        path = self._paths[src].get(dst)
        if path is None:
            return None
        idx = np.array([self.edge_index[(u, v)] for u, v in itertools.pairwise(path)], np.int64)
        r = Route(tuple(path), float(self.latency_s[idx].sum()) if idx.size else 0.0, idx)
        self._routes[key] = r
        return r

    def route(self, src: str, dst: str) -> Route:
        """Minimum-latency route (ties: networkx's Dijkstra order)."""
        for n in (src, dst):
            if n not in self.graph:
                raise ClusterError(f"unknown node {n!r}; known: {sorted(map(str, self.nodes))}")
        r = self._route_or_none(src, dst)
        if r is None:
            raise ClusterError(f"no path from {src!r} to {dst!r}")
        return r

    def draw_bandwidth_factors(self, rng: np.random.Generator) -> np.ndarray:
        """One decision slot's per-link bandwidth factors, uniform in ``[1-noise, 1+noise]``.

        Always consumes exactly one uniform draw per link (also for noise-free links), so the
        stream does not depend on which links are noisy.
        """
        u = rng.uniform(-1.0, 1.0, size=len(self.edge_list))
        return 1.0 + self.noise * u

    def _bw(self, route: Route, factors: np.ndarray | None) -> np.ndarray:
        bw = self.bandwidth_bytes_per_s[route.links]
        return bw if factors is None else bw * factors[route.links]

    def transfer_s(self, src: str, dst: str, nbytes: float,
                   factors: np.ndarray | None = None) -> float:
        """Seconds to move ``nbytes`` from ``src`` to ``dst``: latency + bytes / bottleneck."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if src == dst:
            return 0.0
        r = self.route(src, dst)
        return r.latency_s + float(nbytes) / float(self._bw(r, factors).min())

    def transfer_energy_j(self, src: str, dst: str, nbytes: float,
                          factors: np.ndarray | None = None) -> float:
        """Joules to move ``nbytes``: each hop's ``tx_power_w`` x its serialisation time."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if src == dst:
            return 0.0
        r = self.route(src, dst)
        return float((self.tx_power_w[r.links] * float(nbytes) / self._bw(r, factors)).sum())


def _site_from_dict(name: str, nd: Any) -> Site:
    if not isinstance(nd, Mapping):
        raise ClusterError(f"node {name!r}: expected a table, got {type(nd).__name__}")
    valid = {"tier", "engine", "idle_w", "busy_w", "scheduler", "engine_kind"}
    bad = set(nd) - valid
    if bad:
        raise ClusterError(f"node {name!r}: unknown key(s) {sorted(bad)}; valid: {sorted(valid)}")
    tier = nd.get("tier", "access" if "engine" not in nd else None)
    if tier not in TIERS:
        raise ClusterError(f"node {name!r}: tier must be one of {TIERS}, got {tier!r}")
    if tier == "access":
        if "engine" in nd:
            raise ClusterError(f"node {name!r}: an access node cannot have an engine")
        return Site("access")
    eng = nd.get("engine")
    if eng is None:
        raise ClusterError(f"node {name!r}: a {tier} site needs an 'engine'")
    gpu_key: str | None = None
    if isinstance(eng, str):
        try:
            engine = _engine(eng, nd.get("engine_kind"))
        except (ValueError, KeyError) as exc:
            raise ClusterError(f"node {name!r}: {exc}") from None
        gpu_key = eng.partition("/")[0]
    else:
        engine = eng
        gpu_key = str(getattr(engine, "name", "")).partition("/")[0] or None
    if "idle_w" in nd or "busy_w" in nd:
        if not ("idle_w" in nd and "busy_w" in nd):
            raise ClusterError(f"node {name!r}: give both idle_w and busy_w (or neither)")
        power = PowerModel(float(nd["idle_w"]), float(nd["busy_w"]), "cluster description")
    else:
        try:
            power = (PowerModel.from_catalog(eng) if isinstance(eng, str)
                     else PowerModel.from_gpu(gpu_key or ""))
        except ValueError:
            raise ClusterError(f"node {name!r}: no GPU for engine {eng!r} in the hardware "
                               "catalogue; give idle_w and busy_w") from None
    try:
        return Site(tier, engine, power, nd.get("scheduler"))
    except ClusterError as exc:
        raise ClusterError(f"node {name!r}: {exc}") from None


@lru_cache(maxsize=64)
def _engine(name: str, kind: str | None) -> EngineModel:
    from slo_opt.models.catalog import get_engine

    return get_engine(name) if kind is None else get_engine(name, kind=kind)


def service_time_s(engine: EngineModel, prompt_tokens: int, output_tokens: int) -> float:
    """Unloaded (batch-of-one) inference time of one request on ``engine``.

    Prefill in chunks of at most ``max_batch_tokens`` (one iteration each), then
    ``output_tokens - 1`` decode iterations whose context grows by one token per step, exactly
    as the simulator builds batch shapes for a request running alone.
    """
    p, o = int(prompt_tokens), int(output_tokens)
    if p < 1 or o < 1:
        raise ValueError("prompt_tokens and output_tokens must be >= 1")
    cap = int(engine.max_batch_tokens)
    t = 0.0
    done = 0
    while done < p:
        c = min(cap, p - done)
        done += c
        t += float(engine.step_time_s(BatchShape(prefill_tokens=c, prefill_seqs=1,
                                                 prefill_context_tokens=done)))
    if o > 1:
        t += float(decode_step_times_s(engine, 1, p + 1, o - 1).sum())
    return t


def service_energy_j(engine: EngineModel, power: PowerModel, prompt_tokens: int,
                     output_tokens: int) -> tuple[float, float]:
    """Unloaded (batch-of-one) ``(inference time, board energy)`` of one request.

    The same iterations as :func:`service_time_s`, each charged ``power.step_power_w`` (two-level:
    ``busy_w``); the energy includes the idle floor, so the *marginal* inference energy of the
    request is ``energy - power.idle_w * time``.
    """
    p, o = int(prompt_tokens), int(output_tokens)
    if p < 1 or o < 1:
        raise ValueError("prompt_tokens and output_tokens must be >= 1")
    cap = int(engine.max_batch_tokens)
    chunks = []
    done = 0
    while done < p:
        c = min(cap, p - done)
        done += c
        chunks.append((c, done))
    pt = np.array([c for c, _ in chunks], float)
    pc = np.array([d for _, d in chunks], float)
    pf_s = np.array([float(engine.step_time_s(BatchShape(prefill_tokens=int(c), prefill_seqs=1,
                                                          prefill_context_tokens=int(d))))
                     for c, d in chunks])
    t = float(pf_s.sum())
    e = float((power.step_power_w(pt, 0, pc, pf_s, 1, pc) * pf_s).sum())
    if o > 1:
        dec_s = decode_step_times_s(engine, 1, p + 1, o - 1)
        ctx = p + 1 + np.arange(o - 1, dtype=float)
        t += float(dec_s.sum())
        e += float((power.step_power_w(0, 1, ctx, dec_s) * dec_s).sum())
    return t, e


def saturated_throughput_tokens_per_s(engine: EngineModel, batch_seqs: int = 32,
                                      context_tokens: int = 1024) -> float:
    """Decode tokens per second at ``batch_seqs`` sequences of ``context_tokens`` each.

    A load-estimate heuristic for dispatchers and the placement MILP's compute capacity (the
    batch is capped by the KV capacity).
    """
    b = max(1, min(int(batch_seqs), int(engine.kv_capacity_tokens) // max(context_tokens, 1)))
    dt = float(engine.step_time_s(BatchShape(decode_seqs=b, decode_context_tokens=b * context_tokens)))
    return b / dt
