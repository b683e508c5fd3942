"""Model shapes, KV-cache bytes per token, weight bytes and KV capacity as vLLM sizes it.

KV capacity (vLLM v1, ``Worker.determine_available_memory`` and ``memory_profiling`` in
``vllm/utils/mem_utils.py``, read for this module; behaviour restated in our words):

1. vLLM takes a snapshot of the device after start-up: ``total`` is the device memory *as
   torch reports it* (``cudaMemGetInfo``; smaller than nvidia-smi's figure) and the memory it
   may use is ``requested = total * gpu_memory_utilization``;
2. it loads the weights (``weights``: parameters plus buffers such as the RoPE cos/sin cache
   of ``max_position_embeddings x head_dim`` elements) and runs one *profile run*: a forward
   pass of ``max_num_batched_tokens`` tokens split over ``min(max_num_seqs, tokens)`` dummy
   requests and one sampler pass over those requests with temperature, top-k and top-p set;
3. ``peak_activation`` is torch's allocated-bytes peak during that run minus what was
   allocated before it; ``non_torch`` is the growth of device memory held outside torch's
   allocator (device used minus torch reserved) since the snapshot;
4. ``kv_bytes = requested - weights - peak_activation - non_torch`` and the block count is
   ``floor(kv_bytes / (block_tokens * kv_bytes_per_token))`` (one layer group; for a
   plain decoder all layers share the block table). CUDA-graph memory is not subtracted
   (vLLM 0.19 does so only when ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1``).

:func:`profile_run_peak_bytes` estimates step 3 from the shapes: the sampler pass holds the
bf16 logits, an fp32 copy, the sorted values (fp32) and indices (int64), the sorted
probabilities (fp32), the top-p mask (bool) and the scattered result (fp32) at once: 27 bytes
per (request, vocabulary entry); the forward holds per token the gate-up output, the activation
and its product operand, the QKV output and four hidden-size vectors. On our H200 an emulation
of the profile run (``models/gpu_calibrate.py``) measured 1,283,096,576 bytes for Llama-3.1-8B
at (2048 tokens, 256 requests) where this estimate gives 1,213,661,184 (-5.4 %); non-torch
growth was 0 there (our engine loads no kernels outside torch). vLLM's own non-torch growth
and sampler memory are not public for the RTX 4090 run; see ``papers/engine-model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MODEL_SHAPES",
    "ModelShape",
    "get_shape",
    "kv_bytes_per_token",
    "kv_capacity_tokens",
    "loaded_weight_bytes",
    "profile_run_peak_bytes",
    "vllm_kv_blocks",
    "weight_bytes",
]

SAMPLER_BYTES_PER_LOGIT = 27
"""bf16 logits 2 + fp32 copy 4 + sorted values 4 + sort indices 8 + probabilities 4 + top-p
mask 1 + scattered result 4 (see the module docstring)."""


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
    max_position_embeddings : int
        Positions of the RoPE cos/sin cache vLLM keeps on the device (0: no RoPE cache).
    num_experts, experts_per_token, moe_intermediate_size : int
        Mixture-of-experts MLP (0: dense): experts per layer, experts each token is routed
        to (top-k), and one expert's SwiGLU inner width. ``intermediate_size`` is then the
        width of an always-active shared MLP (0 if none; dense models need >= 1).
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
    max_position_embeddings: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0

    def __post_init__(self) -> None:
        ints = (self.num_layers, self.hidden_size, self.num_attention_heads, self.num_kv_heads,
                self.head_dim, self.vocab_size, self.dtype_bytes, self.params)
        if any(int(v) < 1 for v in ints) or self.intermediate_size < (0 if self.num_experts
                                                                        else 1):
            raise ValueError(f"ModelShape {self.name!r}: all dimensions must be >= 1")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(f"ModelShape {self.name!r}: attention heads must be a multiple of "
                             "kv heads")
        moe = (self.num_experts, self.experts_per_token, self.moe_intermediate_size)
        if any(v < 0 for v in moe) or (any(moe) and not all(moe)) or \
                self.experts_per_token > self.num_experts:
            raise ValueError(f"ModelShape {self.name!r}: MoE needs num_experts >= "
                             "experts_per_token >= 1 and moe_intermediate_size >= 1 (or all 0)")

    @property
    def is_moe(self) -> bool:
        """Whether the MLP is a mixture of experts."""
        return self.num_experts > 0

    @property
    def expert_params(self) -> int:
        """Parameters of one expert in one layer (gate, up, down: ``3 * h * I_e``)."""
        return 3 * self.hidden_size * self.moe_intermediate_size

    @property
    def head_params(self) -> int:
        """LM-head parameters (``vocab * hidden``; read once per step even if tied)."""
        return self.vocab_size * self.hidden_size

    @property
    def body_params(self) -> int:
        """Parameters of the decoder layers (all experts included): params less embeddings."""
        emb = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return self.params - emb

    @property
    def active_body_params(self) -> int:
        """Decoder-layer parameters one token multiplies (top-k experts only for MoE)."""
        if not self.is_moe:
            return self.body_params
        idle = (self.num_experts - self.experts_per_token) * self.expert_params
        return self.body_params - self.num_layers * idle

    def experts_read(self, tokens: float) -> float:
        """Expected distinct experts per layer that ``tokens`` tokens activate.

        Uniform independent routing: ``E * (1 - (1 - k/E) ** tokens)`` (``k`` for one token,
        all ``E`` for many). 0 for a dense model.
        """
        if not self.is_moe or tokens <= 0:
            return 0.0
        e, k = self.num_experts, self.experts_per_token
        return e * (1.0 - (1.0 - k / e) ** tokens)

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


def loaded_weight_bytes(shape: ModelShape) -> int:
    """Device bytes vLLM counts as weights: parameters plus the RoPE cos/sin cache (bf16)."""
    return weight_bytes(shape) + shape.max_position_embeddings * shape.head_dim * \
        shape.dtype_bytes


def profile_run_peak_bytes(shape: ModelShape, max_num_batched_tokens: int = 2048,
                           max_num_seqs: int = 256) -> int:
    """Estimated torch peak of vLLM's profile run above the weights (module docstring)."""
    if max_num_batched_tokens < 1 or max_num_seqs < 1:
        raise ValueError("max_num_batched_tokens and max_num_seqs must be >= 1")
    reqs = min(max_num_seqs, max_num_batched_tokens)
    sampler = SAMPLER_BYTES_PER_LOGIT * reqs * shape.vocab_size
    per_token = shape.dtype_bytes * (
        4 * shape.intermediate_size + 4 * shape.hidden_size
        + (shape.num_attention_heads + 2 * shape.num_kv_heads) * shape.head_dim)
    return sampler + max_num_batched_tokens * per_token


