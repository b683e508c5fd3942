"""Build a layerwise engine profile from a public per-layer profile (LLMServingSim format).

Usage::

    python -m slo_opt.models.build_engine \\
        --source ../shared/traces/calibration_profiles/llmservingsim/RTX4090/meta-llama/Llama-3.1-8B/bf16 \\
        --gpu rtx4090 --model llama-3.1-8b --graph-correction models/profiles/h200/graph_correction.json \\
        --out models/profiles/rtx4090

Input folder (LLMServingSim ``profiler/perf/<hw>/<model>/<variant>/``): ``meta.yaml`` and
``tp1/{dense,attention,per_sequence}.csv`` (microseconds per layer; see
``papers/engine-model.md``). Output: ``<out>/<model>.layerwise.json`` (the tables of
:class:`~slo_opt.models.layerwise.LayerwiseEngineModel`, in microseconds) and
``<out>/<model>.provenance.json`` (source files with sha256, this command, date, the fill
rules applied, the held-out interpolation check). No coefficient is typed in by hand: every
number in the output is a table value, a documented fill of a grid cell the profiler does not
measure, or the CUDA-graph gap read from a measured correction file.

Grid completion (cells a mixed-batch grid does not measure; each rule is applied and counted):

1. no prefill and no decode: 0 (no attention kernel runs);
2. no prefill chunk: independent of ``kv_prefill`` (the ``kv_prefill = 0`` value);
3. no decode: independent of ``kv_decode`` (the ``kv_decode = 0`` value);
4. decodes at ``kv_decode = 0``: the value at the smallest measured context (a decode reads
   at least its own token);
5. a mixed cell at the largest decode count when the profiler stopped one doubling short
   (LLMServingSim measures mixed batches up to 128 decodes, pure decode up to 256): the mixed
   value at the previous decode count plus the pure-decode increment between the two counts.

Grid values off the regular ``0, 16 * 2**i`` (tokens) and ``0, 2**i`` (decodes) axes (the RTX
PRO 6000 profile has extra 1.5x points) are not used to build; they are predicted by
interpolation and the error is written to the provenance file (an independent check).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.models.layerwise import LayerwiseEngineModel, interp4

__all__ = ["LAYER_OPS", "MODEL_OPS", "build_from_llmservingsim", "main",
           "vllm_default_capture_sizes"]

#: Dense operators of one Llama decoder layer and how often each runs per layer
#: (LLMServingSim ``profiler/models/llama.yaml``: input and post-attention RMSNorm).
LAYER_OPS: dict[str, int] = {"layernorm": 2, "qkv_proj": 1, "rotary_emb": 1, "o_proj": 1,
                             "gate_up_proj": 1, "act_fn": 1, "down_proj": 1}
#: Dense operators run once per step.
MODEL_OPS: tuple[str, ...] = ("embedding", "final_layernorm")
PER_SEQ_OPS: tuple[str, ...] = ("lm_head", "sampler")


def vllm_default_capture_sizes(max_capture_size: int = 512) -> tuple[int, ...]:
    """vLLM's default CUDA-graph capture sizes up to ``max_capture_size`` tokens.

    vLLM (``vllm/config/compilation.py``) captures 1, 2, 4, then every 8 up to 256, then every
    16 up to the maximum; the RTX 4090 run's ``cudagraph_capture_sizes`` is exactly this list
    for 512 (checked in the tests).
    """
    if max_capture_size < 1:
        raise ValueError("max_capture_size must be >= 1")
    sizes = [1, 2, 4, *range(8, 256, 8), *range(256, max_capture_size + 1, 16)]
    return tuple(s for s in sizes if s <= max_capture_size)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _on_axis(v: int, unit: int) -> bool:
    """``v`` is 0 or ``unit * 2**i``."""
    if v == 0:
        return True
    q, r = divmod(v, unit)
    return r == 0 and q > 0 and (q & (q - 1)) == 0


def _op_table(rows: list[dict[str, str]], key: str, ops: Sequence[str],
              weights: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Sum of operator times (seconds) on the common key axis."""
    per: dict[str, dict[int, float]] = {}
    for r in rows:
        per.setdefault(r["layer"], {})[int(r[key])] = float(r["time_us"]) * 1e-6
    missing = [o for o in ops if o not in per]
    if missing:
        raise ValueError(f"operators {missing} missing from the table (have {sorted(per)})")
    axis = sorted(set.intersection(*(set(per[o]) for o in ops)))
    if len(axis) < 2:
        raise ValueError(f"operators {list(ops)} share fewer than 2 {key} values")
    tot = np.zeros(len(axis))
    for o, w in zip(ops, weights):
        tot += w * np.array([per[o][k] for k in axis])
    return np.asarray(axis, dtype=np.float64), tot


