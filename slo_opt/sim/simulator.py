"""Iteration-level single-engine simulator with paged KV, preemption and fast-forward.

Each iteration the scheduler sees an :class:`~slo_opt.schedulers.base.EngineView` and returns a
:class:`~slo_opt.schedulers.base.StepPlan`. The simulator validates the plan (token budget, KV
fit in blocks, known and arrived ids, token counts), charges the step time given by the engine
model, and records a :class:`~slo_opt.schedule.Schedule`.

Cost grows with events, not tokens: when the policy promises (``StepPlan.repeat_until_s``) that
a pure-decode plan stays the same, the simulator advances through all decode iterations up to
the next arrival, completion, KV-block shortage or promise horizon at once, with vectorised
step times. With the continuous-batching promise ``StepPlan.decode_all_until_s`` (vLLM, Orca,
continuous FCFS) it also runs on after the promising step (e.g. a prefill) and across
completions, while nothing waits: the batch shrinks at each completion, and the step times of
each constant-batch segment are one vectorised call. The policy is asked again at the next
arrival, KV-block shortage or horizon. With the FCFS-admission promise ``StepPlan.admit_all``
(the same policies) arrivals no longer end a run: whole windows of arrivals, admissions, decodes
and completions run as one vectorised fixed point (:mod:`slo_opt.sim.window`), offline, on
engines with ``batch_step_times_s``. The result is identical to stepping one iteration at a
time, bit for bit (tested).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np

from slo_opt.engine import BatchShape, EngineModel, decode_step_times_s
from slo_opt.request import Workload
from slo_opt.schedule import (
    ARRIVAL_EPS_S,
    AllocTable,
    EventKind,
    EventTable,
    Schedule,
    StepTable,
    compress_allocs,
)
from slo_opt.schedulers.base import AdmitPromise, EngineView, StepPlan
from slo_opt.sim.window import run_admit_window

__all__ = ["ARRIVAL_EPS_S", "InvalidPlan", "SchedulerStalled", "Simulation", "compress_allocs",
           "replay", "simulate"]

_NOT_ARRIVED, _WAITING, _RUNNING, _SWAPPED, _DONE, _REJECTED = range(6)


class InvalidPlan(RuntimeError):
    """A scheduler returned a plan that violates the engine's rules."""

    def __init__(self, scheduler: str, step: int, reason: str) -> None:
        super().__init__(f"scheduler {scheduler!r} returned an invalid plan at step {step}: {reason}")
        self.scheduler = scheduler
        self.step = step
        self.reason = reason


class SchedulerStalled(RuntimeError):
    """The scheduler makes no progress although requests remain and nothing else can happen."""


def _name(s: Any) -> str:
    return str(getattr(s, "name", type(s).__name__))


def _params(s: Any) -> dict[str, Any]:
    """A policy's hyper-parameters: its init fields (per-run state such as caches is not)."""
    if is_dataclass(s) and not isinstance(s, type):
        out = {}
        for f in fields(s):
            if not f.init or f.name.startswith("_"):
                continue
            v = getattr(s, f.name)
            out[f.name] = v if isinstance(v, int | float | str | bool | None) else repr(v)
        return out
    return {}


