"""Step times composed from per-layer operator tables (an engine *built* from a layer profile).

A layerwise profile (LLMServingSim's format, see ``papers/engine-model.md``) times every operator
of one decoder layer separately: the dense ops against the step's token count, the attention
kernel on a 4-D grid of mixed batches and the LM head / sampler against the number of
sequences. One iteration of a ``num_layers`` model is then::

    T = num_layers * (dense_layer(N_pad) + attention(c, k, B, L) + gap)
        + dense_model(N_pad) + per_sequence(S) + step_overhead_s

with ``N`` the tokens computed in the step (prefill + one per decode), ``S`` the sequences,
``B`` the decoding sequences at mean context ``L`` and the prefill chunks summarised below.
``N_pad`` is ``N`` rounded up to the next CUDA-graph capture size when the step runs as a graph
(vLLM pads a decode-only batch and a small mixed batch to the captured size); ``gap`` is the
*measured* per-layer difference between a whole step and the sum of its kernels
(:attr:`LayerwiseEngineModel.graph_gap_s` for decode-only steps run as one CUDA graph,
:attr:`LayerwiseEngineModel.eager_gap_s` otherwise).

Attention of several prefill chunks: the grid holds one chunk ``c`` after ``k`` cached tokens
plus ``B`` decodes. ``s`` chunks in one step are taken as ``s`` equal chunks of ``P / s``
tokens after ``(C_pre - P) / s`` cached tokens each (``C_pre`` = ``prefill_context_tokens``);
the first is looked up with the decodes, each further chunk adds its prefill-only time minus
the kernel's launch floor (the smallest measured prefill). LLMServingSim instead sums chunks
and cached tokens into one chunk, which charges ``s`` fresh prompts ``s`` times their causal
work; see the Notes of :class:`LayerwiseEngineModel`.

Interpolation is linear on every axis (the kernels are linear in each axis: LLMServingSim's
trace generator documents the same choice), clamped below the first grid point and
extrapolated from the last segment above the last one; it never raises ``KeyError``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slo_opt.engine import BatchShape

__all__ = ["LayerwiseEngineModel", "interp1", "interp4", "load_layerwise"]


def _bracket(x: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower index and weight of ``x`` on a sorted axis (clamped below, extrapolated above)."""
    n = axis.size
    if n == 1:
        return np.zeros(x.shape, np.int64), np.zeros(x.shape)
    i = np.clip(np.searchsorted(axis, x, side="right") - 1, 0, n - 2)
    lo, hi = axis[i], axis[i + 1]
    t = (x - lo) / (hi - lo)
    return i, np.maximum(t, 0.0)


