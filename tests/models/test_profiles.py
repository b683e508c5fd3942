"""Every shipped profile loads, fits, and behaves physically."""

import itertools
import math

import pytest

from slo_opt.engine import BatchShape
from slo_opt.models.catalog import get_engine, list_profiles, measured_rows
from slo_opt.models.hardware import GPUS
from slo_opt.models.kv import get_shape, kv_bytes_per_token, weight_bytes
from slo_opt.models.linear import LinearEngineModel
from slo_opt.models.power import power_model
from slo_opt.models.table import TableEngineModel

MEASURED = [n for n, s, _ in list_profiles() if s == "measured"]
ALL = [n for n, _, _ in list_profiles()]


def test_h100_profiles_shipped():
    assert {"h100/llama-3.1-8b", "h100/llama-3.2-1b"} <= set(MEASURED)


@pytest.mark.parametrize("name", MEASURED)
def test_measured_profile_fits_within_target(name):
    rows = list(measured_rows(name))
    assert {r.phase for r in rows} == {"prefill", "decode", "mixed"}
    assert len(rows) >= 50
    _, rep = LinearEngineModel.fit(rows, name)
    assert rep.overall["median_ape"] <= 5.0
    assert rep.overall["p90_ape"] <= 10.0
    tab = TableEngineModel.from_rows(rows, name)
    for r in rows:
        if r.phase == "decode":  # the table reproduces its own grid points
            assert tab.step_time_s(r.shape) == pytest.approx(r.latency_s, rel=1e-9)


@pytest.mark.parametrize("name", MEASURED)
def test_measured_data_is_physical(name):
    rows = measured_rows(name)
    dec = {(r.batch_size, r.context_tokens): r.latency_s for r in rows if r.phase == "decode"}
    # decode time grows with context at fixed batch (allow 3 % timing noise)
    for (b, c), t in dec.items():
        for (b2, c2), t2 in dec.items():
            if b2 == b and c2 > c:
                assert t2 >= t * 0.97, (b, c, c2)
    pre = sorted((r.tokens_per_seq, r.latency_s) for r in rows
                 if r.phase == "prefill" and r.batch_size == 1)
    assert all(b[1] >= a[1] * 0.97 for a, b in itertools.pairwise(pre))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("kind", ["linear", "table", "roofline"])
def test_engine_sanity(name, kind):
    try:
        e = get_engine(name, kind=kind)
    except ValueError as err:
        assert kind == "table" and "table" in str(err)
        return
    tb = [e.step_time_s(BatchShape(decode_seqs=b, decode_context_tokens=b * 1024))
          for b in (1, 2, 4, 8, 16, 32, 64, 128)]
    assert all(t > 0 and math.isfinite(t) for t in tb)
    # monotone in batch (a table interpolates raw medians: allow 2 % timing noise)
    tol = 0.02 if kind == "table" else 1e-9
    assert all(b >= a * (1 - tol) for a, b in itertools.pairwise(tb)), tb
    tp = [e.step_time_s(BatchShape(prefill_tokens=p, prefill_seqs=1, prefill_context_tokens=p))
          for p in (16, 64, 256, 1024, 4096)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(tp)), tp  # monotone in tokens
    tc = [e.step_time_s(BatchShape(decode_seqs=8, decode_context_tokens=8 * c))
          for c in (128, 1024, 4096)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(tc))
    # KV capacity consistent with memory: capacity * bytes + weights <= 0.9 * memory
    gpu_key, _, model_key = e.name.partition("/")
    if gpu_key in GPUS:
        shape = get_shape(model_key)
        used = e.kv_capacity_tokens * kv_bytes_per_token(shape) + weight_bytes(shape)
        assert used <= 0.9 * GPUS[gpu_key].memory_bytes
        assert used >= 0.75 * 0.9 * GPUS[gpu_key].memory_bytes
    assert e.kv_capacity_tokens % e.kv_block_tokens == 0


def test_power_model_measured_and_transferred():
    pm = power_model("h100/llama-3.1-8b")
    assert 40 < pm.idle_w < 120
    dec = BatchShape(decode_seqs=1, decode_context_tokens=512)
    pre = BatchShape(prefill_tokens=4096, prefill_seqs=1, prefill_context_tokens=4096)
    e = get_engine("h100/llama-3.1-8b")
    p_dec, p_pre = pm.power_w(dec, e.step_time_s(dec)), pm.power_w(pre, e.step_time_s(pre))
    assert pm.idle_w < p_dec < p_pre <= pm.gpu.max_power_w
    rows = [r for r in measured_rows("h100/llama-3.1-8b") if r.phase == "prefill"
            and r.tokens_per_seq == 4096]
    assert p_pre == pytest.approx(rows[0].power_w, rel=0.15)
    assert pm.step_energy_j(pre, 0.1) == pytest.approx(p_pre * 0.1)
    orin = power_model("jetson-orin/llama-3.2-1b")
    assert orin.idle_w <= orin.power_w(dec, 0.02) <= orin.gpu.max_power_w
