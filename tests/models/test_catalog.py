import pytest

from slo_opt.engine import BatchShape, EngineModel
from slo_opt.models.catalog import get_engine, list_profiles


def test_h100_llama8b_resolves():
    e = get_engine("h100/llama-3.1-8b")
    assert isinstance(e, EngineModel)
    assert e.kv_bytes_per_token == 131072
    assert e.kv_capacity_tokens % e.kv_block_tokens == 0
    # 80 GB * 0.9 - 16 GB weights - reserve, / 128 KiB ~ 450k tokens
    assert 400_000 < e.kv_capacity_tokens < 480_000
    t1 = e.step_time_s(BatchShape(decode_seqs=1, decode_context_tokens=512))
    assert 2e-3 < t1 < 20e-3


def test_slice_published_table():
    e = get_engine("slice-edge/chatglm2-6b-int4")
    names = {n: s for n, s, _ in list_profiles()}
    assert names["slice-edge/chatglm2-6b-int4"] == "published data"
    for k, ms in enumerate([14, 27, 38, 50, 60, 72, 83, 125, 126, 123, 124, 125, 126, 123, 124], 1):
        t = e.step_time_s(BatchShape(decode_seqs=k, decode_context_tokens=k * 100))
        assert t == pytest.approx(ms / 1e3)
    assert get_engine("rtx4060ti/chatglm2-6b-int4").step_time_s(BatchShape(decode_seqs=3)) == \
        pytest.approx(0.038)
    # beyond the table: sane (no KeyError, non-decreasing)
    assert e.step_time_s(BatchShape(decode_seqs=40)) >= 0.123
    assert e.step_time_s(BatchShape(prefill_tokens=100, prefill_seqs=1,
                                    prefill_context_tokens=100)) > 0.014


def test_unknown_names_and_kinds():
    with pytest.raises(ValueError, match="valid"):
        get_engine("tpu/llama-3.1-8b")
    with pytest.raises(ValueError, match="valid"):
        get_engine("h100/llama-3.1-8b", kind="magic")


def test_every_listed_profile_resolves():
    for name, source, desc in list_profiles():
        e = get_engine(name)
        assert e.step_time_s(BatchShape(decode_seqs=4, decode_context_tokens=4 * 256)) > 0, name
        r = get_engine(name, kind="roofline")
        assert r.step_time_s(BatchShape(decode_seqs=4, decode_context_tokens=1024)) > 0
        assert desc
