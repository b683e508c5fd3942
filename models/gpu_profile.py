"""Profile Llama-architecture decoders on a GPU (random bf16 weights, plain PyTorch).

Run as ``python -m slo_opt.models.gpu_profile --models llama-3.1-8b llama-3.2-1b --out DIR``.
No network and no Hugging Face hub: the decoder (RMSNorm, RoPE, GQA attention through
``torch.nn.functional.scaled_dot_product_attention`` over a KV cache, SwiGLU MLP, LM head and
greedy sampling) is written here and built from :data:`slo_opt.models.kv.MODEL_SHAPES` with
random weights; step time does not depend on weight values.

What is measured (CUDA events; every shape is captured once as a CUDA graph and replayed, as
serving engines run decode):

* ``prefill``: ``batch_size`` prompts of ``tokens_per_seq`` tokens (causal attention);
* ``decode``: ``batch_size`` sequences at ``context_tokens`` KV tokens each (the step writes
  the new token's K/V into the cache and attends to all ``context_tokens``);
* ``mixed``: one prefill chunk of ``prefill_chunk`` fresh tokens plus ``batch_size`` decodes;
* host<->device copy bandwidth with pinned memory (``provenance.json``);
* GPU board power, sampled with ``nvidia-smi`` every 50 ms during each timed window.

Outputs ``<out>/<gpu>/<model>.csv`` (columns ``gpu,model,phase,batch_size,tokens_per_seq,
context_tokens,latency_ms,prefill_chunk,prefill_prior_tokens,latency_p10_ms,latency_p90_ms,
reps,power_w,sm_util_pct``) and ``<out>/<gpu>/provenance.json``. ``torch`` is imported only
inside functions: it is not a dependency of ``slo_opt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

try:
    from slo_opt.models.kv import MODEL_SHAPES, ModelShape, kv_bytes_per_token
except ImportError:  # run as a plain script from a checkout without an install
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "_slo_kv", os.path.join(os.path.dirname(os.path.abspath(__file__)), "kv.py"))
    assert _spec is not None and _spec.loader is not None
    _kv = importlib.util.module_from_spec(_spec)
    sys.modules["_slo_kv"] = _kv
    _spec.loader.exec_module(_kv)
    MODEL_SHAPES, ModelShape, kv_bytes_per_token = (_kv.MODEL_SHAPES, _kv.ModelShape,
                                                    _kv.kv_bytes_per_token)

__all__ = ["TINY", "Decoder", "SweepGrid", "gpu_key_from_name", "main", "profile_model"]

TINY = ModelShape("tiny", 2, 64, 4, 2, 16, 128, 256, 2, 100_000)
"""A tiny Llama-shaped config for CPU tests."""

CSV_COLUMNS = ("gpu", "model", "phase", "batch_size", "tokens_per_seq", "context_tokens",
               "latency_ms", "prefill_chunk", "prefill_prior_tokens", "latency_p10_ms",
               "latency_p90_ms", "reps", "power_w", "sm_util_pct")


@dataclass(frozen=True)
class SweepGrid:
    """Points to measure."""

    decode_batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    decode_contexts: tuple[int, ...] = (128, 512, 1024, 2048, 4096)
    prefill_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
    prefill_batched: tuple[tuple[int, int], ...] = ((2, 128), (4, 128), (8, 128), (2, 512),
                                                     (4, 512), (8, 512), (2, 2048), (4, 1024))
    mixed: tuple[tuple[int, int, int], ...] = ((128, 16, 1024), (512, 16, 1024),
                                               (2048, 16, 1024), (128, 64, 1024),
                                               (512, 64, 1024), (2048, 64, 1024),
                                               (512, 128, 2048), (1024, 32, 512),
                                               (256, 256, 512))
    """(prefill_chunk, decode batch, decode context)."""


TINY_GRID = SweepGrid(decode_batches=(1, 2, 4), decode_contexts=(8, 32),
                      prefill_lengths=(4, 16, 32), prefill_batched=((2, 8),),
                      mixed=((8, 2, 16),))


def gpu_key_from_name(device_name: str) -> str:
    """Catalogue key of a CUDA device name (``"NVIDIA H100 80GB HBM3"`` -> ``"h100"``)."""
    n = device_name.lower().replace(" ", "")
    for key, pat in (("h200", "h200"), ("h100", "h100"), ("a100", "a100"),
                     ("rtx4090", "4090"), ("rtx4060ti", "4060ti"), ("rtxpro6000", "rtxpro6000"),
                     ("jetson-orin", "orin")):
        if pat in n:
            return key
    return "".join(c for c in n if c.isalnum()) or "gpu"


KERNELS = ("plain", "fused")
"""``plain``: unfused fp32 RMSNorm, RoPE by concatenation, separate SiLU and product (the
profiles of issue 3); ``fused``: residual add + RMSNorm, RoPE of q and k, and SiLU-and-mul each
one generated kernel (``torch.compile``), as vLLM's compiled model runs them."""


