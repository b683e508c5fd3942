"""Board power and step energy as a function of utilisation.

``P = idle_w + compute_w * u_flops + memory_w * u_mem``, clipped to ``[idle_w, max_w]``, where
``u_flops`` and ``u_mem`` are the achieved fractions of the GPU's peak FLOP/s and memory
bandwidth in a step (FLOPs and bytes from the model shape, as in
:mod:`slo_opt.models.roofline`). The energy of a step is ``P * step_time_s`` joules.

On a GPU we profiled, ``compute_w`` and ``memory_w`` are fitted by non-negative least squares
to the ``power_w`` samples of the sweep (NVML via ``nvidia-smi``) with ``idle_w`` measured
before it. Elsewhere the fitted *shares* ``compute_w / (max_w - idle_w)`` and
``memory_w / (max_w - idle_w)`` are transferred to the target GPU's catalogue power range.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo_opt.engine import BatchShape
from slo_opt.models.hardware import GPU, get_gpu
from slo_opt.models.kv import ModelShape, get_shape, kv_bytes_per_token, weight_bytes
from slo_opt.models.table import ProfileRow

__all__ = ["PowerModel", "fit_power", "power_model"]


@dataclass(frozen=True)
class PowerModel:
    """Utilisation-driven power model of one (GPU, model)."""

    gpu: GPU
    shape: ModelShape
    idle_w: float
    compute_w: float
    memory_w: float
    source: str = ""

    def __post_init__(self) -> None:
        if not (self.idle_w > 0 and self.compute_w >= 0 and self.memory_w >= 0):
            raise ValueError("idle_w must be > 0 and dynamic terms >= 0")

    def utilizations(self, batch: BatchShape, step_time_s: float) -> tuple[float, float]:
        """``(u_flops, u_mem)`` of a step, each clipped to [0, 1]."""
        if step_time_s <= 0:
            return 0.0, 0.0
        n = batch.prefill_tokens + batch.decode_seqs
        q = batch.prefill_tokens * batch.prefill_context_tokens / max(batch.prefill_seqs, 1)
        flops = self.shape.flops_per_token * n + self.shape.attn_flops_per_token_pair * q
        nbytes = weight_bytes(self.shape) + batch.context_tokens * kv_bytes_per_token(self.shape)
        uf = flops / (step_time_s * self.gpu.peak_bf16_flops_per_s)
        um = nbytes / (step_time_s * self.gpu.memory_bandwidth_bytes_per_s)
        return float(min(uf, 1.0)), float(min(um, 1.0))

    def power_w(self, batch: BatchShape, step_time_s: float) -> float:
        """Board power during the step (idle for an empty batch)."""
        if batch.num_tokens == 0:
            return self.idle_w
        uf, um = self.utilizations(batch, step_time_s)
        p = self.idle_w + self.compute_w * uf + self.memory_w * um
        return float(min(max(p, self.idle_w), self.gpu.max_power_w))

    def step_energy_j(self, batch: BatchShape, step_time_s: float) -> float:
        """Joules of one step (``power_w * step_time_s``)."""
        return self.power_w(batch, step_time_s) * step_time_s

    def idle_energy_j(self, duration_s: float) -> float:
        """Joules of ``duration_s`` idle seconds."""
        return self.idle_w * duration_s


def fit_power(rows: Sequence[ProfileRow], gpu: GPU, shape: ModelShape,
              idle_w: float) -> tuple[PowerModel, dict[str, float]]:
    """Fit ``compute_w, memory_w`` to rows with ``power_w`` (NNLS); returns model and errors."""
    data = [(r.shape, r.latency_s, r.power_w) for r in rows if math.isfinite(r.power_w)]
    if len(data) < 3:
        raise ValueError("need >= 3 rows with power_w")
    probe = PowerModel(gpu, shape, idle_w, 0.0, 0.0)
    u = np.array([probe.utilizations(s, t) for s, t, _ in data])
    y = np.array([p for _, _, p in data]) - idle_w
    active = [0, 1]
    coef = np.zeros(2)
    while active:
        sol, *_ = np.linalg.lstsq(u[:, active], y, rcond=None)
        if np.all(sol >= 0):
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    model = PowerModel(gpu, shape, idle_w, float(coef[0]), float(coef[1]),
                       source="fitted to nvidia-smi power.draw samples")
    pred = np.array([model.power_w(s, t) for s, t, _ in data])
    meas = y + idle_w
    ape = 100 * np.abs(pred / meas - 1)
    return model, {"n": len(data), "median_ape": float(np.median(ape)),
                   "p90_ape": float(np.percentile(ape, 90))}


@functools.lru_cache(maxsize=64)
def power_model(name: str) -> PowerModel:
    """Power model for ``<gpu>/<model>``: fitted if measured, else transferred shares."""
    from slo_opt.models.catalog import _measured_meta, list_profiles, measured_rows

    gpu_key, _, model_key = name.partition("/")
    gpu, shape = get_gpu(gpu_key), get_shape(model_key)
    try:
        rows = measured_rows(name)
    except ValueError:
        rows = ()
    if rows and any(math.isfinite(r.power_w) for r in rows):
        idle = float(_measured_meta(name).get("idle_power_w", gpu.idle_power_w))
        return fit_power(rows, gpu, shape, idle)[0]
    shares = []
    for n, src, _ in list_profiles():
        if src != "measured" or n == name:
            continue
        m = power_model(n)
        rng = m.gpu.max_power_w - m.idle_w
        shares.append((m.compute_w / rng, m.memory_w / rng))
    sc, sm = (np.mean(shares, axis=0) if shares else (0.6, 0.3))
    rng = gpu.max_power_w - gpu.idle_power_w
    return PowerModel(gpu, shape, gpu.idle_power_w, float(sc * rng), float(sm * rng),
                      source="transferred utilisation shares from our measured profiles")
