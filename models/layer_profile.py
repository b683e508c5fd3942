"""Per-layer operator profile of our fused decoder, in LLMServingSim's table format.

Run as ``python -m slo_opt.models.layer_profile --model llama-3.1-8b --out DIR``: writes
``DIR/<gpu>/<model>/tp1/{dense,attention,per_sequence}.csv`` and ``DIR/<gpu>/<model>/meta.yaml``
so that :mod:`slo_opt.models.build_engine` builds an engine from *our* GPU the same way it
builds one from LLMServingSim's public tables. Each operator of one layer of
:class:`slo_opt.models.gpu_profile.Decoder` (``kernels="fused"``) is timed alone as the sum
of its kernel durations (``torch.profiler`` on CUDA, as LLMServingSim sums the CUDA time of a
module; wall-clock median on the CPU, for tests):

* dense, against tokens: ``layernorm`` (fused residual add + RMSNorm), ``qkv_proj``,
  ``rotary_emb``, ``o_proj``, ``gate_up_proj``, ``act_fn`` (SiLU-and-mul), ``down_proj``,
  ``embedding``, ``final_layernorm``;
* per sequence: ``lm_head`` (the sampled rows' logits), ``sampler`` (greedy argmax);
* attention on a 4-D grid (prefill chunk, its cached tokens, decodes, their context): the new
  tokens' K/V written into a contiguous cache, then SDPA (a chunk after cached tokens uses a
  lower-right causal mask; decodes fold their query heads per KV head).

``torch`` is imported only inside functions.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import statistics
import sys
import time
from typing import Any

try:
    from slo_opt.models import gpu_profile as gp
except ImportError:  # plain script next to gpu_profile.py and kv.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gpu_profile as gp  # type: ignore[no-redef]

__all__ = ["GRID", "TINY_LAYER_GRID", "main", "profile_layers"]

GRID = {
    "tokens": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
    "sequences": (1, 2, 4, 8, 16, 32, 64, 128, 256),
    "prefill_chunk": (16, 64, 256, 1024, 2048),
    "kv_prefill": (0, 256, 1024, 4096, 16384),
    "n_decode": (1, 4, 16, 64, 256),
    "kv_decode": (16, 256, 1024, 4096, 16384),
    "mixed_max_decode": 64,
}
TINY_LAYER_GRID = {"tokens": (1, 2, 4, 8), "sequences": (1, 2, 4), "prefill_chunk": (16, 32),
                   "kv_prefill": (0, 16), "n_decode": (1, 2, 4), "kv_decode": (16, 32),
                   "mixed_max_decode": 2}


def _kernel_sum(fn: Any, reps: int) -> float:
    try:
        from slo_opt.models.gpu_calibrate import kernel_sum_s
    except ImportError:
        from gpu_calibrate import kernel_sum_s  # type: ignore[no-redef]
    return kernel_sum_s(fn, reps)[0]


def profile_layers(shape: Any, device: str, grid: dict[str, Any], log=print,
                   time_budget_s: float = 300.0) -> dict[str, list[tuple]]:
    """Time every operator of one layer on ``grid``; rows per table (microseconds)."""
    import torch

    t_start = time.time()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    max_pos = max(grid["kv_prefill"]) + max(grid["prefill_chunk"]) + 8
    s = shape
    one = type(s)(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, "num_layers": 1})
    dec = gp.Decoder(one, device, dtype, max_positions=max(max_pos, max(grid["kv_decode"]) + 8),
                     kernels="fused")
    fo = dec.fused_ops
    lw = dec.layers[0]
    hq, hk, hd, h = s.num_attention_heads, s.num_kv_heads, s.head_dim, s.hidden_size
    if device.startswith("cuda"):
        measure = _kernel_sum_measure
    else:
        measure = _wall_measure
    gen = torch.Generator(device=device).manual_seed(3)

    def rnd(*dims: int) -> Any:
        return torch.randn(*dims, device=device, dtype=dtype, generator=gen) * 0.1

    dense: list[tuple] = []
    with torch.inference_mode():
        for n in grid["tokens"]:
            x, r = rnd(n, h), rnd(n, h)
            q, k = rnd(n, hq, hd), rnd(n, hk, hd)
            pos = torch.arange(n, device=device) % max_pos
            cos, sin = dec.cos[pos], dec.sin[pos]
            gu = rnd(n, 2 * s.intermediate_size)
            act = rnd(n, s.intermediate_size)
            tok = torch.randint(0, s.vocab_size, (n,), device=device, generator=gen)
            ops = {
                "layernorm": lambda x=x, r=r: fo.add_rms(x, r, lw["ln1"]),
                "qkv_proj": lambda x=x: x @ lw["wqkv"],
                "rotary_emb": lambda q=q, k=k, c=cos, sn=sin: fo.rope(q, k, c, sn),
                "o_proj": lambda x=x: x @ lw["wo"],
                "gate_up_proj": lambda x=x: x @ lw["wgu"],
                "act_fn": lambda gu=gu: fo.silu_mul(gu),
                "down_proj": lambda a=act: a @ lw["wd"],
                "embedding": lambda t=tok: dec.embed[t],
                "final_layernorm": lambda x=x: fo.rms(x, dec.final_norm),
            }
            for name, fn in ops.items():
                dense.append((name, n, round(measure(fn) * 1e6, 4)))
        log(f"[layers] dense done ({len(dense)} rows, {time.time() - t_start:.1f}s)")
        per_seq: list[tuple] = []
        for n in grid["sequences"]:
            x = rnd(n, h)
            logits = x @ dec.lm_head.T
            per_seq.append(("lm_head", n, round(measure(lambda x=x: x @ dec.lm_head.T) * 1e6, 4)))
            per_seq.append(("sampler", n, round(measure(
                lambda lg=logits: torch.argmax(lg.float(), dim=-1)) * 1e6, 4)))
        attn: list[tuple] = []
        kd_max = max(grid["kv_decode"])
        nd_max = max(grid["n_decode"])
        kp_max = max(grid["kv_prefill"]) + max(grid["prefill_chunk"])
        cache_d = torch.zeros(2, nd_max * kd_max * hk * hd, device=device, dtype=dtype)
        cache_p = torch.zeros(2, kp_max * hk * hd, device=device, dtype=dtype)
        points = [(0, 0, nd, kd) for nd in grid["n_decode"] for kd in grid["kv_decode"]]
        points += [(pc, kp, 0, 0) for pc in grid["prefill_chunk"] for kp in grid["kv_prefill"]]
        points += [(pc, kp, nd, kd) for pc in grid["prefill_chunk"] for kp in grid["kv_prefill"]
                   for nd in grid["n_decode"] if nd <= grid["mixed_max_decode"]
                   for kd in grid["kv_decode"]]
        for pc, kp, nd, kd in points:
            if time.time() - t_start > time_budget_s:
                log("[layers] time budget reached; attention grid incomplete")
                break
            fn = _attention_fn(dec, torch, cache_p, cache_d, pc, kp, nd, kd, rnd)
            attn.append((pc, kp, nd, kd, round(measure(fn) * 1e6, 4)))
        log(f"[layers] attention done ({len(attn)} rows, {time.time() - t_start:.1f}s)")
    return {"dense": dense, "per_sequence": per_seq, "attention": attn}


def _attention_fn(dec: Any, torch: Any, cache_p: Any, cache_d: Any, pc: int, kp: int, nd: int,
                  kd: int, rnd: Any) -> Any:
    """One attention call: K/V of the new tokens written into the caches, then SDPA."""
    s = dec.shape
    hq, hk, hd = s.num_attention_heads, s.num_kv_heads, s.head_dim
    f = torch.nn.functional
    qp, kn, vn = rnd(pc, hq, hd), rnd(pc, hk, hd), rnd(pc, hk, hd)
    qd, kdn, vdn = rnd(nd, hq, hd), rnd(nd, hk, hd), rnd(nd, hk, hd)
    L = kp + pc
    kc = cache_p[0, :L * hk * hd].view(hk, L, hd) if pc else None
    vc = cache_p[1, :L * hk * hd].view(hk, L, hd) if pc else None
    kdc = cache_d[0, :nd * kd * hk * hd].view(nd, hk, kd, hd) if nd else None
    vdc = cache_d[1, :nd * kd * hk * hd].view(nd, hk, kd, hd) if nd else None
    mask = None
    if pc and kp:
        try:
            from torch.nn.attention.bias import causal_lower_right

            mask = causal_lower_right(pc, L)
        except ImportError:
            mask = torch.ones(pc, L, dtype=torch.bool, device=qp.device).tril(kp)

    def run() -> Any:
        outs = []
        if pc:
            kc[:, kp:, :] = kn.transpose(0, 1)
            vc[:, kp:, :] = vn.transpose(0, 1)
            q = qp.transpose(0, 1)[None]
            if kp:
                o = f.scaled_dot_product_attention(q, kc[None], vc[None], attn_mask=mask,
                                                   enable_gqa=True)
            else:
                o = f.scaled_dot_product_attention(q, kc[None], vc[None], is_causal=True,
                                                   enable_gqa=True)
            outs.append(o)
        if nd:
            kdc[:, :, kd - 1, :] = kdn
            vdc[:, :, kd - 1, :] = vdn
            q4 = qd.view(nd, hk, hq // hk, hd)
            outs.append(f.scaled_dot_product_attention(q4, kdc, vdc))
        return outs

    return run


def _wall_measure(fn: Any, reps: int = 3) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _kernel_sum_measure(fn: Any) -> float:
    return _kernel_sum(fn, 5)


def write_tables(rows: dict[str, list[tuple]], folder: str, meta: dict[str, Any]) -> None:
    """LLMServingSim layout: ``folder/tp1/*.csv`` and ``folder/meta.yaml``."""
    os.makedirs(os.path.join(folder, "tp1"), exist_ok=True)
    heads = {"dense": ["layer", "tokens", "time_us"],
             "per_sequence": ["layer", "sequences", "time_us"],
             "attention": ["prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"]}
    for name, head in heads.items():
        with open(os.path.join(folder, "tp1", f"{name}.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(rows[name])
    with open(os.path.join(folder, "meta.yaml"), "w") as f:
        for k, v in meta.items():
            f.write(f"{k}: '{v}'\n")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--tiny-grid", action="store_true")
    ap.add_argument("--time-budget-s", type=float, default=300.0)
    ap.add_argument("--flat", action="store_true", help="write into --out itself (no "
                    "<gpu>/<model> folders)")
    args = ap.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = gp.TINY if args.model == "tiny" else gp.MODEL_SHAPES[args.model]
    grid = TINY_LAYER_GRID if args.tiny_grid else GRID
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    gpu = gp.gpu_key_from_name(name) if device.startswith("cuda") else "cpu"
    import contextlib

    ctx: Any = contextlib.nullcontext()
    backend = "default"
    if device.startswith("cuda"):  # the attention back-end of the whole-step profile first
        backend = gp.select_attention_backend(device)["backend"]
        if backend != "default":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            order = [getattr(SDPBackend, b) for b in dict.fromkeys(
                (backend, "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"))]
            try:
                ctx = sdpa_kernel(order, set_priority=True)
            except TypeError:  # older torch: no priority order
                ctx = sdpa_kernel(order)
    with ctx:
        rows = profile_layers(shape, device, grid, time_budget_s=args.time_budget_s,
                              log=lambda m: print(m, flush=True))
    folder = args.out if args.flat else os.path.join(args.out, gpu, shape.name)
    write_tables(rows, folder, {
        "profiler": "slo_opt models/layer_profile.py (fused kernels, kernel sums)",
        "attention_backend": backend,
        "gpu": name, "hardware": gpu, "torch": torch.__version__, "cuda_version":
            torch.version.cuda, "profiled_at": dt.datetime.now(dt.UTC).isoformat(
                timespec="seconds"), "model": shape.name, "variant": "bf16",
        "command": "python -m slo_opt.models.layer_profile " + " ".join(
            argv if argv is not None else sys.argv[1:])})
    print("wrote", folder, {k: len(v) for k, v in rows.items()}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
