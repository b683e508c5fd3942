"""The layerwise engine builder: hand-computed rows, fill rules, vectorisation, provenance."""

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.engine import BatchShape
from slo_opt.models.build_engine import (
    LAYER_OPS,
    build_from_llmservingsim,
    main,
    vllm_default_capture_sizes,
)
from slo_opt.models.catalog import get_engine, list_profiles, profiles_dir
from slo_opt.models.layerwise import load_layerwise

TRACES = Path(os.environ.get("SLO_OPT_TRACES_DIR", Path(__file__).resolve().parents[3]
                             / "shared" / "traces"))
LSS = TRACES / "calibration_profiles" / "llmservingsim"
BUILT = {"rtx4090": "RTX4090", "rtxpro6000": "RTXPRO6000"}

OPS_US = {"layernorm": 1.0, "qkv_proj": 10.0, "rotary_emb": 2.0, "o_proj": 5.0,
          "gate_up_proj": 20.0, "act_fn": 3.0, "down_proj": 9.0, "embedding": 4.0,
          "final_layernorm": 1.5}


def _write(path: Path, header: list[str], rows: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _attn_us(pc: int, kp: int, nd: int, kd: int) -> float:
    """A synthetic attention kernel, linear in every axis (so interpolation is exact)."""
    return 3.0 + 0.01 * pc + 0.001 * kp + 0.5 * nd + 0.002 * nd * kd / 16 + 0.0001 * pc * kp


@pytest.fixture
def tiny_profile(tmp_path: Path) -> Path:
    d = tmp_path / "prof" / "tp1"
    d.mkdir(parents=True)
    toks = (1, 2, 4, 8)
    _write(d / "dense.csv", ["layer", "tokens", "time_us"],
           [(op, t, us * t) for op, us in OPS_US.items() for t in toks])
    _write(d / "per_sequence.csv", ["layer", "sequences", "time_us"],
           [(op, s, base + s) for op, base in (("lm_head", 100.0), ("sampler", 20.0))
            for s in (1, 2, 4)])
    rows = []
    for pc in (0, 16, 32):
        for kp in ((0,) if pc == 0 else (0, 16, 32)):
            for nd in (0, 1, 2, 4):
                if pc == 0 and nd == 0:
                    continue
                if pc > 0 and nd == 4:
                    continue  # mixed cells stop one doubling short (rule 5)
                for kd in ((0,) if nd == 0 else (16, 32)):
                    rows.append((pc, kp, nd, kd, _attn_us(pc, kp, nd, kd)))
    _write(d / "attention.csv", ["prefill_chunk", "kv_prefill", "n_decode", "kv_decode",
                                 "time_us"], rows)
    (tmp_path / "prof" / "meta.yaml").write_text("vllm_version: 0.19.0\ngpu: tiny\n")
    return tmp_path / "prof"


def test_builder_matches_hand_computed_rows(tiny_profile):
    eng, prov = build_from_llmservingsim(tiny_profile, name="x/y", num_layers=3,
                                         graph_gap_s=2e-6, eager_gap_s=1e-6)
    layer = sum(LAYER_OPS[o] * OPS_US[o] for o in LAYER_OPS)  # per token, us
    model = OPS_US["embedding"] + OPS_US["final_layernorm"]
    # decode-only step, 2 sequences at context 16 each, no graph capture sizes -> eager gap
    t = eng.step_time_s(BatchShape(decode_seqs=2, decode_context_tokens=32))
    want = 3 * layer * 2 + model * 2 + 3 * _attn_us(0, 0, 2, 16) + (100 + 2) + (20 + 2) + 3 * 1.0
    assert t == pytest.approx(want * 1e-6, rel=1e-12)
    # one fresh 4-token prefill chunk... (chunk 4 lies below the grid's first chunk 16:
    # linear between the no-prefill cell and chunk 16)
    t = eng.step_time_s(BatchShape(prefill_tokens=8, prefill_seqs=1, prefill_context_tokens=8))
    a = _attn_us(16, 0, 0, 0) * 8 / 16  # between (0,0,0,0)=0 (rule 1) and chunk 16
    want = 3 * layer * 8 + model * 8 + 3 * a + 101 + 21 + 3 * 1.0
    assert t == pytest.approx(want * 1e-6, rel=1e-12)
    # rule 5: mixed cell at 4 decodes = mixed at 2 + pure-decode increment 2 -> 4
    a4 = eng.attention_s(16, 1, 16, 4, 4 * 32)
    inc = _attn_us(0, 0, 4, 32) - _attn_us(0, 0, 2, 32)
    assert float(a4) == pytest.approx((_attn_us(16, 0, 2, 32) + inc) * 1e-6, rel=1e-12)
    assert prov["grid_fill_counts"]["rule5_last_decode_count"] > 0
    # graph padding and gap: capture sizes (1, 2, 4) -> 3 decodes run as 4 tokens + graph gap
    eng2, _ = build_from_llmservingsim(tiny_profile, name="x/y", num_layers=3,
                                       capture_sizes=(1, 2, 4), graph_gap_s=2e-6)
    t = eng2.step_time_s(BatchShape(decode_seqs=3, decode_context_tokens=48))
    want = 3 * layer * 4 + model * 4 + 3 * _attn_us(0, 0, 3, 16) + 103 + 23 + 3 * 2.0
    # 3 decodes lie between grid rows 2 and 4: linear in n_decode
    assert t == pytest.approx(want * 1e-6, rel=1e-9)


def test_two_prefill_chunks_are_two_chunks(tiny_profile):
    eng, _ = build_from_llmservingsim(tiny_profile, name="x/y", num_layers=1)
    one = float(eng.attention_s(16, 1, 16, 0, 0))
    two = float(eng.attention_s(32, 2, 32, 0, 0))
    floor = eng.launch_floor_s
    assert two == pytest.approx(2 * one - floor, rel=1e-12)
    # LLMServingSim's summed lookup would charge the 32-token chunk instead
    assert two < float(eng.attention_s(32, 1, 32, 0, 0)) + one


def test_builder_rejects_incomplete_tables(tiny_profile):
    (tiny_profile / "tp1" / "per_sequence.csv").unlink()
    with pytest.raises(ValueError, match="per_sequence"):
        build_from_llmservingsim(tiny_profile, name="x/y", num_layers=1)


@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 300), st.integers(0, 9000),
                          st.integers(0, 4), st.integers(0, 5000)), min_size=1, max_size=20))
