"""Frozen value types: :class:`SLO`, :class:`Request` and :class:`Workload`.

Requests are immutable facts; runtime progress lives in the simulator. One invariant makes
numpy code simple: *request id == row index, in arrival order*.

A :class:`Workload` is column-oriented (numpy arrays, read-only) so that traces of a million
requests cost arrays, not Python objects; :class:`Request` objects are materialised on demand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

__all__ = ["SLO", "Request", "Workload", "WorkloadError"]


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
    """

    __slots__ = (
        "_requests",
        "arrival_s",
        "class_label",
        "e2e_slo_s",
        "name",
        "origin",
        "output_tokens",
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
        )

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
        return Workload.from_arrays(name=name, **base)

    def subset(self, idx: Any) -> Workload:
        """Rows ``idx`` (sorted), renumbered 0..k-1."""
        idx = np.sort(np.asarray(idx, dtype=np.int64))
        return Workload.from_arrays(name=self.name, **{k: v[idx] for k, v in self.columns().items()})

    def head(self, n: int) -> Workload:
        """The first ``n`` requests."""
        return self.subset(np.arange(min(n, len(self))))


def _first_bad(msg: str, mask: np.ndarray) -> None:
    if mask.size and bool(mask.any()):
        i = int(np.flatnonzero(mask)[0])
        raise WorkloadError(f"row {i}: {msg}")
