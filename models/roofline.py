"""Roofline step-time model with efficiency factors fitted on measured GPUs and transferred.

For a batch with ``N = P + B`` tokens (``P`` prefill, ``B`` decodes), per step::

    T_lin  = max(W / (eta_mem * BW),  2 * params * N / (eta_flops * FLOPS))   # weights / GEMMs
    T_kv   = (C_dec + C_pre) * kv_bytes_per_token / (eta_mem * BW)            # KV reads
    T_attn = Q * 4 * layers * heads * head_dim / (eta_flops * FLOPS)          # QK^T, AV FLOPs
    T      = overhead_s + per_seq_s * B + T_lin + T_kv + T_attn

with ``W`` the weight bytes, ``C`` the attended context tokens and ``Q`` the prefill
token-pair count (as in :mod:`slo_opt.models.linear`). ``eta_mem, eta_flops, overhead_s,
per_seq_s`` are fitted per measured (GPU, model) by :func:`fit_roofline`; other GPUs use the
mean efficiencies of our measured profiles (:func:`transferred_efficiencies`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.models.hardware import GPU, GPUS, get_gpu
from slo_opt.models.kv import (
    MODEL_SHAPES,
    ModelShape,
    get_shape,
    kv_bytes_per_token,
    kv_capacity_tokens,
    weight_bytes,
)
from slo_opt.models.table import ProfileRow

__all__ = [
    "DEFAULT_EFFICIENCIES",
    "RooflineEngineModel",
    "fit_roofline",
    "mean_efficiencies",
    "prefill_s_per_token",
    "roofline_from_efficiencies",
    "transferred_efficiencies",
    "transferred_roofline",
]

DEFAULT_EFFICIENCIES = {"eta_mem": 0.8, "eta_flops": 0.6, "overhead_s": 1.0e-3,
                        "per_seq_s": 5e-6}
"""Used when no measured profile exists: aiconfigurator's 0.8 bandwidth factor (B.6)."""


