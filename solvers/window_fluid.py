"""Time-indexed fluid LP bounds over request windows, for engines with variable step times.

Building block (:func:`add_window_work`): a *member* ``m`` (a request on one machine) must do
``work_m`` seconds of machine time inside its window ``[s_m, e_m]``; time is cut into cells
``[edges[c], edges[c+1])``; variables ``z[m, c] >= 0`` for the cells that intersect the window,
``sum_c z[m, c] = work_m`` (a linear expression of other columns) and, per machine and cell,
``sum_m z[m, c] <= edges[c+1] - edges[c]``.

Why it is a relaxation of every schedule: spread each engine step's lower-bound work
(:mod:`slo_opt.solvers.engine_bounds`; at most its duration) uniformly over the step. Work then
accumulates at rate <= 1 on each machine, so a cell receives at most its length; a member's
work lies in its steps, all inside its window, hence inside the cells meeting the window.
Nothing is assumed about the order, batching or preemption of the schedule.

:func:`site_fluid_bound`: most requests that can meet their deadlines on a set of machines
(PerLLM's edge-cloud sites): ``x[i, j]`` = request ``i`` served on time at site ``j``,
``sum_j x[i, j] <= 1``, one set of fluid rows per (site, step plane). A request can only be
counted at site ``j`` if its window there is long enough for its minimum inference time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo_opt.solvers.base import LinearModel, Status

__all__ = ["SiteFluidBound", "add_window_work", "cell_edges", "site_batch_fluid_bound",
           "site_fluid_bound",
           "window_cells"]


def cell_edges(start: np.ndarray, end: np.ndarray, cell_s: float) -> np.ndarray:
    """Uniform cell edges covering ``[min start, max end]``."""
    if not (cell_s > 0 and math.isfinite(cell_s)):
        raise ValueError(f"cell_s must be finite and > 0, got {cell_s}")
    lo = float(np.min(start))
    hi = float(np.max(end))
    n = max(1, math.ceil((hi - lo) / cell_s))
    return lo + cell_s * np.arange(n + 1)


def window_cells(edges: np.ndarray, start: np.ndarray, end: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(member, cell)`` index pairs of every cell that meets each window ``[start, end]``."""
    s = np.asarray(start, float)
    e = np.asarray(end, float)
    nc = edges.size - 1
    c0 = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, nc - 1)
    c1 = np.clip(np.searchsorted(edges, e, side="left") - 1, 0, nc - 1)
    c1 = np.maximum(c1, c0)
    cnt = c1 - c0 + 1
    mem = np.repeat(np.arange(s.size), cnt)
    off = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return mem, np.repeat(c0, cnt) + off


def add_window_work(model: LinearModel, edges: np.ndarray, start: np.ndarray, end: np.ndarray,
                    machine: np.ndarray, work_cols: Sequence[np.ndarray],
                    work_coefs: Sequence[np.ndarray], num_machines: int) -> int:
    """Add the fluid rows for members ``m`` (see module docstring); returns the z count.

    ``work_m = sum_t work_coefs[t][m] * x[work_cols[t][m]]``; ``machine[m]`` in
    ``0..num_machines-1``.
    """
    mem, cell = window_cells(edges, start, end)
    nz = mem.size
    z = model.add_cols(nz, lb=0.0)
    nm = int(np.asarray(start).size)
    # per member: sum_c z - sum_t coef x = 0
    r = [mem, *[np.arange(nm) for _ in work_cols]]
    c = [z, *[np.asarray(col, np.int64) for col in work_cols]]
    v = [np.ones(nz), *[-np.asarray(cf, float) for cf in work_coefs]]
    model.add_rows(np.concatenate(r), np.concatenate(c), np.concatenate(v), 0.0, 0.0, nm)
    # per (machine, cell): sum z <= cell length
    ncell = edges.size - 1
    key = np.asarray(machine, np.int64)[mem] * ncell + cell
    length = np.tile(np.diff(edges), num_machines)
    model.add_rows(key, z, 1.0, -math.inf, length, num_machines * ncell)
    return nz


