"""Model shapes, KV-cache bytes per token, weight bytes and KV capacity of a GPU.

The memory model is vLLM's (see ``shared/research/simulators.md`` D.3)::

    num_blocks = floor((gpu_memory_bytes * utilization - weight_bytes - activation_reserve_bytes)
                       / (block_tokens * kv_bytes_per_token))

``activation_reserve_bytes`` lumps the peak activation memory of vLLM's profiling forward pass
and non-torch memory (CUDA context, NCCL, graph pool). Its default, 1.5 GiB, reproduces vLLM's
reported 2,588 blocks for Llama-3.1-8B on a 24 GB RTX 4090 at utilisation 0.9 to within 2 %
(tested in ``tests/models/test_kv.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_ACTIVATION_RESERVE_BYTES",
    "MODEL_SHAPES",
    "ModelShape",
    "get_shape",
    "kv_bytes_per_token",
    "kv_capacity_tokens",
    "weight_bytes",
]

DEFAULT_ACTIVATION_RESERVE_BYTES = int(1.5 * 2**30)
"""Activation peak + non-torch memory reserved by the serving engine (1.5 GiB)."""


@dataclass(frozen=True, slots=True)
class ModelShape:
    """Architecture numbers of a decoder-only transformer.

    Parameters
    ----------
    name : str
        Registry key (``"llama-3.1-8b"``).
    num_layers, hidden_size, num_attention_heads, num_kv_heads, head_dim : int
        Transformer dimensions (GQA: ``num_kv_heads < num_attention_heads``).
    intermediate_size : int
        MLP (SwiGLU) inner width.
    vocab_size : int
        Vocabulary (embedding and LM-head rows).
    dtype_bytes : int
        Bytes per activation / KV element (bf16: 2).
    params : int
        Parameter count (from the model card / config).
    weight_bytes_per_param : float or None
        Bytes per stored weight; ``None`` means ``dtype_bytes``. Quantised variants set it
        (INT4 with scales and fp16 embeddings ~ 0.625).
    tied_embeddings : bool
        Whether the LM head shares the embedding matrix.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    dtype_bytes: int
    params: int
    weight_bytes_per_param: float | None = None
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        ints = (self.num_layers, self.hidden_size, self.num_attention_heads, self.num_kv_heads,
                self.head_dim, self.intermediate_size, self.vocab_size, self.dtype_bytes,
                self.params)
        if any(int(v) < 1 for v in ints):
            raise ValueError(f"ModelShape {self.name!r}: all dimensions must be >= 1")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(f"ModelShape {self.name!r}: attention heads must be a multiple of "
                             "kv heads")

    @property
    def flops_per_token(self) -> float:
        """Dense forward FLOPs per token excluding attention scores (``2 * params``)."""
        return 2.0 * self.params

    @property
    def attn_flops_per_token_pair(self) -> float:
        """FLOPs of QK^T and AV for one (query, key) pair, all layers."""
        return 4.0 * self.num_layers * self.num_attention_heads * self.head_dim


def kv_bytes_per_token(shape: ModelShape) -> int:
    """KV-cache bytes of one token: ``2 (K,V) * layers * kv_heads * head_dim * dtype_bytes``."""
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * shape.dtype_bytes


def weight_bytes(shape: ModelShape) -> int:
    """Bytes of the stored weights (``params * weight_bytes_per_param``)."""
    per = shape.dtype_bytes if shape.weight_bytes_per_param is None else \
        shape.weight_bytes_per_param
    return int(shape.params * per)


def kv_capacity_tokens(
    gpu_memory_bytes: float,
    shape: ModelShape,
    utilization: float = 0.9,
    activation_reserve_bytes: float = DEFAULT_ACTIVATION_RESERVE_BYTES,
    block_tokens: int = 16,
) -> int:
    """KV capacity in tokens, rounded down to whole blocks (vLLM's memory model).

    Parameters
    ----------
    gpu_memory_bytes : float
        Total device memory (e.g. ``torch.cuda.get_device_properties().total_memory``).
    shape : ModelShape
        The served model.
    utilization : float
        vLLM ``gpu_memory_utilization`` in (0, 1].
    activation_reserve_bytes : float
        Memory kept for activations and non-torch allocations.
    block_tokens : int
        Paged-attention block size.

    Returns
    -------
    int
        Tokens (a multiple of ``block_tokens``).

    Raises
    ------
    ValueError
        If the weights and reserve do not fit, or arguments are out of range.
    """
    if not 0.0 < utilization <= 1.0:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
    free = gpu_memory_bytes * utilization - weight_bytes(shape) - activation_reserve_bytes
    block_bytes = block_tokens * kv_bytes_per_token(shape)
    if free < block_bytes:
        raise ValueError(
            f"{shape.name}: weights ({weight_bytes(shape) / 1e9:.2f} GB) + reserve "
            f"({activation_reserve_bytes / 1e9:.2f} GB) do not fit in "
            f"{gpu_memory_bytes * utilization / 1e9:.2f} GB")
    return int(free // block_bytes) * block_tokens


MODEL_SHAPES: dict[str, ModelShape] = {
    s.name: s
    for s in (
        # meta-llama/Llama-3.1-8B config.json
        ModelShape("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256, 2, 8_030_261_248),
        # meta-llama/Llama-3.2-1B config.json (tied embeddings)
        ModelShape("llama-3.2-1b", 16, 2048, 32, 8, 64, 8192, 128256, 2, 1_235_814_400,
                   tied_embeddings=True),
        # meta-llama/Llama-3.2-3B config.json (tied embeddings)
        ModelShape("llama-3.2-3b", 28, 3072, 24, 8, 128, 8192, 128256, 2, 3_212_749_824,
                   tied_embeddings=True),
        # Qwen/Qwen2.5-7B config.json
        ModelShape("qwen2.5-7b", 28, 3584, 28, 4, 128, 18944, 152064, 2, 7_615_616_512),
        # THUDM/chatglm2-6b config.json (multi-query groups = 2), fp16 weights
        ModelShape("chatglm2-6b", 28, 4096, 32, 2, 128, 13696, 65024, 2, 6_243_584_000),
        # same, INT4 weights (SLICE's testbed model). 0.625 B/param ~ the 3.9 GB checkpoint.
        ModelShape("chatglm2-6b-int4", 28, 4096, 32, 2, 128, 13696, 65024, 2, 6_243_584_000,
                   weight_bytes_per_param=0.625),
        # meta-llama/Llama-2-7b-hf config.json (MHA)
        ModelShape("llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000, 2, 6_738_415_616),
        # meta-llama/Llama-2-70b-hf config.json (GQA, 8 kv heads) -- for Splitwise's table
        ModelShape("llama-2-70b", 80, 8192, 64, 8, 128, 28672, 32000, 2, 68_976_648_192),
        # facebook/opt-13b config.json (MHA, GELU MLP; ffn_dim 20480) -- for DistServe's table
        ModelShape("opt-13b", 40, 5120, 40, 40, 128, 20480, 50272, 2, 12_853_483_520,
                   tied_embeddings=True),
    )
}


def get_shape(name: str) -> ModelShape:
    """Look up a preset; unknown names raise ``ValueError`` listing the valid ones."""
    try:
        return MODEL_SHAPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODEL_SHAPES)}") from None
