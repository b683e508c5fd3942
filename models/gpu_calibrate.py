"""GPU measurements that calibrate the corrections of built engines (run on the device).

Run as ``python -m slo_opt.models.gpu_calibrate --model llama-3.1-8b --out DIR``. Three
measurements on the decoder of :mod:`slo_opt.models.gpu_profile` (``kernels="fused"``):

* **CUDA-graph gap**: for decode-only steps ``(B, context)`` the *kernel sum* (sum of the GPU
  kernel durations of one eager step, from ``torch.profiler``; what a per-layer profile such as
  LLMServingSim's adds up) against the whole step replayed as one CUDA graph and run eagerly
  (CUDA events). ``(graph - kernel_sum) / num_layers`` is the per-layer gap a built engine
  adds to decode-only steps (``graph_gap_us_per_layer``, median over the points), ``(eager -
  kernel_sum) / num_layers`` the gap of steps launched kernel by kernel;
* **profile-run memory** (vLLM's KV sizing, see :mod:`slo_opt.models.kv`): the torch peak
  increase over the weights of one forward of ``max_num_batched_tokens`` tokens split over
  ``min(max_num_seqs, tokens)`` requests plus a sampler pass over those requests (fp32
  logits, top-k/top-p sort, softmax, exponential race), and the non-torch increase
  (device-used minus torch-reserved) over the same run;
* **cold start**: the first call of a 2048-token step in a fresh process against the same
  step warm (the warm-up of a just-started engine).

Writes ``<out>/<gpu>/calibration.json``. ``torch`` is imported only inside functions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

__all__ = ["cold_start", "graph_gap_points", "kernel_sum_s", "main", "profile_run_memory",
           "vllm_like_sampler"]


def kernel_sum_s(fn: Any, reps: int = 5) -> tuple[float, int]:
    """Mean GPU time of ``fn`` summed over its kernels, and kernels per call (torch.profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    tot_us, count = 0.0, 0
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0.0)
        if t and t > 0:
            tot_us += float(t)
            count += int(e.count)
    return tot_us * 1e-6 / reps, count // reps


def vllm_like_sampler(torch: Any, logits: Any, gen: Any) -> Any:
    """A sampler pass shaped like vLLM v1's dummy sampler run (temperature, top-k, top-p).

    fp32 logits, temperature, ascending sort with indices, top-k and top-p masks (softmax and
    cumulative sum of the sorted probabilities), scatter back, softmax, exponential race.
    """
    x = logits.to(torch.float32)
    x.div_(0.5)
    srt, idx = x.sort(dim=-1, descending=False)
    k = srt.shape[-1] - 1
    kth = srt.gather(1, torch.full((srt.shape[0], 1), srt.shape[-1] - k, device=x.device,
                                   dtype=torch.long))
    srt.masked_fill_(srt < kth, float("-inf"))
    probs = srt.softmax(dim=-1)
    cum = torch.cumsum(probs, dim=-1, out=probs)
    mask = cum <= 1 - 0.9
    mask[:, -1] = False
    srt.masked_fill_(mask, float("-inf"))
    x = srt.scatter(dim=-1, index=idx, src=srt)
    p = x.softmax(dim=-1, dtype=torch.float32)
    q = torch.empty_like(p).exponential_(generator=gen)
    return p.div_(q).argmax(dim=-1)


def profile_run_memory(dec: Any, baseline: dict[str, int], max_num_batched_tokens: int,
                       max_num_seqs: int) -> dict[str, Any]:
    """Torch peak and non-torch increase of a vLLM-shaped profile run (see module docstring)."""
    import torch

    s = dec.shape
    n_req = min(max_num_seqs, max_num_batched_tokens)
    per = max_num_batched_tokens // n_req
    n = per * n_req
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    gen = torch.Generator(device=dec.device).manual_seed(0)
    tokens = torch.randint(0, s.vocab_size, (n,), device=dec.device, generator=gen)
    pos = torch.arange(per, device=dec.device).repeat(n_req)
    with torch.inference_mode():
        torch.cuda.reset_peak_memory_stats()
        x = dec.embed[tokens]
        hidden = _forward_hidden(dec, x, pos, n_req, per)
        last = hidden[per - 1::per]
        logits = last @ dec.lm_head.T
        vllm_like_sampler(torch, logits, gen)
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    free, total = torch.cuda.mem_get_info()
    non_torch = (total - free) - torch.cuda.memory_reserved()
    return {"max_num_batched_tokens": max_num_batched_tokens, "max_num_seqs": max_num_seqs,
            "requests": n_req, "tokens": n, "weights_allocated_bytes": int(weights),
            "torch_peak_increase_bytes": int(peak - weights),
            "non_torch_increase_bytes": int(non_torch - baseline["non_torch_bytes"]),
            "total_memory_bytes": int(total)}


def _forward_hidden(dec: Any, x: Any, pos: Any, b: int, p: int) -> Any:
    """Hidden states of ``b`` fresh prompts of ``p`` tokens (the decoder's prefill path)."""
    torch = dec.torch
    s = dec.shape
    hq, hk, hd = s.num_attention_heads, s.num_kv_heads, s.head_dim
    fo = dec.fused_ops
    for lw in dec.layers:
        hdn = fo.rms(x, lw["ln1"]) if fo is not None else dec._rms(x, lw["ln1"])
        qkv = hdn @ lw["wqkv"]
        nt = qkv.shape[0]
        q = qkv[:, :hq * hd].view(nt, hq, hd)
        k = qkv[:, hq * hd:(hq + hk) * hd].view(nt, hk, hd)
        v = qkv[:, (hq + hk) * hd:].reshape(nt, hk, hd)
        q, k = dec._rope(q, pos), dec._rope(k, pos)
        a = dec._attn_prefill(q, k, v, b, p)
        x = x + a @ lw["wo"]
        hdn = dec._rms(x, lw["ln2"])
        gu = hdn @ lw["wgu"]
        g, u = gu.chunk(2, -1)
        x = x + (torch.nn.functional.silu(g) * u) @ lw["wd"]
    return dec._rms(x, dec.final_norm)


