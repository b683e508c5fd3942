"""``Schedule``: the common currency of the simulator, the solvers, the checker and the metrics.

A schedule is a set of flat numpy tables (Ciw-style records as columns):

* :class:`StepTable`, one row per engine iteration: start and end time, batch shape, swap time.
* :class:`AllocTable`, *run-length* rows ``(request, step, num_steps, tokens)``: request
  ``request`` computes ``tokens`` tokens in each of the steps ``step .. step+num_steps-1``.
  A run of decode steps is one row, so the table grows with events, not with tokens.
* :class:`EventTable`, preemptions and swaps: ``(step, request, kind, tokens)``, applied at the
  *start* of ``step`` before its allocations.
* per request: ``first_token_step`` and ``finish_step`` (-1 when absent) and ``rejected``.

Token accounting (verified by :func:`slo_opt.checks.violations`): a request has
``computed`` tokens with resident KV. A step that brings ``computed`` up to
``prompt_tokens + generated`` emits one output token. The first output token appears at the
end of the step that computes the last prompt token; every later step gives a decoding request
exactly one token. A recompute preemption resets ``computed`` to 0 (KV dropped) and keeps the
generated tokens, which must then be recomputed; a swap-out moves the KV to host memory and a
swap-in brings it back; a prefix-cache hit (``EventKind.CACHE_HIT``) gives a request without
resident KV the KV of its first ``tokens`` tokens without computing them. A request is complete
when ``generated == output_tokens``; without preemption or cache hits its allocations sum to
``Request.work_tokens``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ARRIVAL_EPS_S", "AllocTable", "EventKind", "EventTable", "Schedule", "StepTable",
           "compress_allocs"]

#: Arrivals up to this far after a step's start are visible to that step (float tolerance);
#: shared by the simulator and the slotted formulations.
ARRIVAL_EPS_S = 1e-9


def _ro(a: Any, dtype: Any) -> np.ndarray:
    arr = np.array(a, dtype=dtype).reshape(-1)
    arr.setflags(write=False)
    return arr


class EventKind(enum.IntEnum):
    """Kinds of KV events.

    ``CACHE_HIT`` (prefix caching): a request with no resident KV (fresh, or preempted by
    recompute) is admitted with ``tokens`` leading tokens whose KV blocks the prefix cache
    still holds; its computed tokens jump from 0 to ``tokens`` (a multiple of the block size,
    less than its prompt plus generated tokens) before the step's allocations.
    """

    PREEMPT_RECOMPUTE = 0  # KV dropped; computed -> 0
    SWAP_OUT = 1  # KV moved to host memory
    SWAP_IN = 2  # KV moved back to the device
    CACHE_HIT = 3  # prefix-cache hit at admission; computed 0 -> tokens


@dataclass(frozen=True, eq=False)
class StepTable:
    """One row per iteration.

    Columns: ``start_s``, ``end_s`` (float), ``prefill_tokens``, ``decode_seqs``,
    ``context_tokens`` (int, the batch shape the step time was computed from) and ``swap_s``
    (seconds of KV transfer included in the step).
    """

    start_s: np.ndarray
    end_s: np.ndarray
    prefill_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    decode_seqs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    context_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    swap_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        n = np.asarray(self.start_s).size
        object.__setattr__(self, "start_s", _ro(self.start_s, float))
        object.__setattr__(self, "end_s", _ro(self.end_s, float))
        for k, dt in (("prefill_tokens", np.int64), ("decode_seqs", np.int64),
                      ("context_tokens", np.int64), ("swap_s", float)):
            v = np.asarray(getattr(self, k))
            if v.size == 0 and n:
                v = np.zeros(n, dtype=dt)
            object.__setattr__(self, k, _ro(v, dt))
        for k in ("end_s", "prefill_tokens", "decode_seqs", "context_tokens", "swap_s"):
            if getattr(self, k).size != n:
                raise ValueError(f"StepTable column {k} has {getattr(self, k).size} rows, expected {n}")

    def __len__(self) -> int:
        return int(self.start_s.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepTable):
            return NotImplemented
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in _STEP_COLS)


_STEP_COLS = ("start_s", "end_s", "prefill_tokens", "decode_seqs", "context_tokens", "swap_s")


@dataclass(frozen=True, eq=False)
class AllocTable:
    """Run-length allocations: ``request`` computes ``tokens`` in each step of
    ``[step, step + num_steps)``."""

    request: np.ndarray
    step: np.ndarray
    tokens: np.ndarray
    num_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        n = np.asarray(self.request).size
        object.__setattr__(self, "request", _ro(self.request, np.int64))
        object.__setattr__(self, "step", _ro(self.step, np.int64))
        object.__setattr__(self, "tokens", _ro(self.tokens, np.int64))
        ns = np.asarray(self.num_steps)
        object.__setattr__(self, "num_steps", _ro(ns if ns.size else np.ones(n), np.int64))
        for k in ("step", "tokens", "num_steps"):
            if getattr(self, k).size != n:
                raise ValueError(f"AllocTable column {k} has {getattr(self, k).size} rows, expected {n}")

    def __len__(self) -> int:
        return int(self.request.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AllocTable):
            return NotImplemented
        a, b = self.expand(), other.expand()
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    def expand(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-(step, request) rows ``(step, request, tokens)``, sorted by step then request."""
        ns = self.num_steps
        total = int(ns.sum())
        req = np.repeat(self.request, ns)
        tok = np.repeat(self.tokens, ns)
        start = np.repeat(self.step, ns)
        offs = np.arange(total) - np.repeat(np.cumsum(ns) - ns, ns)
        step = start + offs
        order = np.lexsort((req, step))
        return step[order], req[order], tok[order]

    def tokens_per_request(self, num_requests: int) -> np.ndarray:
        """Total tokens allocated to each request."""
        w = self.tokens * self.num_steps
        return np.bincount(self.request, weights=w, minlength=num_requests).astype(np.int64)