class FusedOps:
    """Pointwise ops of a Llama layer, each compiled into one kernel (fallback: eager).

    vLLM 0.19 compiles the model with Inductor (``custom_ops: none``), which fuses the residual
    add into the RMSNorm, applies RoPE to q and k in one pass and fuses SiLU with the product;
    this class does the same with ``torch.compile(dynamic=True)``. If compilation is
    unavailable, the same functions run eagerly and :attr:`compiled` is ``False`` (recorded in
    the provenance).
    """

    def __init__(self, torch: Any, compile_ops: bool = True, eps: float = 1e-5) -> None:
        self.torch = torch
        self.compiled = False
        self.error = ""

        def rms(x: Any, w: Any) -> Any:
            xf = x.float()
            return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w

        def add_rms(x: Any, r: Any, w: Any) -> tuple[Any, Any]:
            y = x + r
            return y, rms(y, w)

        def rope(q: Any, k: Any, cos: Any, sin: Any) -> tuple[Any, Any]:
            c, s = cos[:, None, :], sin[:, None, :]
            h = q.shape[-1] // 2

            def rot(t: Any) -> Any:
                t1, t2 = t[..., :h], t[..., h:]
                return torch.cat([t1 * c[..., :h] - t2 * s[..., :h],
                                  t2 * c[..., h:] + t1 * s[..., h:]], -1)
            return rot(q), rot(k)

        def silu_mul(gu: Any) -> Any:
            g, u = gu.chunk(2, -1)
            return torch.nn.functional.silu(g) * u

        self.rms, self.add_rms, self.rope, self.silu_mul = rms, add_rms, rope, silu_mul
        if compile_ops:
            try:
                comp = [torch.compile(f, dynamic=True, fullgraph=True)
                        for f in (rms, add_rms, rope, silu_mul)]
                self.rms, self.add_rms, self.rope, self.silu_mul = comp
                self.compiled = True
            except Exception as e:  # no compiler on this machine: eager functions
                self.error = f"{type(e).__name__}: {e}"


def select_attention_backend(device: str, log=print) -> dict[str, Any]:
    """Time SDPA back-ends on a prefill and a decode attention shape; keep the fastest.

    Candidates: cuDNN attention, FlashAttention-2 (PyTorch's flash kernel), memory-efficient.
    vLLM runs FlashAttention (FA3 on Hopper); the fastest SDPA kernel present is the closest
    stand-in. Returns ``{"backend": name or "default", "times_ms": {...}}``.
    """
    import torch

    out: dict[str, Any] = {"backend": "default", "times_ms": {}}
    if not device.startswith("cuda"):
        return out
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return out
    f = torch.nn.functional
    q = torch.randn(1, 32, 4096, 128, device=device, dtype=torch.bfloat16)
    k = torch.randn(1, 8, 4096, 128, device=device, dtype=torch.bfloat16)
    qd = torch.randn(64, 8, 4, 128, device=device, dtype=torch.bfloat16)
    kd = torch.randn(64, 8, 2048, 128, device=device, dtype=torch.bfloat16)
    best = None
    for nm in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION"):
        be = getattr(SDPBackend, nm, None)
        if be is None:
            continue
        try:
            with sdpa_kernel([be]):
                def run(be=be) -> None:
                    f.scaled_dot_product_attention(q, k, k, is_causal=True, enable_gqa=True)
                    f.scaled_dot_product_attention(qd, kd, kd)
                for _ in range(3):
                    run()
                torch.cuda.synchronize()
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(10):
                    run()
                e1.record()
                e1.synchronize()
                ms = e0.elapsed_time(e1) / 10
        except Exception as e:  # back-end unsupported for these shapes
            out["times_ms"][nm] = f"unavailable: {type(e).__name__}"
            continue
        out["times_ms"][nm] = round(ms, 4)
        if best is None or ms < best[0]:
            best = (ms, nm)
    if best is not None:
        out["backend"] = best[1]
    log(f"attention back-ends (prefill 4096 + decode 64x2048, ms): {out['times_ms']} -> "
        f"{out['backend']}")
    return out


