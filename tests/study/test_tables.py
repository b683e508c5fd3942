"""Issue 17: the one table writer (CSV/Parquet through Arrow), to_pandas, and the sweep's
results: resumed sweeps write the same columns in the same order, an edited trace file is a new
run (the cache key hashes the content, not the path)."""

from __future__ import annotations

import numpy as np
import pytest

from slo_opt.study.sweep import Sweep, run_sweep
from slo_opt.study.tables import read_table, to_pandas, write_table

COLS = {"id": np.arange(4), "ttft_s": np.array([0.1, np.nan, 2.5, 1e-9]),
        "slo_met": np.array([True, False, True, True]), "class": np.array(["a", "b", "a", "c"])}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip(tmp_path, fmt):
    p = write_table(tmp_path / f"r.{fmt}", COLS, format=fmt)
    back = read_table(p)
    assert list(back) == list(COLS)
    np.testing.assert_array_equal(back["id"], COLS["id"])
    np.testing.assert_array_equal(back["ttft_s"], COLS["ttft_s"])  # NaN <-> null <-> NaN
    assert back["slo_met"].tolist() == COLS["slo_met"].tolist()
    assert list(back["class"]) == list(COLS["class"])


def test_csv_writes_nan_as_empty_field(tmp_path):
    text = write_table(tmp_path / "r.csv", COLS).read_text().splitlines()
    assert text[2].split(",")[1] == ""  # row id 1: ttft_s NaN


def test_mismatched_columns_name_the_column(tmp_path):
    with pytest.raises(ValueError, match="column 'b' has shape \\(2,\\), expected \\(3,\\)"):
        write_table(tmp_path / "x.csv", {"a": np.arange(3), "b": np.arange(2)})


def test_to_pandas_equals_columns():
    pd = pytest.importorskip("pandas")
    df = to_pandas(COLS)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(COLS)
    assert df["ttft_s"].isna().tolist() == [False, True, False, False]
    assert df["id"].tolist() == [0, 1, 2, 3]


def _trace_sweep(path):
    return Sweep.from_dict({"name": "t", "seeds": [0],
                            "workloads": [{"name": "w", "kind": "trace", "trace": str(path)}],
                            "schedulers": [{"name": "fcfs"}],
                            "engines": [{"name": "e", "profile": "h100/llama-3.1-8b"}]})


def test_edited_trace_is_recomputed_and_resume_keeps_column_order(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n0.5,10,5\n")
    out = tmp_path / "o"
    a = run_sweep(_trace_sweep(trace), out_dir=out, progress=False, workers=1)
    header = (out / "results.csv").read_text().splitlines()[0]
    b = run_sweep(_trace_sweep(trace), out_dir=out, progress=False, workers=1)  # resumed
    assert b == a and (out / "results.csv").read_text().splitlines()[0] == header
    assert header.startswith('"run_id","workload","scheduler","params","engine","seed"')
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n0.5,10,5\n0.6,10,5\n")
    c = run_sweep(_trace_sweep(trace), out_dir=out, progress=False, workers=1)
    assert c[0]["num_requests"] == 3 and a[0]["num_requests"] == 2
    assert c[0]["run_id"] != a[0]["run_id"]
