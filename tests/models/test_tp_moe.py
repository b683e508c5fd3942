"""Tensor-parallel and mixture-of-experts terms of the roofline, against hand computations."""

import dataclasses

import numpy as np
import pytest

from slo_opt.engine import BatchShape
from slo_opt.models.catalog import get_engine
from slo_opt.models.hardware import get_gpu
from slo_opt.models.kv import get_shape, kv_bytes_per_token, kv_capacity_tokens
from slo_opt.models.roofline import RooflineEngineModel


def _unit(model: str, gpu: str = "h200", **kw) -> RooflineEngineModel:
    return RooflineEngineModel("u", get_gpu(gpu), get_shape(model), 1.0, 1.0, 0.0, 0.0, **kw)


def test_moe_decode_reads_k_experts_per_token_and_all_for_big_batches():
    m = _unit("qwen3-30b-a3b")
    s, g = m.shape, m.gpu
    dense = s.body_params - s.num_layers * s.num_experts * s.expert_params
    for b in (1, 3, 1000):
        experts = 128 * (1 - (1 - 8 / 128) ** b)
        want_w = 2 * (dense + s.head_params + 48 * experts * s.expert_params) / \
            g.memory_bandwidth_bytes_per_s
        want_f = (2 * s.active_body_params * b + 2 * s.head_params * b) / \
            g.peak_bf16_flops_per_s
        tw, tg, tkv, ta = m.components_s(BatchShape(decode_seqs=b, decode_context_tokens=b * 100))
        assert tw == pytest.approx(want_w, rel=1e-12)
        assert tg == pytest.approx(want_f, rel=1e-12)
        assert tkv == pytest.approx(b * 100 * kv_bytes_per_token(s) / g.memory_bandwidth_bytes_per_s)
        assert ta == 0.0
    # one token reads 8 of 128 experts: far less than the weights; many tokens read them all
    t1 = m.components_s(BatchShape(decode_seqs=1, decode_context_tokens=1))[0]
    tall = m.components_s(BatchShape(decode_seqs=4096, decode_context_tokens=4096))[0]
    assert tall == pytest.approx(2 * (s.params - s.vocab_size * s.hidden_size)
                                 / g.memory_bandwidth_bytes_per_s, rel=1e-3)
    assert t1 < 0.2 * tall


def test_dense_lm_head_on_sampled_sequences_only():
    m = _unit("llama-3.1-8b")
    s = m.shape
    # a 1000-token prefill samples one sequence: LM head FLOPs for 1 row, layers for 1000
    tg = m.components_s(BatchShape(prefill_tokens=1000, prefill_seqs=1,
                                   prefill_context_tokens=1000))[1]
    want = (2 * s.body_params * 1000 + 2 * s.vocab_size * s.hidden_size) / \
        m.gpu.peak_bf16_flops_per_s
    assert tg == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("model", ["llama-2-70b", "mixtral-8x7b"])
def test_tensor_parallel_splits_and_adds_two_allreduces_per_layer(model):
    base = _unit(model, "h100")
    tp = dataclasses.replace(base, tensor_parallel=4, interconnect_bytes_per_s=450e9,
                             allreduce_latency_s=10e-6)
    b = BatchShape(decode_seqs=16, decode_context_tokens=16 * 2000)
    one, four = base.components_s(b), tp.components_s(b)
    assert four == pytest.approx(tuple(x / 4 for x in one), rel=1e-12)
    h, L = base.shape.hidden_size, base.shape.num_layers
    comm = 2 * L * (10e-6 + 2 * 3 / 4 * 16 * h * 2 / 450e9)
    assert tp.allreduce_s(16) == pytest.approx(comm, rel=1e-12)
    assert tp.step_time_s(b) == pytest.approx(max(four[0], four[1]) + four[2] + four[3] + comm,
                                              rel=1e-12)
    v = tp.decode_step_times_s(16, 32000, 4)
    assert np.array_equal(v, [tp.step_time_s(BatchShape(decode_seqs=16,
                                                        decode_context_tokens=32000 + 16 * j))
                              for j in range(4)])


def test_get_engine_tensor_parallel():
    e = get_engine("h100/llama-2-70b", tensor_parallel_size=4)
    assert e.tensor_parallel == 4 and e.interconnect_bytes_per_s == 450e9
    s = get_shape("llama-2-70b")
    # per GPU: a quarter of the weights, 2 of 8 KV heads
    assert e.kv_capacity_tokens == kv_capacity_tokens(get_gpu("h100").memory_bytes, s, 0.9, 16,
                                                      max_num_batched_tokens=8192,
                                                      max_num_seqs=1024,
                                                      tensor_parallel_size=4)
    with pytest.raises(ValueError, match="roofline"):
        get_engine("h100/llama-3.1-8b", kind="linear", tensor_parallel_size=2)
    with pytest.raises(ValueError, match="integer"):
        get_engine("h100/llama-3.1-8b", tensor_parallel_size=0)
    with pytest.raises(ValueError):
        get_engine("h100/llama-2-70b")  # 138 GB of weights do not fit one 80 GB GPU
    moe = get_engine("h200/mixtral-8x7b", tensor_parallel_size=2)
    assert moe.tensor_parallel == 2 and moe.shape.is_moe


def test_kv_capacity_tp_by_hand():
    s = get_shape("llama-2-70b")
    mem = 85_017_493_504
    got = kv_capacity_tokens(mem, s, 0.9, 16, max_num_batched_tokens=2048, max_num_seqs=256,
                             tensor_parallel_size=8)
    from slo_opt.models.kv import loaded_weight_bytes, profile_run_peak_bytes

    per_block = 16 * 2 * 80 * 1 * 128 * 2  # one KV head per GPU at TP8
    free = 0.9 * mem - loaded_weight_bytes(s) / 8 - profile_run_peak_bytes(s, 2048, 256)
    assert got == int(free // per_block) * 16
