"""Iteration-level single-engine simulator with paged KV, preemption and fast-forward.

Each iteration the scheduler sees an :class:`~slo_opt.schedulers.base.EngineView` and returns a
:class:`~slo_opt.schedulers.base.StepPlan`. The simulator validates the plan (token budget, KV
fit in blocks, known and arrived ids, token counts), charges the step time given by the engine
model, and records a :class:`~slo_opt.schedule.Schedule`.

Cost grows with events, not tokens: when the policy promises (``StepPlan.repeat_until_s``) that
a pure-decode plan stays the same, the simulator advances through all decode iterations up to
the next arrival, completion, KV-block shortage or promise horizon at once, with vectorised
step times. The result is identical to stepping one iteration at a time (tested).
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

from slo_opt.engine import BatchShape, EngineModel, decode_step_times_s
from slo_opt.request import Workload
from slo_opt.schedule import AllocTable, EventKind, EventTable, Schedule, StepTable
from slo_opt.schedulers.base import EngineView, StepPlan

__all__ = ["ARRIVAL_EPS_S", "InvalidPlan", "SchedulerStalled", "Simulation", "replay", "simulate"]

#: Arrivals up to this far after a step's start are visible to that step (float tolerance).
ARRIVAL_EPS_S = 1e-9

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
    if is_dataclass(s) and not isinstance(s, type):
        try:
            return {k: (v if isinstance(v, int | float | str | bool | None) else repr(v))
                    for k, v in asdict(s).items()}
        except Exception:  # pragma: no cover - exotic fields
            return {}
    return {}


def _blocks(tokens: int, b: int) -> int:
    return -(-tokens // b)


class _Sim:
    """Mutable state of one run (private; the public API is :func:`simulate`)."""

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
        self.b = int(engine.kv_block_tokens)
        self.cap_blocks = int(engine.kv_capacity_tokens) // self.b
        self.free_blocks = self.cap_blocks
        self.waiting: list[int] = []
        self.running: list[int] = []
        self.swapped: list[int] = []
        self.next_arrival = 0
        self.online = online
        self.pending: list[tuple[float, int]] = []  # online: heap of (release_s, rid)
        self.num_pushed = 0
        self.pushed: set[int] = set()
        self.num_closed = 0  # done + rejected
        self.now = 0.0
        self.step = 0
        self.pending_swap_s = 0.0
        # records (lists of arrays, concatenated at the end)
        self.st_start: list[np.ndarray] = []
        self.st_end: list[np.ndarray] = []
        self.st_pf: list[np.ndarray] = []
        self.st_dec: list[np.ndarray] = []
        self.st_ctx: list[np.ndarray] = []
        self.st_swap: list[np.ndarray] = []
        self.al_req: list[np.ndarray] = []
        self.al_step: list[np.ndarray] = []
        self.al_num: list[np.ndarray] = []
        self.al_tok: list[np.ndarray] = []
        self.al_mg: list[np.ndarray] = []
        self.ev: list[tuple[int, int, int, int]] = []
        self.align: Callable[[float], float] | None = getattr(engine, "align_start_s", None)
        self.bw = float(getattr(engine, "host_bandwidth_bytes_per_s", math.inf))
        self.kvb = float(getattr(engine, "kv_bytes_per_token", 0))

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
            peak = int(self.P[rid] + self.O[rid] - 1)
            if _blocks(peak, self.b) > self.cap_blocks:
                self.state[rid] = _REJECTED
                self.num_closed += 1
            else:
                self.state[rid] = _WAITING
                bisect.insort(self.waiting, rid)

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

    def view(self) -> EngineView:
        na = self.next_arrival_s()
        return EngineView(
            now_s=self.now,
            step=self.step,
            engine=self.e,
            workload=self.w,
            waiting=np.array(self.waiting, dtype=np.int64),
            running=np.array(self.running, dtype=np.int64),
            swapped=np.array(self.swapped, dtype=np.int64),
            num_computed=self.computed,
            num_generated=self.generated,
            kv_free_blocks=self.free_blocks,
            first_scheduled_s=self.first_scheduled_s,
            next_arrival_s=na,
        )

    # ---------------------------------------------------------------------------------
    def apply_evictions(self, plan: StepPlan) -> bool:
        changed = False
        for rid in sorted(plan.reject):
            if not (0 <= rid < self.n) or self.state[rid] != _WAITING:
                self.fail(f"reject of request {rid} which is not waiting")
            self.waiting.remove(rid)
            self.state[rid] = _REJECTED
            self.num_closed += 1
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
            self.state[rid] = _WAITING
            bisect.insort(self.waiting, rid)
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
            plan = self.s.plan(self.view())
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
        items = sorted((int(r), int(t)) for r, t in plan.tokens.items())
        rids = np.fromiter((r for r, _ in items), np.int64, len(items))
        toks = np.fromiter((t for _, t in items), np.int64, len(items))
        if rids.size and (rids[0] < 0 or rids[-1] >= self.n):
            self.fail(f"unknown request id in {rids.tolist()}")
        st = self.state[rids]
        bad = (st != _WAITING) & (st != _RUNNING) & (st != _SWAPPED)
        if bad.any():
            r = int(rids[np.flatnonzero(bad)[0]])
            why = {_NOT_ARRIVED: "has not arrived", _DONE: "is finished",
                   _REJECTED: "was rejected"}.get(int(self.state[r]), "is not schedulable")
            self.fail(f"request {r} {why}")
        comp = self.computed[rids]
        nxt = self.P[rids] + self.generated[rids] - comp
        if (toks < 1).any():
            r = int(rids[np.flatnonzero(toks < 1)[0]])
            self.fail(f"request {r}: tokens must be >= 1")
        over = toks > nxt
        if over.any():
            i = int(np.flatnonzero(over)[0])
            self.fail(f"request {int(rids[i])}: {int(toks[i])} tokens > next_tokens {int(nxt[i])}")
        total = int(toks.sum())
        if total > self.e.max_batch_tokens:
            self.fail(f"{total} tokens exceed the engine's max_batch_tokens {self.e.max_batch_tokens}")
        # KV: swapped-in requests bring their blocks back; everyone may grow.
        new_blocks = -(-(comp + toks) // self.b)
        need = new_blocks - np.where(st == _SWAPPED, 0, self.held[rids])
        if int(need.sum()) > self.free_blocks:
            self.fail(f"KV overflow: needs {int(need.sum())} blocks, {self.free_blocks} free")
        swapped_in = rids[st == _SWAPPED]
        swap_s = self.pending_swap_s
        self.pending_swap_s = 0.0
        for r in swapped_in.tolist():
            c = int(self.computed[r])
            self.ev.append((self.step, r, int(EventKind.SWAP_IN), c))
            swap_s += c * self.kvb / self.bw
            self.swapped.remove(r)
        # batch shape
        is_dec = (toks == 1) & (nxt == 1) & (self.generated[rids] >= 1)
        n_dec = int(is_dec.sum())
        ctx_dec = int((comp[is_dec] + 1).sum())
        pf = ~is_dec
        shape = BatchShape(
            prefill_tokens=int(toks[pf].sum()),
            decode_seqs=n_dec,
            decode_context_tokens=ctx_dec,
            prefill_seqs=int(pf.sum()),
            prefill_context_tokens=int((comp[pf] + toks[pf]).sum()),
        )
        start = self.align(self.now) if self.align is not None else self.now
        dt = float(self.e.step_time_s(shape))
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"engine {self.e.name!r} returned step time {dt!r} for {shape}")
        end = start + dt + swap_s

        # fast-forward a pure-decode plan the policy promised to repeat
        k = 1
        if (self.ff and n_dec == rids.size and plan.repeat_until_s > start
                and not plan.preempt and not plan.swap_out and swapped_in.size == 0):
            k = self.fast_forward_len(rids, comp, start, end, min(plan.repeat_until_s, limit_s))
        if k > 1:
            self.record_ff(rids, comp, start, k)
        else:
            self.record_step(start, end, shape, swap_s, rids, toks, (toks == 1) & (nxt == 1))
        # state update (k tokens of decode per request, or one step of the plan)
        first_sched = np.isnan(self.first_scheduled_s[rids])
        self.first_scheduled_s[rids[first_sched]] = start
        promoted = rids[(st == _WAITING) | (st == _SWAPPED)]
        if promoted.size:
            pset = set(promoted.tolist())
            self.waiting = [r for r in self.waiting if r not in pset]
            self.running.extend(promoted.tolist())
            self.state[promoted] = _RUNNING
        gen_old = self.generated[rids]
        if k == 1:
            newc = comp + toks
            emit = newc == self.P[rids] + gen_old
            gen = gen_old + emit
        else:
            newc = comp + k
            emit = np.ones(rids.size, bool)
            gen = gen_old + k
        self.computed[rids] = newc
        new_held = -(-newc // self.b)
        self.free_blocks -= int((new_held - np.where(st == _SWAPPED, 0, self.held[rids])).sum())
        self.held[rids] = new_held
        self.generated[rids] = gen
        last_step = self.step + k - 1
        first = emit & (gen_old == 0)
        self.first_token_step[rids[first]] = last_step
        self.first_token_time_s[rids[first]] = self._last_end
        done = gen == self.O[rids]
        if done.any():
            fin = rids[done]
            self.finish_step[fin] = last_step
            self.finish_time_s[fin] = self._last_end
            self.state[fin] = _DONE
            self.free_blocks += int(self.held[fin].sum())
            self.held[fin] = 0
            fset = set(fin.tolist())
            self.running = [r for r in self.running if r not in fset]
            self.num_closed += int(fin.size)
        self.step += k
        self.now = float(self._last_end)

    def fast_forward_len(self, rids: np.ndarray, comp: np.ndarray, start: float, end0: float,
                         repeat_until_s: float) -> int:
        """Number of identical pure-decode steps that can run before the next event."""
        k = int((self.O[rids] - self.generated[rids]).min())  # up to and incl. first completion
        if k <= 1:
            return 1
        # KV: block acquisitions (step numbers 1..k) per request; stop before the (F+1)-th.
        b = self.b
        first_acq = (-(-comp // b)) * b - comp + 1  # step at which a new block is first needed
        counts = np.maximum(0, (k - first_acq) // b + 1)
        if int(counts.sum()) > self.free_blocks:
            acq = np.concatenate([
                fa + b * np.arange(c) for fa, c in zip(first_acq.tolist(), counts.tolist()) if c
            ])
            acq.sort()
            k = min(k, int(acq[self.free_blocks]) - 1)
            if k <= 1:
                return 1
        if self.max_steps is not None:
            k = min(k, self.max_steps - self.step)
        # time: steps starting before the next arrival and before the promise horizon run
        limit = min(self.next_arrival_s() - ARRIVAL_EPS_S, repeat_until_s)
        n = int(rids.size)
        ctx0 = int((comp + 1).sum())
        dts = decode_step_times_s(self.e, n, ctx0, k)
        starts, ends = self._times(start, dts)
        ok = starts < limit
        ok[0] = True
        k = int(np.argmin(ok)) if not ok.all() else k
        self._ff_times = (starts[:k], ends[:k], dts[:k], ctx0, n)
        return max(k, 1)

    def _times(self, start: float, dts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = dts.size
        if self.align is not None:
            slot = float(getattr(self.e, "step_s", 0.0))
            idx = round(start / slot) if slot else 0
            starts = (idx + np.arange(k)) * slot
            return starts, starts + dts
        ends = np.add.accumulate(np.concatenate(([start], dts)))[1:]
        starts = np.concatenate(([start], ends[:-1]))
        return starts, ends

    def record_step(self, start: float, end: float, shape: BatchShape, swap_s: float,
                    rids: np.ndarray, toks: np.ndarray, mergeable: np.ndarray) -> None:
        self.st_start.append(np.array([start]))
        self.st_end.append(np.array([end]))
        self.st_pf.append(np.array([shape.prefill_tokens], np.int64))
        self.st_dec.append(np.array([shape.decode_seqs], np.int64))
        self.st_ctx.append(np.array([shape.context_tokens], np.int64))
        self.st_swap.append(np.array([swap_s]))
        self.al_req.append(rids)
        self.al_step.append(np.full(rids.size, self.step, np.int64))
        self.al_num.append(np.ones(rids.size, np.int64))
        self.al_tok.append(toks)
        self.al_mg.append(mergeable)
        self._last_end = end

    def record_ff(self, rids: np.ndarray, comp: np.ndarray, start: float, k: int) -> None:
        starts, ends, _dts, ctx0, n = self._ff_times
        self.st_start.append(starts)
        self.st_end.append(ends)
        self.st_pf.append(np.zeros(k, np.int64))
        self.st_dec.append(np.full(k, n, np.int64))
        self.st_ctx.append(ctx0 + n * np.arange(k, dtype=np.int64))
        self.st_swap.append(np.zeros(k))
        self.al_req.append(rids)
        self.al_step.append(np.full(rids.size, self.step, np.int64))
        self.al_num.append(np.full(rids.size, k, np.int64))
        self.al_tok.append(np.ones(rids.size, np.int64))
        self.al_mg.append(np.ones(rids.size, bool))
        self._last_end = float(ends[-1])

    def finish(self, wall_s: float) -> Schedule:
        if self.bar is not None:
            self.bar.update(self.num_closed - self.last_closed)
            self.bar.close()
            self.bar = None
        def cat(parts: list[np.ndarray], dt: Any) -> np.ndarray:
            return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

        steps = StepTable(
            start_s=cat(self.st_start, float), end_s=cat(self.st_end, float),
            prefill_tokens=cat(self.st_pf, np.int64), decode_seqs=cat(self.st_dec, np.int64),
            context_tokens=cat(self.st_ctx, np.int64), swap_s=cat(self.st_swap, float),
        )
        allocs = compress_allocs(cat(self.al_req, np.int64), cat(self.al_step, np.int64),
                                 cat(self.al_num, np.int64), cat(self.al_tok, np.int64),
                                 cat(self.al_mg, bool))
        ev = np.array(self.ev, dtype=np.int64).reshape(-1, 4)
        events = EventTable(step=ev[:, 0], request=ev[:, 1], kind=ev[:, 2], tokens=ev[:, 3])
        return Schedule(
            num_requests=self.n, steps=steps, allocs=allocs, events=events,
            first_token_step=self.first_token_step, finish_step=self.finish_step,
            rejected=self.state == _REJECTED,
            meta={"scheduler": self.sname, "params": _params(self.s), "engine": self.e.name,
                  "workload": self.w.name, "wall_s": wall_s, "fast_forward": self.ff},
        )


def compress_allocs(req: np.ndarray, step: np.ndarray, num: np.ndarray, tok: np.ndarray,
                    mergeable: np.ndarray | None = None) -> AllocTable:
    """Canonical run-length form.

    Rows flagged ``mergeable`` (one token that completes the request's next output token:
    a decode, or the last token of a prompt) are merged with the next row of the same request
    when that row is also mergeable and starts in the following step. Without flags, rows are
    only sorted.
    """
    if req.size == 0:
        return AllocTable(request=req, step=step, tokens=tok, num_steps=num)
    if mergeable is None:
        mergeable = np.zeros(req.size, bool)
    order = np.lexsort((step, req))
    req, step, num, tok = req[order], step[order], num[order], tok[order]
    mg = np.asarray(mergeable, bool)[order] & (tok == 1)
    cont = np.zeros(req.size, bool)
    cont[1:] = ((req[1:] == req[:-1]) & (step[1:] == step[:-1] + num[:-1])
                & mg[1:] & mg[:-1])
    grp = np.cumsum(~cont) - 1
    heads = np.flatnonzero(~cont)
    total = np.bincount(grp, weights=num).astype(np.int64)
    out_req, out_step, out_tok = req[heads], step[heads], tok[heads]
    order2 = np.lexsort((out_req, out_step))
    return AllocTable(request=out_req[order2], step=out_step[order2], tokens=out_tok[order2],
                      num_steps=total[order2])


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
