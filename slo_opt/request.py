"""Frozen value types: :class:`SLO`, :class:`Request` and :class:`Workload`.

Requests are immutable facts; runtime progress lives in the simulator. One invariant makes
numpy code simple: *request id == row index, in arrival order*.

A :class:`Workload` is column-oriented (numpy arrays, read-only) so that traces of a million
requests cost arrays, not Python objects; :class:`Request` objects are materialised on demand.
It may carry a :class:`PrefixIds`: which requests share leading tokens (prefix caching).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

__all__ = ["SLO", "PrefixIds", "Request", "Workload", "WorkloadError"]


class WorkloadError(ValueError):
    """A workload, request or SLO violates its invariants (message names the first bad row)."""


def _check_positive(name: str, value: float, *, allow_inf: bool = True) -> None:
    if not isinstance(value, int | float) or math.isnan(value):
        raise WorkloadError(f"{name} must be a number, got {value!r}")
    if value <= 0:
        raise WorkloadError(f"{name} must be > 0, got {value!r}")
    if not allow_inf and math.isinf(value):
        raise WorkloadError(f"{name} must be finite, got {value!r}")


@dataclass(frozen=True, slots=True)
class SLO:
    """Latency targets of one request.

    Parameters
    ----------
    ttft_s : float
        Time to first token, arrival to the end of the step that emits token 1.
    tpot_s : float
        Mean time per output token after the first: ``(finish - first_token) / (output - 1)``.
    e2e_s : float
        End-to-end latency, arrival to last token. ``inf`` means no target.
    """

    ttft_s: float = math.inf
    tpot_s: float = math.inf
    e2e_s: float = math.inf

    def __post_init__(self) -> None:
        _check_positive("SLO.ttft_s", self.ttft_s)
        _check_positive("SLO.tpot_s", self.tpot_s)
        _check_positive("SLO.e2e_s", self.e2e_s)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the client sent it.

    Parameters
    ----------
    id : int
        Row index in its workload (arrival order).
    arrival_s : float
        Arrival time in seconds from the start of the run.
    prompt_tokens, output_tokens : int
        Prompt length and number of generated tokens (both >= 1).
    slo : SLO
        Latency targets.
    utility : float
        Weight in utility-weighted attainment (SLICE's ``U_i``).
    class_label : str
        Optional class name (e.g. ``"rt"``/``"nrt"`` for SLICE, a service class for PerLLM).
    origin : str
        Topology node where the request enters (edge-cloud simulations).
    """

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    slo: SLO = SLO()
    utility: float = 1.0
    class_label: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, int | np.integer) or self.id < 0:
            raise WorkloadError(f"request id must be a non-negative int, got {self.id!r}")
        if not isinstance(self.arrival_s, int | float) or not math.isfinite(self.arrival_s):
            raise WorkloadError(f"request {self.id}: arrival_s must be finite, got {self.arrival_s!r}")
        if self.arrival_s < 0:
            raise WorkloadError(f"request {self.id}: arrival_s must be >= 0, got {self.arrival_s}")
        for name in ("prompt_tokens", "output_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
                raise WorkloadError(f"request {self.id}: {name} must be an int >= 1, got {v!r}")
        if not isinstance(self.slo, SLO):
            raise WorkloadError(f"request {self.id}: slo must be an SLO, got {type(self.slo)}")
        if not math.isfinite(self.utility) or self.utility < 0:
            raise WorkloadError(f"request {self.id}: utility must be finite and >= 0")

    @property
    def work_tokens(self) -> int:
        """Tokens the engine computes without preemption: the last sampled token is never fed back."""
        return self.prompt_tokens + self.output_tokens - 1


@dataclass(frozen=True, eq=False)
class PrefixIds:
    """Content identity of the leading tokens of every request (for prefix caching).

    Request ``r``'s token sequence (its prompt, then its output tokens) is cut into blocks of
    ``block_tokens`` tokens; ``ids[offsets[r]:offsets[r + 1]]`` name the contents of its first
    blocks, and ``tokens[r]`` says how many leading tokens those ids describe (the last id may
    describe a partial block). Two requests hold identical tokens at position ``p`` iff both
    describe ``p`` and their ids agree on every block up to and including the one holding
    ``p`` (a chained identity, like vLLM's block hashes of (parent hash, block tokens)).
    Tokens past ``tokens[r]`` are unique to request ``r``. Mooncake's ``hash_ids`` are such
    ids (``block_tokens = 512``, prompt only); a conversation's later turn names the earlier
    turns' prompt and output blocks.

    Parameters
    ----------
    block_tokens : int
        Tokens per id (>= 1). The simulator needs it to be a multiple of the KV block size.
    offsets : array of int
        ``n + 1`` non-decreasing row offsets into ``ids`` (``offsets[0] == 0``).
    ids : array of int
        Block ids, concatenated per request.
    tokens : array of int
        Per request, tokens the ids describe: ``0`` without ids, else in
        ``(block_tokens * (len - 1), block_tokens * len]``.

    Notes
    -----
    Validated against its workload when attached (:meth:`Workload.with_prefix_ids`): one row
    per request and ``tokens[r] <= prompt + output - 1`` (the tokens a request ever computes).
    """

    block_tokens: int
    offsets: np.ndarray
    ids: np.ndarray
    tokens: np.ndarray

    def __post_init__(self) -> None:
        g = self.block_tokens
        if not isinstance(g, int | np.integer) or isinstance(g, bool) or g < 1:
            raise WorkloadError(f"PrefixIds.block_tokens must be an int >= 1, got {g!r}")
        off = np.ascontiguousarray(self.offsets, dtype=np.int64).reshape(-1)
        ids = np.ascontiguousarray(self.ids, dtype=np.int64).reshape(-1)
        tok = np.ascontiguousarray(self.tokens, dtype=np.int64).reshape(-1)
        if off.size < 1 or off[0] != 0 or off[-1] != ids.size:
            raise WorkloadError("PrefixIds.offsets must start at 0 and end at len(ids)")
        ln = np.diff(off)
        _first_bad("PrefixIds.offsets must be non-decreasing", ln < 0)
        if tok.size != ln.size:
            raise WorkloadError(f"PrefixIds.tokens has {tok.size} rows, offsets describe {ln.size}")
        _first_bad("PrefixIds.tokens must be 0 for a request without ids", (ln == 0) & (tok != 0))
        _first_bad(f"PrefixIds.tokens must be in (block_tokens * (ids - 1), block_tokens * ids] "
                   f"(block_tokens = {g})",
                   (ln > 0) & ((tok <= g * (ln - 1)) | (tok > g * ln)))
        for name, a in (("offsets", off), ("ids", ids), ("tokens", tok)):
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "block_tokens", int(g))

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int] | np.ndarray], block_tokens: int,
                   tokens: Any = None) -> PrefixIds:
        """From one id list per request; ``tokens`` defaults to ``block_tokens * len``."""
        lens = np.array([len(x) for x in ids], dtype=np.int64)
        off = np.concatenate(([0], np.cumsum(lens)))
        flat = (np.concatenate([np.asarray(x, dtype=np.int64).reshape(-1) for x in ids])
                if lens.sum() else np.zeros(0, np.int64))
        tok = int(block_tokens) * lens if tokens is None else np.asarray(tokens, dtype=np.int64)
        return cls(int(block_tokens), off, flat, tok)

    def __len__(self) -> int:
        return int(self.tokens.size)

    def row(self, r: int) -> np.ndarray:
        """The ids of request ``r`` (read-only)."""
        return self.ids[self.offsets[r]:self.offsets[r + 1]]

    def subset(self, idx: np.ndarray) -> PrefixIds:
        """Rows ``idx``, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        lo, hi = self.offsets[idx], self.offsets[idx + 1]
        ln = hi - lo
        off = np.concatenate(([0], np.cumsum(ln)))
        flat = np.repeat(lo - off[:-1], ln) + np.arange(int(off[-1]), dtype=np.int64)
        return PrefixIds(self.block_tokens, off, self.ids[flat], self.tokens[idx])

    def clip(self, max_tokens: np.ndarray) -> PrefixIds:
        """The ids describing at most ``max_tokens[r]`` leading tokens of each request."""
        tok = np.minimum(self.tokens, np.asarray(max_tokens, dtype=np.int64))
        keep = -(-tok // self.block_tokens)
        lo = self.offsets[:-1]
        off = np.concatenate(([0], np.cumsum(keep)))
        flat = np.repeat(lo - off[:-1], keep) + np.arange(int(off[-1]), dtype=np.int64)
        return PrefixIds(self.block_tokens, off, self.ids[flat], tok)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrefixIds):
            return NotImplemented
        return (self.block_tokens == other.block_tokens
                and all(np.array_equal(getattr(self, k), getattr(other, k))
                        for k in ("offsets", "ids", "tokens")))

    __hash__ = None  # type: ignore[assignment]


_FLOAT_COLS = ("arrival_s", "ttft_slo_s", "tpot_slo_s", "e2e_slo_s", "utility")
_INT_COLS = ("prompt_tokens", "output_tokens")


class Workload:
    """A validated, immutable, column-oriented set of requests sorted by arrival.

    Build from :class:`Request` objects (``Workload(requests)``) or from columns
    (:meth:`from_arrays`). Invariants, checked at construction: ids are ``0..n-1`` in arrival
    order, arrivals are finite, >= 0 and non-decreasing, lengths are integers >= 1, SLOs are
    positive (``inf`` = none), utilities are finite and >= 0.

    Columns (read-only numpy arrays): ``arrival_s``, ``prompt_tokens``, ``output_tokens``,
    ``ttft_slo_s``, ``tpot_slo_s``, ``e2e_slo_s``, ``utility``, ``class_label``, ``origin``.
    ``prefix_ids`` (:class:`PrefixIds` or ``None``): shared leading tokens between requests;
    without it every request's tokens are its own (only a request's own recomputation after a
    preemption can hit the prefix cache). Attach with :meth:`with_prefix_ids`.
    """

    __slots__ = (
        "_requests",
        "arrival_s",
        "class_label",
        "e2e_slo_s",
        "name",
        "origin",
        "output_tokens",
        "prefix_ids",
        "prompt_tokens",
        "tpot_slo_s",
        "ttft_slo_s",
        "utility",
    )

    _requests: tuple[Request, ...] | None
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_slo_s: np.ndarray
    tpot_slo_s: np.ndarray
    e2e_slo_s: np.ndarray
    utility: np.ndarray
    class_label: np.ndarray
    origin: np.ndarray
    name: str
    prefix_ids: PrefixIds | None

    def __init__(self, requests: Sequence[Request] = (), *, name: str = "") -> None:
        reqs = tuple(requests)
        for i, r in enumerate(reqs):
            if not isinstance(r, Request):
                raise WorkloadError(f"row {i}: expected a Request, got {type(r).__name__}")
            if r.id != i:
                raise WorkloadError(f"request ids must be 0..n-1 in arrival order: row {i} has id {r.id}")
        self._init_columns(
            arrival_s=np.array([r.arrival_s for r in reqs], dtype=float),
            prompt_tokens=np.array([r.prompt_tokens for r in reqs], dtype=np.int64),
            output_tokens=np.array([r.output_tokens for r in reqs], dtype=np.int64),
            ttft_slo_s=np.array([r.slo.ttft_s for r in reqs], dtype=float),
            tpot_slo_s=np.array([r.slo.tpot_s for r in reqs], dtype=float),
            e2e_slo_s=np.array([r.slo.e2e_s for r in reqs], dtype=float),
            utility=np.array([r.utility for r in reqs], dtype=float),
            class_label=np.array([r.class_label for r in reqs], dtype=object),
            origin=np.array([r.origin for r in reqs], dtype=object),
            name=name,
        )
        object.__setattr__(self, "_requests", reqs)

    @classmethod
    def from_arrays(
        cls,
        arrival_s: Any,
        prompt_tokens: Any,
        output_tokens: Any,
        *,
        ttft_slo_s: Any = math.inf,
        tpot_slo_s: Any = math.inf,
        e2e_slo_s: Any = math.inf,
        utility: Any = 1.0,
        class_label: Any = "",
        origin: Any = "",
        name: str = "",
    ) -> Workload:
        """Build a workload from columns; scalars broadcast. Validates like ``__init__``."""
        arr = np.asarray(arrival_s, dtype=float).reshape(-1)
        n = arr.size

        def col(x: Any, dtype: Any) -> np.ndarray:
            a = np.asarray(x, dtype=dtype)
            if a.ndim == 0:
                return np.full(n, a.item() if dtype is not object else x, dtype=dtype)
            a = a.reshape(-1)
            if a.size != n:
                raise WorkloadError(f"column length {a.size} != number of arrivals {n}")
            return a

        p_raw = np.asarray(prompt_tokens)
        o_raw = np.asarray(output_tokens)
        for nm, raw in (("prompt_tokens", p_raw), ("output_tokens", o_raw)):
            if raw.dtype.kind == "f":
                bad = ~np.isfinite(raw) | (raw != np.round(raw))
                if np.any(bad):
                    i = int(np.flatnonzero(bad.reshape(-1))[0]) if raw.ndim else 0
                    raise WorkloadError(f"row {i}: {nm} must be an integer, got {raw.reshape(-1)[i]!r}")
        self = cls.__new__(cls)
        self._init_columns(
            arrival_s=arr,
            prompt_tokens=col(p_raw, np.int64),
            output_tokens=col(o_raw, np.int64),
            ttft_slo_s=col(ttft_slo_s, float),
            tpot_slo_s=col(tpot_slo_s, float),
            e2e_slo_s=col(e2e_slo_s, float),
            utility=col(utility, float),
            class_label=col(class_label, object),
            origin=col(origin, object),
            name=name,
        )
        object.__setattr__(self, "_requests", None)
        return self

    def _init_columns(self, *, name: str, **cols: np.ndarray) -> None:
        n = cols["arrival_s"].size
        for k, v in cols.items():
            if v.size != n:
                raise WorkloadError(f"column {k} has {v.size} rows, expected {n}")
        a = cols["arrival_s"]
        _first_bad("arrival_s must be finite", ~np.isfinite(a))
        _first_bad("arrival_s must be >= 0", a < 0)
        if n > 1:
            dec = np.flatnonzero(np.diff(a) < 0)
            if dec.size:
                i = int(dec[0]) + 1
                raise WorkloadError(
                    f"requests must be sorted by arrival_s: row {i} arrives at {a[i]} "
                    f"before row {i - 1} at {a[i - 1]}"
                )
        for k in _INT_COLS:
            _first_bad(f"{k} must be >= 1", cols[k] < 1)
        for k in ("ttft_slo_s", "tpot_slo_s", "e2e_slo_s"):
            v = cols[k]
            _first_bad(f"{k} must not be NaN", np.isnan(v))
            _first_bad(f"{k} must be > 0 (inf = no target)", v <= 0)
        u = cols["utility"]
        _first_bad("utility must be finite and >= 0", ~np.isfinite(u) | (u < 0))
        for k, v in cols.items():
            v = np.ascontiguousarray(v)
            v.setflags(write=False)
            object.__setattr__(self, k, v)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "prefix_ids", None)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Workload is immutable")

    # -- sequence protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.arrival_s.size)

    @overload
    def __getitem__(self, i: int) -> Request: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Request, ...]: ...
    def __getitem__(self, i: int | slice) -> Request | tuple[Request, ...]:
        return self.requests[i]

    def __iter__(self) -> Iterator[Request]:
        return iter(self.requests)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Workload):
            return NotImplemented
        return len(self) == len(other) and all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in (*_FLOAT_COLS, *_INT_COLS, "class_label", "origin")
        ) and self.prefix_ids == other.prefix_ids

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        nm = f" {self.name!r}" if self.name else ""
        return f"<Workload{nm}: {len(self)} requests>"

    @property
    def requests(self) -> tuple[Request, ...]:
        """The rows as :class:`Request` objects (built once, on first access)."""
        if self._requests is None:
            reqs = tuple(self._row(i) for i in range(len(self)))
            object.__setattr__(self, "_requests", reqs)
            return reqs
        return self._requests

    def _row(self, i: int) -> Request:
        return Request(
            id=i,
            arrival_s=float(self.arrival_s[i]),
            prompt_tokens=int(self.prompt_tokens[i]),
            output_tokens=int(self.output_tokens[i]),
            slo=SLO(float(self.ttft_slo_s[i]), float(self.tpot_slo_s[i]), float(self.e2e_slo_s[i])),
            utility=float(self.utility[i]),
            class_label=str(self.class_label[i]),
            origin=str(self.origin[i]),
        )

    @property
    def work_tokens(self) -> np.ndarray:
        """Per-request tokens computed without preemption (``prompt + output - 1``)."""
        return self.prompt_tokens + self.output_tokens - 1

    def columns(self) -> dict[str, np.ndarray]:
        """All columns by name (read-only arrays)."""
        return {k: getattr(self, k) for k in (*_FLOAT_COLS, *_INT_COLS, "class_label", "origin")}

    def replace(self, **cols: Any) -> Workload:
        """A new workload with some columns replaced (validated again)."""
        name = cols.pop("name", self.name)
        base = self.columns()
        base.update(cols)
        w = Workload.from_arrays(name=name, **base)
        return w if self.prefix_ids is None else w.with_prefix_ids(self.prefix_ids)

    def subset(self, idx: Any) -> Workload:
        """Rows ``idx`` (sorted), renumbered 0..k-1 (prefix ids kept)."""
        idx = np.sort(np.asarray(idx, dtype=np.int64))
        w = Workload.from_arrays(name=self.name, **{k: v[idx] for k, v in self.columns().items()})
        return w if self.prefix_ids is None else w.with_prefix_ids(self.prefix_ids.subset(idx))

    def with_prefix_ids(self, prefix_ids: PrefixIds | None) -> Workload:
        """The same requests with content identity ``prefix_ids`` (``None``: none).

        Raises :class:`WorkloadError` if it has another number of rows or describes more
        tokens than a request ever computes (``prompt + output - 1``).
        """
        if prefix_ids is not None:
            if not isinstance(prefix_ids, PrefixIds):
                raise WorkloadError(f"prefix_ids must be a PrefixIds, got {type(prefix_ids).__name__}")
            if len(prefix_ids) != len(self):
                raise WorkloadError(f"prefix_ids has {len(prefix_ids)} rows, workload {len(self)}")
            _first_bad("prefix_ids.tokens must be <= prompt_tokens + output_tokens - 1",
                       prefix_ids.tokens > self.work_tokens)
        w = Workload.__new__(Workload)
        for k in Workload.__slots__:
            object.__setattr__(w, k, getattr(self, k))
        object.__setattr__(w, "prefix_ids", prefix_ids)
        return w

    def head(self, n: int) -> Workload:
        """The first ``n`` requests."""
        return self.subset(np.arange(min(n, len(self))))


def _first_bad(msg: str, mask: np.ndarray) -> None:
    if mask.size and bool(mask.any()):
        i = int(np.flatnonzero(mask)[0])
        raise WorkloadError(f"row {i}: {msg}")
