"""Engine-model fidelity: held-out errors on our profiles, public tables, real vLLM runs.

Usage: ``python benchmarks/fidelity.py [--out benchmarks/results] [--shared ../shared] [--quick]``

Three parts, each also runnable alone:

* our measured profiles (``models/profiles/<gpu>/<model>.csv``): ``linear`` and ``table``
  leave-one-out, ``roofline`` 5-fold, ``roofline-transfer`` from the *other* measured models;
  power fit in-sample -> ``fidelity.json``, ``fidelity.png``;
* the roofline transfer against every public kernel/step table, held out per GPU
  (``benchmarks/fidelity_tables.py``) -> ``fidelity_tables.json``;
* the real vLLM runs of ``vllm_runs/`` simulated end to end (``benchmarks/fidelity_runs.py``)
  -> ``fidelity_runs.json``.
"""

from __future__ import annotations

import argparse
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




def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--quick", action="store_true", help="real runs: built engine only")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = Path(args.shared)

    measured = [n for n, s, _ in list_profiles() if s == "measured"]
    res: dict = {"measured": {}, "power": {}, "fitted": {}}
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

    res["transferred_efficiencies"] = mean_efficiencies(list(fits.values())) if fits else None
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
    print("power fit:", res["power"])
    print("wrote", out / "fidelity.json")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fidelity_runs
    import fidelity_tables

    traces = str(shared / "traces")
    fidelity_tables.main(["--traces", traces, "--out", str(out)])
    fidelity_runs.main(["--traces", traces, "--out", str(out)] + (["--quick"] if args.quick
                                                                   else []))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
