"""Engine-model fidelity: held-out predicted vs measured step time, and roofline transfer.

Usage: ``python benchmarks/fidelity.py [--out benchmarks/results] [--shared ../shared]``

For every measured profile (``models/profiles/<gpu>/<model>.csv``):

* ``linear``: leave-one-out (refit without the point, predict it);
* ``table``: leave-one-out (grid rebuilt without the point);
* ``roofline``: 5-fold cross-validation of the per-profile fit;
* ``roofline-transfer``: efficiencies fitted on the *other* measured models only.

Public datasets (roofline with efficiencies from all our measured profiles, transferred):

* LLMServingSim RTX 4090 Llama-3.1-8B layerwise profile (step = 32 x per-layer ops + LM head
  + sampler; eager vLLM 0.19);
* aiconfigurator H100-SXM / A100-SXM Llama-3-8B kernel tables, through the fitted decode and
  prefill formulas of ``shared/research/simulators.md`` B.7 (those fits are within 8-25 % of the
  kernel sums themselves).

Writes ``fidelity.json`` and ``fidelity.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from slo_opt.models.catalog import _measured_meta, list_profiles, measured_rows
from slo_opt.models.hardware import get_gpu
from slo_opt.models.kv import get_shape
from slo_opt.models.linear import LinearEngineModel, ape_summary
from slo_opt.models.power import fit_power
from slo_opt.models.roofline import (
    RooflineEngineModel,
    fit_roofline,
    mean_efficiencies,
    roofline_from_efficiencies,
)
from slo_opt.models.table import ProfileRow, TableEngineModel

ROOT = Path(__file__).resolve().parents[1]


def per_phase(rows: list[ProfileRow], pred: np.ndarray) -> dict[str, dict[str, float]]:
    y = np.array([r.latency_s for r in rows])
    ph = np.array([r.phase for r in rows])
    out = {p: ape_summary(y[ph == p], pred[ph == p]) for p in sorted(set(ph.tolist()))}
    out["all"] = ape_summary(y, pred)
    return out


def loo(rows, build) -> np.ndarray:
    pred = np.empty(len(rows))
    for i in range(len(rows)):
        m = build(rows[:i] + rows[i + 1:])
        pred[i] = m.step_time_s(rows[i].shape)
    return pred


def kfold(rows, build, k=5, seed=0) -> np.ndarray:
    idx = np.random.default_rng(seed).permutation(len(rows))
    pred = np.empty(len(rows))
    for f in range(k):
        test = set(idx[f::k].tolist())
        m = build([r for i, r in enumerate(rows) if i not in test])
        for i in test:
            pred[i] = m.step_time_s(rows[i].shape)
    return pred




def llmservingsim_rtx4090(shared: Path) -> list[ProfileRow]:
    """Step times built from LLMServingSim's per-layer RTX 4090 Llama-3.1-8B profile."""
    import pandas as pd

    d = shared / "traces/calibration_profiles/llmservingsim/RTX4090/meta-llama/Llama-3.1-8B"
    d = d / "bf16/tp1"
    dense = pd.read_csv(d / "dense.csv")
    attn = pd.read_csv(d / "attention.csv")
    seq = pd.read_csv(d / "per_sequence.csv")

    def op(name, tokens):
        t = dense[dense.layer == name].sort_values("tokens")
        return float(np.interp(tokens, t.tokens, t.time_us))

    def ps(name, n):
        t = seq[seq.layer == name].sort_values("sequences")
        return float(np.interp(n, t.sequences, t.time_us))

    def linear_ops(n):
        per_layer = sum(op(o, n) for o in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj",
                                            "act_fn", "rotary_emb")) + 2 * op("layernorm", n)
        return 32 * per_layer + op("embedding", n) + op("final_layernorm", n)

    def at(pc, kp, nd, kd):
        m = attn[(attn.prefill_chunk == pc) & (attn.kv_prefill == kp) & (attn.n_decode == nd)
                 & (attn.kv_decode == kd)]
        return float(m.time_us.iloc[0]) if len(m) else None

    rows = []
    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        for c in (128, 512, 1024, 2048, 4096, 8192):
            a = at(0, 0, b, c)
            if a is None:
                continue
            us = linear_ops(b) + 32 * a + ps("lm_head", b) + ps("sampler", b)
            rows.append(ProfileRow("rtx4090", "llama-3.1-8b", "decode", b, 1, c, us * 1e-6))
    for p in (128, 256, 512, 1024, 2048):
        a = at(p, 0, 0, 0)
        if a is None:
            continue
        us = linear_ops(p) + 32 * a + ps("lm_head", 1) + ps("sampler", 1)
        rows.append(ProfileRow("rtx4090", "llama-3.1-8b", "prefill", 1, p, 0, us * 1e-6))
    return rows