def _attention_grid(rows: list[dict[str, str]]) -> tuple[tuple[np.ndarray, ...], np.ndarray,
                                                          dict[str, int], list[tuple]]:
    """Complete regular 4-D grid (seconds), fill counts and the off-grid held-out rows."""
    meas: dict[tuple[int, int, int, int], float] = {}
    off: list[tuple] = []
    for r in rows:
        k = (int(r["prefill_chunk"]), int(r["kv_prefill"]), int(r["n_decode"]),
             int(r["kv_decode"]))
        t = float(r["time_us"]) * 1e-6
        if _on_axis(k[0], 16) and _on_axis(k[1], 16) and _on_axis(k[2], 1) and \
                _on_axis(k[3], 16):
            meas[k] = t
        else:
            off.append((*k, t))
    axes = tuple(np.array(sorted({k[d] for k in meas} | {0}), dtype=np.float64)
                 for d in range(4))
    pcs, kps, nds, kds = (a.astype(int).tolist() for a in axes)
    grid = np.full(tuple(a.size for a in axes), np.nan)
    counts = {"measured": 0, "rule1_empty": 0, "rule2_no_prefill": 0, "rule3_no_decode": 0,
              "rule4_kv_decode_0": 0, "rule5_last_decode_count": 0}
    for i, pc in enumerate(pcs):
        for j, kp in enumerate(kps):
            for m, nd in enumerate(nds):
                for n, kd in enumerate(kds):
                    if (pc, kp, nd, kd) in meas:
                        grid[i, j, m, n] = meas[(pc, kp, nd, kd)]
                        counts["measured"] += 1
    smallest_kd = kds[1] if len(kds) > 1 else kds[0]

    def get(pc: int, kp: int, nd: int, kd: int) -> float:
        v = grid[pcs.index(pc), kps.index(kp), nds.index(nd), kds.index(kd)]
        return float(v)

    # pass 1: rules 1-4 (in this order; each only reads measured cells or earlier rules)
    for i, pc in enumerate(pcs):
        for j, kp in enumerate(kps):
            for m, nd in enumerate(nds):
                for n, kd in enumerate(kds):
                    if not np.isnan(grid[i, j, m, n]):
                        continue
                    if pc == 0 and nd == 0:
                        grid[i, j, m, n] = 0.0
                        counts["rule1_empty"] += 1
                    elif pc == 0 and kp != 0 and (0, 0, nd, kd) in meas:
                        grid[i, j, m, n] = meas[(0, 0, nd, kd)]
                        counts["rule2_no_prefill"] += 1
                    elif nd == 0 and kd != 0 and (pc, kp, 0, 0) in meas:
                        grid[i, j, m, n] = meas[(pc, kp, 0, 0)]
                        counts["rule3_no_decode"] += 1
    for i, _pc in enumerate(pcs):
        for j, _kp in enumerate(kps):
            for m, nd in enumerate(nds):
                if nd > 0 and np.isnan(grid[i, j, m, 0]):
                    grid[i, j, m, 0] = grid[i, j, m, 1]
                    counts["rule4_kv_decode_0"] += int(not np.isnan(grid[i, j, m, 0]))
    # rule 5: the largest decode count of mixed cells
    top = len(nds) - 1
    for i, pc in enumerate(pcs):
        if pc == 0:
            continue
        for j, _kp in enumerate(kps):
            for n, kd in enumerate(kds):
                if np.isnan(grid[i, j, top, n]) and top >= 2:
                    inc = get(0, 0, nds[top], kd) - get(0, 0, nds[top - 1], kd)
                    grid[i, j, top, n] = grid[i, j, top - 1, n] + inc
                    counts["rule5_last_decode_count"] += 1
    if np.isnan(grid).any():
        bad = np.argwhere(np.isnan(grid))[:5]
        cells = [(pcs[a], kps[b], nds[c], kds[d]) for a, b, c, d in bad]
        raise ValueError(f"attention grid incomplete after the fill rules, e.g. {cells} "
                         f"({int(np.isnan(grid).sum())} cells); smallest kv_decode "
                         f"{smallest_kd}")
    return axes, grid, counts, off


