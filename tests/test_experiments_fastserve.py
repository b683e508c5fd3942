"""Smoke test of the FastServe vs Orca/vLLM experiment."""

import csv


def test_quick_run_writes_outputs(tmp_path):
    from experiments.fastserve import main

    assert main(["--quick", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "records.csv")))
    assert {r["scheduler"] for r in rows} == {"fastserve", "orca", "vllm"}
    assert {r["kv"] for r in rows} == {"ample", "pressure"}
    assert (tmp_path / "config.json").exists() and (tmp_path / "fastserve_jct.png").exists()
