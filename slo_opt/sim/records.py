"""The simulator's record buffers: step rows, run-length allocation rows, events.

Step rows go to growable numpy columns (amortised O(1) appends). Allocations are merged into
run-length rows online: each request has at most one open run of single-token steps
(``run_start``, ``run_end``), extended while it keeps computing one output-emitting token per
consecutive step, which gives exactly the rows of :func:`~slo_opt.schedule.compress_allocs`
without storing one row per (step, request).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slo_opt.schedule import AllocTable, EventTable, StepTable
from slo_opt.sim._ops import all_ as _all
from slo_opt.sim._ops import max_ as _max
from slo_opt.sim._ops import nz as _nz

__all__ = ["Columns", "StepRecorder"]

_STEP_DTYPES = (float, float, np.int64, np.int64, np.int64, float)


class Columns:
    """Growable numpy columns with amortised O(1) appends."""

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


class StepRecorder:
    """Everything a run records, until :meth:`tables` builds the schedule's tables.

    Attributes
    ----------
    steps : Columns
        Step rows: start_s, end_s, prefill_tokens, decode_seqs, context_tokens, swap_s.
    allocs : Columns
        Emitted run-length rows: request, step, num_steps, tokens.
    run_start, run_end : numpy.ndarray
        Per request, the open single-token run ``[run_start, run_end)`` (``run_end == -1``:
        none).
    events : list of tuple
        ``(step, request, kind, tokens)`` of every preemption and swap.
    """

    __slots__ = ("allocs", "events", "run_end", "run_start", "steps")

    def __init__(self, num_requests: int) -> None:
        self.steps = Columns(_STEP_DTYPES)
        self.allocs = Columns((np.int64, np.int64, np.int64, np.int64))
        self.run_start = np.zeros(num_requests, np.int64)
        self.run_end = np.full(num_requests, -1, np.int64)
        self.events: list[tuple[int, int, int, int]] = []

    def add_step(self, start_s: float, end_s: float, prefill_tokens: int, decode_seqs: int,
                 context_tokens: int, swap_s: float) -> None:
        """Append one step row."""
        i = self.steps.reserve(1)
        sc = self.steps.cols
        sc[0][i] = start_s
        sc[1][i] = end_s
        sc[2][i] = prefill_tokens
        sc[3][i] = decode_seqs
        sc[4][i] = context_tokens
        sc[5][i] = swap_s

    def record_allocs(self, rids: np.ndarray, toks: np.ndarray | None, step: int,
                      k: int | np.ndarray, mergeable: np.ndarray | None = None) -> None:
        """Record ``rids`` computing ``toks`` in steps ``step .. step+k-1``.

        ``toks=None``: one decode token each (all mergeable). ``mergeable``: rows of one token
        that emit an output token; consecutive mergeable rows of a request are merged into one
        run, exactly as :func:`~slo_opt.schedule.compress_allocs` does.
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
                    self.emit(cr, cs, re[close] - cs, None)
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
                self.emit(mr, step, 1, toks[multi])
                return
        cont &= one
        has = re >= 0
        close = has & ~cont
        if _nz(close):
            cr = rids[close]
            cs = self.run_start[cr]
            self.emit(cr, cs, re[close] - cs, None)
        newrun = one & ~cont
        if _nz(newrun):
            self.run_start[rids[newrun]] = step
        self.run_end[rids[one]] = step + k
        if not _all(one):
            multi = ~one
            mr = rids[multi]
            self.run_end[mr] = -1
            self.emit(mr, step, 1, toks[multi])

    def emit(self, req: np.ndarray, step: Any, num: Any, tok: np.ndarray | None) -> None:
        """Append closed allocation rows (``tok=None``: one token per step)."""
        i = self.allocs.reserve(req.size)
        j = self.allocs.n
        c = self.allocs.cols
        c[0][i:j] = req
        c[1][i:j] = step
        c[2][i:j] = num
        c[3][i:j] = 1 if tok is None else tok

    def tables(self) -> tuple[StepTable, AllocTable, EventTable]:
        """Close the open runs and build the schedule's tables (frees the step buffers)."""
        start_s, end_s, pf, dec, ctx, swap = self.steps.columns()
        self.steps = Columns(_STEP_DTYPES, cap=1)
        steps = StepTable(start_s=start_s, end_s=end_s, prefill_tokens=pf, decode_seqs=dec,
                          context_tokens=ctx, swap_s=swap)
        open_ = np.flatnonzero(self.run_end >= 0)
        if open_.size:
            rs = self.run_start[open_]
            self.emit(open_, rs, self.run_end[open_] - rs, None)
            self.run_end[open_] = -1
        req, step, num, tok = self.allocs.columns()
        order = np.lexsort((req, step))
        allocs = AllocTable(request=req[order], step=step[order], tokens=tok[order],
                            num_steps=num[order])
        ev = np.array(self.events, dtype=np.int64).reshape(-1, 4)
        events = EventTable(step=ev[:, 0], request=ev[:, 1], kind=ev[:, 2], tokens=ev[:, 3])
        return steps, allocs, events