class Decoder:
    """Llama-architecture decoder with random weights, static-shape step functions."""

    def __init__(self, shape: ModelShape, device: str, dtype: Any, max_positions: int,
                 seed: int = 0, kernels: str = "plain") -> None:
        import torch

        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
        self.torch = torch
        self.shape, self.device, self.dtype = shape, device, dtype
        self.kernels = kernels
        self.fused_ops = FusedOps(torch, compile_ops=kernels == "fused") \
            if kernels == "fused" else None
        g = torch.Generator(device=device).manual_seed(seed)
        s, std = shape, 0.02

        def w(*dims: int) -> Any:
            return (torch.randn(*dims, device=device, dtype=dtype, generator=g) * std)

        h, hd = s.hidden_size, s.head_dim
        qkv_out = (s.num_attention_heads + 2 * s.num_kv_heads) * hd
        self.embed = w(s.vocab_size, h)
        self.lm_head = self.embed if s.tied_embeddings else w(s.vocab_size, h)
        self.layers = []
        for _ in range(s.num_layers):
            self.layers.append({
                "ln1": torch.ones(h, device=device, dtype=dtype),
                "wqkv": w(h, qkv_out), "wo": w(s.num_attention_heads * hd, h),
                "ln2": torch.ones(h, device=device, dtype=dtype),
                "wgu": w(h, 2 * s.intermediate_size), "wd": w(s.intermediate_size, h)})
        self.final_norm = torch.ones(h, device=device, dtype=dtype)
        inv = 1.0 / (500000.0 ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32)
                                  / hd))
        ang = torch.outer(torch.arange(max_positions, device=device, dtype=torch.float32), inv)
        self.cos = torch.cat([ang.cos(), ang.cos()], -1).to(dtype)
        self.sin = torch.cat([ang.sin(), ang.sin()], -1).to(dtype)

    # -- building blocks ---------------------------------------------------------------
    def _rms(self, x: Any, wt: Any) -> Any:
        xf = x.float()
        return (xf * self.torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype) * wt

    def _rope(self, x: Any, pos: Any) -> Any:
        # x: (N, heads, hd); pos: (N,)
        c, s = self.cos[pos][:, None, :], self.sin[pos][:, None, :]
        half = x.shape[-1] // 2
        rot = self.torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * c + rot * s

    def _attn_prefill(self, q: Any, k: Any, v: Any, b: int, p: int) -> Any:
        """Causal attention of ``b`` fresh prompts of ``p`` tokens. q/k/v: (b*p, heads, hd)."""
        f = self.torch.nn.functional
        s = self.shape
        q = q.view(b, p, s.num_attention_heads, s.head_dim).transpose(1, 2)
        k = k.view(b, p, s.num_kv_heads, s.head_dim).transpose(1, 2)
        v = v.view(b, p, s.num_kv_heads, s.head_dim).transpose(1, 2)
        try:
            o = f.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        except TypeError:  # torch < 2.5
            rep = s.num_attention_heads // s.num_kv_heads
            o = f.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1),
                                               v.repeat_interleave(rep, 1), is_causal=True)
        return o.transpose(1, 2).reshape(b * p, s.num_attention_heads * s.head_dim)

    def _attn_decode(self, q: Any, k_new: Any, v_new: Any, kc: Any, vc: Any, c: int) -> Any:
        """One token per sequence against a (B, kv_heads, c, hd) cache; writes slot c-1."""
        f = self.torch.nn.functional
        s = self.shape
        b = q.shape[0]
        kc[:, :, c - 1, :] = k_new
        vc[:, :, c - 1, :] = v_new
        grp = s.num_attention_heads // s.num_kv_heads
        # fold the query heads of one KV head into the query-length axis (exact for decode)
        q4 = q.view(b, s.num_kv_heads, grp, s.head_dim)
        o = f.scaled_dot_product_attention(q4, kc, vc)
        return o.reshape(b, s.num_attention_heads * s.head_dim)

    def step(self, tokens: Any, pos: Any, prefill: tuple[int, int], decode: tuple[int, int],
             caches: list[tuple[Any, Any]] | None) -> Any:
        """One iteration: ``prefill=(b, p)`` fresh prompts then ``decode=(B, c)`` decodes.

        Returns the greedy next tokens of every sequence (prompts' last tokens + decodes).
        """
        torch, s = self.torch, self.shape
        bp, p = prefill
        bd, c = decode
        npre = bp * p
        hq, hk, hd = s.num_attention_heads, s.num_kv_heads, s.head_dim
        x = self.embed[tokens]
        fo = self.fused_ops
        if fo is not None:
            cos_p, sin_p = self.cos[pos], self.sin[pos]
        res = None  # pending residual branch (fused add + RMSNorm, as vLLM's layers do)
        for li, lw in enumerate(self.layers):
            if fo is None:
                hdn = self._rms(x, lw["ln1"])
            elif res is None:
                hdn = fo.rms(x, lw["ln1"])
            else:
                x, hdn = fo.add_rms(x, res, lw["ln1"])
            qkv = hdn @ lw["wqkv"]
            n = qkv.shape[0]
            q = qkv[:, :hq * hd].view(n, hq, hd)
            k = qkv[:, hq * hd:(hq + hk) * hd].view(n, hk, hd)
            v = qkv[:, (hq + hk) * hd:].reshape(n, hk, hd)
            if fo is None:
                q, k = self._rope(q, pos), self._rope(k, pos)
            else:
                q, k = fo.rope(q, k, cos_p, sin_p)
            outs = []
            if npre:
                outs.append(self._attn_prefill(q[:npre], k[:npre], v[:npre], bp, p))
            if bd:
                assert caches is not None
                kc, vc = caches[li]
                outs.append(self._attn_decode(q[npre:], k[npre:], v[npre:], kc, vc, c))
            a = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
            if fo is None:
                x = x + a @ lw["wo"]
                hdn = self._rms(x, lw["ln2"])
                gu = hdn @ lw["wgu"]
                gate, up = gu.chunk(2, -1)
                x = x + (torch.nn.functional.silu(gate) * up) @ lw["wd"]
            else:
                x, hdn = fo.add_rms(x, a @ lw["wo"], lw["ln2"])
                res = fo.silu_mul(hdn @ lw["wgu"]) @ lw["wd"]
        if fo is not None and res is not None:
            x = x + res
        last = []
        if npre:
            last.append(torch.arange(p - 1, npre, p, device=x.device))
        if bd:
            last.append(torch.arange(npre, npre + bd, device=x.device))
        xl = self._rms(x[torch.cat(last)], self.final_norm)
        return torch.argmax(xl @ self.lm_head.T, dim=-1)