@dataclass(frozen=True)
class SiteFluidBound:
    """Outcome of :func:`site_fluid_bound`."""

    status: Status
    value: float  #: upper bound on the number (weighted sum) of on-time requests; NaN if none
    num_cols: int
    num_rows: int
    wall_s: float
    valid_for: str


def site_fluid_bound(release_s: np.ndarray, latest_finish_s: np.ndarray,
                     min_inference_s: np.ndarray, work_s: Sequence[np.ndarray],
                     *, weights: np.ndarray | None = None, cell_s: float = 0.5,
                     time_limit_s: float = 60.0, valid_for: str = "") -> SiteFluidBound:
    """Upper bound on on-time requests over sites (module docstring).

    Parameters
    ----------
    release_s, latest_finish_s : array (n, m)
        Earliest start of request ``i`` at site ``j`` (arrival + upload) and the latest finish
        that still meets its deadline there (deadline - fastest possible download);
        ``-inf``/NaN finish or a window shorter than ``min_inference_s`` = cannot be on time.
    min_inference_s : array (n, m)
        Lower bound on the inference time at each site (``inf``: cannot serve, e.g. KV).
    work_s : sequence of arrays (n, m)
        Plane work of each request at each site, one array per step plane; every plane gets
        its own fluid rows.
    weights : array (n,), optional
        Objective weights (default 1: count of on-time requests).
    """
    import time

    from slo_opt.solvers import backends

    t0 = time.perf_counter()
    rel = np.asarray(release_s, float)
    fin = np.asarray(latest_finish_s, float)
    mi = np.asarray(min_inference_s, float)
    n, m = rel.shape
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    ok = np.isfinite(rel) & np.isfinite(fin) & np.isfinite(mi) & (fin - rel >= mi)
    ii, jj = np.nonzero(ok)
    model = LinearModel(sense="max", info={"name": "site_fluid"})
    if ii.size == 0:
        return SiteFluidBound(Status.OPTIMAL, 0.0, 0, 0, time.perf_counter() - t0, valid_for)
    x = model.add_cols(ii.size, lb=0.0, ub=1.0, cost=w[ii])
    model.add_rows(ii, x, 1.0, -math.inf, 1.0, n)  # each request on time at most once
    edges = cell_edges(rel[ii, jj], fin[ii, jj], cell_s)
    for ws in work_s:
        wk = np.asarray(ws, float)[ii, jj]
        add_window_work(model, edges, rel[ii, jj], fin[ii, jj], jj, [x], [wk], m)
    raw = backends.run(model, time_limit_s=time_limit_s)
    val = math.nan
    if raw.status == Status.OPTIMAL and raw.incumbent is not None:
        b = raw.bound if raw.bound is not None else raw.incumbent
        val = max(float(raw.incumbent), float(b)) * (1 + 1e-7) + 1e-9
        val = min(val, float(w[np.unique(ii)].sum()))  # never above "every feasible one"
    return SiteFluidBound(raw.status, val, model.num_cols, model.num_rows,
                          time.perf_counter() - t0, valid_for)


