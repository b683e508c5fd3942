"""Registry of engine profiles: resolve ``"<gpu>/<model>"`` to an :class:`EngineModel`.

Resolution order for a name (first that exists wins):

1. **measured** -- our own CSV ``models/profiles/<gpu>/<model>.csv`` (from
   :mod:`slo_opt.models.gpu_profile`), fitted on load;
2. **published data** -- a published step-time table shipped under ``models/profiles``
   (SLICE's ``l(k)``, ``slice-edge/chatglm2-6b-int4``, also reachable as
   ``rtx4060ti/chatglm2-6b-int4``);
3. **public table** -- coefficients fitted (in ``shared/research/simulators.md`` B.7) to public
   kernel tables: aiconfigurator A100/H100 and LLMServingSim RTX 4090, Llama-3(.1)-8B;
4. **roofline** -- :class:`~slo_opt.models.roofline.RooflineEngineModel` with efficiency
   factors fitted on our measured GPU(s) and transferred.

``kind`` selects the model family: ``"linear"`` (affine + hinge, fitted), ``"table"``
(interpolation of the measured/published grid), ``"roofline"``. ``kind=None`` takes the
source's native kind (linear, except table for published tables).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from pathlib import Path

from slo_opt.engine import EngineModel
from slo_opt.models.hardware import GPUS, get_gpu
from slo_opt.models.kv import MODEL_SHAPES, get_shape, kv_bytes_per_token, kv_capacity_tokens
from slo_opt.models.linear import LinearEngineModel
from slo_opt.models.table import ProfileRow, TableEngineModel, read_profile_csv

__all__ = ["KINDS", "get_engine", "list_profiles", "measured_rows", "profiles_dir"]

KINDS = ("linear", "table", "roofline")

# name -> (gpu key, model key, profile dir, description)
PUBLISHED_TABLES: dict[str, tuple[str, str, str, str]] = {
    "slice-edge/chatglm2-6b-int4": (
        "rtx4060ti", "chatglm2-6b-int4", "slice-edge",
        "SLICE l(k) decode table, ChatGLM2-6B-INT4 on RTX 4060 Ti (FastLLM), arXiv:2510.18544"),
}
ALIASES = {"rtx4060ti/chatglm2-6b-int4": "slice-edge/chatglm2-6b-int4"}

_MS = 1e-3
# (c0, c_decode/seq, c_ctx/token, c_prefill/token, c_prefill_sq/token^2) in ms
PUBLIC_LINEAR: dict[str, tuple[tuple[float, float, float, float, float], str]] = {
    "h100/llama-3.1-8b": ((6.15, 0.0100, 4.04e-5, 0.0151, 8.35e-7),
                          "aiconfigurator-core 0.12.0 H100-SXM vLLM 0.24 kernel tables (Apache-2.0,"
                          " NVIDIA), Llama-3-8B fit in simulators.md B.7"),
    "a100/llama-3.1-8b": ((10.86, 0.0160, 7.99e-5, 0.0505, 1.65e-6),
                          "aiconfigurator-core 0.12.0 A100-SXM vLLM 0.14 kernel tables (Apache-2.0,"
                          " NVIDIA), Llama-3-8B fit in simulators.md B.7"),
    "rtx4090/llama-3.1-8b": ((17.11, 0.0417, 1.39e-4, 0.0708, 8.87e-6),
                             "LLMServingSim RTX4090 Llama-3.1-8B layerwise profile (MIT), fit in "
                             "simulators.md B.7"),
}


def profiles_dir() -> Path:
    """Folder of shipped profiles (``models/profiles``)."""
    return Path(str(resources.files("slo_opt.models") / "profiles"))


def _measured_csv(name: str) -> Path | None:
    gpu, _, model = name.partition("/")
    if gpu not in GPUS:
        return None
    p = profiles_dir() / gpu / f"{model}.csv"
    return p if p.is_file() else None


@functools.lru_cache(maxsize=64)
def _rows(path: str) -> tuple[ProfileRow, ...]:
    return tuple(read_profile_csv(path))


def measured_rows(name: str) -> tuple[ProfileRow, ...]:
    """Rows of our measured profile ``<gpu>/<model>`` (``ValueError`` if none)."""
    p = _measured_csv(name)
    if p is None:
        raise ValueError(f"no measured profile {name!r}")
    return _rows(str(p))


def _measured_meta(name: str) -> dict:
    p = _measured_csv(name)
    if p is None:
        return {}
    j = p.parent / "provenance.json"
    return json.loads(j.read_text()) if j.is_file() else {}


def _split(name: str) -> tuple[str, str, str]:
    """Canonical name, gpu key, model key."""
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    if name in PUBLISHED_TABLES:
        gpu, model, _, _ = PUBLISHED_TABLES[name]
        return name, gpu, model
    gpu, sep, model = name.partition("/")
    if not sep or gpu not in GPUS or model not in MODEL_SHAPES:
        raise ValueError(f"unknown profile {name!r}; valid: {[n for n, _, _ in list_profiles()]}")
    return name, gpu, model


def list_profiles() -> list[tuple[str, str, str]]:
    """All resolvable profiles as ``(name, source, description)``.

    ``source`` is one of ``"measured"``, ``"published data"``, ``"public table"``,
    ``"roofline"`` (the first available in the resolution order).
    """
    out: list[tuple[str, str, str]] = []
    for name, (_, _, _, desc) in PUBLISHED_TABLES.items():
        out.append((name, "published data", desc))
    for gpu_key, gpu in GPUS.items():
        for model_key, shape in MODEL_SHAPES.items():
            name = f"{gpu_key}/{model_key}"
            if name in ALIASES:
                continue
            try:
                kv_capacity_tokens(gpu.memory_bytes, shape)
            except ValueError:
                continue  # the model does not fit on this GPU
            if _measured_csv(name) is not None:
                meta = _measured_meta(name)
                desc = f"our profile on {meta.get('device_name', gpu.name)}"
                out.append((name, "measured", desc))
            elif name in PUBLIC_LINEAR:
                out.append((name, "public table", PUBLIC_LINEAR[name][1]))
            else:
                out.append((name, "roofline", f"roofline transfer to {gpu.name}"))
    return out


def _source_of(name: str) -> str:
    if name in PUBLISHED_TABLES:
        return "published data"
    if _measured_csv(name) is not None:
        return "measured"
    if name in PUBLIC_LINEAR:
        return "public table"
    return "roofline"


@functools.lru_cache(maxsize=128)
def _base_engine(name: str, kind: str) -> EngineModel:
    """The fitted/loaded model with placeholder engine attributes (cached)."""
    source = _source_of(name)
    label = f"{name} [{kind}, {source}]"
    if kind == "roofline":
        from slo_opt.models.roofline import transferred_roofline

        if name in PUBLISHED_TABLES:
            gpu_key, model_key, _, _ = PUBLISHED_TABLES[name]
            return transferred_roofline(f"{gpu_key}/{model_key}")
        return transferred_roofline(name)
    if source == "measured":
        rows = measured_rows(name)
        if kind == "linear":
            return LinearEngineModel.fit(rows, name=name, source=label)[0]
        return TableEngineModel.from_rows(rows, name=name, source=label)
    if source == "published data":
        gpu_key, model_key, folder, _ = PUBLISHED_TABLES[name]
        rows = _rows(str(profiles_dir() / folder / f"{model_key}.csv"))
        if kind == "linear":
            return LinearEngineModel.fit(rows, name=name, source=label)[0]
        from slo_opt.models.roofline import prefill_s_per_token

        return TableEngineModel.from_rows(
            rows, name=name, source=label,
            prefill_fallback_s_per_token=prefill_s_per_token(gpu_key, model_key))
    if source == "public table":
        if kind == "table":
            raise ValueError(f"{name}: only fitted coefficients are public, no table; "
                             "use kind='linear' or 'roofline'")
        (c0, cd, cc, cp, cq), _ = PUBLIC_LINEAR[name]
        return LinearEngineModel(name=name, c0_s=c0 * _MS, c_decode_s=cd * _MS,
                                 c_ctx_s=cc * _MS, c_prefill_s=cp * _MS,
                                 c_prefill_sq_s=cq * _MS, source=label)
    if kind == "table":
        raise ValueError(f"{name}: no measured or published table; use kind='roofline'")
    from slo_opt.models.roofline import transferred_roofline

    return transferred_roofline(name)


def get_engine(
    name: str,
    *,
    kind: str | None = None,
    kv_capacity_tokens: int | None = None,
    max_batch_tokens: int | None = None,
    gpu_memory_utilization: float = 0.9,
    kv_block_tokens: int = 16,
) -> EngineModel:
    """Resolve a profile name to an engine model.

    Parameters
    ----------
    name : str
        ``"<gpu>/<model>"`` (see :func:`list_profiles`), case-insensitive.
    kind : {"linear", "table", "roofline"} or None
        Model family; ``None`` = the source's native kind.
    kv_capacity_tokens : int, optional
        Override; default from GPU memory, weights and ``gpu_memory_utilization``
        (:func:`slo_opt.models.kv.kv_capacity_tokens`), rounded down to whole blocks.
    max_batch_tokens : int, optional
        Default 8192 on GPUs with >= 40 GB, else 2048 (vLLM's server defaults).
    gpu_memory_utilization : float
        vLLM's memory fraction.
    kv_block_tokens : int
        Paged-KV block size.

    Raises
    ------
    ValueError
        Unknown name or kind (the message lists the valid ones), or a kind the source lacks.
    """
    canon, gpu_key, model_key = _split(name)
    if kind is None:
        kind = "table" if canon in PUBLISHED_TABLES else "linear"
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {KINDS}")
    gpu, shape = get_gpu(gpu_key), get_shape(model_key)
    if kv_capacity_tokens is None:
        from slo_opt.models.kv import kv_capacity_tokens as _cap

        kv_capacity_tokens = _cap(gpu.memory_bytes, shape, gpu_memory_utilization,
                                  block_tokens=kv_block_tokens)
    elif kv_capacity_tokens < kv_block_tokens:
        raise ValueError("kv_capacity_tokens must be >= kv_block_tokens")
    else:
        kv_capacity_tokens -= kv_capacity_tokens % kv_block_tokens
    if max_batch_tokens is None:
        max_batch_tokens = 8192 if gpu.memory_bytes >= 40e9 else 2048
    host_bw = float(_measured_meta(canon).get("h2d_bytes_per_s",
                                              gpu.host_bandwidth_bytes_per_s))
    base = _base_engine(canon, kind)
    return dataclasses.replace(
        base, kv_capacity_tokens=int(kv_capacity_tokens), kv_block_tokens=kv_block_tokens,
        max_batch_tokens=int(max_batch_tokens), kv_bytes_per_token=kv_bytes_per_token(shape),
        host_bandwidth_bytes_per_s=host_bw)