def _parse_meta(path: Path) -> dict[str, str]:
    """The flat ``key: value`` lines of LLMServingSim's meta.yaml (no YAML dependency)."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#")) and ":" in line:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip().strip("'\"")
    return out


def build_from_llmservingsim(source: str | os.PathLike[str], *, name: str, num_layers: int,
                             capture_sizes: Sequence[int] = (), graph_gap_s: float = 0.0,
                             eager_gap_s: float = 0.0, tp: int = 1
                             ) -> tuple[LayerwiseEngineModel, dict[str, Any]]:
    """Build the engine and its provenance record from an LLMServingSim profile folder.

    Parameters
    ----------
    source : path
        ``.../<model>/<variant>`` holding ``meta.yaml`` and ``tp<N>/*.csv``.
    name : str
        Engine name ``"<gpu>/<model>"``.
    num_layers : int
        Decoder layers of the served model (the profile measures one layer).
    capture_sizes : sequence of int
        CUDA-graph capture sizes of the served engine (empty: eager).
    graph_gap_s, eager_gap_s : float
        Measured per-layer gaps (see :class:`LayerwiseEngineModel`).
    tp : int
        Tensor-parallel folder to read (``tp<N>``).

    Returns
    -------
    (LayerwiseEngineModel, dict)
        The engine and a provenance dict (sources with sha256, fill counts, held-out check).
    """
    src = Path(source)
    d = src / f"tp{tp}"
    files = {k: d / f"{k}.csv" for k in ("dense", "attention", "per_sequence")}
    for k, p in files.items():
        if not p.is_file():
            raise ValueError(f"{src}: missing {p.name} under tp{tp}/ ({k} table)")
    dense = _read_csv(files["dense"])
    tok, layer = _op_table(dense, "tokens", list(LAYER_OPS), list(LAYER_OPS.values()))
    tok2, model = _op_table(dense, "tokens", MODEL_OPS, [1] * len(MODEL_OPS))
    if not np.array_equal(tok, tok2):
        raise ValueError(f"{src}: per-layer and per-step dense ops use different token axes")
    seq, per_seq = _op_table(_read_csv(files["per_sequence"]), "sequences", PER_SEQ_OPS,
                             [1] * len(PER_SEQ_OPS))
    axes, grid, counts, off = _attention_grid(_read_csv(files["attention"]))
    eng = LayerwiseEngineModel(
        name=name, num_layers=num_layers, dense_tokens=tok, layer_dense_s=layer,
        model_dense_s=model, seq_axis=seq, per_seq_s=per_seq,
        attn_axes=axes, attn_s=grid,  # type: ignore[arg-type]
        graph_capture_sizes=tuple(int(s) for s in capture_sizes), graph_gap_s=graph_gap_s,
        eager_gap_s=eager_gap_s, source=f"{name} [layerwise, built from {src.name}]")
    held: dict[str, Any] = {"rows": len(off)}
    if off:
        o = np.asarray(off)
        pred = interp4(eng.attn_axes, eng.attn_s, o[:, 0], o[:, 1], o[:, 2], o[:, 3])
        ape = 100 * np.abs(pred / o[:, 4] - 1)
        held.update({"median_ape": round(float(np.median(ape)), 3),
                     "p90_ape": round(float(np.percentile(ape, 90)), 3),
                     "max_ape": round(float(ape.max()), 3)})
    meta = _parse_meta(src / "meta.yaml")
    prov = {
        "sources": {k: {"file": str(p), "sha256": _sha256(p)} for k, p in files.items()},
        "meta_yaml": {k: meta[k] for k in ("profiler_version", "vllm_version", "cuda_version",
                                           "gpu", "hardware", "profiled_at", "model",
                                           "variant") if k in meta},
        "grid_fill_counts": counts,
        "attention_axes": {k: a.astype(int).tolist() for k, a in zip(
            ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode"), axes)},
        "off_grid_interpolation_check": held,
        "layer_ops": LAYER_OPS, "model_ops": list(MODEL_OPS), "per_sequence_ops":
            list(PER_SEQ_OPS),
    }
    return eng, prov


def _readme(name: str, model: str, prov: dict[str, Any]) -> str:
    """The provenance in prose (written beside the profile)."""
    m = prov["meta_yaml"]
    gc = prov["graph_correction"]
    off = prov["off_grid_interpolation_check"]
    offs = (f"{off['rows']} off-grid attention rows predicted by interpolation: median "
            f"{off['median_ape']} %, p90 {off['p90_ape']} %, max {off['max_ape']} % error"
            if off.get("rows") else "no off-grid rows in this profile")
    files = ", ".join(f"`{v['file']}` (sha256 {v['sha256'][:16]}...)"
                      for v in prov["sources"].values())
    return f"""# {name} — built from a public per-layer profile

| | |
|---|---|
| engine | `LayerwiseEngineModel` (`models/layerwise.py`); tables in `{model}.layerwise.json` (µs) |
| source | LLMServingSim (casys-kaist/LLMServingSim @ 5daddb21, MIT) layer profile, as copied to the shared traces: {files} |
| measured on | {m.get('gpu')}, vLLM {m.get('vllm_version')}, CUDA {m.get('cuda_version')}, eager mode, profiled {m.get('profiled_at')} (their `meta.yaml`) |
| built by | `{prov['built_by']}` |
| built at (UTC) | {prov['built_at_utc']} |
| CUDA-graph correction | {gc.get('graph_gap_us_used')} µs per layer on decode-only steps, {gc.get('mixed_gap_us_used')} µs on the others (`--mixed-gap {gc.get('mixed_gap')}`), from `{gc.get('file')}` ({gc.get('measured_on', 'measured on our GPU')}); steps up to {prov['graph_capture_sizes'][-1] if prov['graph_capture_sizes'] else 0} tokens padded to vLLM's capture sizes |
| grid completion | {prov['grid_fill_counts']} (rules in `models/build_engine.py`) |
| interpolation check | {offs} |

Rebuild: the command above, from the repository root with the shared traces at
`../shared/traces`. Licence of the source tables: MIT (LLMServingSim); the derived tables are
distributed under the same terms, with this attribution. Full record: `{model}.provenance.json`.
"""


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    from slo_opt.models.kv import get_shape

    ap = argparse.ArgumentParser(prog="python -m slo_opt.models.build_engine",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True, help="LLMServingSim <model>/<variant> folder")
    ap.add_argument("--gpu", required=True, help="catalogue GPU key (e.g. rtx4090)")
    ap.add_argument("--model", required=True, help="model shape key (e.g. llama-3.1-8b)")
    ap.add_argument("--out", required=True, help="output folder (models/profiles/<gpu>)")
    ap.add_argument("--max-capture-size", type=int, default=512,
                    help="vLLM max_cudagraph_capture_size of the served engine (0: eager)")
    ap.add_argument("--graph-correction", default=None,
                    help="measured CUDA-graph correction JSON (graph_gap_us_per_layer, "
                         "eager_gap_us_per_layer); default: none (gap 0)")
    ap.add_argument("--mixed-gap", default="graph", choices=["graph", "eager", "zero"],
                    help="per-layer gap of steps that are not decode-only graphs: the measured "
                         "graph gap (default: vLLM runs them as piecewise graphs or GPU-bound "
                         "compiled code), the measured eager gap, or none")
    ap.add_argument("--tp", type=int, default=1)
    args = ap.parse_args(argv)
    shape = get_shape(args.model)
    caps = vllm_default_capture_sizes(args.max_capture_size) if args.max_capture_size else ()
    gg = eg = 0.0
    corr: dict[str, Any] = {}
    if args.graph_correction:
        corr = json.loads(Path(args.graph_correction).read_text())
        gg = float(corr["graph_gap_us_per_layer"]) * 1e-6
        eg = {"graph": gg, "zero": 0.0,
              "eager": float(corr.get("eager_gap_us_per_layer", 0.0)) * 1e-6}[args.mixed_gap]
    name = f"{args.gpu}/{args.model}"
    eng, prov = build_from_llmservingsim(args.source, name=name, num_layers=shape.num_layers,
                                         capture_sizes=caps, graph_gap_s=gg, eager_gap_s=eg,
                                         tp=args.tp)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prov.update({
        "built_by": "python -m slo_opt.models.build_engine " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "built_at_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "num_layers": shape.num_layers,
        "graph_capture_sizes": list(caps),
        "graph_correction": {"file": args.graph_correction, "mixed_gap": args.mixed_gap,
                             "graph_gap_us_used": round(gg * 1e6, 4),
                             "mixed_gap_us_used": round(eg * 1e6, 4), **{
            k: corr[k] for k in ("graph_gap_us_per_layer", "eager_gap_us_per_layer",
                                 "measured_on", "date_utc") if k in corr}},
    })
    for k in ("sources",):
        for v in prov[k].values():  # paths relative to the shared traces root when possible
            p = v["file"]
            i = p.find("calibration_profiles/")
            v["file"] = p[i:] if i >= 0 else os.path.basename(p)
    (out / f"{args.model}.layerwise.json").write_text(json.dumps(eng.to_json_dict()) + "\n")
    (out / f"{args.model}.provenance.json").write_text(json.dumps(prov, indent=1) + "\n")
    (out / "README.md").write_text(_readme(name, args.model, prov))
    print(f"wrote {out / (args.model + '.layerwise.json')} and provenance "
          f"(attention cells {prov['grid_fill_counts']}; off-grid check "
          f"{prov['off_grid_interpolation_check']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