def interp1(x: Any, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Piecewise-linear ``ys(xs)`` at ``x`` (vectorised; clamp below, extrapolate above).

    Extrapolation above the last point uses the last segment's slope, floored at 0.
    """
    x = np.asarray(x, dtype=np.float64)
    i, t = _bracket(x, xs)
    if xs.size == 1:
        return np.full(x.shape, float(ys[0]))
    y0, y1 = ys[i], ys[i + 1]
    slope_ok = (t <= 1.0) | (y1 >= y0)
    return np.where(slope_ok, y0 + t * (y1 - y0), y1)


def interp4(axes: tuple[np.ndarray, ...], grid: np.ndarray, *coords: Any) -> np.ndarray:
    """Multilinear interpolation of a complete 4-D grid (same edge rules as :func:`interp1`)."""
    br = [_bracket(np.asarray(c, dtype=np.float64), a) for c, a in zip(coords, axes)]
    out = np.zeros(np.broadcast(*[b[0] for b in br]).shape)
    for corner in range(16):
        w = 1.0
        idx = []
        for d in range(4):
            bit = (corner >> d) & 1
            i, t = br[d]
            if axes[d].size == 1:
                idx.append(np.zeros_like(i))
                if bit:
                    w = w * 0.0
                continue
            idx.append(i + bit)
            w = w * (t if bit else (1.0 - t))
        out = out + w * grid[tuple(idx)]
    return np.maximum(out, 0.0)


@dataclass(frozen=True, eq=False)
class LayerwiseEngineModel:
    """Engine model built from a per-layer operator profile (see module docstring).

    Parameters
    ----------
    name : str
        ``"<gpu>/<model>"``.
    num_layers : int
        Decoder layers (the per-layer tables are multiplied by it).
    dense_tokens : numpy.ndarray
        Token axis of the dense tables, sorted, shape ``(nt,)``.
    layer_dense_s : numpy.ndarray
        Sum over one layer's dense operators (QKV, O, gate-up, down, activation, RoPE, two
        RMSNorms) in seconds at ``dense_tokens``.
    model_dense_s : numpy.ndarray
        Once-per-step dense operators (embedding, final norm) in seconds.
    seq_axis : numpy.ndarray
        Sequence axis of the per-sequence table.
    per_seq_s : numpy.ndarray
        LM head + sampler seconds at ``seq_axis``.
    attn_axes : tuple of 4 numpy.ndarray
        ``(prefill_chunk, kv_prefill, n_decode, kv_decode)`` axes of the attention grid.
    attn_s : numpy.ndarray
        One layer's attention seconds on the complete grid, shape ``(npc, nkp, nnd, nkd)``.
    graph_capture_sizes : tuple of int
        vLLM's CUDA-graph capture sizes (token counts); empty: no graphs, no padding.
    graph_gap_s : float
        Per-layer seconds added to decode-only steps that run as one CUDA graph (measured:
        whole graph step minus its kernel sum, per layer; may be negative).
    eager_gap_s : float
        Per-layer seconds added to the other steps (kernels launched one by one or piecewise).
    step_overhead_s : float
        Seconds added once per step (host work the engine does not overlap).
    warmup_s : float
        Seconds a freshly started engine is busy before its first step can start (start-up
        work the first request pays). Not part of :meth:`step_time_s` (the model is
        stateless); callers that model start-up delay the first step by it
        (``benchmarks/fidelity_runs.py``). 0 in the shipped profiles (see the paper).
    kv_capacity_tokens, kv_block_tokens, max_batch_tokens, kv_bytes_per_token,
    host_bandwidth_bytes_per_s
        The :class:`~slo_opt.engine.EngineModel` attributes.
    source : str
        Where the tables come from.

    Notes
    -----
    Deviation from LLMServingSim's trace generator (``serving/core/trace_generator.py``),
    which looks the attention up at the *sum* of the prefill chunks and of their cached tokens:
    here ``s`` chunks are ``s`` equal chunks (module docstring). For one chunk both are the
    same lookup. LLMServingSim also adds no CUDA-graph padding or gap; vLLM pads graph steps.
    """

    name: str
    num_layers: int
    dense_tokens: np.ndarray
    layer_dense_s: np.ndarray
    model_dense_s: np.ndarray
    seq_axis: np.ndarray
    per_seq_s: np.ndarray
    attn_axes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    attn_s: np.ndarray
    graph_capture_sizes: tuple[int, ...] = ()
    graph_gap_s: float = 0.0
    eager_gap_s: float = 0.0
    step_overhead_s: float = 0.0
    warmup_s: float = 0.0
    kv_capacity_tokens: int = 16384
    kv_block_tokens: int = 16
    max_batch_tokens: int = 8192
    kv_bytes_per_token: int = 131072
    host_bandwidth_bytes_per_s: float = 25e9
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise ValueError(f"{self.name}: num_layers must be >= 1")
        for nm in ("dense_tokens", "layer_dense_s", "model_dense_s", "seq_axis", "per_seq_s"):
            a = getattr(self, nm)
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.size < 1:
                raise ValueError(f"{self.name}: {nm} must be a non-empty 1-D array")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{self.name}: {nm} must be finite")
        if self.dense_tokens.size != self.layer_dense_s.size or \
                self.dense_tokens.size != self.model_dense_s.size:
            raise ValueError(f"{self.name}: dense tables must match dense_tokens")
        if self.seq_axis.size != self.per_seq_s.size:
            raise ValueError(f"{self.name}: per_seq_s must match seq_axis")
        for a in (self.dense_tokens, self.seq_axis, *self.attn_axes):
            if np.any(np.diff(a) <= 0):
                raise ValueError(f"{self.name}: table axes must be strictly increasing")
        if self.attn_s.shape != tuple(a.size for a in self.attn_axes):
            raise ValueError(f"{self.name}: attention grid shape {self.attn_s.shape} does not "
                             "match its axes")
        if not np.all(np.isfinite(self.attn_s)) or np.any(self.attn_s < 0):
            raise ValueError(f"{self.name}: attention grid must be complete, finite and >= 0")
        if list(self.graph_capture_sizes) != sorted(set(self.graph_capture_sizes)) or \
                any(int(s) < 1 for s in self.graph_capture_sizes):
            raise ValueError(f"{self.name}: graph_capture_sizes must be increasing and >= 1")
        if self.kv_block_tokens < 1 or self.kv_capacity_tokens % self.kv_block_tokens:
            raise ValueError("kv_capacity_tokens must be a positive multiple of kv_block_tokens")
        if self.max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be >= 1")
        if not (np.isfinite(self.warmup_s) and self.warmup_s >= 0):
            raise ValueError(f"{self.name}: warmup_s must be finite and >= 0")

    # -- pieces ----------------------------------------------------------------------------
    def padded_tokens(self, num_tokens: np.ndarray) -> np.ndarray:
        """Token count a CUDA-graph step runs at (next capture size; unchanged above the last)."""
        n = np.asarray(num_tokens, dtype=np.int64)
        if not self.graph_capture_sizes:
            return n
        sizes = np.asarray(self.graph_capture_sizes, dtype=np.int64)
        i = np.searchsorted(sizes, n, side="left")
        inside = i < sizes.size
        return np.where(inside, sizes[np.minimum(i, sizes.size - 1)], n)

    def attention_s(self, prefill_tokens: Any, prefill_seqs: Any, prefill_context_tokens: Any,
                    decode_seqs: Any, decode_context_tokens: Any) -> np.ndarray:
        """One layer's attention seconds (vectorised over the batch fields)."""
        p = np.asarray(prefill_tokens, dtype=np.float64)
        s = np.maximum(np.asarray(prefill_seqs, dtype=np.float64), 1.0)
        cpre = np.asarray(prefill_context_tokens, dtype=np.float64)
        b = np.asarray(decode_seqs, dtype=np.float64)
        cdec = np.asarray(decode_context_tokens, dtype=np.float64)
        chunk = p / s
        prior = np.maximum(cpre - p, 0.0) / s
        kd = np.where(b > 0, cdec / np.maximum(b, 1.0), 0.0)
        a = interp4(self.attn_axes, self.attn_s, chunk, prior, b, kd)
        extra = np.maximum(s - 1.0, 0.0) * (p > 0)
        if np.any(extra > 0):
            pre_only = interp4(self.attn_axes, self.attn_s, chunk, prior, 0.0, 0.0)
            floor = float(self.launch_floor_s)
            a = a + extra * np.maximum(pre_only - floor, 0.0)
        return a

    @property
    def launch_floor_s(self) -> float:
        """Smallest measured prefill-only attention time (one kernel launch, tiny chunk)."""
        pc = self.attn_axes[0]
        j = 1 if pc.size > 1 and pc[0] == 0 else 0
        return float(self.attn_s[j, 0, 0, 0])

    # -- the engine protocol --------------------------------------------------------------
    def batch_step_times_s(self, prefill_tokens: np.ndarray, decode_seqs: np.ndarray,
                           decode_context_tokens: np.ndarray, prefill_seqs: np.ndarray,
                           prefill_context_tokens: np.ndarray) -> np.ndarray:
        """Step times of arrays of batch fields (0 for an empty step)."""
        p = np.asarray(prefill_tokens, dtype=np.int64)
        b = np.asarray(decode_seqs, dtype=np.int64)
        ps = np.asarray(prefill_seqs, dtype=np.int64)
        n = p + b
        npad = self.padded_tokens(n)
        graph = (p == 0) & (n <= (self.graph_capture_sizes[-1] if self.graph_capture_sizes
                                  else -1))
        nf = npad.astype(np.float64)
        t = self.num_layers * interp1(nf, self.dense_tokens, self.layer_dense_s)
        t = t + interp1(nf, self.dense_tokens, self.model_dense_s)
        t = t + self.num_layers * self.attention_s(p, ps, prefill_context_tokens, b,
                                                   decode_context_tokens)
        t = t + interp1((ps + b).astype(np.float64), self.seq_axis, self.per_seq_s)
        t = t + self.num_layers * np.where(graph, self.graph_gap_s, self.eager_gap_s)
        t = t + self.step_overhead_s
        t = np.maximum(t, 0.0)
        return np.where(n == 0, 0.0, t)

    def step_time_s(self, batch: BatchShape) -> float:
        """Seconds for one iteration (the same floats as :meth:`batch_step_times_s`)."""
        return float(self.batch_step_times_s(
            np.array([batch.prefill_tokens]), np.array([batch.decode_seqs]),
            np.array([batch.decode_context_tokens]), np.array([batch.prefill_seqs]),
            np.array([batch.prefill_context_tokens]))[0])

    def decode_step_times_s(self, decode_seqs: int, decode_context_tokens: int,
                            num_steps: int) -> np.ndarray:
        """Pure-decode steps ``j = 0..num_steps-1`` at context ``ctx + j * decode_seqs``."""
        if num_steps < 0:
            raise ValueError("num_steps must be >= 0")
        k = np.arange(num_steps, dtype=np.int64)
        z = np.zeros(num_steps, dtype=np.int64)
        return self.batch_step_times_s(z, np.full(num_steps, decode_seqs, np.int64),
                                       decode_context_tokens + k * decode_seqs, z, z)

    # -- serialisation --------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        """The tables in microseconds (the profile file format, without provenance)."""
        us = 1e6
        return {
            "format": "slo_opt layerwise engine v1",
            "name": self.name,
            "num_layers": self.num_layers,
            "dense": {"tokens": self.dense_tokens.tolist(),
                      "layer_us": np.round(self.layer_dense_s * us, 4).tolist(),
                      "model_us": np.round(self.model_dense_s * us, 4).tolist()},
            "per_sequence": {"sequences": self.seq_axis.tolist(),
                             "us": np.round(self.per_seq_s * us, 4).tolist()},
            "attention": {"axes": {k: a.tolist() for k, a in zip(
                ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode"), self.attn_axes)},
                "us": np.round(self.attn_s * us, 4).tolist()},
            "graph_capture_sizes": list(self.graph_capture_sizes),
            "graph_gap_us": round(self.graph_gap_s * us, 4),
            "eager_gap_us": round(self.eager_gap_s * us, 4),
            "step_overhead_us": round(self.step_overhead_s * us, 4),
            "warmup_us": round(self.warmup_s * us, 4),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any], **kw: Any) -> LayerwiseEngineModel:
        """Inverse of :meth:`to_json_dict` (``kw`` overrides engine attributes)."""
        if d.get("format") != "slo_opt layerwise engine v1":
            raise ValueError(f"not a layerwise engine profile: format {d.get('format')!r}")
        us = 1e-6
        ax = d["attention"]["axes"]
        kw.setdefault("name", d["name"])
        return cls(
            num_layers=int(d["num_layers"]),
            dense_tokens=np.asarray(d["dense"]["tokens"], dtype=np.float64),
            layer_dense_s=np.asarray(d["dense"]["layer_us"], dtype=np.float64) * us,
            model_dense_s=np.asarray(d["dense"]["model_us"], dtype=np.float64) * us,
            seq_axis=np.asarray(d["per_sequence"]["sequences"], dtype=np.float64),
            per_seq_s=np.asarray(d["per_sequence"]["us"], dtype=np.float64) * us,
            attn_axes=tuple(np.asarray(ax[k], dtype=np.float64) for k in (  # type: ignore[arg-type]
                "prefill_chunk", "kv_prefill", "n_decode", "kv_decode")),
            attn_s=np.asarray(d["attention"]["us"], dtype=np.float64) * us,
            graph_capture_sizes=tuple(int(x) for x in d.get("graph_capture_sizes", ())),
            graph_gap_s=float(d.get("graph_gap_us", 0.0)) * us,
            eager_gap_s=float(d.get("eager_gap_us", 0.0)) * us,
            step_overhead_s=float(d.get("step_overhead_us", 0.0)) * us,
            warmup_s=float(d.get("warmup_us", 0.0)) * us,
            **kw)


def load_layerwise(path: str | os.PathLike[str], **kw: Any) -> LayerwiseEngineModel:
    """Read a layerwise engine profile JSON (``models/profiles/<gpu>/<model>.layerwise.json``)."""
    with open(path) as f:
        d = json.load(f)
    kw.setdefault("source", f"{d.get('name', '')} [layerwise, built]")
    return LayerwiseEngineModel.from_json_dict(d, **kw)
