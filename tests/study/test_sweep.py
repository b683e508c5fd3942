"""Sweeps: TOML validation, resumability, and identical tables from the local and Ray executors."""

import json
from pathlib import Path

import pytest

from slo_opt.cli.sweep import main as cli_main
from slo_opt.study.sweep import Sweep, SweepConfigError, run_sweep

TINY = {
    "name": "tiny",
    "seeds": [0, 1],
    "workloads": [
        {"name": "syn", "kind": "synthetic", "num_requests": 12, "rate_per_s": 5.0,
         "ttft_slo_s": 1.0, "tpot_slo_s": 0.1},
        {"name": "head", "kind": "trace", "trace": "default", "num_requests": 10},
    ],
    "schedulers": [{"name": "vllm", "grid": {"max_num_seqs": [2, 64]}}, {"name": "orca"}],
    "engines": [{"name": "h100", "profile": "h100/llama-3.1-8b"}],
}


def test_grid_size_and_order():
    sw = Sweep.from_dict(TINY)
    runs = sw.runs()
    assert len(runs) == 2 * 3 * 1 * 2
    assert len({r.run_id for r in runs}) == len(runs)
    assert [r.workload.name for r in runs[:6]] == ["syn"] * 6


@pytest.mark.parametrize("bad, key", [
    ({"bogus": 1}, "bogus"),
    ({"workloads": [{"name": "w", "kind": "synthetic", "num_requests": 3, "rate_per_s": 1.0,
                     "rate": 2}]}, "rate"),
    ({"schedulers": [{"name": "vllm", "params": {"max_num_seq": 3}}]}, "max_num_seq"),
    ({"engines": [{"name": "e", "profile": "h100/llama-3.1-8b", "gpu": "h100"}]}, "gpu"),
    ({"schedulers": [{"name": "vllm", "grdi": {}}]}, "grdi"),
])
def test_unknown_keys_are_errors_naming_the_key(bad, key):
    d = dict(TINY, **bad)
    with pytest.raises(SweepConfigError, match=repr(key)):
        Sweep.from_dict(d)


def test_bad_values_are_errors():
    with pytest.raises(SweepConfigError, match="unknown scheduler"):
        Sweep.from_dict(dict(TINY, schedulers=[{"name": "nope"}]))
    with pytest.raises(SweepConfigError, match="rate_per_s"):
        Sweep.from_dict(dict(TINY, workloads=[{"name": "w", "num_requests": 3, "rate_per_s": -1.0}]))
    with pytest.raises(SweepConfigError, match="max_num_seqs"):
        Sweep.from_dict(dict(TINY, schedulers=[{"name": "vllm", "params": {"max_num_seqs": 0}}]))


def test_bad_toml_file_names_key(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('name = "x"\nseed = 3\n[[workloads]]\nname = "w"\nnum_requests = 2\n'
                 'rate_per_s = 1.0\n[[schedulers]]\nname = "vllm"\n[[engines]]\nname = "e"\n'
                 'profile = "h100/llama-3.1-8b"\n')
    with pytest.raises(SweepConfigError, match="'seed'"):
        Sweep.from_toml(p)
    assert cli_main([str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 2


def test_example_config_is_valid():
    root = Path(__file__).resolve().parents[2]
    sw = Sweep.from_toml(root / "experiments" / "configs" / "sweep_example.toml")
    assert len(sw.runs()) == 16


def test_local_pool_equals_inline_and_resume_skips_done_runs(tmp_path):
    sw = Sweep.from_dict(TINY)
    a = run_sweep(sw, out_dir=tmp_path / "a", progress=False, workers=1)
    b = run_sweep(sw, out_dir=tmp_path / "b", progress=False, workers=2)
    assert a == b
    assert len(a) == 12 and all(r["num_requests"] in (10, 12) for r in a)
    assert (tmp_path / "a" / "results.csv").exists()
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["version"] and cfg["config"]["name"] == "tiny"
    # resume: mark one run file so we can see it is reused, delete another to force a rerun
    runs = sorted((tmp_path / "a" / "runs").glob("*.json"))
    assert len(runs) == 12
    rec = json.loads(runs[0].read_text())
    rec["row"]["attainment"] = -1.0  # sentinel: a skipped run keeps its stored row
    runs[0].write_text(json.dumps(rec))
    runs[1].unlink()
    c = run_sweep(sw, out_dir=tmp_path / "a", progress=False, workers=1)
    assert any(r["attainment"] == -1.0 for r in c)
    assert runs[1].exists()
    d = run_sweep(sw, out_dir=tmp_path / "a", progress=False, workers=1, resume=False)
    assert d == a


@pytest.mark.ray
def test_ray_executor_gives_identical_table(tmp_path):
    ray = pytest.importorskip("ray")
    sw = Sweep.from_dict(dict(TINY, seeds=[0]))
    local = run_sweep(sw, out_dir=tmp_path / "local", progress=False, workers=1)
    try:
        remote = run_sweep(sw, executor="ray", out_dir=tmp_path / "ray", progress=False,
                           num_cpus=2)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert not ray.is_initialized()
    assert remote == local
    assert (tmp_path / "ray" / "results.csv").read_text() == \
        (tmp_path / "local" / "results.csv").read_text()
