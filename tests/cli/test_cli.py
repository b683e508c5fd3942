"""CLI: simulate writes records and summary; demo runs; unknown names list valid ones."""

import csv
import json

import pytest

from slo_opt.cli import main, parse_params


def test_simulate_writes_records_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["simulate", "--scheduler", "vllm", "--param", "max_num_seqs=16", "--limit", "50",
               "--out", str(out), "--quiet"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "records.csv")))
    assert len(rows) == 50
    assert {"id", "arrival_s", "prompt_tokens", "output_tokens", "first_token_s", "finish_s",
            "ttft_s", "tpot_s", "e2e_s", "slo_met", "rejected"} <= set(rows[0])
    sm = json.loads((out / "summary.json").read_text())
    assert sm["num_requests"] == 50 and sm["params"]["max_num_seqs"] == 16


def test_simulate_maps_engine_flags(tmp_path):
    rc = main(["simulate", "--scheduler", "orca", "--max-num-seqs", "4", "--limit", "20",
               "--kv-capacity-tokens", "65536", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    sm = json.loads((tmp_path / "summary.json").read_text())
    assert sm["params"]["max_batch_seqs"] == 4


@pytest.mark.parametrize("argv, needle", [
    (["simulate", "--scheduler", "nope", "--out", "x"], "known:"),
    (["simulate", "--scheduler", "vllm", "--param", "bogus=1", "--out", "x"], "valid:"),
    (["simulate", "--scheduler", "vllm", "--profile", "tpu/none", "--out", "x"], "tpu/none"),
    (["simulate", "--scheduler", "vllm", "--trace", "/nonexistent.csv", "--out", "x"], "nonexistent"),
    (["reproduce", "no_such_paper"], "available"),
])
def test_bad_names_are_clear_errors(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_demo_runs_on_subset(tmp_path, capsys):
    rc = main(["demo", "--limit", "60", "--scheduler", "vllm,fcfs", "--out", str(tmp_path),
               "--quiet"])
    assert rc == 0
    assert "vllm" in capsys.readouterr().out
    assert (tmp_path / "demo.json").exists()


def test_listing_commands(capsys):
    assert main(["schedulers"]) == 0
    assert "vllm" in capsys.readouterr().out
    assert main(["profiles"]) == 0
    assert "h100/llama-3.1-8b" in capsys.readouterr().out


def test_parse_params():
    assert parse_params(["a=1", "b=x", "c=[1, 2]", "d=None"]) == {"a": 1, "b": "x", "c": [1, 2],
                                                                   "d": None}


def test_reproduce_help_lists_the_reproductions(capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("perllm", "slice", "ssjf", "fastserve"):
        assert f"  {name} " in out
    with pytest.raises(SystemExit):
        main(["reproduce", "slice", "--help"])
    assert "Full run" in capsys.readouterr().out