def _blocks(tokens: int, b: int) -> int:
    return -(-tokens // b)


class _Cols:
    """Growable numpy columns with amortised O(1) appends (the simulator's record buffers)."""

    __slots__ = ("cap", "cols", "n")

    def __init__(self, dtypes: tuple[Any, ...], cap: int = 1024) -> None:
        self.cols = [np.empty(cap, dt) for dt in dtypes]
        self.n = 0
        self.cap = cap

    def reserve(self, k: int) -> int:
        """Append ``k`` uninitialised rows; return the index of the first."""
        i = self.n
        j = i + k
        if j > self.cap:
            cap = max(j, 2 * self.cap)
            for c, old in enumerate(self.cols):
                new = np.empty(cap, old.dtype)
                new[:i] = old[:i]
                self.cols[c] = new
            self.cap = cap
        self.n = j
        return i

    def columns(self) -> list[np.ndarray]:
        """The filled part of every column (copies, so the buffers can be freed)."""
        return [c[: self.n].copy() for c in self.cols]


# C-level reductions (ndarray.sum() etc. go through a Python wrapper: measurable per call)
_sum = np.add.reduce
_min = np.minimum.reduce
_max = np.maximum.reduce
try:  # the C function behind np.count_nonzero (skips its Python wrapper)
    from numpy._core._multiarray_umath import count_nonzero as _nz
except ImportError:  # pragma: no cover - other numpy layouts
    _nz = np.count_nonzero


def _all(x: np.ndarray) -> bool:
    return bool(np.count_nonzero(x) == x.size)


_EMPTY_IDS = np.zeros(0, np.int64)
_EMPTY_IDS.setflags(write=False)


def _ids(xs: list[int]) -> np.ndarray:
    if not xs:
        return _EMPTY_IDS
    a = np.array(xs, dtype=np.int64)
    a.setflags(write=False)
    return a


class _SortedIds:
    """Ascending request ids in a numpy buffer: the waiting queue.

    FCFS queues change at both ends: arrivals append larger ids, admissions pop a prefix; both
    are O(1) here (a Python list or a rebuilt array costs O(queue) per step, which dominates
    simulations of overloaded, long-queue traces). ``array()`` is a read-only view that later
    updates never modify: appends write past every earlier view and a prefix pop writes
    nothing, while inserts, removals elsewhere and growth build a new buffer.
    """

    __slots__ = ("buf", "hi", "lo")

    def __init__(self, cap: int = 64) -> None:
        self.buf = np.empty(cap, np.int64)
        self.lo = 0
        self.hi = 0

    def __len__(self) -> int:
        return self.hi - self.lo

    def array(self) -> np.ndarray:
        """The ids, ascending (read-only view)."""
        a = self.buf[self.lo:self.hi]
        a.flags.writeable = False
        return a

    def _rebuild(self, ids: np.ndarray) -> None:
        buf = np.empty(max(64, 2 * ids.size), np.int64)
        buf[:ids.size] = ids
        self.buf, self.lo, self.hi = buf, 0, int(ids.size)

    def add(self, rid: int) -> None:
        """Insert ``rid`` (not present) in order."""
        lo, hi = self.lo, self.hi
        if hi > lo and rid < self.buf[hi - 1]:
            a = self.buf[lo:hi]
            self._rebuild(np.insert(a, int(a.searchsorted(rid)), rid))
            return
        if hi == self.buf.size:
            self._rebuild(self.buf[lo:hi])
            hi = self.hi
        self.buf[hi] = rid
        self.hi = hi + 1

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (ascending, all present)."""
        k = int(ids.size)
        if not k:
            return
        lo = self.lo
        if np.array_equal(self.buf[lo:lo + k], ids):  # FCFS: a prefix
            self.lo = lo + k
            return
        a = self.buf[lo:self.hi]
        self._rebuild(a[~np.isin(a, ids)])

    def clear(self) -> None:
        """Remove everything."""
        self.lo = self.hi


@dataclass(frozen=True, eq=False)
class _View(EngineView):
    """The simulator's :class:`EngineView`: same data, cheaper per-request queries.

    ``next_tokens`` reads an array the simulator keeps equal to
    ``prompt_tokens + num_generated - num_computed``; the block size is a plain int.
    """

    nt_: np.ndarray | None = None
    b_: int = 1

    @property
    def kv_block_tokens(self) -> int:
        """Block size of the paged KV cache."""
        return self.b_

    def next_tokens(self, rid: int) -> int:
        """Tokens ``rid`` must compute to emit its next output token."""
        return int(self.nt_[rid])  # type: ignore[index]

    def next_tokens_of(self, ids: np.ndarray) -> np.ndarray:
        """:meth:`next_tokens` of every id in ``ids``, vectorised."""
        return self.nt_[ids]  # type: ignore[index]

    def blocks_for(self, rid: int, tokens: int) -> int:
        """Extra KV blocks ``rid`` needs to compute ``tokens`` more tokens."""
        b = self.b_
        c = int(self.num_computed[rid])
        return -(-(c + tokens) // b) - (-(-c // b))

    def blocks_held(self, rid: int) -> int:
        """KV blocks ``rid`` holds (or would bring back on swap-in)."""
        return -(-int(self.num_computed[rid]) // self.b_)


class _Sim:
    """Mutable state of one run (private; the public API is :func:`simulate`).

    Hot-path notes: step rows go to growable column buffers (:class:`_Cols`); allocations are
    merged into run-length rows online (an open single-token run per request, extended while
    the request keeps computing one token per consecutive step), which gives exactly the rows
    of :func:`compress_allocs` without storing one row per (step, request); the id arrays of
    the :class:`EngineView` are cached (read-only) until the queues change.
    """

    def __init__(self, workload: Workload, engine: EngineModel, scheduler: Any,
                 fast_forward: bool, max_steps: int | None, progress: bool,
                 online: bool = False) -> None:
        self.w = workload
        self.e = engine
        self.s = scheduler
        self.sname = _name(scheduler)
        self.ff = fast_forward
        self.max_steps = max_steps
        self.progress = progress
        n = len(workload)
        self.n = n
        self.P = workload.prompt_tokens
        self.O = workload.output_tokens
        self.arr = workload.arrival_s
        self.computed = np.zeros(n, np.int64)
        self.generated = np.zeros(n, np.int64)
        self.state = np.zeros(n, np.int8)
        self.first_token_step = np.full(n, -1, np.int64)
        self.finish_step = np.full(n, -1, np.int64)
        self.first_scheduled_s = np.full(n, np.nan)
        self.first_token_time_s = np.full(n, np.nan)
        self.finish_time_s = np.full(n, np.nan)
        self.held = np.zeros(n, np.int64)  # resident KV blocks
        self.nt = self.P.astype(np.int64, copy=True)  # == P + generated - computed
        self.b = int(engine.kv_block_tokens)
        self.cap_blocks = int(engine.kv_capacity_tokens) // self.b
        self.free_blocks = self.cap_blocks
        self.max_batch_tokens = engine.max_batch_tokens
        self.waiting = _SortedIds()
        self.running: list[int] = []
        self.swapped: list[int] = []
        self._views: list[np.ndarray | None] = [None, None, None]  # waiting, running, swapped
        self.next_arrival = 0
        self.online = online
        self.pending: list[tuple[float, int]] = []  # online: heap of (release_s, rid)
        self.num_pushed = 0
        self.pushed: set[int] = set()
        self.num_closed = 0  # done + rejected
        self.now = 0.0
        self.step = 0
        self.pending_swap_s = 0.0
        self._last_end = 0.0
        self.promise_until = -math.inf  # active StepPlan.decode_all_until_s (fast-forward only)
        self._dt_dec = 0.0  # duration of the last decode-all step (a step-count estimate)
        self._affine: dict[int, tuple[float, float]] = {}  # sim_window's decode-time guide
        self.admit: AdmitPromise | None = None  # active StepPlan.admit_all (fast-forward only)
        # records: step rows; run-length allocation rows (emitted) + open runs per request
        self.steps = _Cols((float, float, np.int64, np.int64, np.int64, float))
        self.allocs = _Cols((np.int64, np.int64, np.int64, np.int64))  # req, step, num, tok
        self.run_start = np.zeros(n, np.int64)
        self.run_end = np.full(n, -1, np.int64)  # exclusive end step of the open run, -1: none
        self.ev: list[tuple[int, int, int, int]] = []
        self.align: Callable[[float], float] | None = getattr(engine, "align_start_s", None)
        # admission windows (sim_window.py): offline, unaligned, engine with vectorised shapes
        self._win = (fast_forward and not online and self.align is None
                     and hasattr(engine, "batch_step_times_s"))
        self.slot_s = float(getattr(engine, "step_s", 0.0))
        self.bw = float(getattr(engine, "host_bandwidth_bytes_per_s", math.inf))
        self.kvb = float(getattr(engine, "kv_bytes_per_token", 0))
        fast = getattr(engine, "decode_step_times_s", None)
        self._dst: Callable[[int, int, int], np.ndarray] = (
            fast if fast is not None
            else lambda m, c, k: decode_step_times_s(engine, m, c, k))

    # ---------------------------------------------------------------------------------
    def fail(self, reason: str) -> None:
        raise InvalidPlan(self.sname, self.step, reason)

    def next_arrival_s(self) -> float:
        """Release time of the next request not yet visible (inf if none)."""
        if self.online:
            return self.pending[0][0] if self.pending else math.inf
        return float(self.arr[self.next_arrival]) if self.next_arrival < self.n else math.inf

    def admit_arrivals(self) -> None:
        horizon = self.now + ARRIVAL_EPS_S
        while True:
            if self.online:
                if not self.pending or self.pending[0][0] > horizon:
                    return
                rid = heapq.heappop(self.pending)[1]
            else:
                if self.next_arrival >= self.n or self.arr[self.next_arrival] > horizon:
                    return
                rid = self.next_arrival
                self.next_arrival += 1
            self.promise_until = -math.inf  # an arrival ends a decode-all promise
            peak = int(self.P[rid] + self.O[rid] - 1)
            if _blocks(peak, self.b) > self.cap_blocks:
                self.state[rid] = _REJECTED
                self.num_closed += 1
            else:
                self.state[rid] = _WAITING
                self.waiting.add(rid)
                self._views[0] = None

    def push(self, rid: int, release_s: float) -> None:
        """Online mode: request ``rid`` reaches this engine at ``release_s`` (>= its arrival)."""
        if not self.online:
            raise RuntimeError("push() needs online=True")
        if not (0 <= rid < self.n) or self.state[rid] != _NOT_ARRIVED or rid in self.pushed:
            raise ValueError(f"request {rid} cannot be pushed twice or is unknown")
        if release_s < self.arr[rid] - ARRIVAL_EPS_S:
            raise ValueError(f"request {rid}: release {release_s} before its arrival {self.arr[rid]}")
        self.pushed.add(rid)
        self.num_pushed += 1
        heapq.heappush(self.pending, (float(release_s), int(rid)))

    def running_ids(self) -> np.ndarray:
        """The running requests' ids, in admission order (cached, read-only)."""
        r = self._views[1]
        if r is None:
            r = self._views[1] = _ids(self.running)
        return r

    def close_finished(self, fin: np.ndarray, steps: Any, times: Any) -> None:
        """Requests ``fin`` finished at ``steps`` (ending at ``times``): free their KV blocks
        and take them out of the running list."""
        self.finish_step[fin] = steps
        self.finish_time_s[fin] = times
        self.state[fin] = _DONE
        self.free_blocks += int(_sum(self.held[fin]))
        self.held[fin] = 0
        fset = set(fin.tolist())
        self.running = [r for r in self.running if r not in fset]
        self._views[1] = None
        self.num_closed += int(fin.size)

    def view(self) -> EngineView:
        v = self._views
        if v[0] is None:
            v[0] = self.waiting.array()
        if v[1] is None:
            self.running_ids()
        if v[2] is None:
            v[2] = _ids(self.swapped)
        # same fields as _View(...), without the frozen dataclass's per-field __setattr__
        view = _View.__new__(_View)
        view.__dict__.update(
            now_s=self.now,
            step=self.step,
            engine=self.e,
            workload=self.w,
            waiting=v[0],
            running=v[1],
            swapped=v[2],
            num_computed=self.computed,
            num_generated=self.generated,
            kv_free_blocks=self.free_blocks,
            first_scheduled_s=self.first_scheduled_s,
            next_arrival_s=self.next_arrival_s(),
            nt_=self.nt,
            b_=self.b,
        )
        return view

    # ---------------------------------------------------------------------------------
    def apply_evictions(self, plan: StepPlan) -> bool:
        if not (plan.reject or plan.preempt or plan.swap_out):
            return False
        self._views[0] = self._views[1] = self._views[2] = None
        changed = False
        if plan.reject:
            rej = sorted(plan.reject)
            for rid in rej:
                if not (0 <= rid < self.n) or self.state[rid] != _WAITING:
                    self.fail(f"reject of request {rid} which is not waiting")
                self.state[rid] = _REJECTED
            self.waiting.remove(np.array(rej, dtype=np.int64))
            self.num_closed += len(rej)
            changed = True
        both = set(plan.preempt) & set(plan.swap_out)
        if both:
            self.fail(f"requests {sorted(both)} both preempted and swapped out")
        for rid in sorted(plan.preempt):
            if not (0 <= rid < self.n) or self.state[rid] != _RUNNING:
                self.fail(f"preempt of request {rid} which is not running")
            self.running.remove(rid)
            self.ev.append((self.step, rid, int(EventKind.PREEMPT_RECOMPUTE), int(self.computed[rid])))
            self.free_blocks += int(self.held[rid])
            self.held[rid] = 0
            self.computed[rid] = 0
            self.nt[rid] = self.P[rid] + self.generated[rid]
            self.state[rid] = _WAITING
            self.waiting.add(rid)
            changed = True
        for rid in sorted(plan.swap_out):
            if not (0 <= rid < self.n) or self.state[rid] != _RUNNING:
                self.fail(f"swap_out of request {rid} which is not running")
            self.running.remove(rid)
            c = int(self.computed[rid])
            self.ev.append((self.step, rid, int(EventKind.SWAP_OUT), c))
            self.pending_swap_s += c * self.kvb / self.bw
            self.free_blocks += int(self.held[rid])
            self.held[rid] = 0
            self.state[rid] = _SWAPPED
            self.swapped.append(rid)
            changed = True
        return changed

    def run(self) -> Schedule:
        t0 = time.perf_counter()
        self.start_run()
        self.advance(math.inf, drain=True)
        return self.finish(time.perf_counter() - t0)

    def start_run(self) -> None:
        self.bar = None
        self.last_closed = 0
        if self.progress:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=self.n, desc=f"simulate {self.sname}", unit="req", leave=False)
            except ImportError:  # pragma: no cover
                self.bar = None
        reset = getattr(self.s, "reset", None)
        if reset is not None:
            reset()

    def all_closed(self) -> bool:
        if self.online:
            return self.num_closed == self.num_pushed and not self.pending
        return self.num_closed == self.n

    def advance(self, limit_s: float, *, drain: bool) -> None:
        """Run iterations that start before ``limit_s``.

        ``drain``: no request will be pushed any more; an idle engine with open requests and
        nothing to wait for is a stall. Otherwise (online) it simply waits for pushes.
        """
        idle_loops = 0
        plan_fn = self.s.plan
        while True:
            self.admit_arrivals()
            if self.all_closed():
                if self.online and not drain and self.now < limit_s:
                    self.now = limit_s if math.isfinite(limit_s) else self.now
                break
            if self.max_steps is not None and self.step >= self.max_steps:
                raise SchedulerStalled(
                    f"scheduler {self.sname!r}: max_steps={self.max_steps} reached with "
                    f"{self.n - self.num_closed} requests unfinished"
                )
            start = self.align(self.now) if self.align is not None else self.now
            if start >= limit_s:
                break
            if ((self.admit is not None and self.admit.until_s > start and not self.swapped
                 and run_admit_window(self, start, limit_s, ARRIVAL_EPS_S))
                    or (self.promise_until > start and not self.waiting and not self.swapped
                        and self.running and self.decode_all_run(start, limit_s))):
                if self.bar is not None and self.num_closed != self.last_closed:
                    self.bar.update(self.num_closed - self.last_closed)
                    self.last_closed = self.num_closed
                continue
            self.promise_until = -math.inf
            self.admit = None
            plan = plan_fn(self.view())
            if not isinstance(plan, StepPlan):
                self.fail(f"plan() must return a StepPlan, got {type(plan).__name__}")
            changed = self.apply_evictions(plan)
            if not plan.tokens:
                target = self.next_arrival_s()
                if plan.wait_until_s is not None and plan.wait_until_s > self.now:
                    target = min(target, float(plan.wait_until_s))
                if math.isfinite(target) and target > self.now:
                    if target >= limit_s:
                        self.now = max(self.now, limit_s)
                        break
                    self.now = target
                    idle_loops = 0
                    continue
                if changed:
                    idle_loops += 1
                    if idle_loops <= 2 * self.n + 10:
                        continue
                if self.online and not drain:
                    if math.isfinite(limit_s):
                        self.now = max(self.now, limit_s)
                    break
                raise SchedulerStalled(
                    f"scheduler {self.sname!r} stalled at step {self.step}, t={self.now:.6g}s: "
                    f"empty plan with {len(self.waiting)} waiting, {len(self.running)} running, "
                    f"{len(self.swapped)} swapped and no future arrival"
                )
            idle_loops = 0
            self.execute(plan, limit_s)
            if self.bar is not None and self.num_closed != self.last_closed:
                self.bar.update(self.num_closed - self.last_closed)
                self.last_closed = self.num_closed

    # ---------------------------------------------------------------------------------
    def execute(self, plan: StepPlan, limit_s: float = math.inf) -> None:
        tk = plan.tokens
        m = len(tk)
        rids = np.fromiter(tk.keys(), np.int64, m)
        toks = np.fromiter(tk.values(), np.int64, m)
        # rows stay in plan order (the records are sorted at the end); a bad plan is
        # re-checked in id order so that the message names the smallest offending id
        if _min(rids) < 0 or _max(rids) >= self.n:
            self._plan_error(rids, toks)
        st = self.state[rids]
        smin = int(_min(st))
        smax = int(_max(st))
        if smin < _WAITING or smax > _SWAPPED:
            self._plan_error(rids, toks)
        comp = self.computed[rids]
        gen_old = self.generated[rids]
        nxt = self.nt[rids]  # == P + generated - computed
        if _min(toks) < 1 or _nz(toks > nxt):
            self._plan_error(rids, toks)
        total = int(_sum(toks))
        if total > self.max_batch_tokens:
            self.fail(f"{total} tokens exceed the engine's max_batch_tokens {self.e.max_batch_tokens}")
        # KV: swapped-in requests bring their blocks back (they hold none); everyone may grow.
        b = self.b
        newc = comp + toks
        new_held = -(-newc // b)
        held = self.held[rids]  # 0 for waiting and swapped requests
        need = int(_sum(new_held)) - int(_sum(held))
        if need > self.free_blocks:
            self.fail(f"KV overflow: needs {need} blocks, {self.free_blocks} free")
        swap_s = self.pending_swap_s
        self.pending_swap_s = 0.0
        swapped_in = False
        if self.swapped:
            sw = st == _SWAPPED
            if _nz(sw):
                swapped_in = True
                self._views[2] = None
                for r in np.sort(rids[sw]).tolist():
                    c = int(self.computed[r])
                    self.ev.append((self.step, r, int(EventKind.SWAP_IN), c))
                    swap_s += c * self.kvb / self.bw
                    self.swapped.remove(r)
        # batch shape
        is_dec = (toks == 1) & (nxt == 1) & (gen_old >= 1)
        n_dec = int(np.count_nonzero(is_dec))
        pure = n_dec == m
        if pure:
            ctx_dec = int(_sum(comp)) + m
            shape = BatchShape(decode_seqs=m, decode_context_tokens=ctx_dec)
        else:
            pf = ~is_dec
            shape = BatchShape(
                prefill_tokens=int(_sum(toks[pf])),
                decode_seqs=n_dec,
                decode_context_tokens=int(_sum(comp[is_dec])) + n_dec,
                prefill_seqs=m - n_dec,
                prefill_context_tokens=int(_sum(newc[pf])),
            )
        start = self.align(self.now) if self.align is not None else self.now
        dt = float(self.e.step_time_s(shape))
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"engine {self.e.name!r} returned step time {dt!r} for {shape}")
        end = start + dt + swap_s

        # fast-forward a pure-decode plan the policy promised to repeat
        step = self.step
        k = 1
        # (a step that carries KV-transfer time is never fast-forwarded: the vectorised step
        # times do not include it)
        if (self.ff and pure and plan.repeat_until_s > start and swap_s == 0.0
                and not plan.preempt and not plan.swap_out and not swapped_in):
            k = self.fast_forward_len(rids, comp, gen_old, start, dt,
                                      min(plan.repeat_until_s, limit_s))
        sc = self.steps.cols
        if k > 1:
            starts, ends, ctx0 = self._ff_times
            i = self.steps.reserve(k)
            sc = self.steps.cols
            j = i + k
            sc[0][i:j] = starts
            sc[1][i:j] = ends
            sc[2][i:j] = 0
            sc[3][i:j] = m
            sc[4][i:j] = np.arange(ctx0, ctx0 + m * k, m, dtype=np.int64)
            sc[5][i:j] = 0.0
            self._last_end = float(ends[-1])
            self.record_allocs(rids, None, step, k)
        else:
            i = self.steps.reserve(1)
            sc = self.steps.cols
            sc[0][i] = start
            sc[1][i] = end
            sc[2][i] = shape.prefill_tokens
            sc[3][i] = shape.decode_seqs
            sc[4][i] = shape.context_tokens
            sc[5][i] = swap_s
            self._last_end = end
            if pure:
                self.record_allocs(rids, None, step, 1)
            else:
                self.record_allocs(rids, toks, step, 1, (toks == 1) & (nxt == 1))
        # state update (k tokens of decode per request, or one step of the plan)
        if smin != _RUNNING or smax != _RUNNING:
            pm = st != _RUNNING
            promoted = rids[pm]
            fs = self.first_scheduled_s[promoted]
            self.first_scheduled_s[promoted[np.isnan(fs)]] = start
            ps_ = np.sort(promoted) if promoted.size > 1 else promoted
            self.waiting.remove(ps_[self.state[ps_] == _WAITING])
            self.running.extend(ps_.tolist())
            self.state[promoted] = _RUNNING
            self._views[0] = self._views[1] = None
        last_step = step + k - 1
        if k == 1:
            if pure:
                gen = gen_old + 1
            else:
                emit = toks == nxt
                gen = gen_old + emit
                first = emit & (gen_old == 0)
                if _nz(first):
                    fr = rids[first]
                    self.first_token_step[fr] = last_step
                    self.first_token_time_s[fr] = self._last_end
        else:
            newc = comp + k
            new_held = -(-newc // b)
            gen = gen_old + k
        self.computed[rids] = newc
        self.free_blocks -= need if k == 1 else int(_sum(new_held)) - int(_sum(held))
        self.held[rids] = new_held
        self.generated[rids] = gen
        ntn = self.P[rids] + gen - newc
        if k > 1 or not pure:  # a pure decode step leaves next_tokens at 1
            self.nt[rids] = ntn
        done = gen == self.O[rids]
        n_done = int(_nz(done))
        if n_done:
            self.close_finished(rids[done], last_step, self._last_end)
        self.step += k
        self.now = float(self._last_end)
        # a decode-all promise holds only if every running request was in this plan
        if (self.ff and plan.decode_all_until_s > -math.inf and not plan.preempt
                and not plan.swap_out and len(self.running) == m - n_done):
            self.promise_until = plan.decode_all_until_s
            if self._win and plan.admit_all is not None:
                self.admit = plan.admit_all  # advance() runs an admission window next
                return
            # continue right away under the promise (the checks of advance(), fused)
            if (self.running and not self.waiting and not self.swapped
                    and (self.max_steps is None or self.step < self.max_steps)
                    and self.next_arrival_s() > self.now + ARRIVAL_EPS_S):
                nstart = self.align(self.now) if self.align is not None else self.now
                if nstart < limit_s and nstart < self.promise_until:
                    if n_done:
                        keep = ~done
                        rids, newc, gen, ntn = rids[keep], newc[keep], gen[keep], ntn[keep]
                    self.decode_all_run(nstart, limit_s, rids, newc, gen, ntn)

    def _plan_error(self, rids: np.ndarray, toks: np.ndarray) -> None:
        """Raise the :class:`InvalidPlan` of the first bad row in id order."""
        order = rids.argsort(kind="stable")
        rids = rids[order]
        toks = toks[order]
        if rids[0] < 0 or rids[-1] >= self.n:
            self.fail(f"unknown request id in {rids.tolist()}")
        st = self.state[rids]
        bad = (st != _WAITING) & (st != _RUNNING) & (st != _SWAPPED)
        if _nz(bad):
            r = int(rids[np.flatnonzero(bad)[0]])
            why = {_NOT_ARRIVED: "has not arrived", _DONE: "is finished",
                   _REJECTED: "was rejected"}.get(int(self.state[r]), "is not schedulable")
            self.fail(f"request {r} {why}")
        if _min(toks) < 1:
            r = int(rids[np.flatnonzero(toks < 1)[0]])
            self.fail(f"request {r}: tokens must be >= 1")
        nxt = self.nt[rids]
        over = toks > nxt
        i = int(np.flatnonzero(over)[0])
        self.fail(f"request {int(rids[i])}: {int(toks[i])} tokens > next_tokens {int(nxt[i])}")

    def record_allocs(self, rids: np.ndarray, toks: np.ndarray | None, step: int,
                      k: int | np.ndarray,
                      mergeable: np.ndarray | None = None) -> None:
        """Record ``rids`` computing ``toks`` in steps ``step .. step+k-1``.

        ``toks=None``: one decode token each (all mergeable). ``mergeable``: rows of one token
        that emit an output token; consecutive mergeable rows of a request are merged into one
        run, exactly as :func:`compress_allocs` does.
        """
        re = self.run_end[rids]
        cont = re == step
        if toks is None:  # every row mergeable: continue open runs, start the others
            if not _all(cont):
                nc = ~cont
                close = nc & (re >= 0)
                if _nz(close):
                    cr = rids[close]
                    cs = self.run_start[cr]
                    self._emit(cr, cs, re[close] - cs, None)
                self.run_start[rids[nc]] = step
            self.run_end[rids] = step + k
            return
        assert mergeable is not None
        one = mergeable
        if _all(cont == one):  # common mixed step: every one-token row continues its run
            multi = ~one
            mr = rids[multi]
            if mr.size and _max(re[multi]) < 0:  # and the other rows have no open run
                self.run_end[rids[one]] = step + k
                self._emit(mr, step, 1, toks[multi])
                return
        cont &= one
        has = re >= 0
        close = has & ~cont
        if _nz(close):
            cr = rids[close]
            cs = self.run_start[cr]
            self._emit(cr, cs, re[close] - cs, None)
        newrun = one & ~cont
        if _nz(newrun):
            self.run_start[rids[newrun]] = step
        self.run_end[rids[one]] = step + k
        if not _all(one):
            multi = ~one
            mr = rids[multi]
            self.run_end[mr] = -1
            self._emit(mr, step, 1, toks[multi])

    def _emit(self, req: np.ndarray, step: Any, num: Any, tok: np.ndarray | None) -> None:
        i = self.allocs.reserve(req.size)
        j = self.allocs.n
        c = self.allocs.cols
        c[0][i:j] = req
        c[1][i:j] = step
        c[2][i:j] = num
        c[3][i:j] = 1 if tok is None else tok

    def fast_forward_len(self, rids: np.ndarray, comp: np.ndarray, gen: np.ndarray,
                         start: float, dt0: float, repeat_until_s: float) -> int:
        """Number of identical pure-decode steps that can run before the next event.

        Sets ``self._ff_times = (starts, ends, ctx0)`` for the returned ``k > 1`` steps.
        """
        k = int(_min(self.O[rids] - gen))  # up to and incl. first completion
        if k <= 1:
            return 1
        # KV: block acquisitions (step numbers 1..k) per request; stop before the (F+1)-th.
        b = self.b
        first_acq = (-(-comp // b)) * b - comp + 1  # step at which a new block is first needed
        counts = (k - first_acq) // b + 1
        np.maximum(counts, 0, out=counts)
        tot = int(_sum(counts))
        if tot > self.free_blocks:
            offs = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            acq = np.repeat(first_acq, counts) + b * offs
            f = self.free_blocks
            k = min(k, int(np.partition(acq, f)[f]) - 1)
            if k <= 1:
                return 1
        if self.max_steps is not None:
            k = min(k, self.max_steps - self.step)
        # time: steps starting before the next arrival and before the promise horizon run
        limit = min(self.next_arrival_s() - ARRIVAL_EPS_S, repeat_until_s)
        n = int(rids.size)
        ctx0 = int(_sum(comp)) + n
        if math.isinf(limit):
            chunk = k
        else:  # most runs end at an arrival: compute about as many steps as fit before it
            chunk = min(k, max(16, int((limit - start) / dt0) + 2)) if limit > start else 2
        parts_s: list[np.ndarray] = []
        parts_e: list[np.ndarray] = []
        pos = 0
        carry = start
        idx0 = round(start / self.slot_s) if (self.align is not None and self.slot_s) else 0
        while True:
            dts = decode_step_times_s(self.e, n, ctx0 + pos * n, chunk)
            if self.align is not None:
                starts = (idx0 + pos + np.arange(chunk)) * self.slot_s
                ends = starts + dts
            else:
                ends = np.add.accumulate(np.concatenate(([carry], dts)))[1:]
                starts = np.concatenate(([carry], ends[:-1]))
            late = starts >= limit
            if pos == 0:
                late[0] = False
            if _nz(late):
                cut = int(np.argmax(late))
                parts_s.append(starts[:cut])
                parts_e.append(ends[:cut])
                pos += cut
                break
            parts_s.append(starts)
            parts_e.append(ends)
            pos += chunk
            if pos >= k:
                break
            carry = float(ends[-1])
            chunk = min(k - pos, 2 * chunk)
        if pos <= 1:
            return 1
        if len(parts_s) == 1:
            self._ff_times = (parts_s[0], parts_e[0], ctx0)
        else:
            self._ff_times = (np.concatenate(parts_s), np.concatenate(parts_e), ctx0)
        return pos

    def decode_all_run(self, start: float, limit_s: float, rids: np.ndarray | None = None,
                       comp: np.ndarray | None = None, gen: np.ndarray | None = None,
                       nt: np.ndarray | None = None) -> bool:
        """Run steps under a ``decode_all_until_s`` promise, across completions.

        Every running request computes one decode token per step; a request leaves the batch
        after its last token. Stops before the first step that starts at or after the next
        arrival, the promise horizon or ``limit_s``, and before the first step whose new KV
        blocks do not fit (then the policy is asked). It may also stop earlier (it computes
        about as many steps as fit before the next arrival): the next call simply continues.
        Returns ``False`` (nothing run) when the promise's conditions do not hold now.
        ``rids`` (every running request, any order) and their ``comp``, ``gen`` and ``nt``
        may be passed by the caller that has them at hand.
        """
        if rids is None:
            rids = self.running_ids()
            gen = self.generated[rids]
            nt = self.nt[rids]
            comp = self.computed[rids]
        assert comp is not None and gen is not None and nt is not None
        m = int(rids.size)
        if m > self.max_batch_tokens or _min(gen) < 1 or _nz(nt != 1):
            return False
        rem = self.O[rids] - gen  # >= 1: finished requests are not running
        K = int(_max(rem))
        c_all = int(_sum(comp))
        limit = min(self.next_arrival_s() - ARRIVAL_EPS_S, self.promise_until, limit_s)
        if limit < math.inf:  # steps that fit before the limit (estimate + margin)
            dt0 = self._dt_dec
            if dt0 <= 0.0:
                dt0 = float(self.e.step_time_s(
                    BatchShape(decode_seqs=m, decode_context_tokens=c_all + m)))
            K = min(K, int((limit - start) / dt0 * 1.25) + 4)
        if self.max_steps is not None:
            K = min(K, self.max_steps - self.step)
        b = self.b
        # KV: request i needs a new block at steps s (0-based) with (comp_i + s) % b == 0,
        # s < rem_i; it frees ceil((comp_i + rem_i) / b) blocks after step rem_i - 1.
        if self.free_blocks >= m * ((K - 1) // b + 1):  # cannot run short in K steps
            tot = 0
        else:
            first0 = (-comp) % b
            last = np.minimum(rem, K) - 1
            counts = (last - first0) // b + 1
            np.maximum(counts, 0, out=counts)
            tot = int(_sum(counts))
        if tot > self.free_blocks:
            offs = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            acq = np.bincount(np.repeat(first0, counts) + b * offs, minlength=K)[:K]
            fin = rem <= K
            rel = np.bincount(rem[fin] - 1, weights=-(-(comp[fin] + rem[fin]) // b),
                              minlength=K)[:K].astype(np.int64)
            used = np.cumsum(acq - rel)
            short = acq > self.free_blocks - (used - acq + rel)
            if _nz(short):
                K = int(np.argmax(short))
        if K < 1:
            return False
        # segments of constant batch: the batch shrinks after each completion inside the run
        rmin = int(_min(rem))
        segs = [(0, m, c_all)]  # (first step, batch size, sum of comp over the batch)
        if rmin < K:
            early = rem < K
            n_left, c_left = m, c_all
            prev = -1
            for r, cv in sorted(zip(rem[early].tolist(), comp[early].tolist())):
                n_left -= 1
                c_left -= cv
                if r == prev:
                    segs[-1] = (r, n_left, c_left)
                else:
                    segs.append((r, n_left, c_left))
                prev = r
        aligned = self.align is not None
        idx0 = round(start / self.slot_s) if (aligned and self.slot_s) else 0
        carry = start
        step = self.step
        i0 = self.steps.reserve(K)
        c = self.steps.cols
        k = 0
        last_end = start
        for q, (a, nn, cc) in enumerate(segs):
            z = segs[q + 1][0] if q + 1 < len(segs) else K
            ln = z - a
            dts = self._dst(nn, cc + nn * (a + 1), ln)
            i = i0 + a
            s0 = c[0][i:i + ln]  # written in place in the step buffers (rows past the cut
            e1 = c[1][i:i + ln]  # are given back below)
            if aligned:
                np.multiply(np.arange(idx0 + a, idx0 + a + ln), self.slot_s, out=s0)
                np.add(s0, dts, out=e1)
            else:  # sequential sums, as step by step: end = start + dt
                e1[:] = dts
                e1[0] += carry
                np.add.accumulate(e1, out=e1)
                s0[0] = carry
                s0[1:] = e1[:-1]
            # starts increase: the first step starting at or after the limit is not run
            cut = int(s0.searchsorted(limit)) if s0[-1] >= limit else ln
            if a == 0 and cut == 0:
                cut = 1
            if cut:
                j = i + cut
                c[3][i:j] = nn
                c[4][i:j] = np.arange(cc + nn * (a + 1), cc + nn * (a + cut) + 1, nn)
                last_end = float(e1[cut - 1])
            k = a + cut
            if cut < ln:
                break
            carry = last_end
        self.steps.n = i0 + k  # give back the rows not run
        c[2][i0:i0 + k] = 0
        c[5][i0:i0 + k] = 0.0
        self._last_end = last_end
        ends = c[1][i0:i0 + k]
        self._dt_dec = float(ends[-1] - c[0][i0 + k - 1])  # next run's step-count estimate
        # allocations and state
        ki = np.minimum(rem, k)
        self.record_allocs(rids, None, step, ki)
        newc = comp + ki
        new_held = -(-newc // b)
        self.free_blocks -= int(_sum(new_held)) - int(_sum(self.held[rids]))
        self.computed[rids] = newc
        self.generated[rids] = gen + ki
        self.held[rids] = new_held
        if k >= rmin:
            done = rem <= k
            fsteps = rem[done] - 1
            self.close_finished(rids[done], step + fsteps, ends[fsteps])
        self.step += k
        self.now = self._last_end
        return True

    def finish(self, wall_s: float) -> Schedule:
        if self.bar is not None:
            self.bar.update(self.num_closed - self.last_closed)
            self.bar.close()
            self.bar = None
        start_s, end_s, pf, dec, ctx, swap = self.steps.columns()
        self.steps = _Cols((float, float, np.int64, np.int64, np.int64, float), cap=1)
        steps = StepTable(start_s=start_s, end_s=end_s, prefill_tokens=pf, decode_seqs=dec,
                          context_tokens=ctx, swap_s=swap)
        # close the open single-token runs
        open_ = np.flatnonzero(self.run_end >= 0)
        if open_.size:
            rs = self.run_start[open_]
            self._emit(open_, rs, self.run_end[open_] - rs, None)
            self.run_end[open_] = -1
        req, step, num, tok = self.allocs.columns()
        order = np.lexsort((req, step))
        allocs = AllocTable(request=req[order], step=step[order], tokens=tok[order],
                            num_steps=num[order])
        ev = np.array(self.ev, dtype=np.int64).reshape(-1, 4)
        events = EventTable(step=ev[:, 0], request=ev[:, 1], kind=ev[:, 2], tokens=ev[:, 3])
        return Schedule(
            num_requests=self.n, steps=steps, allocs=allocs, events=events,
            first_token_step=self.first_token_step, finish_step=self.finish_step,
            rejected=self.state == _REJECTED,
            meta={"scheduler": self.sname, "params": _params(self.s), "engine": self.e.name,
                  "workload": self.w.name, "wall_s": wall_s, "fast_forward": self.ff},
        )


def simulate(
    workload: Workload,
    engine: EngineModel,
    scheduler: Any,
    *,
    fast_forward: bool = True,
    max_steps: int | None = None,
    progress: bool = False,
) -> Schedule:
    """Run ``scheduler`` on ``engine`` over ``workload`` and return the executed schedule.

    Parameters
    ----------
    workload : Workload
        Requests (validated, sorted by arrival).
    engine : EngineModel
        Step-time and KV model.
    scheduler : Scheduler
        Policy object (``reset()`` is called first).
    fast_forward : bool
        Advance promised pure-decode stretches at once (exactly equal results; faster).
    max_steps : int, optional
        Safety cap on iterations; exceeding it raises :class:`SchedulerStalled`.
    progress : bool
        Show a progress bar (tqdm) over finished requests.

    Raises
    ------
    InvalidPlan
        The scheduler's plan breaks a rule (message names scheduler, step and reason).
    SchedulerStalled
        The scheduler stops making progress.
    """
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    return _Sim(workload, engine, scheduler, fast_forward, max_steps, progress).run()


class _Replay:
    """Scheduler that re-issues a schedule's allocations and events, step by step."""

    name = "replay"

    def __init__(self, schedule: Schedule, workload: Workload) -> None:
        self.sched = schedule
        step, req, tok = schedule.allocs.expand()
        self.by_step: dict[int, dict[int, int]] = {}
        for s, r, t in zip(step.tolist(), req.tolist(), tok.tolist()):
            self.by_step.setdefault(s, {})[r] = t
        ev = schedule.events
        self.ev_by_step: dict[int, list[tuple[int, int]]] = {}
        for s, r, k in zip(ev.step.tolist(), ev.request.tolist(), ev.kind.tolist()):
            self.ev_by_step.setdefault(s, []).append((r, k))
        self.steps = sorted(set(self.by_step) | set(self.ev_by_step))
        self.arr = workload.arrival_s
        self.rej = set(np.flatnonzero(schedule.rejected).tolist())
        self.reset()

    def reset(self) -> None:
        self.i = 0
        self.rejected_done = False

    def plan(self, view: EngineView) -> StepPlan:
        rej: frozenset[int] = frozenset()
        if not self.rejected_done:
            rej = frozenset(int(r) for r in view.waiting if int(r) in self.rej)
            if len(rej) == len(self.rej) or not self.rej:
                self.rejected_done = True
            else:
                self.rej -= set(rej)
        if self.i >= len(self.steps):
            return StepPlan({}, reject=rej)
        s = self.steps[self.i]
        toks = self.by_step.get(s, {})
        need = max((self.arr[r] for r in toks), default=0.0)
        if need > view.now_s + ARRIVAL_EPS_S:
            return StepPlan({}, reject=rej, wait_until_s=float(need))
        evs = self.ev_by_step.get(s, [])
        self.i += 1
        return StepPlan(
            dict(toks),
            preempt=frozenset(r for r, k in evs if k == EventKind.PREEMPT_RECOMPUTE),
            swap_out=frozenset(r for r, k in evs if k == EventKind.SWAP_OUT),
            reject=rej,
        )


def replay(schedule: Schedule, workload: Workload, engine: EngineModel) -> Schedule:
    """Re-time ``schedule``'s allocations on ``engine`` (same steps, same batches, in order).

    Each step starts when the previous one ends, but not before its requests have arrived.
    The result is validated by the simulator like any plan, so an allocation that does not fit
    ``engine`` (token budget, KV) raises :class:`InvalidPlan`. Used to report the MILP optimum
    "under model mismatch" on a realistic engine.
    """
    return simulate(workload, engine, _Replay(schedule, workload), fast_forward=False)


class Simulation:
    """Incremental (online) simulation of one engine, for multi-site co-simulation.

    Requests become visible only when :meth:`push`-ed (e.g. by a dispatcher, after a network
    transfer); :meth:`run_until` executes the iterations that start before a time;
    :meth:`finish` drains the engine and returns the :class:`Schedule` (requests never pushed
    stay unserved: ``first_token_step == finish_step == -1`` and not rejected).

    Examples
    --------
    >>> sim = Simulation(workload, engine, make("vllm"))          # doctest: +SKIP
    >>> for rid in range(len(workload)):                          # doctest: +SKIP
    ...     sim.run_until(workload.arrival_s[rid])
    ...     sim.push(rid, workload.arrival_s[rid] + transfer_s)
    >>> schedule = sim.finish()                                   # doctest: +SKIP
    """

    def __init__(self, workload: Workload, engine: EngineModel, scheduler: Any, *,
                 fast_forward: bool = True, max_steps: int | None = None) -> None:
        if not isinstance(workload, Workload):
            raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
        self._sim = _Sim(workload, engine, scheduler, fast_forward, max_steps, False, online=True)
        self._sim.start_run()
        self._t0 = time.perf_counter()
        self._done: Schedule | None = None

    def push(self, rid: int, release_s: float | None = None) -> None:
        """Make request ``rid`` arrive at this engine at ``release_s`` (default: its arrival)."""
        if self._done is not None:
            raise RuntimeError("simulation already finished")
        t = float(self._sim.arr[rid]) if release_s is None else float(release_s)
        self._sim.push(int(rid), t)

    def run_until(self, t_s: float) -> None:
        """Execute every iteration that starts before ``t_s``."""
        if self._done is not None:
            raise RuntimeError("simulation already finished")
        self._sim.advance(float(t_s), drain=False)

    def finish(self) -> Schedule:
        """Run to completion of every pushed request and return the schedule."""
        if self._done is None:
            self._sim.advance(math.inf, drain=True)
            self._done = self._sim.finish(time.perf_counter() - self._t0)
        return self._done

    # -- read-only state for dispatchers ------------------------------------------------
    @property
    def now_s(self) -> float:
        """Current simulated time of this engine."""
        return self._sim.now

    @property
    def num_waiting(self) -> int:
        """Visible requests without resident KV."""
        return len(self._sim.waiting)

    @property
    def num_running(self) -> int:
        """Requests with resident KV."""
        return len(self._sim.running)

    @property
    def num_open(self) -> int:
        """Pushed requests not yet finished or rejected (including not-yet-released ones)."""
        return self._sim.num_pushed - self._sim.num_closed

    @property
    def kv_free_blocks(self) -> int:
        """Free KV blocks."""
        return self._sim.free_blocks

    def outstanding_tokens(self) -> int:
        """Tokens still to compute for every open pushed request (prefill + decode)."""
        s = self._sim
        ids = np.fromiter(s.pushed, np.int64, len(s.pushed))
        if ids.size == 0:
            return 0
        open_ = (s.state[ids] != _DONE) & (s.state[ids] != _REJECTED)
        ids = ids[open_]
        return int((s.P[ids] + s.O[ids] - 1 - s.computed[ids] + 0).sum())

    def finish_time_s(self, rid: int) -> float:
        """Completion time of ``rid`` so far (NaN if not finished)."""
        return float(self._sim.finish_time_s[rid])

    def first_token_time_s(self, rid: int) -> float:
        """First-token time of ``rid`` so far (NaN if none)."""
        return float(self._sim.first_token_time_s[rid])

    def is_rejected(self, rid: int) -> bool:
        """Whether ``rid`` was rejected here."""
        return bool(self._sim.state[rid] == _REJECTED)
