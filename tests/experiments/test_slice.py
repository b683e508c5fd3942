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


#: quick-mode numbers (40 tasks, seed 0, edge profile, 1.0 task/s), pinned; tolerance 0.01
#: absolute on attainment and 2 % relative on the completion ratio (the run is seeded)
PINNED_QUICK = {"slice": (0.225, 0.0909), "slice_norestart": (0.325, 0.3636),
                "orca": (0.25, 0.0), "fastserve": (0.30, 0.0)}


def test_pinned_quick_numbers(quick):
    rows = list(csv.DictReader(open(quick / "records.csv")))
    got = {r["scheduler"]: r for r in rows if r["study"] == "load" and r["profile"] == "edge"
           and float(r["rate_per_s"]) == 1.0}
    for name, (att, rt) in PINNED_QUICK.items():
        assert abs(float(got[name]["attainment"]) - att) <= 0.01, name
        assert abs(float(got[name]["attainment_rt"]) - rt) <= 0.01, name
    cur = [r for r in csv.DictReader(open(quick / "ratio_curves.csv")) if r["profile"] == "edge"
           and r["policy"] == "slice" and float(r["rate_per_s"]) == 1.0]
    rt_x = {r["baseline"]: float(r["completion_rt_x"]) for r in cur}
    assert abs(rt_x["orca"] / 2.416 - 1) < 0.02 and abs(rt_x["fastserve"] / 2.906 - 1) < 0.02
    bound = {r["scheduler"]: r for r in csv.DictReader(open(quick / "bound.csv"))}
    assert abs(float(bound["slice"]["attainment"]) - 0.9167) <= 0.01
    assert abs(float(bound["orca"]["attainment"]) - 0.6667) <= 0.01
    assert float(bound["slice"]["optimum_attainment"]) == 1.0
