"""``batch_step_times_s`` (used by admission windows) equals ``step_time_s`` bit for bit."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_opt.engine import BatchShape
from slo_opt.models.catalog import get_engine, list_profiles


def _engines():
    out = [get_engine(n, kind="linear") for n, source, _ in list_profiles() if source == "measured"]
    rl = [get_engine(n, kind="roofline") for n in
          ("jetson-orin/llama-3.2-1b", "a100/llama-2-7b", "rtx4060ti/chatglm2-6b")]
    tp = dataclasses.replace(rl[1], tensor_parallel=4, interconnect_bytes_per_s=300e9)
    return out + rl + [tp]


ENGINES = _engines()


@st.composite
def _shapes(draw):
    n = draw(st.integers(1, 40))
    ints = st.integers(0, 9000)
    p = np.array(draw(st.lists(ints, min_size=n, max_size=n)))
    p[np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))] = 0
    b = np.array(draw(st.lists(st.integers(0, 600), min_size=n, max_size=n)))
    ctx = b * np.array(draw(st.lists(st.integers(1, 4000), min_size=n, max_size=n)))
    ps = np.where(p > 0, np.array(draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))), 0)
    pctx = np.where(p > 0, p + np.array(draw(st.lists(ints, min_size=n, max_size=n))), 0)
    return p, b, ctx, ps, pctx


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: f"{type(e).__name__}:{e.name}")
@settings(max_examples=40, deadline=None)
@given(shape=_shapes())
def test_batch_step_times_equal_scalar(engine, shape):
    p, b, ctx, ps, pctx = shape
    got = engine.batch_step_times_s(p, b, ctx, ps, pctx)
    want = np.array([engine.step_time_s(BatchShape(int(p[i]), int(b[i]), int(ctx[i]),
                                                   int(ps[i]), int(pctx[i])))
                     for i in range(p.size)])
    assert got.tobytes() == want.tobytes()


def test_both_engine_kinds_are_covered():
    kinds = {type(e).__name__ for e in ENGINES}
    assert {"LinearEngineModel", "RooflineEngineModel"} <= kinds
