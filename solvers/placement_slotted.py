"""Time-slotted, queueing-aware edge-cloud placement MILP (clairvoyant offline reference).

The epoch GAP of :mod:`.placement_milp` is a fluid model: it ignores queueing inside a site, so
replayed online it overloads sites. This module is the *time-slotted pattern version* of
``shared/research/optimization.md`` section 2.5 (and 5(d)): binary ``x[i, j, t]`` = request
``i`` starts service on site ``j`` in slot ``t``::

    stage 1 (deadline count):  max  sum_ijt x_ijt
    stage 2 (energy):          min  sum_ijt E_ij x_ijt   s.t. sum_ijt x_ijt >= met*
    s.t. sum_jt x_ijt + r_i = 1                                for all i   (one start or reject)
         sum_i sum_{t' covering t} x_ijt' <= K_j              for all (j, t) (concurrency)
         sum_i sum_{t' covering t} kv_i x_ijt' <= KV_j        for all (j, t) (KV memory, optional)
         sum_i P_ij x_ijt <= phi_j slot_s                     for all (j, t) (prefill, optional)
         sum_{(i,j): e on i's path to j, arrival slot k} bytes_i sum_t x_ijt <= B_e slot_s
                                                              for all (e, k) (link bytes, optional)
         x binary, r in [0, 1]

A column ``(i, j, t)`` exists only if it meets the deadline: service starts at
``max(t slot_s, release_ij)`` with ``release_ij = arrival_i + upload_ij`` (so ``t`` is at least
the release slot), ends ``service_ij`` later, and the result is back at the origin after
``tail_ij`` (download) no later than ``due_i = arrival_i + Delta_i``. Columns that would miss
are dropped; a request without an on-time column is rejected (``r_i = 1``). The column occupies
every slot from ``t`` to the slot containing its end (whole slots: conservative). The two
stages are lexicographic (most deadlines met first, then least model energy); stage 2 is
warm-started with stage 1's incumbent.

Choice of the per-site capacity and the service time under load
(:func:`slo_opt.study.placement.slotted_inputs`):

* ``K_j`` is the largest decode batch whose step time (at the workload's mean context) stays
  within ``1 + slowdown`` of the batch-of-one step time (and fits the KV capacity);
* prefills are compute-bound and serialise: the prefill seconds ``P_ij`` (batch-of-one) of the
  requests *starting* in a slot may use at most a share ``phi`` of it (``prefill_share``);
* a request's occupancy is then ``P_ij + D_ij r_j / (1 - phi)``, where ``D_ij`` is its unloaded
  decode time and ``r_j`` the step-time ratio at ``K_j`` (<= ``1 + slowdown``): with at most
  ``K_j`` co-runners and at most ``phi`` of every slot spent on prefills, its decode steps get at
  least ``1 - phi`` of the site's time, each step no slower than at batch ``K_j`` (a fluid
  sufficient condition; whole-slot accounting). With a fixed-step engine
  (:class:`~slo_opt.models.slot.SlotEngine`) ``r_j = 1``; ``phi = 0`` recovers the unloaded
  service time.

The replay through :func:`~slo_opt.edge.simulation.simulate_cluster` uses only the *site* of each
request (the site scheduler then starts requests as it sees fit, not at the planned slots), so
the MILP's count is a planning figure, not a bound on the replay; the experiment picks ``phi``
by replay (``experiments/perllm.py``).

Solved with HiGHS through ``highspy`` (column-wise CSC built with numpy). The result reports
each stage's status, incumbent and dual bound as HiGHS gives them ("optimal" also when the
relative gap tolerance is reached, HiGHS#1147).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slo_opt._moved import forward

__all__ = ["SlottedInstance", "SlottedResult", "check_slotted", "solve_slotted"]

_TOL_S = 1e-9


@dataclass(frozen=True, eq=False)
class SlottedInstance:
    """A clairvoyant instance of the slotted placement MILP.

    Parameters
    ----------
    release_s : (n, m) array
        Absolute time request ``i`` is at site ``j`` (arrival + upload; ``inf``: not allowed).
    service_s : (n, m) array
        Time ``i`` occupies ``j`` once started (> 0).
    tail_s : (n, m) array
        Time from end of service to the result being back at the origin (download).
    due_s : (n,) array
        Absolute deadline ``arrival_i + Delta_i`` (``inf``: none).
    energy_j : (n, m) array
        Model energy of serving ``i`` at ``j`` (``inf``: not allowed).
    concurrency : (m,) int array
        ``K_j``: requests a site serves at once.
    slot_s : float
        Slot length.
    kv_tokens : (n,) array, optional; kv_capacity_tokens : (m,) array, optional
        Peak KV tokens of each request and each site's KV capacity (per-slot rows).
    link_bytes : tuple ``(i, j, e, bytes)`` of arrays, optional; link_slot : (n,) int array;
    link_capacity_bytes : (L,) array
        Bytes that placing ``i`` at ``j`` moves over link ``e`` in slot ``link_slot[i]``, and
        each link's capacity per slot.
    prefill_s : (n, m) array, optional; prefill_capacity_s : (m,) array, optional
        Prefill seconds charged to a column's start slot and each site's prefill budget per
        slot.
    horizon_s : float, optional
        Last time a service may end (default: the largest finite due time, or the latest
        release + service + tail when no due time is finite).
    """

    release_s: np.ndarray
    service_s: np.ndarray
    tail_s: np.ndarray
    due_s: np.ndarray
    energy_j: np.ndarray
    concurrency: np.ndarray
    slot_s: float
    kv_tokens: np.ndarray | None = None
    kv_capacity_tokens: np.ndarray | None = None
    link_bytes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    link_slot: np.ndarray | None = None
    link_capacity_bytes: np.ndarray | None = None
    prefill_s: np.ndarray | None = None
    prefill_capacity_s: np.ndarray | None = None
    horizon_s: float | None = None

    def __post_init__(self) -> None:
        e = np.asarray(self.energy_j, float)
        if e.ndim != 2:
            raise ValueError(f"energy_j must be (n, m), got shape {e.shape}")
        n, m = e.shape
        if np.isnan(e).any() or (e < 0).any():
            raise ValueError("energy_j must be >= 0 (inf = not allowed), without NaN")
        object.__setattr__(self, "energy_j", e)
        for nm in ("release_s", "service_s", "tail_s"):
            a = np.asarray(getattr(self, nm), float)
            if a.shape != (n, m) or np.isnan(a).any() or (a < 0).any():
                raise ValueError(f"{nm} must be a non-negative (n, m)=({n}, {m}) array")
            object.__setattr__(self, nm, a)
        if not (np.isfinite(self.service_s).all() and (self.service_s > 0).all()):
            raise ValueError("service_s must be finite and > 0")
        if not np.isfinite(self.tail_s).all():
            raise ValueError("tail_s must be finite")
        d = np.asarray(self.due_s, float).reshape(-1)
        if d.size != n or np.isnan(d).any():
            raise ValueError(f"due_s must be {n} values (inf = none)")
        object.__setattr__(self, "due_s", d)
        k = np.asarray(self.concurrency).reshape(-1)
        if k.size != m or (k < 0).any() or not np.array_equal(k, np.round(k)):
            raise ValueError(f"concurrency must be {m} non-negative integers")
        object.__setattr__(self, "concurrency", k.astype(np.int64))
        if not (math.isfinite(self.slot_s) and self.slot_s > 0):
            raise ValueError(f"slot_s must be finite and > 0, got {self.slot_s}")
        if (self.kv_tokens is None) != (self.kv_capacity_tokens is None):
            raise ValueError("give both kv_tokens and kv_capacity_tokens, or neither")
        if self.kv_tokens is not None:
            kv = np.asarray(self.kv_tokens, float).reshape(-1)
            kc = np.asarray(self.kv_capacity_tokens, float).reshape(-1)
            if kv.size != n or kc.size != m or (kv < 0).any() or (kc < 0).any():
                raise ValueError("kv_tokens must be (n,) >= 0 and kv_capacity_tokens (m,) >= 0")
        lk = (self.link_bytes is None, self.link_slot is None, self.link_capacity_bytes is None)
        if len(set(lk)) != 1:
            raise ValueError("give link_bytes, link_slot and link_capacity_bytes together")
        if (self.prefill_s is None) != (self.prefill_capacity_s is None):
            raise ValueError("give both prefill_s and prefill_capacity_s, or neither")
        if self.prefill_s is not None:
            pf = np.asarray(self.prefill_s, float)
            pc = np.asarray(self.prefill_capacity_s, float).reshape(-1)
            if pf.shape != (n, m) or pc.size != m or np.isnan(pf).any() or (pf < 0).any() \
                    or (pc < 0).any():
                raise ValueError("prefill_s must be (n, m) >= 0 and prefill_capacity_s (m,) >= 0")
        if self.horizon_s is not None and not (self.horizon_s > 0):
            raise ValueError(f"horizon_s must be > 0, got {self.horizon_s}")

    @property
    def shape(self) -> tuple[int, int]:
        """(requests, sites)."""
        return self.energy_j.shape  # type: ignore[return-value]

    def horizon(self) -> float:
        """Latest end of service considered."""
        if self.horizon_s is not None:
            return float(self.horizon_s)
        fin = self.due_s[np.isfinite(self.due_s)]
        if fin.size:
            return float(fin.max())
        ok = np.isfinite(self.release_s) & np.isfinite(self.energy_j)
        if not ok.any():
            return self.slot_s
        return float((self.release_s + self.service_s + self.tail_s)[ok].max())

    def columns(self) -> dict[str, np.ndarray]:
        """Every on-time column ``(i, j, t)`` with its start, end and covered slots.

        Returns ``i, j, t`` (start slot), ``start_s``, ``end_s`` and ``last`` (last covered
        slot, inclusive).
        """
        dt = float(self.slot_s)
        ok = np.isfinite(self.energy_j) & np.isfinite(self.release_s)
        pi, pj = np.nonzero(ok)
        rel = self.release_s[pi, pj]
        svc = self.service_s[pi, pj]
        tail = self.tail_s[pi, pj]
        due = np.minimum(self.due_s[pi], self.horizon() + tail)
        t_lo = np.floor(rel / dt + _TOL_S).astype(np.int64)
        # latest start slot t with t dt + svc + tail <= due (t > t_lo starts at t dt)
        t_hi = np.floor((due - svc - tail) / dt + _TOL_S)
        t_hi = np.where(np.isfinite(t_hi), t_hi, t_lo).astype(np.int64)
        first_ok = rel + svc + tail <= due + _TOL_S
        t_hi = np.where(first_ok, np.maximum(t_hi, t_lo), t_lo - 1)
        cnt = np.maximum(t_hi - t_lo + 1, 0)
        tot = int(cnt.sum())
        rep = np.repeat(np.arange(pi.size), cnt)
        off = np.arange(tot) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        t = t_lo[rep] + off
        start = np.maximum(t * dt, rel[rep])
        end = start + svc[rep]
        last = np.maximum(np.ceil(end / dt - _TOL_S).astype(np.int64) - 1, t)
        return {"i": pi[rep], "j": pj[rep], "t": t, "start_s": start, "end_s": end,
                "last": last}


@dataclass(frozen=True)
class SlottedResult:
    """Outcome of :func:`solve_slotted`.

    ``status`` is the *combined* status: ``"optimal"`` when both stages are optimal (within
    ``mip_rel_gap``), ``"time_limit"`` when either stopped on the time limit (the incumbent is
    still feasible), ``"error: <HiGHS status>"`` otherwise. ``met`` is the incumbent's deadline
    count and ``met_bound`` an upper bound on it (stage 1's dual bound); ``energy_j`` the
    incumbent's model energy and ``energy_bound`` stage 2's dual bound (a bound among plans
    meeting at least ``met`` deadlines). ``site_of`` = -1 for rejected requests, ``start_s`` /
    ``end_s`` the planned service start and end (NaN if rejected).
    """

    status: str
    met: int
    met_bound: float
    energy_j: float
    energy_bound: float
    site_of: np.ndarray
    start_slot: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    wall_s: float
    num_cols: int
    num_rows: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_solution(self) -> bool:
        """Whether an incumbent exists (the all-reject plan counts: it is always feasible)."""
        return self.status in ("optimal", "time_limit")


def check_slotted(inst: SlottedInstance, site_of: np.ndarray,
                  start_slot: np.ndarray) -> list[str]:
    """Violations of a plan (empty list = feasible): deadlines, concurrency, KV, links."""
    cols = inst.columns()
    _n, m = inst.shape
    out: list[str] = []
    site_of = np.asarray(site_of, np.int64)
    start_slot = np.asarray(start_slot, np.int64)
    key = {(int(a), int(b), int(c)): k for k, (a, b, c) in
           enumerate(zip(cols["i"], cols["j"], cols["t"]))}
    chosen = []
    for i in np.flatnonzero(site_of >= 0):
        k = key.get((int(i), int(site_of[i]), int(start_slot[i])))
        if k is None:
            out.append(f"request {i}: (site {site_of[i]}, slot {start_slot[i]}) is not on time")
        else:
            chosen.append(k)
    ch = np.asarray(chosen, np.int64)
    if ch.size:
        T = int(cols["last"][ch].max()) + 1
        occ = np.zeros((m, T + 1))
        kv = np.zeros((m, T + 1))
        pre = np.zeros((m, T + 1))
        if inst.prefill_s is not None:
            np.add.at(pre, (cols["j"][ch], cols["t"][ch]),
                      np.asarray(inst.prefill_s, float)[cols["i"][ch], cols["j"][ch]])
        w = (np.asarray(inst.kv_tokens, float)[cols["i"][ch]] if inst.kv_tokens is not None
             else np.zeros(ch.size))
        for k, wk in zip(ch.tolist(), w.tolist()):
            j, a, b = int(cols["j"][k]), int(cols["t"][k]), int(cols["last"][k]) + 1
            occ[j, a:b] += 1
            kv[j, a:b] += wk
        for j in range(m):
            if occ[j].max() > inst.concurrency[j] + 1e-9:
                out.append(f"site {j}: concurrency {occ[j].max():.0f} > {inst.concurrency[j]}")
            if inst.kv_capacity_tokens is not None and (
                    kv[j].max() > float(np.asarray(inst.kv_capacity_tokens)[j]) + 1e-6):
                out.append(f"site {j}: KV {kv[j].max():.0f} tokens over capacity")
            if inst.prefill_capacity_s is not None and (
                    pre[j].max() > float(np.asarray(inst.prefill_capacity_s)[j]) + 1e-9):
                out.append(f"site {j}: prefill {pre[j].max():.3f} s in a slot over budget")
    if inst.link_bytes is not None:
        li, lj, le, lb = (np.asarray(a) for a in inst.link_bytes)
        ls = np.asarray(inst.link_slot, np.int64)
        sel = site_of[li] == lj
        cap = np.asarray(inst.link_capacity_bytes, float)
        used: dict[tuple[int, int], float] = {}
        for e, k, b in zip(le[sel].tolist(), ls[li[sel]].tolist(), lb[sel].tolist()):
            used[(e, k)] = used.get((e, k), 0.0) + b
        for (e, k), b in used.items():
            if b > cap[e] * 1.0 + 1e-6:
                out.append(f"link {e} slot {k}: {b:.0f} bytes > {cap[e]:.0f}")
    return out


def _csc(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
         ncol: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((rows, cols))
    r, c, v = rows[order], cols[order], vals[order]
    start = np.searchsorted(c, np.arange(ncol + 1))
    return start.astype(np.int32), r.astype(np.int32), v


def solve_slotted(inst: SlottedInstance, *, time_limit_s: float = 60.0,
                  mip_rel_gap: float = 1e-4, threads: int = 1,
                  stage1_share: float = 0.5) -> SlottedResult:
    """Lexicographic solve: most deadlines met, then least model energy (HiGHS).

    Parameters
    ----------
    inst : SlottedInstance
    time_limit_s : float
        Total HiGHS time budget; stage 1 gets ``stage1_share`` of it, stage 2 the rest of the
        budget (at least what stage 1 left unused). 0 is allowed (status ``"time_limit"``).
    mip_rel_gap : float
        Stage 2's relative gap at which HiGHS reports "optimal" (stage 1 uses an absolute gap
        below one request).
    threads : int
        HiGHS threads.
    stage1_share : float
        Share of the time budget given to stage 1.
    """
    import highspy

    from slo_opt.solvers.highs import solve_lp

    if not (time_limit_s >= 0 and math.isfinite(time_limit_s)):
        raise ValueError(f"time_limit_s must be finite and >= 0, got {time_limit_s}")
    t0 = time.perf_counter()
    n, m = inst.shape
    cols = inst.columns()
    nx = cols["i"].size
    ncol = nx + n
    # rows: assignment (n) | concurrency (m T) | KV (m T) | links (L K)
    T = int(cols["last"].max()) + 1 if nx else 0
    cover = cols["last"] - cols["t"] + 1
    rep = np.repeat(np.arange(nx), cover)
    slot = cols["t"][rep] + (np.arange(rep.size) - np.repeat(np.cumsum(cover) - cover, cover))
    R = [cols["i"], np.arange(n)]
    C = [np.arange(nx), nx + np.arange(n)]
    V = [np.ones(nx), np.ones(n)]
    lo = [np.ones(n)]
    hi = [np.ones(n)]
    nrow = n
    R.append(nrow + cols["j"][rep] * T + slot)
    C.append(rep)
    V.append(np.ones(rep.size))
    lo.append(np.full(m * T, -np.inf))
    hi.append(np.repeat(inst.concurrency.astype(float), T))
    nrow += m * T
    if inst.kv_tokens is not None:
        kv = np.asarray(inst.kv_tokens, float)
        R.append(nrow + cols["j"][rep] * T + slot)
        C.append(rep)
        V.append(kv[cols["i"][rep]])
        lo.append(np.full(m * T, -np.inf))
        hi.append(np.repeat(np.asarray(inst.kv_capacity_tokens, float), T))
        nrow += m * T
    if inst.prefill_s is not None:
        pf = np.asarray(inst.prefill_s, float)[cols["i"], cols["j"]]
        R.append(nrow + cols["j"] * T + cols["t"])
        C.append(np.arange(nx))
        V.append(pf)
        lo.append(np.full(m * T, -np.inf))
        hi.append(np.repeat(np.asarray(inst.prefill_capacity_s, float), T))
        nrow += m * T
    if inst.link_bytes is not None:
        li, lj, le, lb = (np.asarray(a) for a in inst.link_bytes)
        ls = np.asarray(inst.link_slot, np.int64)
        cap = np.asarray(inst.link_capacity_bytes, float).reshape(-1)
        K = int(ls.max()) + 1 if ls.size else 1
        # expand (i, j, e) to every column of (i, j)
        pair = cols["i"] * m + cols["j"]
        order = np.argsort(pair, kind="stable")
        ps = pair[order]
        q = li * m + lj
        a = np.searchsorted(ps, q, "left")
        b = np.searchsorted(ps, q, "right")
        cnt = b - a
        src = np.repeat(np.arange(q.size), cnt)
        pos = np.repeat(a, cnt) + (np.arange(src.size) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        R.append(nrow + le[src] * K + ls[li[src]])
        C.append(order[pos])
        V.append(lb[src].astype(float))
        lo.append(np.full(cap.size * K, -np.inf))
        hi.append(np.repeat(cap, K))
        nrow += cap.size * K
    start, index, value = _csc(np.concatenate(R), np.concatenate(C), np.concatenate(V), ncol)
    e_col = inst.energy_j[cols["i"], cols["j"]]

    def model(cost: np.ndarray, extra_row: tuple[float, float] | None) -> Any:
        lp = highspy.HighsLp()
        lp.num_col_ = int(ncol)
        lp.col_cost_ = cost
        lp.col_lower_ = np.zeros(ncol)
        lp.col_upper_ = np.ones(ncol)
        rlo, rhi = np.concatenate(lo), np.concatenate(hi)
        st, ix, va = start, index, value
        nr = nrow
        if extra_row is not None:  # sum_i r_i <= rej*  (one more row over the r columns)
            nr += 1
            per = np.diff(st)
            per[nx:] += 1
            new_st = np.concatenate(([0], np.cumsum(per))).astype(np.int32)
            ix2 = np.empty(new_st[-1], np.int32)
            va2 = np.empty(new_st[-1])
            keep = np.ones(new_st[-1], bool)
            keep[new_st[nx + 1:] - 1] = False
            ix2[keep], va2[keep] = ix, va
            ix2[~keep], va2[~keep] = nrow, 1.0
            st, ix, va = new_st, ix2, va2
            rlo = np.append(rlo, extra_row[0])
            rhi = np.append(rhi, extra_row[1])
        lp.num_row_ = int(nr)
        lp.row_lower_ = rlo
        lp.row_upper_ = rhi
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = st
        lp.a_matrix_.index_ = ix
        lp.a_matrix_.value_ = va
        lp.integrality_ = [highspy.HighsVarType.kInteger] * nx + [
            highspy.HighsVarType.kContinuous] * n
        return lp

    def run(lp: Any, limit: float, gap_abs: float | None, warm: np.ndarray | None,
            ) -> tuple[str, str, float, float, np.ndarray | None]:
        opts: dict[str, Any] = {"time_limit": float(max(limit, 0.0)), "threads": int(threads)}
        if gap_abs is not None:
            opts.update(mip_abs_gap=float(gap_abs), mip_rel_gap=0.0)
        else:
            opts["mip_rel_gap"] = float(mip_rel_gap)
        out = solve_lp(lp, options=opts, start=warm)
        ms = out.model_status
        name = out.status_name
        if not out.consistent:
            status = f"error: {out.message}"
        elif ms == highspy.HighsModelStatus.kOptimal:
            status = "optimal"
        elif ms in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt):
            status = "time_limit"
        else:
            status = f"error: {name}"
        x = out.x if status in ("optimal", "time_limit") else None
        obj = out.objective if out.objective is not None else math.nan
        return status, name, obj, out.mip_dual_bound, x

    meta: dict[str, Any] = {"slots": T, "columns_per_request": nx / max(n, 1)}
    # an all-reject plan is always feasible: the incumbent we fall back to
    trivial = np.concatenate([np.zeros(nx), np.ones(n)])
    if nx == 0:
        return SlottedResult("optimal", 0, 0.0, 0.0, 0.0, np.full(n, -1, np.int64),
                             np.full(n, -1, np.int64), np.full(n, np.nan), np.full(n, np.nan),
                             time.perf_counter() - t0, ncol, nrow, meta)
    t1 = time.perf_counter()
    c1 = np.concatenate([np.zeros(nx), np.ones(n)])
    s1, n1, _o1, b1, x1 = run(model(c1, None), time_limit_s * stage1_share, 0.5, None)
    meta.update(stage1_status=s1, stage1_highs=n1, stage1_wall_s=time.perf_counter() - t1)
    if x1 is None:
        x1 = trivial
        if s1 == "optimal":  # cannot happen: optimal implies a primal solution
            s1 = "error: no solution"
    rej1 = float(np.round(x1[nx:].sum()))
    met_bound = float(n - math.ceil(b1 - 1e-6)) if math.isfinite(b1) else float(n)
    left = max(time_limit_s - (time.perf_counter() - t0), 0.0)
    t2 = time.perf_counter()
    c2 = np.concatenate([e_col, np.zeros(n)])
    s2, n2, _o2, b2, x2 = run(model(c2, (-np.inf, rej1 + 1e-6)), left, None, x1)
    meta.update(stage2_status=s2, stage2_highs=n2, stage2_wall_s=time.perf_counter() - t2)
    x = x2 if x2 is not None else x1
    energy = float(e_col @ x[:nx])
    if x2 is None:
        b2 = math.nan
    on = np.flatnonzero(x[:nx] > 0.5)
    site_of = np.full(n, -1, np.int64)
    tslot = np.full(n, -1, np.int64)
    st_s = np.full(n, np.nan)
    en_s = np.full(n, np.nan)
    ii = cols["i"][on]
    site_of[ii] = cols["j"][on]
    tslot[ii] = cols["t"][on]
    st_s[ii] = cols["start_s"][on]
    en_s[ii] = cols["end_s"][on]
    sts = (s1, s2)
    if all(s == "optimal" for s in sts):
        status = "optimal"
    elif any(s.startswith("error") for s in sts):
        status = next(s for s in sts if s.startswith("error"))
    else:
        status = "time_limit"
    meta["trivial_incumbent"] = x is trivial
    return SlottedResult(status, int((site_of >= 0).sum()), met_bound, energy,
                         b2 if math.isfinite(b2) else math.nan, site_of, tslot, st_s, en_s,
                         time.perf_counter() - t0, ncol, nrow + 1, meta)


# slotted_inputs moved to slo_opt.study.placement (it reads an edge-cloud Cluster)
__getattr__ = forward(__name__, {"slotted_inputs": "slo_opt.study.placement"})
