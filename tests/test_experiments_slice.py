"""Smoke test of the SLICE reproduction (``slo-opt reproduce slice --quick``)."""

import csv
import json

import pytest


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from experiments.slice import main

    out = tmp_path_factory.mktemp("slice")
    assert main(["--quick", "--out", str(out)]) == 0
    return out


def test_quick_run_writes_outputs(quick):
    rows = list(csv.DictReader(open(quick / "records.csv")))
    assert {r["scheduler"] for r in rows} == {"slice", "slice_norestart", "orca", "fastserve",
                                              "fluid_bound"}
    assert {r["profile"] for r in rows} == {"edge", "h100"}
    assert {r["study"] for r in rows} == {"load", "slope"}
    for r in rows:
        assert 0.0 <= float(r["attainment"]) <= 1.0 + 1e-9
    dec = list(csv.DictReader(open(quick / "decisions.csv")))
    assert dec and all(float(d["greedy_utility"]) <= float(d["milp_utility"]) + 1e-9 for d in dec)
    cfg = json.loads((quick / "config.json").read_text())
    assert "headline" in cfg and cfg["git_sha"] is not None and cfg["schedules_checked"] > 0
    for f in ("slice_attainment_ratio.png", "slice_completion_ratio.png", "slice_load_edge.png",
              "slice_load_h100.png", "slice_slope.png", "ratio_curves.csv"):
        assert (quick / f).exists()


def test_bounds_hold(quick):
    rows = list(csv.DictReader(open(quick / "records.csv")))
    for b in (r for r in rows if r["scheduler"] == "fluid_bound"):
        same = [r for r in rows if r["scheduler"] != "fluid_bound" and r["study"] == "load"
                and r["profile"] == b["profile"] and r["rate_per_s"] == b["rate_per_s"]
                and r["seed"] == b["seed"]]
        assert len(same) == 4
        for r in same:
            assert float(r["attainment"]) <= float(b["attainment"]) + 1e-9
            assert float(r["attainment_weighted"]) <= float(b["attainment_weighted"]) + 1e-9
    bound = list(csv.DictReader(open(quick / "bound.csv")))
    for b in bound:
        assert float(b["attainment_weighted"]) <= float(b["bound_weighted"]) + 1e-9
        assert float(b["attainment"]) <= float(b["bound_attainment"]) + 1e-9
