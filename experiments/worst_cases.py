"""Worst cases of every registered scheduler against the exact slotted optimum.

``python experiments/worst_cases.py [--quick] [--out DIR] [--examples K] [--n-max 8,12,16]
[--objectives attainment,mean_jct] [--seed S] [--schedulers a,b] [--figures DIR]``

For every scheduler (default parameters), objective and ``n_max``: :func:`slo_opt.testing.
worst_case` (hypothesis-targeted search, shrunk), the result directory (``save_worst_case``:
trace, both schedules and records, ``worst.json``, Gantt plot) under ``DIR/<objective>/
<scheduler>/n<N>/``, every directory re-checked from its files (``verify_worst_case``), one row
per cell in ``DIR/worst_cases.json`` and a markdown table on stdout. Cells already on disk with
the same arguments are reused (the run is resumable). With ``--figures``, the Gantt plot of the
smallest ``n_max`` cell of each scheduler is copied there as ``worst_<objective>_<name>.png``.
See ``papers/optimality-gap.md`` (section "Worst cases on demand").
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.study.runrecord import git_sha
from slo_opt.testing import save_worst_case, verify_worst_case, worst_case


def cell(name: str, objective: str, n_max: int, examples: int, seed: int, out: Path
         ) -> dict[str, Any]:
    """One (scheduler, objective, n_max) search, reused from ``out`` when already there."""
    d = out / objective / name / f"n{n_max}"
    f = d / "worst.json"
    if f.exists():
        doc = json.loads(f.read_text())
        if (doc.get("examples"), doc.get("seed"), doc.get("n_max")) == (examples, seed, n_max):
            return doc
    t0 = time.perf_counter()
    wc = worst_case(lambda: make(name), objective=objective, n_max=n_max, examples=examples,
                    seed=seed)
    save_worst_case(wc, d)
    verify_worst_case(d)
    doc = json.loads(f.read_text())
    doc["wall_s"] = time.perf_counter() - t0
    f.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def table(rows: list[dict[str, Any]], objective: str, ns: list[int]) -> str:
    """Markdown: one row per scheduler, gap (ratio for mean_jct) and n of the minimal instance
    per ``n_max``."""
    key = "ratio" if objective == "mean_jct" else "gap"
    head = "| scheduler | " + " | ".join(f"n <= {n}: {key} (n, value / optimum)" for n in ns) + " |"
    lines = [head, "|---" * (len(ns) + 1) + "|"]
    names = sorted({r["scheduler"] for r in rows if r["objective"] == objective})
    for nm in names:
        cells = []
        for n in ns:
            r = next((x for x in rows if x["scheduler"] == nm and x["objective"] == objective
                      and x["n_max"] == n), None)
            if r is None:
                cells.append("-")
                continue
            v = r[key]
            vs = "inf" if v is None else f"{v:.3g}"
            cells.append(f"{vs} ({r['n']}, {r['value']:.3g} / {r['optimum']:.3g})")
        lines.append(f"| {nm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="worst_cases_out")
    p.add_argument("--examples", type=int, default=200)
    p.add_argument("--n-max", default="8,12,16")
    p.add_argument("--objectives", default="attainment,mean_jct")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedulers", default="")
    p.add_argument("--figures", default="")
    p.add_argument("--quick", action="store_true", help="20 examples, n_max 4 (smoke run)")
    a = p.parse_args(argv)
    ns = [4] if a.quick else [int(x) for x in a.n_max.split(",")]
    examples = 20 if a.quick else a.examples
    objectives = a.objectives.split(",")
    names = a.schedulers.split(",") if a.schedulers else sorted(SCHEDULERS)
    for nm in names:
        if nm not in SCHEDULERS:
            p.error(f"unknown scheduler {nm!r}; known: {sorted(SCHEDULERS)}")
    out = Path(a.out)
    rows = []
    for objective in objectives:
        for nm in names:
            for n in ns:
                doc = cell(nm, objective, n, examples, a.seed, out)
                rows.append(doc)
                print(f"{objective:10s} {nm:12s} n<={n:2d}: gap {doc['gap']} ratio {doc['ratio']} "
                      f"n {doc['n']} ({doc.get('wall_s', 0):.0f} s)", file=sys.stderr, flush=True)
            if a.figures:
                src = out / objective / nm / f"n{min(ns)}" / "gantt.png"
                if src.exists():
                    Path(a.figures).mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, Path(a.figures) / f"worst_{objective}_{nm}.png")
    (out / "worst_cases.json").write_text(json.dumps(
        {"git": git_sha(), "examples": examples, "seed": a.seed, "n_max": ns, "rows": rows},
        indent=2) + "\n")
    for objective in objectives:
        print(f"\n{objective}\n")
        print(table(rows, objective, ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
