"""Smoke test of the SLICE reproduction (``slo-opt reproduce slice --quick``)."""

import csv
import json


def test_quick_run_writes_outputs(tmp_path):
    from experiments.slice import main

    assert main(["--quick", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "records.csv")))
    assert {r["scheduler"] for r in rows} == {"slice", "orca", "fastserve"}
    assert {r["profile"] for r in rows} == {"edge", "h100"}
    assert {r["study"] for r in rows} == {"load", "slope"}
    for r in rows:
        assert 0.0 <= float(r["attainment"]) <= 1.0
    dec = list(csv.DictReader(open(tmp_path / "decisions.csv")))
    assert dec and all(float(d["greedy_utility"]) <= float(d["milp_utility"]) + 1e-9 for d in dec)
    bound = list(csv.DictReader(open(tmp_path / "bound.csv")))
    assert all(float(b["attainment_weighted"]) <= float(b["bound_weighted"]) + 1e-9 for b in bound)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert "headline" in cfg and cfg["git_sha"] is not None
    for f in ("slice_load_edge.png", "slice_load_h100.png", "slice_slope.png"):
        assert (tmp_path / f).exists()
