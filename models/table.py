"""Profile CSV rows and the table-interpolation engine model.

Profile CSV format (``models/profiles/<gpu>/<model>.csv``; milliseconds only here)::

    gpu,model,phase,batch_size,tokens_per_seq,context_tokens,latency_ms[,prefill_chunk,
    prefill_prior_tokens,power_w,...]

Row semantics by ``phase``:

``prefill``
    ``batch_size`` prompts of ``tokens_per_seq`` tokens each, every one starting after
    ``context_tokens`` already-cached tokens (normally 0).
``decode``
    ``batch_size`` sequences computing one token each; ``context_tokens`` is the KV length of
    each sequence *after* the step (what attention reads).
``mixed``
    one prefill chunk of ``prefill_chunk`` tokens (after ``prefill_prior_tokens`` cached tokens,
    default 0) plus ``batch_size`` decodes at ``context_tokens`` each, as chunked-prefill engines
    run.

:class:`TableEngineModel` interpolates a pure-decode grid over (batch, context per sequence) and
a prefill curve over tokens; outside the grid it extrapolates linearly from the last segment
(slope clamped at >= 0) and never raises ``KeyError``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from slo_opt.engine import BatchShape

__all__ = ["ProfileRow", "TableEngineModel", "read_profile_csv", "row_batch_shape"]

PHASES = ("prefill", "decode", "mixed")


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One measured iteration (see the module docstring for the semantics)."""

    gpu: str
    model: str
    phase: str
    batch_size: int
    tokens_per_seq: int
    context_tokens: int
    latency_s: float
    prefill_chunk: int = 0
    prefill_prior_tokens: int = 0
    power_w: float = math.nan

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {self.phase!r}")
        if self.batch_size < 0 or self.tokens_per_seq < 0 or self.context_tokens < 0:
            raise ValueError("batch_size, tokens_per_seq, context_tokens must be >= 0")
        if not (self.latency_s > 0 and math.isfinite(self.latency_s)):
            raise ValueError(f"latency must be finite and > 0, got {self.latency_s}")

    @property
    def shape(self) -> BatchShape:
        """The :class:`BatchShape` this row measured."""
        return row_batch_shape(self)


def row_batch_shape(row: ProfileRow) -> BatchShape:
    """Map a profile row to the engine's :class:`BatchShape`."""
    if row.phase == "prefill":
        b, p, c = row.batch_size, row.tokens_per_seq, row.context_tokens
        return BatchShape(prefill_tokens=b * p, prefill_seqs=b, prefill_context_tokens=b * (c + p))
    if row.phase == "decode":
        return BatchShape(decode_seqs=row.batch_size,
                          decode_context_tokens=row.batch_size * row.context_tokens)
    p = row.prefill_chunk
    return BatchShape(prefill_tokens=p, prefill_seqs=1 if p else 0,
                      prefill_context_tokens=(row.prefill_prior_tokens + p) if p else 0,
                      decode_seqs=row.batch_size,
                      decode_context_tokens=row.batch_size * row.context_tokens)


def _num(d: dict[str, str], key: str, default: float = 0.0) -> float:
    v = d.get(key)
    return default if v is None or v == "" else float(v)