def graph_gap_points(dec: Any, points: list[tuple[int, int]], log=print) -> list[dict]:
    """Kernel sum, CUDA-graph step and eager step of decode-only points ``(B, context)``."""
    import torch

    s = dec.shape
    need = max(b * c for b, c in points)
    pool = torch.zeros(s.num_layers, 2, need * s.num_kv_heads * s.head_dim,
                       device=dec.device, dtype=dec.dtype)
    graph_t = gp._timer(dec.device, True)
    eager_t = gp._timer(dec.device, False)
    gen = torch.Generator(device=dec.device).manual_seed(2)
    out = []
    with torch.inference_mode():
        for b, c in points:
            nn = b * s.num_kv_heads * c * s.head_dim
            caches = [(pool[li, 0, :nn].view(b, s.num_kv_heads, c, s.head_dim),
                       pool[li, 1, :nn].view(b, s.num_kv_heads, c, s.head_dim))
                      for li in range(s.num_layers)]
            tk = torch.randint(0, s.vocab_size, (b,), device=dec.device, generator=gen)
            ps = torch.full((b,), c - 1, device=dec.device)

            def fn(tk=tk, ps=ps, caches=caches, b=b, c=c) -> Any:
                return dec.step(tk, ps, (0, 0), (b, c), caches)

            ks, nk = kernel_sum_s(fn)
            g = graph_t(fn)[0]
            e = eager_t(fn)[0]
            row = {"batch": b, "context": c, "kernel_sum_ms": round(ks * 1e3, 5),
                   "kernels": nk, "graph_ms": round(g * 1e3, 5), "eager_ms": round(e * 1e3, 5),
                   "graph_gap_us_per_layer": round((g - ks) * 1e6 / s.num_layers, 4),
                   "eager_gap_us_per_layer": round((e - ks) * 1e6 / s.num_layers, 4)}
            out.append(row)
            log(f"[graph gap] {row}")
    return out


def cold_start(shape: Any, device: str, tokens: int = 2048, kernels: str = "plain") -> dict:
    """First-call seconds of a ``tokens``-token prefill step in a fresh decoder vs warm."""
    import torch

    dec = gp.Decoder(shape, device, torch.bfloat16, max_positions=tokens + 8, kernels=kernels)
    tk = torch.randint(0, shape.vocab_size, (tokens,), device=device)
    ps = torch.arange(tokens, device=device)
    times = []
    with torch.inference_mode():
        for _ in range(6):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            dec.step(tk, ps, (1, tokens), (0, 0), None)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    warm = statistics.median(times[2:])
    del dec
    torch.cuda.empty_cache()
    return {"tokens": tokens, "first_call_s": round(times[0], 5),
            "second_call_s": round(times[1], 5), "warm_s": round(warm, 5),
            "first_extra_s": round(times[0] - warm, 5),
            "second_extra_s": round(times[1] - warm, 5)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-num-batched-tokens", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--max-num-seqs", type=int, nargs="+", default=[256, 1024])
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_calibrate needs a CUDA device")
    device = "cuda"
    shape = gp.TINY if args.model == "tiny" else gp.MODEL_SHAPES[args.model]
    name = torch.cuda.get_device_name(0)
    gpu = gp.gpu_key_from_name(name)
    res: dict[str, Any] = {"gpu": gpu, "device_name": name, "model": shape.name,
                           "torch": torch.__version__, "cuda": torch.version.cuda,
                           "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "command": "python -m slo_opt.models.gpu_calibrate " + " ".join(
                               argv if argv is not None else sys.argv[1:])}
    res["cold_start"] = cold_start(shape, device)
    print("cold start:", res["cold_start"], flush=True)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    baseline = {"non_torch_bytes": (total - free) - torch.cuda.memory_reserved()}
    dec = gp.Decoder(shape, device, torch.bfloat16, max_positions=8200, kernels="fused")
    res["fused_ops_compiled"] = bool(dec.fused_ops is not None and dec.fused_ops.compiled)
    res["memory"] = []
    for mbt, mns in zip(args.max_num_batched_tokens, args.max_num_seqs):
        try:
            r = profile_run_memory(dec, baseline, mbt, mns)
        except torch.OutOfMemoryError as e:
            r = {"max_num_batched_tokens": mbt, "max_num_seqs": mns, "error": str(e)[:200]}
        torch.cuda.empty_cache()
        res["memory"].append(r)
        print("profile-run memory:", r, flush=True)
    pts = [(b, c) for b in (1, 8, 32, 64, 128, 256) for c in (512, 2048)]
    res["graph_gap_points"] = graph_gap_points(dec, pts, log=lambda s: print(s, flush=True))
    gg = [p["graph_gap_us_per_layer"] for p in res["graph_gap_points"]]
    eg = [p["eager_gap_us_per_layer"] for p in res["graph_gap_points"]]
    res["graph_gap_us_per_layer"] = round(statistics.median(gg), 4)
    res["eager_gap_us_per_layer"] = round(statistics.median(eg), 4)
    res["measured_on"] = f"{name}, {shape.name}, fused kernels, torch {torch.__version__}"
    os.makedirs(os.path.join(args.out, gpu), exist_ok=True)
    path = os.path.join(args.out, gpu, "calibration.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", path, "graph gap", res["graph_gap_us_per_layer"], "eager gap",
          res["eager_gap_us_per_layer"], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
