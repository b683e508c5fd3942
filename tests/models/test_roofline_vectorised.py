"""The roofline model's vectorised decode times equal its per-step times bit for bit
(the simulator's fast-forward relies on it)."""

import numpy as np
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
