"""Multi-site co-simulation: a dispatcher picks a site per request, each site runs its engine.

Protocol of :func:`simulate_cluster` (PerLLM's online setting, arXiv:2405.14636):

1. requests are taken in arrival order; before request ``i`` is dispatched every site is
   advanced to its arrival (:meth:`Simulation.run_until`);
2. outcomes whose result is back at the origin by then are delivered to the dispatcher
   (``observe``: bandit feedback);
3. the dispatcher sees a :class:`~slo_opt.edge.dispatchers.base.ClusterView` and returns a site or
   ``None`` (explicit rejection); the request is pushed to that site with release time
   ``arrival + prompt transfer`` over the minimum-latency path at the current decision slot's
   bandwidth;
4. at the end every site drains and per-request records are merged: the result's transfer
   back uses the bandwidth of the slot in which the request finished.

Energy (joules, per site): *busy* = the sum over the site's iterations of the step power x
step time, the step power coming from the site's batch-aware power model
(:mod:`slo_opt.models.power`, evaluated post hoc on the schedule's step table) or, for sites
without one, the two-level fallback ``busy_w`` (see :class:`slo_opt.edge.cluster.PowerModel`);
*idle* = ``idle_w`` x (horizon - busy time); *transmission* = per-hop ``tx_power_w`` x
serialisation time of the prompt and the result of every request served by the site (charged
to the serving site). The horizon is common to all sites: ``max(last arrival, last iteration
end, last result delivery)`` unless given. Busy energy of each iteration is split over its
requests by their token share, so per-request busy energies sum to the sites' busy energy.

The dispatchers' and the placement MILP's *model* energy of a request is its transmission
energy plus its marginal unloaded inference energy (batch-of-one board energy minus idle power
x batch-of-one time, :func:`slo_opt.edge.cluster.service_energy_j`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slo_opt.edge.cluster import (
    Cluster,
    saturated_throughput_tokens_per_s,
    service_energy_j,
    service_time_s,
)
from slo_opt.edge.dispatchers.base import ClusterView, Feedback
from slo_opt.metrics import SLO_TOL_S
from slo_opt.request import Workload
from slo_opt.schedule import Schedule
from slo_opt.schedulers import make as make_scheduler
from slo_opt.sim.online import Simulation

__all__ = [
    "AssignmentDispatcher",
    "ClusterResult",
    "SlotBandwidth",
    "placement_inputs",
    "simulate_cluster",
]


class SlotBandwidth:
    """Per-decision-slot link bandwidth factors, drawn in slot order from one Generator.

    Slot ``k`` covers ``[k * slot_s, (k+1) * slot_s)``. Factors of slot ``k`` are always the
    ``k``-th draw, whatever order slots are queried in, so two objects built from generators
    with the same seed agree (the online run and its clairvoyant oracle see the same network).
    """

    def __init__(self, cluster: Cluster, rng: np.random.Generator, slot_s: float) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if not (slot_s > 0 and math.isfinite(slot_s)):
            raise ValueError(f"slot_s must be finite and > 0, got {slot_s}")
        self.cluster = cluster
        self.rng = rng
        self.slot_s = float(slot_s)
        self._factors: list[np.ndarray] = []
        self._cache: dict[tuple[str, int], tuple[np.ndarray, ...]] = {}
        m = cluster.num_sites
        self._lat: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._m = m

    def slot(self, t_s: float) -> int:
        """Index of the slot containing ``t_s``."""
        return max(0, math.floor(t_s / self.slot_s))

    def factors(self, k: int) -> np.ndarray:
        """Per-link factors of slot ``k``."""
        while len(self._factors) <= k:
            self._factors.append(self.cluster.draw_bandwidth_factors(self.rng))
        return self._factors[k]

    def _latency(self, origin: str) -> tuple[np.ndarray, np.ndarray]:
        lat = self._lat.get(origin)
        if lat is None:
            c = self.cluster
            up = np.array([c.route(origin, s).latency_s if s != origin else 0.0 for s in c.sites])
            dn = np.array([c.route(s, origin).latency_s if s != origin else 0.0 for s in c.sites])
            lat = self._lat[origin] = (up, dn)
        return lat

    def per_site(self, origin: str, k: int) -> tuple[np.ndarray, ...]:
        """(up latency, down latency, up bottleneck B/s, down bottleneck B/s, up J/B, down J/B)."""
        key = (origin, k)
        out = self._cache.get(key)
        if out is None:
            c = self.cluster
            f = self.factors(k)
            bw = c.bandwidth_bytes_per_s * f
            jpb = c.tx_power_w / bw
            ub, db, uj, dj = (np.full(self._m, math.inf), np.full(self._m, math.inf),
                              np.zeros(self._m), np.zeros(self._m))
            for j, s in enumerate(c.sites):
                if s == origin:
                    continue
                ru, rd = c.route(origin, s).links, c.route(s, origin).links
                ub[j], db[j] = bw[ru].min(), bw[rd].min()
                uj[j], dj[j] = jpb[ru].sum(), jpb[rd].sum()
            out = (*self._latency(origin), ub, db, uj, dj)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = out
        return out

    def up(self, origin: str, t_s: float, nbytes: float) -> tuple[np.ndarray, np.ndarray]:
        """Prompt transfer time and energy to every site at time ``t_s``."""
        lu, _, ub, _, uj, _ = self.per_site(origin, self.slot(t_s))
        return lu + nbytes / ub, nbytes * uj

    def down(self, origin: str, t_s: float, nbytes: float) -> tuple[np.ndarray, np.ndarray]:
        """Result transfer time and energy from every site at time ``t_s``."""
        _, ld, _, db, _, dj = self.per_site(origin, self.slot(t_s))
        return ld + nbytes / db, nbytes * dj


@dataclass
class AssignmentDispatcher:
    """Replays a fixed assignment (e.g. the placement MILP's): ``site_of[rid]``, -1 = reject."""

    site_of: Sequence[int]
    name: str = "assignment"

    def reset(self) -> None:
        """Nothing to clear."""

    def choose(self, view: ClusterView) -> int | None:
        """The given site."""
        j = int(self.site_of[view.rid])
        return None if j < 0 else j

    def observe(self, feedback: Feedback) -> None:
        """Ignored."""


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """Outcome of :func:`simulate_cluster`.

    Attributes
    ----------
    records : dict of numpy.ndarray
        Per-request columns (request id = row): ``site`` (-1: not served), ``origin``,
        ``class_label``, ``arrival_s``, ``up_s``, ``release_s``, ``start_s``,
        ``first_token_s``, ``finish_s`` (at the site), ``down_s``, ``done_s`` (result back at
        the origin), ``queue_s`` (release -> first iteration), ``inference_s`` (first
        iteration -> last token), ``e2e_s`` (arrival -> done), ``deadline_s``, ``met``,
        ``served``, ``rejected`` (by the dispatcher or the engine), ``rejected_by``,
        ``energy_busy_j``, ``energy_tran_j``, ``energy_j``, ``model_energy_j``.
    site_energy : dict of numpy.ndarray
        Per-site columns (``sites`` order): ``busy_s``, ``busy_j``, ``idle_j``, ``tran_j``,
        ``total_j``, ``served``.
    """

    sites: tuple[str, ...]
    tiers: tuple[str, ...]
    horizon_s: float
    records: dict[str, np.ndarray]
    site_energy: dict[str, np.ndarray]
    schedules: dict[str, Schedule] = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def total_energy_j(self) -> float:
        """Sum of every site's busy, idle and transmission energy."""
        return float(self.site_energy["total_j"].sum())

    def summary(self) -> dict[str, float]:
        """Headline numbers (throughput over the arrival span, deadline satisfaction, energy)."""
        r = self.records
        n = r["site"].size
        arr = r["arrival_s"]
        span = float(arr[-1] - arr[0]) if n > 1 else 0.0
        done = r["served"]
        end = float(np.nanmax(r["done_s"])) if done.any() else 0.0
        mk = max(end - (float(arr[0]) if n else 0.0), 1e-12)
        se = self.site_energy
        return {
            "n": float(n),
            "completed": float(done.sum()),
            "rejected": float(r["rejected"].sum()),
            "met": float(r["met"].sum()),
            "deadline_satisfaction": float(r["met"].mean()) if n else math.nan,
            "throughput_rps": float(done.sum()) / mk,
            "goodput_rps": float(r["met"].sum()) / mk,
            "offered_rps": (n - 1) / span if span > 0 else math.nan,
            "mean_e2e_s": float(np.nanmean(r["e2e_s"])) if done.any() else math.nan,
            "energy_j": self.total_energy_j,
            "busy_j": float(se["busy_j"].sum()),
            "idle_j": float(se["idle_j"].sum()),
            "tran_j": float(se["tran_j"].sum()),
            "energy_per_completed_j": self.total_energy_j / max(float(done.sum()), 1.0),
            "dynamic_energy_j": float(r["energy_j"].sum()),
            "edge_share": float(np.mean([self.tiers[j] == "edge" for j in r["site"] if j >= 0]))
            if done.any() else math.nan,
            "horizon_s": self.horizon_s,
        }

    def rows(self) -> list[dict[str, Any]]:
        """Flat per-request rows (for CSV)."""
        keys = list(self.records)
        cols = [self.records[k].tolist() for k in keys]
        return [dict(zip(keys, vals)) for vals in zip(*cols)]


def _check_bytes(name: str, x: float) -> float:
    x = float(x)
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {x}")
    return x


def _origins(workload: Workload, cluster: Cluster) -> list[str]:
    out = []
    for i, o in enumerate(workload.origin.tolist()):
        o = str(o)
        if not o:
            if len(cluster.origins) != 1:
                raise ValueError(f"request {i} has no origin and the cluster has "
                                 f"{len(cluster.origins)} origins {list(cluster.origins)}")
            o = cluster.origins[0]
        elif o not in cluster.origins:
            raise ValueError(f"request {i}: unknown origin {o!r}; cluster origins: "
                             f"{list(cluster.origins)}")
        out.append(o)
    return out


class _ServiceTimes:
    """Unloaded inference time and marginal energy per (engine, power, prompt, output).

    Computed once per distinct (engine, power model) pair of the cluster's sites.
    """

    def __init__(self, cluster: Cluster) -> None:
        sites = [cluster.site(s) for s in cluster.sites]
        uniq: dict[tuple[int, int], int] = {}
        self.group = np.array([uniq.setdefault((id(s.engine), id(s.power)), len(uniq))
                               for s in sites])
        self.rep = [sites[int(np.flatnonzero(self.group == g)[0])] for g in range(len(uniq))]
        self.cache: dict[tuple[int, int, int], tuple[float, float]] = {}

    def both(self, p: int, o: int) -> tuple[np.ndarray, np.ndarray]:
        """(unloaded inference time, marginal inference energy) at every site."""
        ts, es = [], []
        for g, site in enumerate(self.rep):
            k = (g, p, o)
            v = self.cache.get(k)
            if v is None:
                t = service_time_s(site.engine, p, o)
                _, e = service_energy_j(site.engine, site.power, p, o)
                v = self.cache[k] = (t, max(e - site.power.idle_w * t, 0.0))
            ts.append(v[0])
            es.append(v[1])
        return np.asarray(ts)[self.group], np.asarray(es)[self.group]

    def __call__(self, p: int, o: int) -> np.ndarray:
        return self.both(p, o)[0]


def simulate_cluster(
    workload: Workload,
    cluster: Cluster,
    dispatcher: Any,
    *,
    scheduler: str | Mapping[str, str] = "vllm",
    rng: np.random.Generator,
    slot_s: float = 1.0,
    prompt_bytes_per_token: float = 4.0,
    result_bytes_per_token: float = 4.0,
    payload_bytes: Any = 0.0,
    horizon_s: float | None = None,
    fast_forward: bool = True,
) -> ClusterResult:
    """Simulate ``workload`` on ``cluster`` with ``dispatcher`` choosing the serving sites.

    Parameters
    ----------
    workload : Workload
        Requests; ``origin`` names the entry node (may be empty if the cluster has one origin).
        The e2e SLO is the processing-time requirement ``Delta D_i`` (PerLLM's C1).
    cluster : Cluster
    dispatcher : Dispatcher
        ``reset()`` is called first.
    scheduler : str or mapping
        Per-site scheduler name: one for all, or ``{site: name}`` (a ``Site.scheduler`` set in
        the cluster wins over a plain string).
    rng : numpy.random.Generator
        Bandwidth-noise stream (one draw per link per decision slot).
    slot_s : float
        Decision-slot length for bandwidth redraws (PerLLM: per slot; our default 1 s).
    prompt_bytes_per_token, result_bytes_per_token : float
        Payload per token in each direction (text: about 4 bytes per token).
    payload_bytes : float or array
        Extra upload bytes per request (attachments, retrieved documents).
    horizon_s : float, optional
        Energy horizon (>= the natural horizon); default: the natural horizon.
    fast_forward : bool
        Passed to each site's :class:`~slo_opt.sim.simulator.Simulation`.

    Returns
    -------
    ClusterResult
    """
    t0 = time.perf_counter()
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    if not isinstance(cluster, Cluster):
        raise TypeError(f"cluster must be a Cluster, got {type(cluster).__name__}")
    n, m = len(workload), cluster.num_sites
    pbt = _check_bytes("prompt_bytes_per_token", prompt_bytes_per_token)
    rbt = _check_bytes("result_bytes_per_token", result_bytes_per_token)
    extra = np.broadcast_to(np.asarray(payload_bytes, float), (n,)).copy()
    if not (np.isfinite(extra).all() and (extra >= 0).all()):
        raise ValueError("payload_bytes must be finite and >= 0")
    up_bytes = workload.prompt_tokens * pbt + extra
    down_bytes = workload.output_tokens * rbt
    origins = _origins(workload, cluster)
    bw = SlotBandwidth(cluster, rng, slot_s)
    svc = _ServiceTimes(cluster)
    sites = [cluster.site(s) for s in cluster.sites]
    sims = []
    for name, site in zip(cluster.sites, sites):
        sname = site.scheduler
        if sname is None:
            sname = scheduler if isinstance(scheduler, str) else scheduler.get(name, "vllm")
        sims.append(Simulation(workload, site.engine, make_scheduler(sname),
                               fast_forward=fast_forward))
    idle_w = np.array([s.power.idle_w for s in sites])
    kv_cap = np.array([s.engine.kv_capacity_tokens for s in sites], np.int64)
    kv_blk = np.array([s.engine.kv_block_tokens for s in sites], np.int64)
    thr = np.array([saturated_throughput_tokens_per_s(s.engine) for s in sites])
    tiers = cluster.tiers

    site_of = np.full(n, -1, np.int64)
    up_s = np.full(n, np.nan)
    up_j = np.zeros(n)
    model_e = np.full(n, np.nan)
    rej_disp = np.zeros(n, bool)
    pending: list[dict[int, None]] = [{} for _ in range(m)]
    infer_marg = np.zeros(n)
    reset = getattr(dispatcher, "reset", None)
    if reset is not None:
        reset()
    requests = workload.requests
    deadline = workload.e2e_slo_s

    def feedback(now: float) -> None:
        for j, sim in enumerate(sims):
            if not pending[j]:
                continue
            for rid in list(pending[j]):
                if sim.is_rejected(rid):
                    del pending[j][rid]
                    dispatcher.observe(Feedback(rid, j, requests[rid].class_label, math.inf,
                                                float(deadline[rid]), False, True, 0.0))
                    continue
                fin = sim.finish_time_s(rid)
                if math.isnan(fin):
                    continue
                dn, dj = bw.down(origins[rid], fin, float(down_bytes[rid]))
                done = fin + dn[j]
                if done > now:
                    continue
                del pending[j][rid]
                e2e = done - workload.arrival_s[rid]
                dl = float(deadline[rid])
                dispatcher.observe(Feedback(
                    rid, j, requests[rid].class_label, float(e2e), dl,
                    bool(e2e <= dl + SLO_TOL_S), False, float(up_j[rid] + dj[j] + infer_marg[rid])))

    for rid in range(n):
        t = float(workload.arrival_s[rid])
        for sim in sims:
            sim.run_until(t)
        feedback(t)
        req = requests[rid]
        o = origins[rid]
        u_s, u_j = bw.up(o, t, float(up_bytes[rid]))
        d_s, d_j = bw.down(o, t, float(down_bytes[rid]))
        inf_s, inf_j = svc.both(req.prompt_tokens, req.output_tokens)
        view = ClusterView(
            now_s=t, request=req, sites=cluster.sites, tiers=tiers,
            up_s=u_s, down_s=d_s, tran_energy_j=u_j + d_j, infer_s=inf_s, infer_energy_j=inf_j,
            kv_capacity_tokens=kv_cap,
            kv_free_tokens=np.array([s.kv_free_blocks for s in sims], np.int64) * kv_blk,
            num_open=np.array([s.num_open for s in sims], np.int64),
            num_running=np.array([s.num_running for s in sims], np.int64),
            num_waiting=np.array([s.num_waiting for s in sims], np.int64),
            outstanding_tokens=np.array([s.outstanding_tokens() for s in sims], np.int64),
            throughput_tokens_per_s=thr,
        )
        j = dispatcher.choose(view)
        if j is None:
            rej_disp[rid] = True
            continue
        if isinstance(j, bool) or not isinstance(j, int | np.integer) or not 0 <= j < m:
            raise ValueError(f"dispatcher {getattr(dispatcher, 'name', dispatcher)!r} returned "
                             f"site {j!r} for request {rid}; expected an int in [0, {m}) or None")
        j = int(j)
        site_of[rid] = j
        up_s[rid], up_j[rid] = u_s[j], u_j[j]
        infer_marg[rid] = inf_j[j]
        model_e[rid] = u_j[j] + d_j[j] + inf_j[j]
        sims[j].push(rid, t + float(u_s[j]))
        pending[j][rid] = None

    schedules = {name: sim.finish() for name, sim in zip(cluster.sites, sims)}
    return _merge(workload, cluster, schedules, origins, bw, site_of, up_s, up_j, rej_disp,
                  model_e, up_bytes, down_bytes, idle_w, horizon_s,
                  {"dispatcher": getattr(dispatcher, "name", type(dispatcher).__name__),
                   "wall_s": time.perf_counter() - t0, "slot_s": slot_s})


def _merge(workload: Workload, cluster: Cluster, schedules: dict[str, Schedule],
           origins: list[str], bw: SlotBandwidth, site_of: np.ndarray, up_s: np.ndarray,
           up_j: np.ndarray, rej_disp: np.ndarray, model_e: np.ndarray, up_bytes: np.ndarray,
           down_bytes: np.ndarray, idle_w: np.ndarray,
           horizon_s: float | None, meta: dict[str, Any]) -> ClusterResult:
    n, m = len(workload), cluster.num_sites
    arr = workload.arrival_s
    start = np.full(n, np.nan)
    first = np.full(n, np.nan)
    fin = np.full(n, np.nan)
    rej_eng = np.zeros(n, bool)
    e_busy = np.zeros(n)
    busy_s = np.zeros(m)
    busy_j = np.zeros(m)
    makespan = 0.0
    for j, name in enumerate(cluster.sites):
        sch = schedules[name]
        mine = site_of == j
        st = sch.steps
        dur = st.end_s - st.start_s
        busy_s[j] = float(dur.sum())
        a = sch.allocs
        e_step = cluster.site(name).power.steps_energy_j(st, _prefill_seqs(sch))
        busy_j[j] = float(e_step.sum())
        makespan = max(makespan, sch.makespan_s)
        fin[mine] = sch.finish_s[mine]
        first[mine] = sch.first_token_s[mine]
        rej_eng |= mine & sch.rejected
        if len(a):
            s0 = np.full(n, np.iinfo(np.int64).max)
            np.minimum.at(s0, a.request, a.step)
            has = s0 < np.iinfo(np.int64).max
            start[has] = st.start_s[s0[has]]
            tok_step = st.prefill_tokens + st.decode_seqs
            per_tok = e_step / np.maximum(tok_step, 1)
            cs = np.concatenate(([0.0], np.cumsum(per_tok)))
            e = a.tokens * (cs[a.step + a.num_steps] - cs[a.step])
            e_busy += np.bincount(a.request, weights=e, minlength=n)
    served = ~np.isnan(fin)
    down_s = np.full(n, np.nan)
    down_j = np.zeros(n)
    for rid in np.flatnonzero(served):
        j = int(site_of[rid])
        ds, dj = bw.down(origins[rid], float(fin[rid]), float(down_bytes[rid]))
        down_s[rid], down_j[rid] = ds[j], dj[j]
    done = fin + down_s
    e2e = done - arr
    deadline = workload.e2e_slo_s
    met = served & (e2e <= deadline + SLO_TOL_S)
    natural = max(float(arr[-1]) if n else 0.0, makespan,
                  float(np.nanmax(done)) if served.any() else 0.0)
    if horizon_s is None:
        horizon = natural
    else:
        horizon = float(horizon_s)
        if not horizon >= natural - 1e-9:
            raise ValueError(f"horizon_s={horizon} is shorter than the run ({natural})")
    e_tran = np.where(site_of >= 0, up_j, 0.0) + down_j
    tran_site = np.bincount(site_of[site_of >= 0], weights=e_tran[site_of >= 0], minlength=m)
    idle_j = idle_w * np.maximum(horizon - busy_s, 0.0)
    rejected = rej_disp | rej_eng
    records = {
        "site": site_of,
        "origin": np.array(origins, dtype=object),
        "class_label": np.asarray(workload.class_label, dtype=object),
        "arrival_s": np.asarray(arr, float),
        "up_s": up_s,
        "release_s": arr + up_s,
        "start_s": start,
        "first_token_s": first,
        "finish_s": fin,
        "down_s": down_s,
        "done_s": done,
        "queue_s": start - (arr + up_s),
        "inference_s": fin - start,
        "e2e_s": e2e,
        "deadline_s": np.asarray(deadline, float),
        "met": met,
        "served": served,
        "rejected": rejected,
        "rejected_by": np.where(rej_disp, "dispatcher", np.where(rej_eng, "engine", "")),
        "energy_busy_j": e_busy,
        "energy_tran_j": e_tran,
        "energy_j": e_busy + e_tran,
        "model_energy_j": model_e,
    }
    site_energy = {
        "busy_s": busy_s,
        "busy_j": busy_j,
        "idle_j": idle_j,
        "tran_j": tran_site,
        "total_j": busy_j + idle_j + tran_site,
        "served": np.bincount(site_of[served], minlength=m),
    }
    return ClusterResult(cluster.sites, cluster.tiers, horizon, records, site_energy,
                         schedules, meta)


def _prefill_seqs(sch: Schedule) -> np.ndarray:
    """Per step: allocations computing more than one token (prefill chunks), from the allocs."""
    n = len(sch.steps)
    a = sch.allocs
    diff = np.zeros(n + 1, np.int64)
    if len(a):
        multi = a.tokens > 1
        np.add.at(diff, a.step[multi], 1)
        np.add.at(diff, a.step[multi] + a.num_steps[multi], -1)
    return np.cumsum(diff)[:n]


def placement_inputs(
    workload: Workload,
    cluster: Cluster,
    rng: np.random.Generator,
    *,
    slot_s: float = 1.0,
    prompt_bytes_per_token: float = 4.0,
    result_bytes_per_token: float = 4.0,
    payload_bytes: Any = 0.0,
    energy_weights: tuple[float, float] = (1.0, 1.0),
) -> dict[str, Any]:
    """Clairvoyant inputs of the placement MILP for every request x site.

    Uses the *realised* bandwidth of the arrival slot (the same draws as
    :func:`simulate_cluster` given a generator with the same seed) for both directions and the
    unloaded inference time, i.e. the epoch/fluid view of ``optimization.md`` section 2.5.

    Returns
    -------
    dict
        ``energy_j`` (n, m) = ``w_tran * transmission + w_infer * marginal unloaded inference
        energy`` (two-level: ``(busy_w - idle_w) * infer``)
        (``inf`` where the KV capacity cannot hold the request), ``time_s`` (n, m) = up +
        infer + down, ``deadline_s`` (n,), ``load_s`` (n, m) = work tokens / saturated
        throughput, ``link_bytes`` = (request, site, link, bytes) arrays, ``link_capacity_bytes_per_s``
        (links,), ``arrival_s`` (n,), ``idle_w`` (m,).
    """
    n, m = len(workload), cluster.num_sites
    origins = _origins(workload, cluster)
    bw = SlotBandwidth(cluster, rng, slot_s)
    svc = _ServiceTimes(cluster)
    sites = [cluster.site(s) for s in cluster.sites]
    idle = np.array([s.power.idle_w for s in sites])
    kv_cap = np.array([s.engine.kv_capacity_tokens for s in sites])
    thr = np.array([saturated_throughput_tokens_per_s(s.engine) for s in sites])
    extra = np.broadcast_to(np.asarray(payload_bytes, float), (n,))
    ub = workload.prompt_tokens * float(prompt_bytes_per_token) + extra
    db = workload.output_tokens * float(result_bytes_per_token)
    energy = np.empty((n, m))
    tm = np.empty((n, m))
    w_tran, w_inf = energy_weights
    li, lj, le, lb = [], [], [], []
    for i in range(n):
        t = float(workload.arrival_s[i])
        us, uj = bw.up(origins[i], t, float(ub[i]))
        ds, dj = bw.down(origins[i], t, float(db[i]))
        inf_s, inf_j = svc.both(int(workload.prompt_tokens[i]), int(workload.output_tokens[i]))
        energy[i] = w_tran * (uj + dj) + w_inf * inf_j
        tm[i] = us + inf_s + ds
        peak = int(workload.prompt_tokens[i] + workload.output_tokens[i] - 1)
        energy[i, kv_cap < peak] = math.inf
        for j, s in enumerate(cluster.sites):
            if s == origins[i]:
                continue
            for links, nb in ((cluster.route(origins[i], s).links, ub[i]),
                              (cluster.route(s, origins[i]).links, db[i])):
                for e in links.tolist():
                    li.append(i)
                    lj.append(j)
                    le.append(e)
                    lb.append(nb)
    work = (workload.prompt_tokens + workload.output_tokens - 1).astype(float)
    return {
        "energy_j": energy,
        "time_s": tm,
        "deadline_s": np.asarray(workload.e2e_slo_s, float),
        "load_s": work[:, None] / thr[None, :],
        "link_bytes": (np.array(li, np.int64), np.array(lj, np.int64), np.array(le, np.int64),
                       np.array(lb, float)),
        "link_capacity_bytes_per_s": cluster.bandwidth_bytes_per_s.copy(),
        "arrival_s": np.asarray(workload.arrival_s, float),
        "idle_w": idle,
    }
