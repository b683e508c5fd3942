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
    for f in ("records.csv", "regret.csv", "headline.csv", "tuning.csv", "config.json",
              "perllm_load.png", "perllm_regret.png"):
        assert (tmp_path / f).is_file(), f
    rows = list(csv.DictReader(open(tmp_path / "records.csv")))
    pols = {r["policy"] for r in rows}
    assert {"perllm", "perllm_default", "ucb", "random", "round_robin", "oracle",
            "planner", "slotted_oracle"} <= pols
    for r in rows:
        assert 0.0 <= float(r["deadline_satisfaction"]) <= 1.0
        assert float(r["energy_j"]) > 0
        assert float(r["completed"]) + float(r["rejected"]) == float(r["n"])
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["config"]["n"] == 100 and "git_sha" in cfg
    # the tuning grid ran on its own seed and the chosen point is on the grid
    tun = list(csv.DictReader(open(tmp_path / "tuning.csv")))
    assert len(tun) == 6 and cfg["tuning_seed"] not in {int(r["seed"]) for r in rows}
    assert cfg["perllm_tuned"]["delta"] in (0.5, 1.0, 2.0)
    assert cfg["perllm_tuned"]["lam"] in (0.5, 1.0)
    # the planner keeps its best replay: never fewer met deadlines than its first iteration
    for r in rows:
        if r["policy"] == "planner":
            met = [int(x) for x in r["planner_met_by_iteration"].split()]
            assert float(r["met"]) == max(met) >= met[0]