@dataclass(frozen=True, slots=True)
class RooflineEngineModel:
    """Roofline step time of ``shape`` on ``gpu`` (see module docstring)."""

    name: str
    gpu: GPU
    shape: ModelShape
    eta_mem: float = 0.8
    eta_flops: float = 0.6
    overhead_s: float = 1.0e-3
    per_seq_s: float = 5e-6
    kv_capacity_tokens: int = 16384
    kv_block_tokens: int = 16
    max_batch_tokens: int = 8192
    kv_bytes_per_token: int = 131072
    host_bandwidth_bytes_per_s: float = 25e9
    tensor_parallel: int = 1
    interconnect_bytes_per_s: float = 300e9
    allreduce_latency_s: float = 8e-6
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not (0 < self.eta_mem <= 1.5 and 0 < self.eta_flops <= 1.5):
            raise ValueError(f"{self.name}: efficiencies must be in (0, 1.5]")
        if self.overhead_s < 0 or self.per_seq_s < 0:
            raise ValueError(f"{self.name}: overheads must be >= 0")
        if self.tensor_parallel < 1 or self.interconnect_bytes_per_s <= 0:
            raise ValueError(f"{self.name}: tensor_parallel >= 1 and a positive interconnect "
                             "bandwidth are required")

    def components_s(self, batch: BatchShape) -> tuple[float, float, float, float]:
        """``(T_weights, T_gemm, T_kv, T_attn)``: the roofline terms before max/sum."""
        bw = self.eta_mem * self.gpu.memory_bandwidth_bytes_per_s * self.tensor_parallel
        fl = self.eta_flops * self.gpu.peak_bf16_flops_per_s * self.tensor_parallel
        n = batch.prefill_tokens + batch.decode_seqs
        q = batch.prefill_tokens * batch.prefill_context_tokens / max(batch.prefill_seqs, 1)
        kvb = kv_bytes_per_token(self.shape)
        return (weight_bytes(self.shape) / bw, self.shape.flops_per_token * n / fl,
                batch.context_tokens * kvb / bw, q * self.shape.attn_flops_per_token_pair / fl)

    def step_time_s(self, batch: BatchShape) -> float:
        """Roofline step time (0 for an empty batch)."""
        if batch.prefill_tokens == 0 and batch.decode_seqs == 0:
            return 0.0
        tw, tg, tkv, ta = self.components_s(batch)
        t = self.overhead_s + self.per_seq_s * batch.decode_seqs + max(tw, tg) + tkv + ta
        if self.tensor_parallel > 1:
            t += self.allreduce_s(batch.prefill_tokens + batch.decode_seqs)
        return t

    def allreduce_s(self, num_tokens: int) -> float:
        """Tensor-parallel communication per step: two ring all-reduces of the activations
        (``num_tokens x hidden`` bf16) per layer, ``2 (t-1)/t`` of the bytes over the link."""
        t = self.tensor_parallel
        if t <= 1:
            return 0.0
        nbytes = num_tokens * self.shape.hidden_size * 2
        per = self.allreduce_latency_s + 2 * (t - 1) / t * nbytes / self.interconnect_bytes_per_s
        return 2 * self.shape.num_layers * per

    def utilization(self, batch: BatchShape) -> float:
        """Fraction of the step the roofline's binding resource is busy (for power)."""
        t = self.step_time_s(batch)
        if t <= 0:
            return 0.0
        tw, tg, tkv, ta = self.components_s(batch)
        return float(min(1.0, (max(tw, tg) + tkv + ta) / t))

    def decode_step_times_s(self, decode_seqs: int, decode_context_tokens: int,
                            num_steps: int) -> np.ndarray:
        """Per-step pure-decode times (same floats as :meth:`step_time_s`, vectorised).

        The terms are evaluated in the order of :meth:`step_time_s`, so each element is the
        float that method returns (tested).
        """
        if decode_seqs <= 0 or self.tensor_parallel > 1:
            return np.array([self.step_time_s(BatchShape(
                decode_seqs=decode_seqs, decode_context_tokens=decode_context_tokens
                + j * decode_seqs)) for j in range(num_steps)], dtype=float)
        bw = self.eta_mem * self.gpu.memory_bandwidth_bytes_per_s
        fl = self.eta_flops * self.gpu.peak_bf16_flops_per_s
        tw = weight_bytes(self.shape) / bw
        tg = self.shape.flops_per_token * decode_seqs / fl
        ta = 0 * self.shape.attn_flops_per_token_pair / fl
        base = self.overhead_s + self.per_seq_s * decode_seqs + max(tw, tg)
        ctx = decode_context_tokens + decode_seqs * np.arange(num_steps, dtype=np.int64)
        tkv = ctx * kv_bytes_per_token(self.shape) / bw
        return (base + tkv) + ta


    def batch_step_times_s(self, prefill_tokens: np.ndarray, decode_seqs: np.ndarray,
                           decode_context_tokens: np.ndarray, prefill_seqs: np.ndarray,
                           prefill_context_tokens: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`step_time_s` over arrays of batch fields, bit-identical per element.

        Same floats as the scalar method: integer products stay exact integers (below 2**53)
        before the one division, and the terms are added in the scalar method's order.
        """
        p = np.asarray(prefill_tokens, dtype=np.int64)
        b = np.asarray(decode_seqs, dtype=np.int64)
        tp = self.tensor_parallel
        bw = self.eta_mem * self.gpu.memory_bandwidth_bytes_per_s * tp
        fl = self.eta_flops * self.gpu.peak_bf16_flops_per_s * tp
        n = p + b
        q = (p * np.asarray(prefill_context_tokens, dtype=np.int64)).astype(np.float64)
        q /= np.maximum(np.asarray(prefill_seqs, dtype=np.int64), 1)
        ctx = np.asarray(decode_context_tokens, dtype=np.int64) + np.asarray(
            prefill_context_tokens, dtype=np.int64)
        tw = weight_bytes(self.shape) / bw
        tg = _times(self.shape.flops_per_token, n) / fl
        tkv = _times(kv_bytes_per_token(self.shape), ctx) / bw
        ta = q * self.shape.attn_flops_per_token_pair / fl
        t = self.per_seq_s * b.astype(np.float64)
        t += self.overhead_s
        t += np.maximum(tg, tw)
        t += tkv
        t += ta
        if tp > 1:
            nbytes = _times(self.shape.hidden_size, n) * 2
            per = 2 * (tp - 1) / tp * nbytes.astype(np.float64) / self.interconnect_bytes_per_s
            per += self.allreduce_latency_s
            t += 2 * self.shape.num_layers * per
        t[(p == 0) & (b == 0)] = 0.0
        return t


def _times(c: int | float, x: np.ndarray) -> np.ndarray:
    """``c * x`` with Python's type rules: exact integers for an integer ``c``, else floats."""
    if isinstance(c, int | np.integer):
        return int(c) * x
    return float(c) * x.astype(np.float64)


_ETA_M_GRID = np.round(np.arange(0.40, 1.0001, 0.01), 4)
_ETA_F_GRID = np.round(np.arange(0.20, 1.0001, 0.01), 4)


def fit_roofline(rows: Sequence[ProfileRow], gpu: GPU, shape: ModelShape,
                 name: str = "fitted") -> RooflineEngineModel:
    """Fit ``eta_mem, eta_flops`` by grid search and ``overhead_s, per_seq_s`` by NNLS.

    Minimises squared relative error of the step time over the rows.
    """
    if len(rows) < 3:
        raise ValueError("need at least 3 rows")
    y = np.array([r.latency_s for r in rows])
    shapes = [r.shape for r in rows]
    unit = RooflineEngineModel(name, gpu, shape, 1.0, 1.0, 0.0, 0.0)
    comp = np.array([unit.components_s(s) for s in shapes])  # at eta = 1
    b = np.array([s.decode_seqs for s in shapes], dtype=float)
    best = None
    for em in _ETA_M_GRID:
        for ef in _ETA_F_GRID:
            base = np.maximum(comp[:, 0] / em, comp[:, 1] / ef) + comp[:, 2] / em + comp[:, 3] / ef
            r = 1.0 - base / y  # relative residual to explain by overhead + per_seq * B
            a = np.stack([1.0 / y, b / y], axis=1)
            sol, *_ = np.linalg.lstsq(a, r, rcond=None)
            sol = np.maximum(sol, 0.0)
            err = float(np.sum((a @ sol - r) ** 2))
            if best is None or err < best[0]:
                best = (err, em, ef, sol)
    assert best is not None
    _, em, ef, sol = best
    return RooflineEngineModel(name, gpu, shape, float(em), float(ef), float(sol[0]),
                               float(sol[1]), source=f"{name} [roofline, fitted]")


@functools.lru_cache(maxsize=1)
def transferred_efficiencies() -> dict[str, float]:
    """Mean fitted efficiencies over our measured profiles (defaults if none)."""
    from slo_opt.models.catalog import list_profiles, measured_rows

    fits = []
    for name, source, _ in list_profiles():
        if source != "measured":
            continue
        gpu_key, _, model_key = name.partition("/")
        m = fit_roofline(measured_rows(name), get_gpu(gpu_key), get_shape(model_key), name)
        fits.append(m)
    return mean_efficiencies(fits)


def mean_efficiencies(fits: Sequence[RooflineEngineModel]) -> dict[str, float]:
    """Mean efficiencies; overheads are averaged *per layer* (launches scale with depth)."""
    if not fits:
        return {"eta_mem": DEFAULT_EFFICIENCIES["eta_mem"],
                "eta_flops": DEFAULT_EFFICIENCIES["eta_flops"],
                "overhead_per_layer_s": DEFAULT_EFFICIENCIES["overhead_s"] / 32,
                "per_seq_per_layer_s": DEFAULT_EFFICIENCIES["per_seq_s"] / 32}
    a = np.mean(np.array([(m.eta_mem, m.eta_flops, m.overhead_s / m.shape.num_layers,
                           m.per_seq_s / m.shape.num_layers) for m in fits]), axis=0)
    return {"eta_mem": float(a[0]), "eta_flops": float(a[1]),
            "overhead_per_layer_s": float(a[2]), "per_seq_per_layer_s": float(a[3])}


def roofline_from_efficiencies(name: str, gpu: GPU, shape: ModelShape,
                               eff: dict[str, float], **kw) -> RooflineEngineModel:
    """Build a roofline for ``shape`` on ``gpu`` from :func:`mean_efficiencies` output."""
    return RooflineEngineModel(
        name, gpu, shape, eff["eta_mem"], eff["eta_flops"],
        eff["overhead_per_layer_s"] * shape.num_layers,
        eff["per_seq_per_layer_s"] * shape.num_layers, **kw)


@functools.lru_cache(maxsize=64)
def transferred_roofline(name: str) -> RooflineEngineModel:
    """Roofline for ``<gpu>/<model>``: fitted if we measured it, else transferred."""
    from slo_opt.models.catalog import measured_rows

    gpu_key, _, model_key = name.partition("/")
    gpu, shape = get_gpu(gpu_key), get_shape(model_key)
    try:
        rows = measured_rows(name)
    except ValueError:
        rows = ()
    if rows:
        return fit_roofline(rows, gpu, shape, name)
    return roofline_from_efficiencies(name, gpu, shape, transferred_efficiencies(),
                                      source=f"{name} [roofline, transferred]")


def prefill_s_per_token(gpu_key: str, model_key: str) -> float:
    """Compute-bound prefill seconds per token with the transferred FLOP efficiency."""
    gpu, shape = get_gpu(gpu_key), get_shape(model_key)
    eff = transferred_efficiencies()
    return shape.flops_per_token / (eff["eta_flops"] * gpu.peak_bf16_flops_per_s)


def roofline_engines() -> dict[str, RooflineEngineModel]:
    """Every (catalogue GPU, model shape) pair that fits in memory, as a roofline model."""
    out = {}
    for g, gpu in GPUS.items():
        for m, shape in MODEL_SHAPES.items():
            try:
                cap = kv_capacity_tokens(gpu.memory_bytes, shape)
            except ValueError:
                continue
            out[f"{g}/{m}"] = replace(transferred_roofline(f"{g}/{m}"), kv_capacity_tokens=cap)
    return out