def site_batch_fluid_bound(release_s: np.ndarray, latest_finish_s: np.ndarray,
                           decodes: np.ndarray, floors_s: np.ndarray, group_hi: np.ndarray,
                           own_s: np.ndarray, cap_floors_s: Sequence[np.ndarray],
                           cap_fixed_s: Sequence[np.ndarray], *,
                           weights: np.ndarray | None = None, cell_s: float = 1.0,
                           time_limit_s: float = 120.0, valid_for: str = "") -> SiteFluidBound:
    """Most on-time requests over sites, with batch sizes resolved (latency-throughput coupling).

    Variables: ``x[i, j]`` (request ``i`` on time at site ``j``) and ``y[i, j, g] >= 0``: its
    decode steps at ``j`` in steps whose decode count lies in group ``g`` (sizes up to
    ``group_hi[g]``; every such step lasts at least ``floors_s[j, g]``)::

        sum_j x[i, j] <= 1
        sum_g y[i, j, g] = decodes_i x[i, j]
        sum_g floors[j, g] y[i, j, g] + own[i, j] x[i, j] <= (finish - release)[i, j] x[i, j]
        per capacity plane c, fluid rows per site:
            sum_g cap_floors[c][j, g] / group_hi[g] y + cap_fixed[c][i, j] x
            inside [release, finish] (:func:`add_window_work`)

    ``own`` = the request's own prefill floor plus its decode-context time (every one of its
    steps pays for its own context). A capacity plane is a split of every step's duration into
    a per-step part that depends only on its decode count (``cap_floors``, at most the step
    floor) and per-request parts (``cap_fixed``: context reads, prompt tokens) whose sum over the
    step's requests is at most the rest; each plane alone is a valid capacity argument, so all
    are imposed. The latency row is the request's own steps running one after another inside
    its window; the fluid rows charge each step's per-step part to its ``<= group_hi`` decodes. Unlike :func:`site_fluid_bound`, a request
    cannot both ride in the large batches that give the throughput and finish as fast as it
    would alone.
    """
    import time

    from slo_opt.solvers import backends

    t0 = time.perf_counter()
    rel = np.asarray(release_s, float)
    fin = np.asarray(latest_finish_s, float)
    n, m = rel.shape
    fl = np.asarray(floors_s, float)
    hi = np.asarray(group_hi, float)
    ng = hi.size
    own = np.asarray(own_s, float)
    dec = np.asarray(decodes, float)
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    win = fin - rel
    ok = np.isfinite(rel) & np.isfinite(fin) & np.isfinite(own) & (
        win >= own + dec[:, None] * fl.min(axis=1)[None, :])
    ii, jj = np.nonzero(ok)
    if ii.size == 0:
        return SiteFluidBound(Status.OPTIMAL, 0.0, 0, 0, time.perf_counter() - t0, valid_for)
    q = ii.size
    model = LinearModel(sense="max", info={"name": "site_batch_fluid"})
    x = model.add_cols(q, lb=0.0, ub=1.0, cost=w[ii])
    y = model.add_cols(q * ng, lb=0.0).reshape(q, ng)
    model.add_rows(ii, x, 1.0, -math.inf, 1.0, n)
    r = np.arange(q)
    model.add_rows(np.concatenate([np.repeat(r, ng), r]), np.concatenate([y.reshape(-1), x]),
                   np.concatenate([np.ones(q * ng), -dec[ii]]), 0.0, 0.0, q)
    model.add_rows(np.concatenate([np.repeat(r, ng), r]), np.concatenate([y.reshape(-1), x]),
                   np.concatenate([fl[jj].reshape(-1), own[ii, jj] - win[ii, jj]]),
                   -math.inf, 0.0, q)
    edges = cell_edges(rel[ii, jj], fin[ii, jj], cell_s)
    cols = [y[:, g] for g in range(ng)] + [x]
    for cf, cx in zip(cap_floors_s, cap_fixed_s, strict=True):
        cf = np.asarray(cf, float)
        fix = np.asarray(cx, float)
        coefs = [cf[jj, g] / hi[g] for g in range(ng)] + [fix[ii, jj]]
        add_window_work(model, edges, rel[ii, jj], fin[ii, jj], jj, cols, coefs, m)
    raw = backends.run(model, time_limit_s=time_limit_s)
    val = math.nan
    if raw.status == Status.OPTIMAL and raw.incumbent is not None:
        b = raw.bound if raw.bound is not None else raw.incumbent
        val = max(float(raw.incumbent), float(b)) * (1 + 1e-7) + 1e-9
        val = min(val, float(w[np.unique(ii)].sum()))
    return SiteFluidBound(raw.status, val, model.num_cols, model.num_rows,
                          time.perf_counter() - t0, valid_for)
