import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_opt.engine import BatchShape, decode_step_times_s
from slo_opt.models.linear import LinearEngineModel
from slo_opt.models.table import ProfileRow

coef = st.floats(min_value=0.0, max_value=1e-2, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(c0=st.floats(1e-5, 1e-1), cp=coef, cq=coef, cd=coef, cc=coef, ck=coef,
       knee=st.integers(0, 600), b=st.integers(0, 1024), ctx=st.integers(0, 10**6),
       n=st.integers(0, 50))
def test_vectorised_decode_bit_identical(c0, cp, cq, cd, cc, ck, knee, b, ctx, n):
    m = LinearEngineModel("t", c0, cp, cq, cd, cc, ck, knee)
    fast = m.decode_step_times_s(b, ctx, n)
    slow = [m.step_time_s(BatchShape(decode_seqs=b, decode_context_tokens=ctx + j * b))
            for j in range(n)]
    assert fast.shape == (n,)
    assert fast.tolist() == slow  # exact float equality
    assert decode_step_times_s(m, b, ctx, n).tolist() == slow


def _synthetic_rows(true: LinearEngineModel, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        for c in (128, 512, 2048):
            t = true.step_time_s(BatchShape(decode_seqs=b, decode_context_tokens=b * c))
            rows.append(ProfileRow("g", "m", "decode", b, 1, c, t * (1 + noise * rng.normal())))
    for p in (32, 128, 512, 1024, 2048, 4096, 8192):
        t = true.step_time_s(BatchShape(prefill_tokens=p, prefill_seqs=1, prefill_context_tokens=p))
        rows.append(ProfileRow("g", "m", "prefill", 1, p, 0, t * (1 + noise * rng.normal())))
    return rows


def test_fit_recovers_known_coefficients():
    true = LinearEngineModel("t", 6e-3, 1.5e-5, 8e-10, 1e-5, 4e-8, 2e-5, 256)
    m, rep = LinearEngineModel.fit(_synthetic_rows(true), "fit")
    assert rep.overall["max_ape"] < 0.5
    assert m.knee_tokens == 256
    np.testing.assert_allclose(m.coefficients, true.coefficients, rtol=0.05, atol=1e-9)


def test_fit_nonnegative_under_noise():
    true = LinearEngineModel("t", 6e-3, 1.5e-5, 0.0, 0.0, 4e-8)
    m, rep = LinearEngineModel.fit(_synthetic_rows(true, noise=0.03, seed=1), "fit")
    assert np.all(m.coefficients >= 0)
    assert rep.overall["median_ape"] < 5


def test_empty_batch_and_validation():
    m = LinearEngineModel("t", 1e-3)
    assert m.step_time_s(BatchShape()) == 0.0
    with pytest.raises(ValueError):
        LinearEngineModel("t", 1e-3, c_decode_s=-1.0)
    with pytest.raises(ValueError):
        LinearEngineModel("t", 1e-3, kv_capacity_tokens=17)
    with pytest.raises(ValueError):
        LinearEngineModel.fit([], "x")
    with pytest.raises(ValueError):
        ProfileRow("g", "m", "decode", 1, 1, 0, math.nan)