def test_vectorised_equals_scalar(shapes):
    eng = get_engine("rtx4090/llama-3.1-8b", kind="table")
    rows = []
    for p, b, c, s, prior in shapes:
        s = min(s, p) if p else 0
        s = max(s, 1) if p else 0
        rows.append(BatchShape(prefill_tokens=p, decode_seqs=b, decode_context_tokens=b * c,
                               prefill_seqs=s, prefill_context_tokens=p + s * prior if p else 0))
    vec = eng.batch_step_times_s(*(np.array([getattr(r, k) for r in rows]) for k in (
        "prefill_tokens", "decode_seqs", "decode_context_tokens", "prefill_seqs",
        "prefill_context_tokens")))
    for r, v in zip(rows, vec):
        assert eng.step_time_s(r) == v
        assert (v > 0) == (r.prefill_tokens + r.decode_seqs > 0)


def test_capture_sizes_are_the_runs():
    sizes = vllm_default_capture_sizes(512)
    assert sizes[:5] == (1, 2, 4, 8, 16) and sizes[-3:] == (480, 496, 512) and len(sizes) == 51
    meta = TRACES / "vllm_runs" / "RTX4090-Llama-3.1-8B" / "vllm_meta.json"
    if meta.is_file():
        cc = json.loads(meta.read_text())["resolved_config"]["compilation_config"]
        assert tuple(cc["cudagraph_capture_sizes"]) == sizes


