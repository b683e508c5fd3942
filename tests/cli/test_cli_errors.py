"""Issue 17: every bad input to the real ``slo-opt`` (``python -m slo_opt.cli`` in a subprocess)
is one line on stderr naming the flag and what is allowed, exit status 2, before any work;
wrong answers that looked right (``chunked_prefill=false``, epoch-nanosecond arrivals, an empty
trace, bare NaN in summary.json) are gone.

A missing extra is simulated with a ``sitecustomize`` that makes the extra's modules
unimportable (as in a base install), so the check runs in any venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEADER = "arrival_s,prompt_tokens,output_tokens\n"


def run(args: list[str], cwd: Path, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore::DeprecationWarning")
    if block:
        site = cwd / "_block"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(
            "import sys\n"
            "class _Block:\n"
            f"    names = {block!r}\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in self.names:\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
            "        return None\n"
            "sys.meta_path.insert(0, _Block())\n")
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "slo_opt.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def error_line(p: subprocess.CompletedProcess) -> str:
    """The one error line (warnings, one line each, may precede it); no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = [x for x in p.stderr.splitlines() if not x.startswith("slo-opt: warning:")]
    assert len(lines) == 1, p.stderr
    assert ": error: " in lines[0]
    return lines[0]


@pytest.fixture()
def traces(tmp_path: Path) -> Path:
    (tmp_path / "empty.csv").write_text(HEADER)
    (tmp_path / "unsorted.csv").write_text(HEADER + "2,10,10\n1,10,10\n")
    (tmp_path / "huge.csv").write_text(HEADER + "1e300,10,10\n2e300,10,10\n")
    (tmp_path / "ns.csv").write_text(HEADER + "1700000000000000000,10,10\n"
                                     "1700000000500000000,10,10\n")
    (tmp_path / "afile").write_text("")
    return tmp_path


# -- flags with a range: one line, names the flag and the range --------------------------
@pytest.mark.parametrize(("args", "flag", "allowed"), [
    (["solve", "--load", "0"], "--load", "> 0"),
    (["solve", "--step-s", "0"], "--step-s", "> 0"),
    (["solve", "--kv-capacity-tokens", "0"], "--kv-capacity-tokens", ">= 1"),
    (["solve", "--max-num-batched-tokens", "0"], "--max-num-batched-tokens", ">= 1"),
    (["solve", "--n", "-1"], "--n", ">= 0"),
    (["solve", "--time-limit", "nan"], "--time-limit", "> 0"),
    (["simulate", "--scheduler", "vllm", "--ttft-slo-s", "-1", "--out", "o"], "--ttft-slo-s",
     "> 0"),
    (["simulate", "--scheduler", "vllm", "--max-num-seqs", "0", "--out", "o"], "--max-num-seqs",
     ">= 1"),
    (["simulate", "--scheduler", "vllm", "--limit", "abc", "--out", "o"], "--limit", ">= 1"),
    (["demo", "--speedup", "0"], "--speedup", "> 0"),
])
def test_range_errors(tmp_path, args, flag, allowed):
    msg = error_line(run(args, tmp_path))
    assert f"argument {flag}" in msg and allowed in msg
    assert not (tmp_path / "o").exists()  # nothing written


# -- scheduler parameters: converted by field type, errors name parameter and value ---------
def test_param_false_turns_chunked_prefill_off(tmp_path):
    p = run(["simulate", "--scheduler", "vllm", "--param", "chunked_prefill=false",
             "--limit", "5", "--out", "o"], tmp_path)
    assert p.returncode == 0, p.stderr
    sm = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert sm["params"]["chunked_prefill"] is False


@pytest.mark.parametrize(("value", "allowed"), [("True", "must be an integer, got True"),
                                                ("abc", "must be an integer, got 'abc'")])
def test_param_wrong_type(tmp_path, value, allowed):
    msg = error_line(run(["simulate", "--scheduler", "vllm", "--param", f"max_num_seqs={value}",
                          "--limit", "5", "--out", "o"], tmp_path))
    assert "max_num_seqs" in msg and allowed in msg


