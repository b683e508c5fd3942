"""Smoke test of the PerLLM reproduction (``--quick``)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("highspy")


def _load():
    p = Path(__file__).resolve().parents[1] / "experiments" / "perllm.py"
    spec = importlib.util.spec_from_file_location("perllm_exp", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_run(tmp_path):
    mod = _load()
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    for f in ("records.csv", "regret.csv", "headline.csv", "config.json", "perllm_load.png",
              "perllm_regret.png"):
        assert (tmp_path / f).is_file(), f
    rows = list(csv.DictReader(open(tmp_path / "records.csv")))
    pols = {r["policy"] for r in rows}
    assert {"perllm", "ucb", "random", "round_robin", "oracle"} <= pols
    for r in rows:
        assert 0.0 <= float(r["deadline_satisfaction"]) <= 1.0
        assert float(r["energy_j"]) > 0
        assert float(r["completed"]) + float(r["rejected"]) == float(r["n"])
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["config"]["n"] == 100 and "git_sha" in cfg