def read_profile_csv(path: str | os.PathLike[str]) -> list[ProfileRow]:
    """Read a profile CSV (``latency_ms`` converted to seconds)."""
    rows: list[ProfileRow] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"gpu", "model", "phase", "batch_size", "tokens_per_seq", "context_tokens",
                "latency_ms"}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for d in reader:
            rows.append(ProfileRow(
                gpu=d["gpu"], model=d["model"], phase=d["phase"],
                batch_size=int(_num(d, "batch_size")),
                tokens_per_seq=int(_num(d, "tokens_per_seq")),
                context_tokens=int(_num(d, "context_tokens")),
                latency_s=_num(d, "latency_ms") / 1e3,
                prefill_chunk=int(_num(d, "prefill_chunk")),
                prefill_prior_tokens=int(_num(d, "prefill_prior_tokens")),
                power_w=_num(d, "power_w", math.nan)))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _interp1(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Piecewise-linear interpolation with linear extrapolation (slope >= 0) at both ends."""
    if xs.size == 1:
        return float(ys[0])
    if x <= xs[0]:
        slope = max((ys[1] - ys[0]) / (xs[1] - xs[0]), 0.0)
        return float(max(ys[0] + slope * (x - xs[0]), 0.0))
    if x >= xs[-1]:
        slope = max((ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), 0.0)
        return float(ys[-1] + slope * (x - xs[-1]))
    return float(np.interp(x, xs, ys))


def _medians(keys: Sequence[tuple[float, ...]], vals: Sequence[float]) -> dict:
    acc: dict[tuple[float, ...], list[float]] = {}
    for k, v in zip(keys, vals):
        acc.setdefault(k, []).append(v)
    return {k: float(np.median(v)) for k, v in acc.items()}


@dataclass(frozen=True)
class TableEngineModel:
    """Interpolate measured step times.

    Parameters
    ----------
    name : str
        Identifier (``"h100/llama-3.1-8b"``).
    decode_batch : numpy.ndarray
        Sorted batch sizes of the decode grid, shape ``(nb,)``.
    decode_context : numpy.ndarray
        Sorted per-sequence context lengths, shape ``(nc,)`` (length 1 = context-independent).
    decode_time_s : numpy.ndarray
        Step times, shape ``(nb, nc)``.
    prefill_tokens : numpy.ndarray or None
        Sorted total prefill tokens of the prefill curve.
    prefill_time_s : numpy.ndarray or None
        Prefill step times at ``prefill_tokens``.
    prefill_fallback_s_per_token : float
        Used for prefill work when no prefill curve exists: seconds per prefill token added
        to the decode time of ``max(decode_seqs, 1)``.

    Notes
    -----
    A mixed step costs ``T_pre(P + B) + T_dec(B, ctx) - T_dec(B, ctx_min)``: the linear layers
    are charged by the token count through the prefill curve, the decode attention by its
    context increment over the grid's smallest context.
    """

    name: str
    decode_batch: np.ndarray
    decode_context: np.ndarray
    decode_time_s: np.ndarray
    prefill_tokens: np.ndarray | None = None
    prefill_time_s: np.ndarray | None = None
    prefill_fallback_s_per_token: float = 0.0
    kv_capacity_tokens: int = 16384
    kv_block_tokens: int = 16
    max_batch_tokens: int = 8192
    kv_bytes_per_token: int = 131072
    host_bandwidth_bytes_per_s: float = 25e9
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        nb, nc = self.decode_batch.size, self.decode_context.size
        if self.decode_time_s.shape != (nb, nc) or nb < 1:
            raise ValueError(f"decode_time_s must have shape ({nb}, {nc})")
        if np.any(np.diff(self.decode_batch) <= 0) or np.any(np.diff(self.decode_context) <= 0):
            raise ValueError("decode grid axes must be strictly increasing")
        if not np.all(self.decode_time_s > 0):
            raise ValueError("decode times must be > 0")
        if (self.prefill_tokens is None) != (self.prefill_time_s is None):
            raise ValueError("prefill_tokens and prefill_time_s go together")
        if self.kv_capacity_tokens % self.kv_block_tokens:
            raise ValueError("kv_capacity_tokens must be a multiple of kv_block_tokens")

    # -- interpolation ------------------------------------------------------------------
    def decode_time_at(self, batch: float, context_per_seq: float) -> float:
        """Pure-decode step time at a (batch, per-sequence context) point."""
        col = np.array([_interp1(batch, self.decode_batch, self.decode_time_s[:, j])
                        for j in range(self.decode_context.size)])
        return _interp1(context_per_seq, self.decode_context, col)

    def prefill_time_at(self, tokens: float) -> float:
        """Prefill step time of ``tokens`` prompt tokens."""
        if self.prefill_tokens is None or self.prefill_time_s is None:
            return self.decode_time_at(1, float(self.decode_context[0])) + \
                self.prefill_fallback_s_per_token * tokens
        return _interp1(tokens, self.prefill_tokens, self.prefill_time_s)

    def step_time_s(self, batch: BatchShape) -> float:
        """Interpolated step time (see Notes)."""
        b, p = batch.decode_seqs, batch.prefill_tokens
        if b == 0 and p == 0:
            return 0.0
        ctx = batch.decode_context_tokens / b if b else 0.0
        if p == 0:
            return self.decode_time_at(b, ctx)
        if b == 0:
            return self.prefill_time_at(p)
        if self.prefill_tokens is None:
            return self.decode_time_at(b, ctx) + self.prefill_fallback_s_per_token * p
        c0 = float(self.decode_context[0])
        extra = max(self.decode_time_at(b, ctx) - self.decode_time_at(b, c0), 0.0)
        return self.prefill_time_at(p + b) + extra

    def decode_step_times_s(self, decode_seqs: int, decode_context_tokens: int,
                            num_steps: int) -> np.ndarray:
        """Per-step pure-decode times (same floats as :meth:`step_time_s`)."""
        return np.array([
            self.step_time_s(BatchShape(decode_seqs=decode_seqs,
                                        decode_context_tokens=decode_context_tokens
                                        + j * decode_seqs))
            for j in range(num_steps)], dtype=float)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Iterable[ProfileRow], name: str, **kw) -> TableEngineModel:
        """Build from profile rows (medians of repeated points).

        Decode rows must form a full (batch x context) grid; missing cells are filled from
        the nearest measured context of the same batch. Prefill rows with ``context_tokens
        == 0`` give the prefill curve over total tokens.
        """
        rows = list(rows)
        dec = [r for r in rows if r.phase == "decode"]
        if not dec:
            raise ValueError(f"{name}: no decode rows")
        dmed = _medians([(r.batch_size, r.context_tokens) for r in dec],
                        [r.latency_s for r in dec])
        bs = np.array(sorted({k[0] for k in dmed}), dtype=float)
        cs = np.array(sorted({k[1] for k in dmed}), dtype=float)
        grid = np.empty((bs.size, cs.size))
        for i, b in enumerate(bs):
            have = sorted(k[1] for k in dmed if k[0] == b)
            for j, c in enumerate(cs):
                if (b, c) in dmed:
                    grid[i, j] = dmed[(b, c)]
                else:
                    xs = np.array(have, dtype=float)
                    ys = np.array([dmed[(b, h)] for h in have])
                    grid[i, j] = _interp1(c, xs, ys)
        pre = [r for r in rows if r.phase == "prefill" and r.context_tokens == 0]
        ptok = ptime = None
        if pre:
            pmed = _medians([(r.batch_size * r.tokens_per_seq,) for r in pre],
                            [r.latency_s for r in pre])
            keys = sorted(pmed)
            ptok = np.array([k[0] for k in keys], dtype=float)
            ptime = np.array([pmed[k] for k in keys])
        return cls(name=name, decode_batch=bs, decode_context=cs, decode_time_s=grid,
                   prefill_tokens=ptok, prefill_time_s=ptime, **kw)