@dataclass(frozen=True, eq=False)
class EventTable:
    """KV events ``(step, request, kind, tokens)`` applied at the start of ``step``."""

    step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    request: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        for k in ("step", "request", "kind", "tokens"):
            object.__setattr__(self, k, _ro(getattr(self, k), np.int64))

    def __len__(self) -> int:
        return int(self.step.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventTable):
            return NotImplemented
        return all(np.array_equal(getattr(self, k), getattr(other, k))
                   for k in ("step", "request", "kind", "tokens"))


@dataclass(frozen=True, eq=False)
class Schedule:
    """An executed or proposed run on one engine.

    Parameters
    ----------
    num_requests : int
        Size of the workload the schedule belongs to.
    steps, allocs, events : StepTable, AllocTable, EventTable
        See the module docstring.
    first_token_step, finish_step : numpy.ndarray
        Per request, the step whose end emits output token 1 / the last token (-1: none).
    rejected : numpy.ndarray
        Per request, ``True`` if it was refused (e.g. larger than the KV capacity).
    meta : dict
        Free-form provenance (scheduler, engine, parameters); not compared by ``==``.
    """

    num_requests: int
    steps: StepTable
    allocs: AllocTable
    first_token_step: np.ndarray
    finish_step: np.ndarray
    rejected: np.ndarray
    events: EventTable = field(default_factory=EventTable)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.num_requests
        object.__setattr__(self, "first_token_step", _ro(self.first_token_step, np.int64))
        object.__setattr__(self, "finish_step", _ro(self.finish_step, np.int64))
        object.__setattr__(self, "rejected", _ro(self.rejected, bool))
        for k in ("first_token_step", "finish_step", "rejected"):
            if getattr(self, k).size != n:
                raise ValueError(f"Schedule.{k} has {getattr(self, k).size} rows, expected {n}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (
            self.num_requests == other.num_requests
            and self.steps == other.steps
            and self.allocs == other.allocs
            and self.events == other.events
            and np.array_equal(self.first_token_step, other.first_token_step)
            and np.array_equal(self.finish_step, other.finish_step)
            and np.array_equal(self.rejected, other.rejected)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def num_steps(self) -> int:
        """Number of iterations."""
        return len(self.steps)

    @property
    def first_token_s(self) -> np.ndarray:
        """Per request, time of the first output token (NaN when none)."""
        return _at(self.steps.end_s, self.first_token_step)

    @property
    def finish_s(self) -> np.ndarray:
        """Per request, time of the last output token (NaN when unfinished)."""
        return _at(self.steps.end_s, self.finish_step)

    @property
    def makespan_s(self) -> float:
        """End of the last step (0 for an empty schedule)."""
        return float(self.steps.end_s[-1]) if len(self.steps) else 0.0

    # -- records I/O ------------------------------------------------------------------
    def to_records(self) -> dict[str, dict[str, np.ndarray]]:
        """Flat tables of columns: ``steps``, ``allocs``, ``events``, ``requests``."""
        return {
            "steps": {k: np.asarray(getattr(self.steps, k)) for k in _STEP_COLS},
            "allocs": {k: np.asarray(getattr(self.allocs, k))
                       for k in ("request", "step", "num_steps", "tokens")},
            "events": {k: np.asarray(getattr(self.events, k))
                       for k in ("step", "request", "kind", "tokens")},
            "requests": {
                "first_token_step": np.asarray(self.first_token_step),
                "finish_step": np.asarray(self.finish_step),
                "rejected": np.asarray(self.rejected),
            },
        }

    @classmethod
    def from_records(cls, rec: dict[str, dict[str, Any]], meta: dict[str, Any] | None = None) -> Schedule:
        """Inverse of :meth:`to_records`."""
        r = rec["requests"]
        return cls(
            num_requests=int(np.asarray(r["rejected"]).size),
            steps=StepTable(**{k: rec["steps"][k] for k in _STEP_COLS}),
            allocs=AllocTable(**rec["allocs"]),
            events=EventTable(**rec["events"]),
            first_token_step=r["first_token_step"],
            finish_step=r["finish_step"],
            rejected=r["rejected"],
            meta=dict(meta or {}),
        )

    def save_npz(self, path: str) -> None:
        """Write the records to one ``.npz`` file."""
        flat = {f"{t}.{k}": v for t, cols in self.to_records().items() for k, v in cols.items()}
        np.savez_compressed(path, **flat)  # type: ignore[arg-type]

    @classmethod
    def load_npz(cls, path: str) -> Schedule:
        """Read a schedule written by :meth:`save_npz`."""
        with np.load(path) as z:
            rec: dict[str, dict[str, Any]] = {}
            for key in z.files:
                t, k = key.split(".", 1)
                rec.setdefault(t, {})[k] = z[key]
        return cls.from_records(rec)


def _at(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.full(idx.shape, np.nan)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


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