class PowerSampler:
    """Background ``nvidia-smi`` sampling of board power and SM utilisation (if available)."""

    def __init__(self, period_ms: int = 50) -> None:
        self.proc: subprocess.Popen | None = None
        self.path = ""
        self.query = ""
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return
        for q in ("timestamp,power.draw.instant,utilization.gpu",
                  "timestamp,power.draw,utilization.gpu"):
            r = subprocess.run([exe, f"--query-gpu={q}", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True)
            if r.returncode == 0 and "N/A" not in r.stdout and "Invalid" not in r.stdout:
                self.query = q
                break
        if not self.query:
            return
        fd, self.path = tempfile.mkstemp(suffix=".csv")
        os.close(fd)
        self._fh = open(self.path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, f"--query-gpu={self.query}", "--format=csv,noheader,nounits",
             f"-lms={period_ms}"], stdout=self._fh, stderr=subprocess.DEVNULL)

    def samples(self) -> list[tuple[float, float, float]]:
        """``(unix_time_s, power_w, util_pct)`` read so far."""
        if not self.path:
            return []
        self._fh.flush()
        out = []
        with open(self.path) as f:
            for line in f:
                parts = [x.strip() for x in line.split(",")]
                try:
                    t = dt.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                    out.append((t, float(parts[1]), float(parts[2])))
                except (ValueError, IndexError):
                    continue
        return out

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        """Mean power and utilisation of the samples in ``[t0, t1]`` (NaN if none)."""
        sel = [(p, u) for t, p, u in self.samples() if t0 <= t <= t1]
        if not sel:
            return math.nan, math.nan
        return (sum(p for p, _ in sel) / len(sel), sum(u for _, u in sel) / len(sel))

    def stop(self) -> None:
        """Stop sampling."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self._fh.close()


def _timer(device: str, use_graphs: bool):
    """Return ``measure(fn, target_s) -> (median_s, p10_s, p90_s, reps, t0, t1)``."""
    import torch

    cuda = device.startswith("cuda")

    def measure(fn, target_s: float = 0.25, max_reps: int = 60):
        if cuda and use_graphs:
            st = torch.cuda.Stream()
            st.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(st):
                for _ in range(2):
                    fn()
            torch.cuda.current_stream().wait_stream(st)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            run = graph.replay
        else:
            run = fn
            run()
        for _ in range(2):
            run()
        if cuda:
            torch.cuda.synchronize()
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            run()
            e1.record()
            e1.synchronize()
            est = e0.elapsed_time(e1) / 1e3
        else:
            a = time.perf_counter()
            run()
            est = time.perf_counter() - a
        reps = int(min(max_reps, max(5, target_s / max(est, 1e-6))))
        times = []
        t0 = time.time()
        for _ in range(reps):
            if cuda:
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                run()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1) / 1e3)
            else:
                a = time.perf_counter()
                run()
                times.append(time.perf_counter() - a)
        t1 = time.time()
        times.sort()
        med = times[len(times) // 2] if len(times) % 2 else \
            0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
        p10 = times[int(0.1 * (len(times) - 1))]
        p90 = times[math.ceil(0.9 * (len(times) - 1))]
        return med, p10, p90, reps, t0, t1

    return measure


def profile_model(shape: ModelShape, grid: SweepGrid, *, device: str, dtype_name: str,
                  gpu: str, use_graphs: bool, kv_budget_bytes: float, time_budget_s: float,
                  power: PowerSampler | None = None, log=print,
                  kernels: str = "plain") -> list[dict[str, Any]]:
    """Measure every grid point that fits; return CSV rows (dicts)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    max_ctx = max([*grid.decode_contexts, *grid.prefill_lengths,
                   *[m[2] for m in grid.mixed], *[m[0] for m in grid.mixed]]) + 8
    t_start = time.time()
    dec = Decoder(shape, device, dtype, max_positions=max_ctx, kernels=kernels)
    kvb = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * (
        torch.finfo(dtype).bits // 8)
    need = [b * c for b in grid.decode_batches for c in grid.decode_contexts]
    need += [b * c for _, b, c in grid.mixed]
    pool_tokens = int(min(max(need), kv_budget_bytes // kvb))
    per_layer = pool_tokens * shape.num_kv_heads * shape.head_dim
    pool = torch.zeros(shape.num_layers, 2, max(per_layer, 1), device=device, dtype=dtype)
    log(f"[{shape.name}] weights ready in {time.time() - t_start:.1f}s; KV pool "
        f"{pool_tokens} tokens ({pool.numel() * pool.element_size() / 1e9:.1f} GB)")
    measure = _timer(device, use_graphs)
    rows: list[dict[str, Any]] = []

    def caches(b: int, c: int):
        n = b * shape.num_kv_heads * c * shape.head_dim
        return [(pool[li, 0, :n].view(b, shape.num_kv_heads, c, shape.head_dim),
                 pool[li, 1, :n].view(b, shape.num_kv_heads, c, shape.head_dim))
                for li in range(shape.num_layers)]

    def record(phase, b, tps, ctx, fn, chunk=0):
        if time.time() - t_start > time_budget_s:
            log(f"[{shape.name}] time budget reached, skipping {phase} b={b} p={tps} c={ctx}")
            return
        try:
            med, p10, p90, reps, t0, t1 = measure(fn)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            log(f"[{shape.name}] OOM at {phase} b={b} p={tps} c={ctx} chunk={chunk}")
            return
        pw, ut = power.window(t0, t1) if power is not None else (math.nan, math.nan)
        rows.append({"gpu": gpu, "model": shape.name, "phase": phase, "batch_size": b,
                     "tokens_per_seq": tps, "context_tokens": ctx,
                     "latency_ms": round(med * 1e3, 5), "prefill_chunk": chunk,
                     "prefill_prior_tokens": 0, "latency_p10_ms": round(p10 * 1e3, 5),
                     "latency_p90_ms": round(p90 * 1e3, 5), "reps": reps,
                     "power_w": round(pw, 1) if pw == pw else "",
                     "sm_util_pct": round(ut, 1) if ut == ut else ""})
        log(f"[{shape.name}] {phase:7s} b={b:4d} p={tps:5d} c={ctx:5d} chunk={chunk:5d} "
            f"{med * 1e3:9.3f} ms  (reps {reps}, power {pw:.0f} W)")

    gen = torch.Generator(device=device).manual_seed(1)

    def toks(n: int):
        return torch.randint(0, shape.vocab_size, (n,), device=device, generator=gen)

    with torch.inference_mode():
        for p in grid.prefill_lengths:
            tk, ps = toks(p), torch.arange(p, device=device)
            record("prefill", 1, p, 0, lambda tk=tk, ps=ps, p=p: dec.step(tk, ps, (1, p),
                                                                         (0, 0), None))
        for b, p in grid.prefill_batched:
            tk, ps = toks(b * p), torch.arange(p, device=device).repeat(b)
            record("prefill", b, p, 0, lambda tk=tk, ps=ps, b=b, p=p: dec.step(
                tk, ps, (b, p), (0, 0), None))
        for b in grid.decode_batches:
            for c in grid.decode_contexts:
                if b * c > pool_tokens:
                    log(f"[{shape.name}] skip decode b={b} c={c}: KV pool too small")
                    continue
                tk, ps, kc = toks(b), torch.full((b,), c - 1, device=device), caches(b, c)
                record("decode", b, 1, c, lambda tk=tk, ps=ps, kc=kc, b=b, c=c: dec.step(
                    tk, ps, (0, 0), (b, c), kc))
        for chunk, b, c in grid.mixed:
            if b * c > pool_tokens:
                continue
            tk = toks(chunk + b)
            ps = torch.cat([torch.arange(chunk, device=device),
                            torch.full((b,), c - 1, device=device)])
            kc = caches(b, c)
            record("mixed", b, 1, c, lambda tk=tk, ps=ps, kc=kc, b=b, c=c, ch=chunk: dec.step(
                tk, ps, (1, ch), (b, c), kc), chunk=chunk)
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    log(f"[{shape.name}] done: {len(rows)} points in {time.time() - t_start:.1f}s")
    return rows


def copy_bandwidth(device: str, nbytes: int = 1 << 30) -> dict[str, float]:
    """Pinned host<->device copy bandwidth (bytes/s), median of 5 copies."""
    import torch

    if not device.startswith("cuda"):
        return {}
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    out = {}
    for name, dst, src in (("h2d_bytes_per_s", dev, host), ("d2h_bytes_per_s", host, dev)):
        ts = []
        for _ in range(6):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            dst.copy_(src, non_blocking=True)
            e1.record()
            e1.synchronize()
            ts.append(e0.elapsed_time(e1) / 1e3)
        ts = sorted(ts[1:])
        out[name] = nbytes / ts[len(ts) // 2]
    return out


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    """Write profile rows with :data:`CSV_COLUMNS`."""
    import csv

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``slo-opt profile`` / ``python -m ...gpu_profile``)."""
    ap = argparse.ArgumentParser(prog="slo-opt profile", description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["llama-3.1-8b", "llama-3.2-1b"],
                    help=f"shapes: {sorted(MODEL_SHAPES)} or 'tiny'")
    ap.add_argument("--out", default="models/profiles", help="output root (<out>/<gpu>/...)")
    ap.add_argument("--gpu", default=None, help="catalogue key; default from the device name")
    ap.add_argument("--device", default=None, help="cuda (default if available) or cpu")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--no-graphs", action="store_true", help="time eagerly (no CUDA graphs)")
    ap.add_argument("--tiny-grid", action="store_true", help="the small CPU-test grid")
    ap.add_argument("--kv-budget-gb", type=float, default=None,
                    help="KV pool size; default: free memory minus weights minus 6 GB")
    ap.add_argument("--time-budget-s", type=float, default=150.0, help="per model")
    ap.add_argument("--no-power", action="store_true")
    ap.add_argument("--kernels", default="plain", choices=KERNELS,
                    help="plain: issue-3 engine; fused: compiled add+RMSNorm, RoPE, SiLU-mul "
                         "and the fastest SDPA attention back-end (vLLM-like)")
    args = ap.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev_name = torch.cuda.get_device_name(0) if device.startswith("cuda") else \
        (platform.processor() or "cpu")
    gpu = args.gpu or (gpu_key_from_name(dev_name) if device.startswith("cuda") else "cpu")
    grid = TINY_GRID if args.tiny_grid else SweepGrid()
    power = None if (args.no_power or not device.startswith("cuda")) else PowerSampler()
    idle = math.nan
    if power is not None and power.proc is not None:
        time.sleep(1.5)
        s = power.samples()
        idle = sum(p for _, p, _ in s) / len(s) if s else math.nan
    meta: dict[str, Any] = {
        "gpu": gpu, "device_name": dev_name, "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m slo_opt.models.gpu_profile " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "dtype": args.dtype, "cuda_graphs": not args.no_graphs and device.startswith("cuda"),
        "idle_power_w": idle, "power_query": power.query if power is not None else "",
        "kernels": args.kernels, "models": {}}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        meta["total_memory_bytes"] = props.total_memory
        meta["multiprocessors"] = props.multi_processor_count
        try:
            meta["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True).stdout.strip()
        except OSError:
            meta["driver"] = ""
        meta.update(copy_bandwidth(device))
        print(f"copy bandwidth: {meta.get('h2d_bytes_per_s', 0) / 1e9:.1f} GB/s H2D, "
              f"{meta.get('d2h_bytes_per_s', 0) / 1e9:.1f} GB/s D2H; idle power {idle:.0f} W",
              flush=True)
    import contextlib

    attn_ctx: Any = contextlib.nullcontext()
    if args.kernels == "fused":
        sel = select_attention_backend(device)
        meta["attention_backend"] = sel
        if sel["backend"] != "default":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            attn_ctx = sdpa_kernel([getattr(SDPBackend, sel["backend"])])
    try:
        with attn_ctx:
            _run_models(args, device, gpu, grid, power, meta)
    finally:
        if power is not None:
            power.stop()
    return 0


def _run_models(args: Any, device: str, gpu: str, grid: SweepGrid, power: Any,
                meta: dict[str, Any]) -> None:
    import torch

    for m in args.models:
        shape = TINY if m == "tiny" else MODEL_SHAPES[m]
        if args.kv_budget_gb is not None:
            budget = args.kv_budget_gb * 1e9
        elif device.startswith("cuda"):
            gc.collect()
            torch.cuda.empty_cache()
            free, _ = torch.cuda.mem_get_info()
            budget = free - shape.params * 2 - 6e9
        else:
            budget = 2e9
        rows = profile_model(shape, grid, device=device, dtype_name=args.dtype, gpu=gpu,
                             use_graphs=not args.no_graphs, kv_budget_bytes=budget,
                             time_budget_s=args.time_budget_s, power=power,
                             log=lambda s: print(s, flush=True), kernels=args.kernels)
        path = os.path.join(args.out, gpu, f"{shape.name}.csv")
        write_csv(rows, path)
        meta["models"][shape.name] = {"rows": len(rows), "csv": os.path.basename(path),
                                      "kv_bytes_per_token": kv_bytes_per_token(shape)}
        print(f"wrote {path} ({len(rows)} rows)", flush=True)
        os.makedirs(os.path.join(args.out, gpu), exist_ok=True)
        with open(os.path.join(args.out, gpu, "provenance.json"), "w") as f:
            json.dump(meta, f, indent=1, default=str)


if __name__ == "__main__":
    raise SystemExit(main())
