"""The roofline model's vectorised decode times equal its per-step times bit for bit
(the simulator's fast-forward relies on it)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.engine import BatchShape
from slo_opt.models.catalog import get_engine

ENGINES = [get_engine(n, kind="roofline") for n in
           ("jetson-orin/llama-3.2-1b", "a100/llama-2-7b", "rtx4060ti/chatglm2-6b")]


@given(st.sampled_from(ENGINES), st.integers(1, 512), st.integers(0, 10**6),
       st.integers(1, 64))
def test_decode_step_times_equal_step_time(engine, n, ctx, k):
    v = engine.decode_step_times_s(n, ctx, k)
    ref = [engine.step_time_s(BatchShape(decode_seqs=n, decode_context_tokens=ctx + j * n))
           for j in range(k)]
    assert np.array_equal(v, np.array(ref))


def test_tensor_parallel_splits_work_and_adds_allreduce():
    import dataclasses

    base = ENGINES[1]
    tp4 = dataclasses.replace(base, tensor_parallel=4, interconnect_bytes_per_s=300e9)
    b = BatchShape(decode_seqs=8, decode_context_tokens=8 * 1024)
    # weights, GEMMs and KV reads are split over 4 GPUs; two all-reduces per layer are added
    tw, tg, tkv, _ta = base.components_s(b)
    tw4, tg4, tkv4, ta4 = tp4.components_s(b)
    assert (tw4, tg4, tkv4) == pytest.approx((tw / 4, tg / 4, tkv / 4))
    comm = tp4.allreduce_s(8)
    h = base.shape.hidden_size
    want = 2 * base.shape.num_layers * (8e-6 + 2 * 3 / 4 * 8 * h * 2 / 300e9)
    assert comm == pytest.approx(want)
    assert tp4.step_time_s(b) == pytest.approx(
        base.overhead_s + base.per_seq_s * 8 + max(tw4, tg4) + tkv4 + ta4 + comm)
    assert base.allreduce_s(8) == 0.0
    v = tp4.decode_step_times_s(8, 8 * 1024, 5)
    assert np.array_equal(v, [tp4.step_time_s(BatchShape(decode_seqs=8,
                                                         decode_context_tokens=8 * 1024 + 8 * j))
                              for j in range(5)])
    with pytest.raises(ValueError):
        dataclasses.replace(base, tensor_parallel=0)
