"""Registry of engine profiles: resolve ``"<gpu>/<model>"`` to an :class:`EngineModel`.

Resolution order for a name (first that exists wins):

1. **measured** -- our own CSV ``models/profiles/<gpu>/<model>.csv`` (from
   :mod:`slo_opt.models.gpu_profile`), fitted on load;
2. **published data** -- a published step-time table shipped under ``models/profiles``
   (SLICE's ``l(k)``, ``slice-edge/chatglm2-6b-int4``, also reachable as
   ``rtx4060ti/chatglm2-6b-int4``);
3. **built** -- a layerwise engine built by :mod:`slo_opt.models.build_engine` from a public
   per-layer profile (``models/profiles/<gpu>/<model>.layerwise.json`` with its
   ``.provenance.json``): LLMServingSim's RTX 4090 and RTX PRO 6000 Llama-3.1-8B tables;
4. **roofline** -- :class:`~slo_opt.models.roofline.RooflineEngineModel` with efficiency
   factors fitted on our measured GPU(s) and transferred.

``kind`` selects the model family: ``"linear"`` (affine + hinge, fitted), ``"table"``
(interpolation of the measured/published grid; for a built profile the layerwise engine),
``"roofline"``. ``kind=None`` takes the source's native kind (linear for measured profiles,
table for published tables and built profiles). A built profile's ``"linear"`` model is fitted
to step times of its layerwise engine on a fixed grid (:func:`built_rows`).
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

BUILT_SUFFIX = ".layerwise.json"


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


def _built_json(name: str) -> Path | None:
    gpu, _, model = name.partition("/")
    if gpu not in GPUS:
        return None
    p = profiles_dir() / gpu / f"{model}{BUILT_SUFFIX}"
    return p if p.is_file() else None


@functools.lru_cache(maxsize=16)
def _built_engine(name: str):  # -> LayerwiseEngineModel
    from slo_opt.models.layerwise import load_layerwise

    p = _built_json(name)
    if p is None:
        raise ValueError(f"no built profile {name!r}")
    return load_layerwise(p, source=f"{name} [table, built from a public layer profile]")


def built_rows(name: str) -> tuple[ProfileRow, ...]:
    """Step times of a built layerwise engine on a fixed grid (for the linear fit).

    Decode: batch 1-256 x context 128-8192; prefill: one prompt of 16-2048 tokens and 4
    prompts of 128-512; mixed: chunks of 128-2048 tokens with 16-128 decodes at 512-4096.
    """
    eng = _built_engine(name)
    g, _, m = name.partition("/")
    rows: list[ProfileRow] = []

    def add(phase: str, b: int, tps: int, ctx: int, chunk: int = 0) -> None:
        r = ProfileRow(g, m, phase, b, tps, ctx, 1.0, prefill_chunk=chunk)
        rows.append(dataclasses.replace(r, latency_s=eng.step_time_s(r.shape)))

    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        for c in (128, 512, 1024, 2048, 4096, 8192):
            add("decode", b, 1, c)
    for p in (16, 32, 64, 128, 256, 512, 1024, 2048):
        add("prefill", 1, p, 0)
    for p in (128, 256, 512):
        add("prefill", 4, p, 0)
    for ch in (128, 512, 1024, 2048):
        for b in (16, 64, 128):
            for c in (512, 4096):
                add("mixed", b, 1, c, ch)
    return tuple(rows)


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

    ``source`` is one of ``"measured"``, ``"published data"``, ``"built"``, ``"roofline"`` (the first available in the resolution order).
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
            elif _built_json(name) is not None:
                out.append((name, "built", f"layerwise engine built from a public per-layer "
                            f"profile on {gpu.name} (see {model_key}.provenance.json)"))
            else:
                out.append((name, "roofline", f"roofline transfer to {gpu.name}"))
    return out


def _source_of(name: str) -> str:
    if name in PUBLISHED_TABLES:
        return "published data"
    if _measured_csv(name) is not None:
        return "measured"
    if _built_json(name) is not None:
        return "built"
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
    if source == "built":
        if kind == "table":
            return _built_engine(name)
        return LinearEngineModel.fit(built_rows(name), name=name, source=label)[0]
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
    max_num_seqs: int | None = None,
    tensor_parallel_size: int = 1,
) -> EngineModel:
    """Resolve a profile name to an engine model.

    Parameters
    ----------
    name : str
        ``"<gpu>/<model>"`` (see :func:`list_profiles`), case-insensitive.
    kind : {"linear", "table", "roofline"} or None
        Model family; ``None`` = the source's native kind.
    kv_capacity_tokens : int, optional
        Override; default vLLM's sizing from the GPU's torch-reported memory, the weights,
        ``gpu_memory_utilization`` and the profile run of ``max_batch_tokens`` tokens and
        ``max_num_seqs`` sequences (:func:`slo_opt.models.kv.kv_capacity_tokens`).
    max_batch_tokens : int, optional
        Default 8192 on GPUs with >= 70 GiB (not A100), else 2048 (vLLM's server defaults).
    gpu_memory_utilization : float
        vLLM's memory fraction.
    kv_block_tokens : int
        Paged-KV block size.
    max_num_seqs : int, optional
        vLLM's sequence cap (sizes the profile run); default 1024 on >= 70 GiB GPUs (not
        A100), else 256.
    tensor_parallel_size : int
        GPUs per tensor-parallel group (vLLM's name). ``> 1`` needs ``kind="roofline"`` (our
        profiles are single-GPU): weights, GEMMs and KV reads split over the group, two ring
        all-reduces per layer over the GPU's interconnect
        (:data:`slo_opt.models.roofline.INTERCONNECT_BYTES_PER_S`); the KV capacity is per GPU
        with ``1/t`` of the weights (:func:`slo_opt.models.kv.kv_capacity_tokens`).

    Raises
    ------
    ValueError
        Unknown name or kind (the message lists the valid ones), or a kind the source lacks.
    """
    canon, gpu_key, model_key = _split(name)
    if not isinstance(tensor_parallel_size, int) or isinstance(tensor_parallel_size, bool) \
            or tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be an integer >= 1, got "
                         f"{tensor_parallel_size!r}")
    if tensor_parallel_size > 1 and kind not in (None, "roofline"):
        raise ValueError(f"{canon}: tensor_parallel_size > 1 needs kind='roofline' (the "
                         f"{kind!r} model comes from a single-GPU profile)")
    if tensor_parallel_size > 1:
        kind = "roofline"
    if kind is None:
        kind = "table" if canon in PUBLISHED_TABLES or _built_json(canon) is not None \
            else "linear"
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {KINDS}")
    gpu, shape = get_gpu(gpu_key), get_shape(model_key)
    big = gpu.memory_bytes >= 70 * 2**30 and gpu_key != "a100"
    if max_batch_tokens is None:
        max_batch_tokens = 8192 if big else 2048
    if max_num_seqs is None:
        max_num_seqs = 1024 if big else 256
    if kv_capacity_tokens is None:
        from slo_opt.models.kv import kv_capacity_tokens as _cap

        kv_capacity_tokens = _cap(gpu.memory_bytes, shape, gpu_memory_utilization,
                                  block_tokens=kv_block_tokens,
                                  max_num_batched_tokens=max_batch_tokens,
                                  max_num_seqs=max_num_seqs,
                                  tensor_parallel_size=tensor_parallel_size)
    elif kv_capacity_tokens < kv_block_tokens:
        raise ValueError("kv_capacity_tokens must be >= kv_block_tokens")
    else:
        kv_capacity_tokens -= kv_capacity_tokens % kv_block_tokens
    host_bw = float(_measured_meta(canon).get("h2d_bytes_per_s",
                                              gpu.host_bandwidth_bytes_per_s))
    base = _base_engine(canon, kind)
    if tensor_parallel_size > 1:
        from slo_opt.models.roofline import interconnect_bytes_per_s

        base = dataclasses.replace(
            base, tensor_parallel=tensor_parallel_size,
            interconnect_bytes_per_s=interconnect_bytes_per_s(gpu_key))
    return dataclasses.replace(
        base, kv_capacity_tokens=int(kv_capacity_tokens), kv_block_tokens=kv_block_tokens,
        max_batch_tokens=int(max_batch_tokens), kv_bytes_per_token=kv_bytes_per_token(shape),
        host_bandwidth_bytes_per_s=host_bw)