def vllm_kv_blocks(total_memory_bytes: float, utilization: float, weights_bytes: float,
                   peak_activation_bytes: float, non_torch_bytes: float,
                   block_bytes: int) -> int:
    """vLLM's KV block count: ``floor((total*util - weights - peak - non_torch) / block)``.

    Raises
    ------
    ValueError
        If the utilisation is out of range or nothing is left for one block.
    """
    if not 0.0 < utilization <= 1.0:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be >= 1, got {block_bytes}")
    free = total_memory_bytes * utilization - weights_bytes - peak_activation_bytes - \
        non_torch_bytes
    if free < block_bytes:
        raise ValueError(
            f"weights ({weights_bytes / 1e9:.2f} GB) + activation peak "
            f"({peak_activation_bytes / 1e9:.2f} GB) + non-torch ({non_torch_bytes / 1e9:.2f} "
            f"GB) do not fit in {total_memory_bytes * utilization / 1e9:.2f} GB")
    return int(free // block_bytes)


def kv_capacity_tokens(
    gpu_memory_bytes: float,
    shape: ModelShape,
    utilization: float = 0.9,
    block_tokens: int = 16,
    *,
    max_num_batched_tokens: int = 2048,
    max_num_seqs: int = 256,
    peak_activation_bytes: float | None = None,
    non_torch_bytes: float = 0.0,
    tensor_parallel_size: int = 1,
) -> int:
    """KV capacity in tokens as vLLM sizes it (module docstring), whole blocks.

    Parameters
    ----------
    gpu_memory_bytes : float
        Total device memory as torch reports it (``torch.cuda.mem_get_info()[1]``).
    shape : ModelShape
        The served model.
    utilization : float
        vLLM ``gpu_memory_utilization`` in (0, 1].
    block_tokens : int
        Paged-attention block size.
    max_num_batched_tokens, max_num_seqs : int
        The engine's scheduler limits (they size the profile run).
    peak_activation_bytes : float, optional
        Measured profile-run peak; default :func:`profile_run_peak_bytes`.
    non_torch_bytes : float
        Growth of non-torch device memory during start-up (0: none measured).
    tensor_parallel_size : int
        GPUs of one tensor-parallel group: each holds ``1/t`` of the weights and
        ``max(1, kv_heads / t)`` KV heads (vLLM replicates KV heads when ``t`` exceeds them);
        the profile-run peak is kept whole (the sampler sees the full vocabulary).
        ``gpu_memory_bytes`` is per GPU.

    Returns
    -------
    int
        Tokens (a multiple of ``block_tokens``).

    Raises
    ------
    ValueError
        If the weights and activations do not fit, or arguments are out of range.
    """
    if block_tokens < 1:
        raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
    peak = profile_run_peak_bytes(shape, max_num_batched_tokens, max_num_seqs) \
        if peak_activation_bytes is None else peak_activation_bytes
    t = int(tensor_parallel_size)
    if t < 1:
        raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
    heads = max(1, shape.num_kv_heads // t) if shape.num_kv_heads >= t else 1
    per_token = kv_bytes_per_token(shape) * heads // shape.num_kv_heads
    try:
        blocks = vllm_kv_blocks(gpu_memory_bytes, utilization, loaded_weight_bytes(shape) / t,
                                peak, non_torch_bytes, block_tokens * per_token)
    except ValueError as e:
        raise ValueError(f"{shape.name}: {e}") from None
    return blocks * block_tokens


MODEL_SHAPES: dict[str, ModelShape] = {
    s.name: s
    for s in (
        # meta-llama/Llama-3.1-8B config.json
        ModelShape("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256, 2, 8_030_261_248,
                   max_position_embeddings=131072),
        # meta-llama/Llama-3.2-1B config.json (tied embeddings)
        ModelShape("llama-3.2-1b", 16, 2048, 32, 8, 64, 8192, 128256, 2, 1_235_814_400,
                   tied_embeddings=True, max_position_embeddings=131072),
        # meta-llama/Llama-3.2-3B config.json (tied embeddings)
        ModelShape("llama-3.2-3b", 28, 3072, 24, 8, 128, 8192, 128256, 2, 3_212_749_824,
                   tied_embeddings=True, max_position_embeddings=131072),
        # Qwen/Qwen2.5-7B config.json
        ModelShape("qwen2.5-7b", 28, 3584, 28, 4, 128, 18944, 152064, 2, 7_615_616_512,
                   max_position_embeddings=131072),
        # THUDM/chatglm2-6b config.json (multi-query groups = 2), fp16 weights
        ModelShape("chatglm2-6b", 28, 4096, 32, 2, 128, 13696, 65024, 2, 6_243_584_000),
        # same, INT4 weights (SLICE's testbed model). 0.625 B/param ~ the 3.9 GB checkpoint.
        ModelShape("chatglm2-6b-int4", 28, 4096, 32, 2, 128, 13696, 65024, 2, 6_243_584_000,
                   weight_bytes_per_param=0.625),
        # meta-llama/Llama-2-7b-hf config.json (MHA)
        ModelShape("llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000, 2, 6_738_415_616,
                   max_position_embeddings=4096),
        # meta-llama/Llama-2-70b-hf config.json (GQA, 8 kv heads) -- for Splitwise's table
        ModelShape("llama-2-70b", 80, 8192, 64, 8, 128, 28672, 32000, 2, 68_976_648_192,
                   max_position_embeddings=4096),
        # Qwen/Qwen3-30B-A3B config.json: 128 experts, top-8, expert width 768, no shared MLP
        ModelShape("qwen3-30b-a3b", 48, 2048, 32, 4, 128, 0, 151936, 2, 30_532_122_624,
                   max_position_embeddings=40960, num_experts=128, experts_per_token=8,
                   moe_intermediate_size=768),
        # mistralai/Mixtral-8x7B-v0.1 config.json: 8 experts, top-2, expert width 14336
        ModelShape("mixtral-8x7b", 32, 4096, 32, 8, 128, 0, 32000, 2, 46_702_792_704,
                   max_position_embeddings=32768, num_experts=8, experts_per_token=2,
                   moe_intermediate_size=14336),
        # 01-ai/Yi-34B config.json (Sarathi-Serve's OSDI'24 model)
        ModelShape("yi-34b", 60, 7168, 56, 8, 128, 20480, 64000, 2, 34_388_917_248,
                   max_position_embeddings=4096),
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
