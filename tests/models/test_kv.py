import pytest

from slo_opt.models.kv import (
    MODEL_SHAPES,
    ModelShape,
    get_shape,
    kv_bytes_per_token,
    kv_capacity_tokens,
    weight_bytes,
)


def test_llama31_8b_kv_bytes_and_weights():
    s = get_shape("llama-3.1-8b")
    assert kv_bytes_per_token(s) == 131072  # 128 KiB (simulators.md B.7)
    assert weight_bytes(s) == pytest.approx(16.06e9, rel=1e-3)


def test_vllm_rtx4090_block_count_reproduced():
    # vLLM: 2,588 blocks = 41,408 tokens, Llama-3.1-8B, 24 GB RTX 4090, util 0.9 (D.3)
    tokens = kv_capacity_tokens(24564 * 2**20, get_shape("llama-3.1-8b"), 0.9)
    assert tokens % 16 == 0
    assert tokens == pytest.approx(41408, rel=0.03)


def test_capacity_monotone_and_errors():
    s = get_shape("llama-3.2-1b")
    a = kv_capacity_tokens(40e9, s, 0.8)
    b = kv_capacity_tokens(40e9, s, 0.9)
    assert 0 < a < b
    with pytest.raises(ValueError):
        kv_capacity_tokens(8e9, get_shape("llama-3.1-8b"))
    with pytest.raises(ValueError):
        kv_capacity_tokens(80e9, s, 1.5)
    with pytest.raises(ValueError, match="known"):
        get_shape("gpt-5")


def test_shapes_consistent_with_param_counts():
    # recompute params from dimensions; presets must agree within 2 %
    for s in MODEL_SHAPES.values():
        if s.name.startswith("chatglm"):
            continue  # fused QKV with biases; skip
        h, L = s.hidden_size, s.num_layers
        attn = h * s.num_attention_heads * s.head_dim * 2 + 2 * h * s.num_kv_heads * s.head_dim
        mlp = (2 if s.name.startswith("opt") else 3) * h * s.intermediate_size  # GELU vs SwiGLU
        emb = s.vocab_size * h * (1 if s.tied_embeddings else 2)
        est = L * (attn + mlp) + emb
        assert est == pytest.approx(s.params, rel=0.02), s.name


def test_bad_shape_rejected():
    with pytest.raises(ValueError):
        ModelShape("x", 2, 64, 3, 2, 16, 128, 100, 2, 1000)
