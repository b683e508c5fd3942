"""Roofline step-time model with efficiency factors fitted on measured GPUs and transferred.

For a batch with ``N = P + B`` tokens (``P`` prefill, ``B`` decodes) and ``S`` sequences that
produce logits (prefill chunks + decodes), per step and per GPU of a ``t``-way tensor-parallel
group::

    W      = bytes/param * (dense layer params + L * E_read(N) * expert params + V*h)  # read once
    F      = 2 * active layer params * N + 2 * V*h * S                  # GEMM FLOPs (LM head on S)
    T_lin  = max(W / (eta_mem * BW * t),  F / (eta_flops * FLOPS * t))
    T_kv   = (C_dec + C_pre) * kv_bytes_per_token / (eta_mem * BW * t)   # KV reads
    T_attn = Q * 4 * layers * heads * head_dim / (eta_flops * FLOPS * t) # QK^T, AV FLOPs
    T      = overhead_s + per_seq_s * B + T_lin + T_kv + T_attn + T_allreduce

with ``C`` the attended context tokens, ``Q`` the prefill token-pair count (as in
:mod:`slo_opt.models.linear`), ``V*h`` the LM head, and for a mixture-of-experts model
``E_read(N)`` the expected distinct experts per layer that ``N`` tokens activate under uniform
top-k routing (:meth:`~slo_opt.models.kv.ModelShape.experts_read`: ``k`` at one token, all
``E`` for large batches) while the FLOPs count only the ``k`` active experts per token.
``T_allreduce`` (``t > 1``): two ring all-reduces of the ``N x h`` activations per layer,
``2 (t-1)/t`` of the bytes over the link plus a per-collective latency.

``eta_mem, eta_flops, overhead_s, per_seq_s`` are fitted per measured (GPU, model) by
:func:`fit_roofline`; other GPUs and models use the mean efficiencies and the mean overheads
*per layer* of our measured profiles (:func:`transferred_efficiencies`). Deviation from the
issue-3 roofline (noted in ``papers/engine-model.md``): the LM head is charged on the ``S``
sequences that sample (not on every token), the embedding table is not read per step, and the
expert terms above.
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
    "INTERCONNECT_BYTES_PER_S",
    "RooflineEngineModel",
    "fit_roofline",
    "interconnect_bytes_per_s",
    "mean_efficiencies",
    "prefill_s_per_token",
    "roofline_from_efficiencies",
    "transferred_efficiencies",
    "transferred_roofline",
]

INTERCONNECT_BYTES_PER_S: dict[str, float] = {"a100": 300e9, "h100": 450e9, "h200": 450e9}
"""GPU-to-GPU bandwidth per direction (NVLink: NVIDIA A100 / H100 / H200 SXM datasheets,
600 / 900 / 900 GB/s total); GPUs not listed use their host (PCIe) bandwidth."""


def interconnect_bytes_per_s(gpu_key: str) -> float:
    """Per-direction bandwidth of a tensor-parallel group's links (see the constant)."""
    return INTERCONNECT_BYTES_PER_S.get(gpu_key, get_gpu(gpu_key).host_bandwidth_bytes_per_s)


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

    def _core(self, p: np.ndarray, b: np.ndarray, dctx: np.ndarray, ps: np.ndarray,
              pctx: np.ndarray) -> tuple[np.ndarray, ...]:
        """Vectorised ``(T_weights, T_gemm, T_kv, T_attn, T_allreduce)`` of batch-field arrays."""
        sh = self.shape
        tp = self.tensor_parallel
        bw = self.eta_mem * self.gpu.memory_bandwidth_bytes_per_s * tp
        fl = self.eta_flops * self.gpu.peak_bf16_flops_per_s * tp
        bpp = weight_bytes(sh) / sh.params
        n = (p + b).astype(np.float64)
        seqs = (ps + b).astype(np.float64)
        layer_dense = float(sh.body_params - sh.num_layers * sh.num_experts * sh.expert_params)
        read = layer_dense + float(sh.head_params)
        if sh.is_moe:
            e, k = sh.num_experts, sh.experts_per_token
            experts = e * (1.0 - (1.0 - k / e) ** n)
            tw = bpp * (read + sh.num_layers * experts * sh.expert_params) / bw
        else:
            tw = np.full(n.shape, bpp * read / bw)
        tg = (2.0 * sh.active_body_params * n + 2.0 * sh.head_params * seqs) / fl
        ctx = (dctx + pctx).astype(np.float64)
        tkv = ctx * kv_bytes_per_token(sh) / bw
        q = (p * pctx).astype(np.float64) / np.maximum(ps, 1)
        ta = q * sh.attn_flops_per_token_pair / fl
        if tp > 1:
            nbytes = n * sh.hidden_size * 2
            per = self.allreduce_latency_s + 2 * (tp - 1) / tp * nbytes / \
                self.interconnect_bytes_per_s
            tar = 2 * sh.num_layers * per
        else:
            tar = np.zeros(n.shape)
        return tw, tg, tkv, ta, tar

    def components_s(self, batch: BatchShape) -> tuple[float, float, float, float]:
        """``(T_weights, T_gemm, T_kv, T_attn)``: the roofline terms before max/sum."""
        tw, tg, tkv, ta, _ = self._core(*_fields([batch]))
        return float(tw[0]), float(tg[0]), float(tkv[0]), float(ta[0])

    def batch_step_times_s(self, prefill_tokens: np.ndarray, decode_seqs: np.ndarray,
                           decode_context_tokens: np.ndarray, prefill_seqs: np.ndarray,
                           prefill_context_tokens: np.ndarray) -> np.ndarray:
        """Step times of arrays of batch fields (0 for an empty step); one code path for the
        scalar, decode and batch methods, so they agree bit for bit."""
        p = np.asarray(prefill_tokens, dtype=np.int64)
        b = np.asarray(decode_seqs, dtype=np.int64)
        tw, tg, tkv, ta, tar = self._core(p, b, np.asarray(decode_context_tokens, np.int64),
                                          np.asarray(prefill_seqs, np.int64),
                                          np.asarray(prefill_context_tokens, np.int64))
        t = self.overhead_s + self.per_seq_s * b.astype(np.float64) + np.maximum(tw, tg) \
            + tkv + ta + tar
        return np.where((p == 0) & (b == 0), 0.0, t)

    def step_time_s(self, batch: BatchShape) -> float:
        """Roofline step time (0 for an empty batch)."""
        return float(self.batch_step_times_s(*_fields([batch]))[0])

    def allreduce_s(self, num_tokens: int) -> float:
        """Tensor-parallel communication per step: two ring all-reduces of the activations
        (``num_tokens x hidden`` bf16) per layer, ``2 (t-1)/t`` of the bytes over the link."""
        z = np.zeros(1, np.int64)
        return float(self._core(np.array([num_tokens]), z, z, z, z)[4][0])

    def utilization(self, batch: BatchShape) -> float:
        """Fraction of the step the roofline's binding resource is busy (for power)."""
        t = self.step_time_s(batch)
        if t <= 0:
            return 0.0
        tw, tg, tkv, ta = self.components_s(batch)
        return float(min(1.0, (max(tw, tg) + tkv + ta) / t))

    def decode_step_times_s(self, decode_seqs: int, decode_context_tokens: int,
                            num_steps: int) -> np.ndarray:
        """Per-step pure-decode times (the same floats as :meth:`step_time_s`)."""
        if num_steps < 0:
            raise ValueError("num_steps must be >= 0")
        k = np.arange(num_steps, dtype=np.int64)
        z = np.zeros(num_steps, dtype=np.int64)
        return self.batch_step_times_s(z, np.full(num_steps, decode_seqs, np.int64),
                                       decode_context_tokens + k * decode_seqs, z, z)


def _fields(batches: Sequence[BatchShape]) -> tuple[np.ndarray, ...]:
    return tuple(np.array([getattr(x, k) for x in batches], dtype=np.int64) for k in (
        "prefill_tokens", "decode_seqs", "decode_context_tokens", "prefill_seqs",
        "prefill_context_tokens"))


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