@pytest.mark.parametrize("gpu", sorted(BUILT))
def test_shipped_built_profile_provenance(gpu):
    d = profiles_dir() / gpu
    prov = json.loads((d / "llama-3.1-8b.provenance.json").read_text())
    assert (d / "README.md").is_file()
    for key in ("sources", "built_by", "built_at_utc", "grid_fill_counts", "graph_correction"):
        assert key in prov
    assert prov["built_by"].startswith("python -m slo_opt.models.build_engine")
    assert prov["graph_correction"]["graph_gap_us_used"] == pytest.approx(
        json.loads((profiles_dir() / "h200" / "calibration.json").read_text())[
            "graph_gap_us_per_layer"])
    assert (gpu + "/llama-3.1-8b", "built") in [(n, s) for n, s, _ in list_profiles()]
    for v in prov["sources"].values():
        src = TRACES / v["file"]
        if src.is_file():  # the shared traces are not shipped with the package
            assert hashlib.sha256(src.read_bytes()).hexdigest() == v["sha256"]


@pytest.mark.parametrize("gpu", sorted(BUILT))
def test_shipped_profile_is_what_the_script_builds(gpu, tmp_path):
    src = LSS / BUILT[gpu] / "meta-llama" / "Llama-3.1-8B" / "bf16"
    if not src.is_dir():
        pytest.skip("shared traces not present")
    main(["--source", str(src), "--gpu", gpu, "--model", "llama-3.1-8b", "--graph-correction",
          str(profiles_dir() / "h200" / "calibration.json"), "--out", str(tmp_path)])
    new = json.loads((tmp_path / "llama-3.1-8b.layerwise.json").read_text())
    old = json.loads((profiles_dir() / gpu / "llama-3.1-8b.layerwise.json").read_text())
    assert new == old


def test_rtx4090_grid_point_is_the_csv_sum():
    # an independent read of the CSVs: B=32 decodes at context 1024 (a capture size, on-grid)
    d = LSS / "RTX4090" / "meta-llama" / "Llama-3.1-8B" / "bf16" / "tp1"
    if not d.is_dir():
        pytest.skip("shared traces not present")

    def val(name, key, x):
        with open(d / name, newline="") as f:
            for r in csv.DictReader(f):
                if all(int(r[k]) == v for k, v in zip(key, x)):
                    return float(r["time_us"])
        raise KeyError(x)

    with open(d / "dense.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    per_layer = sum(LAYER_OPS[r["layer"]] * float(r["time_us"]) for r in rows
                    if r["layer"] in LAYER_OPS and int(r["tokens"]) == 32)
    once = sum(float(r["time_us"]) for r in rows
               if r["layer"] in ("embedding", "final_layernorm") and int(r["tokens"]) == 32)
    with open(d / "per_sequence.csv", newline="") as f:
        seq = sum(float(r["time_us"]) for r in csv.DictReader(f) if int(r["sequences"]) == 32)
    attn = val("attention.csv", ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode"),
               (0, 0, 32, 1024))
    eng = load_layerwise(profiles_dir() / "rtx4090" / "llama-3.1-8b.layerwise.json")
    want = 32 * (per_layer + attn + eng.graph_gap_s * 1e6) + once + seq
    got = eng.step_time_s(BatchShape(decode_seqs=32, decode_context_tokens=32 * 1024))
    assert got == pytest.approx(want * 1e-6, rel=1e-6)


def test_every_profile_folder_has_its_provenance():
    # each shipped profile folder says where its numbers come from (README) and how they were
    # produced (provenance JSON, or the layer profiler's meta.yaml)
    for d in sorted(p for p in profiles_dir().rglob("*") if p.is_dir() and p.name != "tp1"):
        tables = list(d.glob("*.csv")) + list(d.glob("*.layerwise.json"))
        if not tables and not (d / "tp1").is_dir():
            continue
        readme = d / "README.md" if (d / "README.md").is_file() else d.parent / "README.md"
        assert readme.is_file(), d
        assert any(d.glob("*provenance.json")) or (d / "meta.yaml").is_file() or \
            d.name == "slice-edge", d