AICONF_B7 = {  # ms: decode (a, b per seq, c per ctx token); prefill (a, b per tok, c per tok^2)
    "h100": ((6.15, 0.0100, 4.04e-5), (4.12, 0.0151, 8.35e-7)),
    "a100": ((10.86, 0.0160, 7.99e-5), (6.08, 0.0505, 1.65e-6)),
}


def aiconfigurator_rows(gpu: str) -> list[ProfileRow]:
    (da, db, dc), (pa, pb, pc) = AICONF_B7[gpu]
    rows = []
    for b in (1, 2, 4, 8, 16, 32, 64, 128):
        for c in (128, 512, 1024, 2048, 4096):
            ms = da + db * b + dc * b * c
            rows.append(ProfileRow(gpu, "llama-3.1-8b", "decode", b, 1, c, ms * 1e-3))
    for p in (64, 128, 256, 512, 1024, 2048, 4096, 8192):
        ms = pa + pb * p + pc * p * p
        rows.append(ProfileRow(gpu, "llama-3.1-8b", "prefill", 1, p, 0, ms * 1e-3))
    return rows


def distserve_rows(shared: Path, flavour: str) -> list[ProfileRow]:
    """DistServe's fitted A100-80GB OPT-13B TP1 coefficients evaluated on a grid (ms -> s).

    prefill = a + b*len + c*len^2 (batch 1); decode = a + b*sum(ctx) + c*batch (batch < 95).
    """
    path = shared / f"traces/calibration_profiles/distserve/profiler-a100-80g.{flavour}.json"
    d = json.loads(path.read_text())["facebook/opt-13b"]["1"]
    pa, pb, pc = d["prefill"]
    da, db, dc = d["decoding_smallbs"]
    rows = []
    for b in (1, 2, 4, 8, 16, 32, 64):
        for c in (128, 512, 1024, 2048):
            ms = da + db * b * c + dc * b
            rows.append(ProfileRow("a100", "opt-13b", "decode", b, 1, c, ms * 1e-3))
    for p in (64, 128, 256, 512, 1024, 2048):
        ms = pa + pb * p + pc * p * p
        rows.append(ProfileRow("a100", "opt-13b", "prefill", 1, p, 0, ms * 1e-3))
    return rows


#: NVLink per-direction bandwidth (NVIDIA A100 / H100 SXM datasheets: 600 / 900 GB/s total).
NVLINK_BYTES_PER_S = {"a100": 300e9, "h100": 450e9}


