"""Smoke test of the PerLLM reproduction (``--quick``): outputs, the bound column, checks."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("highspy")


def _load():
    p = Path(__file__).resolve().parents[2] / "experiments" / "perllm.py"
    spec = importlib.util.spec_from_file_location("perllm_exp", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("perllm")
    mod = _load()
    assert mod.main(["--quick", "--out", str(out)]) == 0
    return out


def test_quick_run_outputs(quick):
    for f in ("records.csv", "table.csv", "curves.csv", "tuning.csv", "config.json",
              "perllm_throughput_ratio.png", "perllm_energy.png", "perllm_satisfaction.png"):
        assert (quick / f).is_file(), f
    from slo_opt.edge.dispatchers import DISPATCHERS

    rows = list(csv.DictReader(open(quick / "records.csv")))
    pols = {r["policy"] for r in rows}
    assert set(DISPATCHERS) | {"perllm_default", "fluid_bound"} <= pols
    cfg = json.loads((quick / "config.json").read_text())
    assert cfg["config"]["n"] == 150 and "git_sha" in cfg
    assert cfg["schedules_checked"] >= 6 * len(pols)  # every site schedule went through violations
    sat = cfg["saturation"]["D1"]
    assert sat["saturation_rps"] == max(sat["throughputs"].values()) > 10
    tun = list(csv.DictReader(open(quick / "tuning.csv")))
    assert len(tun) == 6 and cfg["tuning_seed"] not in {int(r["seed"]) for r in rows}


def test_bound_column_is_a_bound(quick):
    rows = list(csv.DictReader(open(quick / "records.csv")))
    for b in (r for r in rows if r["policy"] == "fluid_bound"):
        same = [r for r in rows if r["policy"] != "fluid_bound" and r["load"] == b["load"]
                and r["seed"] == b["seed"] and r["deployment"] == b["deployment"]]
        assert len(same) >= 9
        assert all(int(r["met_all"]) <= float(b["met_bound"]) + 1e-6 for r in same)
        assert int(b["feasible_alone"]) >= float(b["met_bound"]) - 1e-6
    for r in rows:
        if r["policy"] != "fluid_bound":
            assert 0.0 <= float(r["satisfaction"]) <= 1.0
            assert abs(float(r["busy_share"]) + float(r["idle_share"]) + float(r["tran_share"])
                       - 1) < 1e-6
    table = list(csv.DictReader(open(quick / "table.csv")))
    assert all(float(t["gap_pts"]) >= -1e-6 for t in table)
