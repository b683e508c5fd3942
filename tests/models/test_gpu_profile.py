import json

import pytest

torch = pytest.importorskip("torch")

from slo_opt.models import gpu_profile as gp  # noqa: E402
from slo_opt.models.linear import LinearEngineModel  # noqa: E402
from slo_opt.models.table import read_profile_csv  # noqa: E402


def test_gqa_decode_fold_matches_reference():
    dec = gp.Decoder(gp.TINY, "cpu", torch.float32, max_positions=64)
    s = gp.TINY
    b, c = 3, 10
    q = torch.randn(b, s.num_attention_heads, s.head_dim)
    kn = torch.randn(b, s.num_kv_heads, s.head_dim)
    vn = torch.randn(b, s.num_kv_heads, s.head_dim)
    kc = torch.randn(b, s.num_kv_heads, c, s.head_dim)
    vc = torch.randn(b, s.num_kv_heads, c, s.head_dim)
    out = dec._attn_decode(q, kn, vn, kc, vc, c)
    rep = s.num_attention_heads // s.num_kv_heads
    ref = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, None, :], kc.repeat_interleave(rep, 1), vc.repeat_interleave(rep, 1))
    torch.testing.assert_close(out, ref.reshape(b, -1))
    torch.testing.assert_close(kc[:, :, c - 1], kn)  # the new token was written


def test_decode_step_matches_prefill_of_same_sequence():
    # greedy token after a decode step over a cache filled from the same prompt equals the
    # prefill's prediction: checks RoPE positions, cache layout and the causal path together
    s = gp.TINY
    dec = gp.Decoder(s, "cpu", torch.float32, max_positions=64)
    c = 12
    tokens = torch.randint(0, s.vocab_size, (c,))
    with torch.inference_mode():
        want = dec.step(tokens, torch.arange(c), (1, c), (0, 0), None)
        # fill caches by recomputing K/V of the first c-1 tokens layer by layer
        caches = [(torch.zeros(1, s.num_kv_heads, c, s.head_dim),
                   torch.zeros(1, s.num_kv_heads, c, s.head_dim)) for _ in range(s.num_layers)]
        x = dec.embed[tokens[: c - 1]]
        pos = torch.arange(c - 1)
        hq, hk, hd = s.num_attention_heads, s.num_kv_heads, s.head_dim
        for li, lw in enumerate(dec.layers):
            h = dec._rms(x, lw["ln1"])
            qkv = h @ lw["wqkv"]
            n = qkv.shape[0]
            q = dec._rope(qkv[:, : hq * hd].view(n, hq, hd), pos)
            k = dec._rope(qkv[:, hq * hd:(hq + hk) * hd].view(n, hk, hd), pos)
            v = qkv[:, (hq + hk) * hd:].reshape(n, hk, hd)
            caches[li][0][0, :, : c - 1] = k.transpose(0, 1)
            caches[li][1][0, :, : c - 1] = v.transpose(0, 1)
            x = x + dec._attn_prefill(q, k, v, 1, n) @ lw["wo"]
            h = dec._rms(x, lw["ln2"])
            g, u = (h @ lw["wgu"]).chunk(2, -1)
            x = x + (torch.nn.functional.silu(g) * u) @ lw["wd"]
        got = dec.step(tokens[c - 1:], torch.tensor([c - 1]), (0, 0), (1, c), caches)
    assert got.tolist() == want.tolist()


def test_cli_tiny_sweep_writes_fittable_csv(tmp_path):
    rc = gp.main(["--models", "tiny", "--tiny-grid", "--dtype", "fp32", "--device", "cpu",
                  "--out", str(tmp_path)])
    assert rc == 0
    rows = read_profile_csv(tmp_path / "cpu" / "tiny.csv")
    phases = {r.phase for r in rows}
    assert phases == {"prefill", "decode", "mixed"}
    assert all(r.latency_s > 0 for r in rows)
    _model, rep = LinearEngineModel.fit(rows, "cpu/tiny")
    assert rep.overall["n"] == len(rows)
    meta = json.loads((tmp_path / "cpu" / "provenance.json").read_text())
    assert meta["models"]["tiny"]["rows"] == len(rows)
    assert "command" in meta and "torch" in meta


def test_gpu_key_from_name():
    assert gp.gpu_key_from_name("NVIDIA H100 80GB HBM3") == "h100"
    assert gp.gpu_key_from_name("NVIDIA H200") == "h200"
    assert gp.gpu_key_from_name("NVIDIA GeForce RTX 4090") == "rtx4090"