def splitwise_rows(shared: Path) -> dict[tuple[str, int], list[ProfileRow]]:
    """Splitwise's measured Llama2-70B runs (vLLM, A100/H100-80GB, TP 2/4/8), per (GPU, TP).

    ``prompt_time`` is one prefill iteration of ``batch`` prompts; ``token_time`` the mean decode
    iteration time over ``token_size`` output tokens, compared at the mean context
    ``prompt + token_size / 2``. Rows are averaged over the repeated runs; power-capped runs
    and BLOOM are left out.
    """
    path = shared / "traces/calibration_profiles/splitwise_sim/perf_model.csv"
    acc: dict[tuple, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["model"] != "llama2-70b" or r["hardware"] not in ("a100-80gb", "h100-80gb"):
                continue
            key = (r["hardware"][:4], int(r["tensor_parallel"]), int(r["prompt_size"]),
                   int(r["batch_size"]), int(r["token_size"]))
            acc.setdefault(key, []).append((float(r["prompt_time"]), float(r["token_time"])))
    out: dict[tuple[str, int], list[ProfileRow]] = {}
    prefill_seen = set()
    for (g, tp, p, b, o), vals in sorted(acc.items()):
        pt = float(np.mean([v[0] for v in vals])) * 1e-3
        tt = float(np.mean([v[1] for v in vals])) * 1e-3
        rows = out.setdefault((g, tp), [])
        if (g, tp, p, b) not in prefill_seen:
            prefill_seen.add((g, tp, p, b))
            rows.append(ProfileRow(g, "llama-2-70b", "prefill", b, p, 0, pt))
        rows.append(ProfileRow(g, "llama-2-70b", "decode", b, 1, p + o // 2, tt))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = Path(args.shared)

    measured = [n for n, s, _ in list_profiles() if s == "measured"]
    res: dict = {"measured": {}, "public": {}, "power": {}, "fitted": {}}
    scatter: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    fits: dict[str, RooflineEngineModel] = {}
    for name in measured:
        gk, _, mk = name.partition("/")
        gpu, shape = get_gpu(gk), get_shape(mk)
        rows = list(measured_rows(name))
        y = np.array([r.latency_s for r in rows])
        lin, rep = LinearEngineModel.fit(rows, name)
        fits[name] = fit_roofline(rows, gpu, shape, name)
        res["fitted"][name] = {
            "linear": {k: v for k, v in dataclasses.asdict(lin).items()
                       if k.startswith("c") or k == "knee_tokens"},
            "linear_in_sample": rep.per_phase,
            "roofline": {k: getattr(fits[name], k) for k in
                         ("eta_mem", "eta_flops", "overhead_s", "per_seq_s")}}
        p_lin = loo(rows, lambda rs, n=name: LinearEngineModel.fit(rs, n)[0])
        p_tab = loo(rows, lambda rs, n=name: TableEngineModel.from_rows(rs, n))
        p_roof = kfold(rows, lambda rs, g=gpu, s=shape, n=name: fit_roofline(rs, g, s, n))
        res["measured"][name] = {"linear_loo": per_phase(rows, p_lin),
                                 "table_loo": per_phase(rows, p_tab),
                                 "roofline_5fold": per_phase(rows, p_roof)}
        scatter[f"{name} linear LOO"] = (y, p_lin)
        idle = float(_measured_meta(name).get("idle_power_w", gpu.idle_power_w))
        res["power"][name] = fit_power(rows, gpu, shape, idle)[1]
    for name in measured:
        gk, _, mk = name.partition("/")
        others = [fits[n] for n in measured if n != name]
        if not others:
            continue
        rows = list(measured_rows(name))
        m = roofline_from_efficiencies(name, get_gpu(gk), get_shape(mk), mean_efficiencies(others))
        pred = np.array([m.step_time_s(r.shape) for r in rows])
        res["measured"][name]["roofline_transfer_other_models"] = per_phase(rows, pred)

    eff_all = mean_efficiencies(list(fits.values())) if fits else None
    res["transferred_efficiencies"] = eff_all
    public = {}
    try:
        public["llmservingsim_rtx4090_llama-3.1-8b"] = ("rtx4090", llmservingsim_rtx4090(shared))
    except (OSError, ImportError) as e:
        res["public"]["llmservingsim_rtx4090_llama-3.1-8b"] = {"error": str(e)}
    for g in AICONF_B7:
        public[f"aiconfigurator_{g}_llama-3-8b_b7fit"] = (g, aiconfigurator_rows(g))
    model_of = {}
    engine_kw: dict[str, dict] = {}
    try:
        for (g, tp), rows in splitwise_rows(shared).items():
            key = f"splitwise_{g}_llama-2-70b_tp{tp}"
            public[key] = (g, rows)
            model_of[key] = "llama-2-70b"
            engine_kw[key] = {"tensor_parallel": tp,
                              "interconnect_bytes_per_s": NVLINK_BYTES_PER_S[g]}
    except (OSError, KeyError, ValueError) as e:
        res["public"]["splitwise"] = {"error": str(e)}
    for flavour in ("vllm", "distserve"):
        key = f"distserve_a100_opt-13b_tp1_{flavour}"
        try:
            public[key] = ("a100", distserve_rows(shared, flavour))
            model_of[key] = "opt-13b"
        except (OSError, KeyError, ValueError) as e:
            res["public"][key] = {"error": str(e)}
    alpha_fit = None
    if eff_all is not None and "splitwise_a100_llama-2-70b_tp2" in public:
        # one held-in configuration: the all-reduce latency that fits A100 TP2 best, then
        # transferred unchanged to A100 TP4/8 and H100 TP2/4/8
        _, rows2 = public["splitwise_a100_llama-2-70b_tp2"]
        y2 = np.array([r.latency_s for r in rows2])

        def med(a: float) -> float:
            m = roofline_from_efficiencies("fit", get_gpu("a100"), get_shape("llama-2-70b"),
                                           eff_all, **engine_kw["splitwise_a100_llama-2-70b_tp2"],
                                           allreduce_latency_s=a)
            return float(np.median(np.abs(np.array([m.step_time_s(r.shape) for r in rows2])
                                          / y2 - 1)))
        alpha_fit = float(min(np.arange(0, 300e-6, 5e-6), key=med))
        res["splitwise_allreduce_latency_fit_s"] = alpha_fit
    for key, (gk, rows) in public.items():
        if eff_all is None:
            break
        mk = model_of.get(key, "llama-3.1-8b")
        m = roofline_from_efficiencies(key, get_gpu(gk), get_shape(mk), eff_all,
                                       **engine_kw.get(key, {}))
        y = np.array([r.latency_s for r in rows])
        pred = np.array([m.step_time_s(r.shape) for r in rows])
        entry = {"roofline_transfer": per_phase(rows, pred),
                 "measured_ms_examples": {f"{r.phase} b={r.batch_size} p={r.tokens_per_seq} "
                                          f"c={r.context_tokens}": round(r.latency_s * 1e3, 3)
                                          for r in rows[::7]}}
        if key in engine_kw and alpha_fit is not None:
            m2 = roofline_from_efficiencies(key, get_gpu(gk), get_shape(mk), eff_all,
                                            **engine_kw[key], allreduce_latency_s=alpha_fit)
            entry["roofline_transfer_alpha_fit_on_a100_tp2"] = per_phase(
                rows, np.array([m2.step_time_s(r.shape) for r in rows]))
            entry["allreduce_latency_s"] = alpha_fit
        if key not in engine_kw:  # the refit has no tensor-parallel term
            refit = fit_roofline(rows, get_gpu(gk), get_shape(mk), key)
            entry["roofline_refit_on_this_dataset"] = {
                "eta_mem": refit.eta_mem, "eta_flops": refit.eta_flops,
                "overhead_s": refit.overhead_s, "per_seq_s": refit.per_seq_s,
                "in_sample": per_phase(rows, np.array([refit.step_time_s(r.shape)
                                                       for r in rows]))}
        res["public"][key] = entry
        scatter[f"{key} roofline transfer"] = (y, pred)
    # our H100 8B measurement vs aiconfigurator H100 (same GPU, different engine)
    if "h100/llama-3.1-8b" in measured:
        lin = LinearEngineModel.fit(list(measured_rows("h100/llama-3.1-8b")), "h")[0]
        rows = aiconfigurator_rows("h100")
        pred = np.array([lin.step_time_s(r.shape) for r in rows])
        res["public"]["aiconfigurator_h100_llama-3-8b_b7fit"]["our_h100_linear"] = \
            per_phase(rows, pred)

    (out / "fidelity.json").write_text(json.dumps(res, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 6))
        for label, (yy, pp) in scatter.items():
            ax.loglog(yy * 1e3, pp * 1e3, ".", label=label, alpha=0.7)
        lo = min(float(v[0].min()) for v in scatter.values()) * 1e3 * 0.8
        hi = max(float(v[0].max()) for v in scatter.values()) * 1e3 * 1.2
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot([lo, hi], [lo * 1.1, hi * 1.1], "k:", lw=0.6)
        ax.plot([lo, hi], [lo / 1.1, hi / 1.1], "k:", lw=0.6)
        ax.set_xlabel("measured step time (ms)")
        ax.set_ylabel("predicted step time (ms)")
        ax.set_title("held-out prediction (dotted: +-10 %)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "fidelity.png", dpi=120)
    except ImportError:
        pass

    for name, d in res["measured"].items():
        for kind, ph in d.items():
            print(f"{name:22s} {kind:32s} " + "  ".join(
                f"{p}: {v['median_ape']:.1f}/{v['p90_ape']:.1f}" for p, v in ph.items()))
    for key, d in res["public"].items():
        for kind in ("roofline_transfer", "our_h100_linear"):
            if kind in d:
                print(f"{key:40s} {kind:18s} " + "  ".join(
                    f"{p}: {v['median_ape']:.1f}/{v['p90_ape']:.1f}" for p, v in d[kind].items()))
    print("power fit:", res["power"])
    print("wrote", out / "fidelity.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