def test_sweep_toml_bool_as_string(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('name = "x"\n[[workloads]]\nname = "w"\nkind = "synthetic"\nnum_requests = 2\n'
                   'rate_per_s = 1.0\n[[schedulers]]\nname = "vllm"\n'
                   'params = { chunked_prefill = "no" }\n[[engines]]\nname = "e"\n'
                   'profile = "h100/llama-3.1-8b"\n')
    msg = error_line(run(["sweep", str(cfg), "--out", "o"], tmp_path))
    assert "chunked_prefill" in msg and "true or false" in msg and "'no'" in msg


# -- workloads ------------------------------------------------------------------------------
def test_header_only_trace_is_an_error(traces):
    msg = error_line(run(["simulate", "--scheduler", "vllm", "--trace", "empty.csv",
                          "--out", "o"], traces))
    assert "--trace" in msg and "no requests" in msg


@pytest.mark.parametrize("name", ["huge.csv", "ns.csv"])
def test_implausible_arrival_times_are_an_error(traces, name):
    msg = error_line(run(["simulate", "--scheduler", "vllm", "--trace", name, "--out", "o"],
                         traces))
    assert "--trace" in msg and "--time-unit" in msg


def test_time_unit_ns_reads_epoch_nanoseconds(traces):
    p = run(["simulate", "--scheduler", "vllm", "--trace", "ns.csv", "--time-unit", "ns",
             "--out", "o"], traces)
    assert p.returncode == 0, p.stderr
    rows = (traces / "o" / "records.csv").read_text().splitlines()
    ttft = [float(r.split(",")[6]) for r in rows[1:]]
    assert rows[0].split(",")[6].strip('"') == "ttft_s" and all(t > 0 for t in ttft)


def test_summary_json_is_strict(tmp_path):
    p = run(["simulate", "--scheduler", "vllm", "--limit", "1", "--out", "o"], tmp_path)
    assert p.returncode == 0, p.stderr

    def bad(c: str) -> None:
        raise AssertionError(f"non-standard JSON constant {c}")

    sm = json.loads((tmp_path / "o" / "summary.json").read_text(), parse_constant=bad)
    assert sm["goodput_rps"] is None or sm["goodput_rps"] >= 0
    assert {"slo", "engine", "params", "seed", "versions"} <= set(sm)


@pytest.mark.parametrize(("args", "text"), [
    (["solve", "--trace", "nofile.csv"], "no such trace file 'nofile.csv'"),
    (["solve", "--trace", "unsorted.csv", "--n", "2"], "line 3: arrival times are not sorted"),
])
def test_solve_trace_errors(traces, args, text):
    msg = error_line(run(args, traces))
    assert "--trace" in msg and text in msg


# -- outputs validated before work -------------------------------------------------------
@pytest.mark.parametrize(("out", "text"), [("afile", "is an existing file"),
                                           ("afile/sub", "cannot create directory")])
def test_bad_out_is_an_error_before_work(traces, out, text):
    p = run(["simulate", "--scheduler", "vllm", "--out", out], traces)
    msg = error_line(p)
    assert "--out" in msg and text in msg and p.stdout == ""


# -- missing extras: which extra, up front ------------------------------------------------
@pytest.mark.parametrize(("args", "block", "text"), [
    (["demo"], ("pyomo", "highspy"), 'pip install "slo_opt[solvers]"'),
    (["solve"], ("pyomo", "highspy"), 'pip install "slo_opt[solvers]"'),
    (["profile"], ("torch",), "needs PyTorch"),
])
def test_missing_extra_is_named_up_front(tmp_path, args, block, text):
    p = run(args, tmp_path, block=block)
    msg = error_line(p)
    assert text in msg and p.stdout == ""
    assert not (tmp_path / "slo_opt_demo").exists()


# -- vocabulary: old names still work, with a one-line notice -------------------------------
def test_deprecated_alias_warns_and_works(tmp_path):
    p = run(["demo", "--schedulers", "fcfs", "--no-gap", "--limit", "20", "--quiet",
             "--out", "d"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "slo-opt: warning: --schedulers is deprecated; use --scheduler" in p.stderr
    assert f"wrote {(tmp_path / 'd').resolve() / 'demo.json'}" in p.stdout


# -- records carry a reject reason; Parquet as well as CSV -----------------------------------
def test_rejected_request_has_a_reason(tmp_path):
    (tmp_path / "long.csv").write_text(HEADER + "0,5000,10\n0.1,100,10\n")
    p = run(["simulate", "--scheduler", "vllm", "--trace", "long.csv", "--kv-capacity-tokens",
             "4096", "--out", "o", "--format", "parquet"], tmp_path)
    assert p.returncode == 0, p.stderr
    from slo_opt.study.tables import read_table

    rec = read_table(tmp_path / "o" / "records.parquet")
    assert rec["rejected"].tolist() == [True, False]
    assert list(rec["reject_reason"]) == ["exceeds_kv_capacity", ""]
