"""Tests for slo_opt.workloads.traces: real traces load with known statistics; bad files name file + line."""

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo_opt.request import SLO, Workload
from slo_opt.workloads.generators import arrival_rate_per_s
from slo_opt.workloads.traces import (
    DEFAULT_SLO,
    TraceError,
    available_traces,
    default_workload,
    load_azure_2023,
    load_csv,
    load_length_table,
    load_mooncake,
    load_trace,
    mooncake_hash_ids,
    save_csv,
    traces_dir,
)

TRACES = traces_dir()
needs_traces = pytest.mark.skipif(TRACES is None, reason="../shared/traces not present")

# rows, mean in, mean out, rate (req/s), CV of inter-arrivals: shared/traces/README.md
KNOWN = {
    "azure-conv": (19_366, 1155, 211, 5.53, 1.09),
    "azure-code": (8_819, 2048, 28, 2.57, 13.2),
    "mooncake-conv": (12_031, 12035, 343, 3.40, 3.03),
    "mooncake-synthetic": (3_993, 15325, 149, 3.91, 1.01),
}


# -- real traces --------------------------------------------------------------------------------


@needs_traces
@pytest.mark.parametrize("name", sorted(KNOWN))
def test_real_trace_statistics(name):
    rows, mean_in, mean_out, rate, cv = KNOWN[name]
    w = load_trace(name)
    assert len(w) == rows
    assert w.name == name
    assert w.arrival_s[0] == 0.0
    assert np.all(np.diff(w.arrival_s) >= 0)
    # the README table is rounded: compare at its precision
    assert round(w.prompt_tokens.mean()) == mean_in
    assert round(w.output_tokens.mean()) == mean_out
    assert round(arrival_rate_per_s(w), 2) == rate
    gaps = np.diff(w.arrival_s)
    assert round(gaps.std() / gaps.mean(), 1 if cv > 10 else 2) == cv
    assert np.all(np.isinf(w.ttft_slo_s))


@needs_traces
def test_azure_sub_second_resolution():
    w = load_azure_2023(TRACES / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    # 18:15:46.6805900 -> 18:15:50.9951690
    assert w.arrival_s[1] == pytest.approx(4.314579, abs=1e-9)


@needs_traces
def test_azure_conv_loads_fast():
    path = TRACES / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv"
    load_azure_2023(path)
    t0 = time.perf_counter()
    load_azure_2023(path)
    assert time.perf_counter() - t0 < 0.5


@needs_traces
def test_mooncake_hash_ids_align():
    path = TRACES / "mooncake_fast25/conversation_trace.jsonl"
    ids = mooncake_hash_ids(path)
    w = load_mooncake(path)
    assert len(ids) == len(w)
    assert ids[0].tolist()[:3] == [0, 1, 2]
    # 512-token blocks: one id per started block
    assert all(len(h) == math.ceil(p / 512) for h, p in zip(ids[:200], w.prompt_tokens[:200]))


@needs_traces
def test_sharegpt_length_table():
    path = TRACES / "length_stats/sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
    p, o = load_length_table(path)
    assert len(p) == len(o) == 30_731
    assert p.mean() == pytest.approx(2340, abs=1) and o.mean() == pytest.approx(439, abs=1)


@needs_traces
def test_shipped_subset_is_head_of_azure_conv():
    full = load_trace("azure-conv").head(1000)
    assert load_trace("default") == full


def test_available_traces_lists_default():
    names = available_traces()
    assert names[0] == "default"
    if TRACES is not None:
        assert set(KNOWN) <= set(names)


def test_traces_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SLO_OPT_TRACES_DIR", str(tmp_path))
    assert traces_dir() == tmp_path
    monkeypatch.setenv("SLO_OPT_TRACES_DIR", str(tmp_path / "missing"))
    assert traces_dir() is None
    assert available_traces() == ["default"]
    with pytest.raises(FileNotFoundError, match="SLO_OPT_TRACES_DIR"):
        load_trace("azure-conv")


def test_unknown_name():
    with pytest.raises(FileNotFoundError, match="named traces"):
        load_trace("no-such-trace")


# -- shipped default ----------------------------------------------------------------------------


def test_default_workload():
    w = default_workload()
    assert len(w) == 1000 and w.arrival_s[0] == 0.0
    assert DEFAULT_SLO == SLO(ttft_s=2.0, tpot_s=0.2)
    assert np.all(w.ttft_slo_s == 2.0) and np.all(w.tpot_slo_s == 0.2)
    assert np.all(np.isinf(w.e2e_slo_s))
    assert w.arrival_s[-1] == pytest.approx(216.027393)
    w2 = default_workload(SLO(ttft_s=1.0, tpot_s=0.05, e2e_s=30.0))
    assert np.all(w2.e2e_slo_s == 30.0)
    assert np.array_equal(w.prompt_tokens, w2.prompt_tokens)


# -- CSV round trip -----------------------------------------------------------------------------


@st.composite
def workloads(draw):
    n = draw(st.integers(0, 20))
    gaps = draw(st.lists(st.floats(0, 1e3, allow_nan=False), min_size=n, max_size=n))
    slo = st.one_of(st.just(math.inf), st.floats(1e-6, 1e6))
    label = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=5)
    ints = st.lists(st.integers(1, 10**6), min_size=n, max_size=n)
    return Workload.from_arrays(
        np.cumsum(gaps), draw(ints), draw(ints),
        ttft_slo_s=draw(st.lists(slo, min_size=n, max_size=n)) if n else math.inf,
        tpot_slo_s=draw(st.lists(slo, min_size=n, max_size=n)) if n else math.inf,
        utility=draw(st.lists(st.floats(0, 1e3), min_size=n, max_size=n)) if n else 1.0,
        class_label=np.array(draw(st.lists(label, min_size=n, max_size=n)), dtype=object),
    )


@given(w=workloads(), all_columns=st.booleans())
@settings(max_examples=50, deadline=None)
def test_csv_round_trip(w, all_columns, tmp_path_factory):
    path = tmp_path_factory.mktemp("rt") / "w.csv"
    save_csv(w, path, all_columns=all_columns)
    back = load_csv(path)
    assert back == w
    assert load_trace(path) == w


def test_csv_minimal_columns_and_rebase(tmp_path):
    w = Workload.from_arrays([3.0, 4.5], [10, 20], [1, 2])
    path = tmp_path / "w.csv"
    save_csv(w, path)
    assert path.read_text().splitlines()[0] == "arrival_s,prompt_tokens,output_tokens"
    assert load_csv(path, rebase=True).arrival_s.tolist() == [0.0, 1.5]


def test_csv_empty_slo_field_means_no_target(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens,ttft_slo_s,class\n0,5,5,,a\n1,5,5,2,b\n")
    w = load_csv(path)
    assert np.isinf(w.ttft_slo_s[0]) and w.ttft_slo_s[1] == 2.0
    assert w.class_label.tolist() == ["a", "b"]


# -- malformed inputs: one test per case; the message names the file and the line ----------------

AZ_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZ_ROW = "2023-11-16 18:17:0{}.9799600,100,10\n"
CSV_HEAD = "arrival_s,prompt_tokens,output_tokens\n"


def _expect(tmp_path, name, text, loader, line):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError) as exc:
        loader(path)
    msg = str(exc.value)
    assert str(path) in msg
    if line is None:
        assert exc.value.line is None
    else:
        assert f"line {line}:" in msg and exc.value.line == line
    assert isinstance(exc.value, ValueError)
    return msg


@pytest.mark.parametrize(
    "text,line,match",
    [
        (AZ_HEAD + AZ_ROW.format(1) + "2023-11-16 18:17:02.1,100\n", 3, "columns"),
        (AZ_HEAD + AZ_ROW.format(1) + "2023-11-16 18:17:02.1,abc,10\n", 3, "not a number"),
        (AZ_HEAD + AZ_ROW.format(1) + "2023-11-16 18:17:02.1,0,10\n", 3, ">= 1"),
        (AZ_HEAD + AZ_ROW.format(1) + "2023-11-16 18:17:02.1,100,-3\n", 3, ">= 1"),
        (AZ_HEAD + AZ_ROW.format(1) + "2023-11-16 18:17:02.1,nan,3\n", 3, ">= 1"),
        (AZ_HEAD + AZ_ROW.format(1) + "2023-11-16 18:17:02.1,1.5,3\n", 3, "integer"),
        (AZ_HEAD + AZ_ROW.format(1) + "yesterday,100,10\n", 3, "TIMESTAMP"),
        (AZ_HEAD + AZ_ROW.format(2) + AZ_ROW.format(3) + AZ_ROW.format(1), 4, "sort"),
        (AZ_HEAD + AZ_ROW.format(1) + "\n" + AZ_ROW.format(2), 3, "columns"),
        (AZ_ROW.format(1) + AZ_ROW.format(2), 1, "header"),
        ("", None, "empty"),
        (AZ_HEAD, None, "no data rows"),
    ],
    ids=["columns", "non-numeric", "zero", "negative", "nan", "fraction", "timestamp",
         "unsorted", "blank-line", "no-header", "empty", "header-only"],
)
def test_azure_malformed(tmp_path, text, line, match):
    msg = _expect(tmp_path, "az.csv", text, load_azure_2023, line)
    assert match in msg


def test_azure_sort_option(tmp_path):
    path = tmp_path / "az.csv"
    path.write_text(AZ_HEAD + AZ_ROW.format(2) + AZ_ROW.format(1).replace(",100,", ",7,"))
    w = load_azure_2023(path, sort=True)
    assert w.prompt_tokens.tolist() == [7, 100]
    assert w.arrival_s.tolist() == [0.0, 1.0]


MC = '{{"timestamp": {}, "input_length": {}, "output_length": {}, "hash_ids": [0]}}\n'


@pytest.mark.parametrize(
    "text,line,match",
    [
        (MC.format(0, 10, 5) + "{not json\n", 2, "JSON"),
        (MC.format(0, 10, 5) + MC.format(5, 0, 5), 2, ">= 1"),
        (MC.format(0, 10, 5) + MC.format(5, 10, -1), 2, ">= 1"),
        (MC.format(0, 10, 5) + MC.format('"x"', 10, 5), 2, "number"),
        (MC.format(0, 10, 5) + '{"timestamp": 1, "input_length": 3}\n', 2, "output_length"),
        (MC.format(0, 10, 5) + MC.format("NaN", 10, 5), 2, "finite"),
        (MC.format(5, 10, 5) + MC.format(9, 10, 5) + MC.format(1, 10, 5), 3, "sort"),
        (MC.format(0, 10, 5) + "[1, 2]\n", 2, "object"),
        ("\n\n", None, "empty"),
    ],
    ids=["json", "zero", "negative", "non-numeric", "missing-key", "nan", "unsorted", "array",
         "empty"],
)
def test_mooncake_malformed(tmp_path, text, line, match):
    msg = _expect(tmp_path, "mc.jsonl", text, load_mooncake, line)
    assert match in msg


def test_mooncake_sort_option(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text(MC.format(2000, 10, 5) + MC.format(1000, 20, 5))
    w = load_mooncake(path, sort=True)
    assert w.prompt_tokens.tolist() == [20, 10] and w.arrival_s.tolist() == [0.0, 1.0]
    assert [h.tolist() for h in mooncake_hash_ids(path, sort=True)] == [[0], [0]]


@pytest.mark.parametrize(
    "text,line,match",
    [
        (CSV_HEAD + "0,1,1\n1,2\n", 3, "columns"),
        (CSV_HEAD + "0,1,1\n1,x,1\n", 3, "not a number"),
        (CSV_HEAD + "0,1,1\nnan,1,1\n", 3, "finite"),
        (CSV_HEAD + "0,1,1\n-1,1,1\n", 3, ">= 0"),
        (CSV_HEAD + "0,1,1\n1,1,0\n", 3, ">= 1"),
        (CSV_HEAD + "2,1,1\n1,1,1\n", 3, "sort"),
        ("arrival_s,prompt_tokens,output_tokens,ttft_slo_s\n0,1,1,1\n1,1,1,0\n", 3, "> 0"),
        ("arrival_s,prompt_tokens,output_tokens,ttft_slo_s\n0,1,1,nan\n", 2, "> 0"),
        ("arrival_s,prompt_tokens,output_tokens,utility\n0,1,1,-2\n", 2, "utility"),
        ("0,1,1\n1,1,1\n", 1, "missing header"),
        ("arrival_s,prompt_tokens,output_tokens,colour\n0,1,1,red\n", 1, "unknown column"),
        ("", None, "empty"),
    ],
    ids=["columns", "non-numeric", "nan", "negative-arrival", "zero-output", "unsorted",
         "zero-slo", "nan-slo", "negative-utility", "no-header", "unknown-column", "empty"],
)
def test_csv_malformed(tmp_path, text, line, match):
    msg = _expect(tmp_path, "w.csv", text, load_csv, line)
    assert match in msg


@pytest.mark.parametrize(
    "text,line,match",
    [
        ("num_prefill_tokens,num_decode_tokens\n5,5\n0,5\n", 3, ">= 1"),
        ("num_prefill_tokens,num_decode_tokens\n5,5\n5\n", 3, "columns"),
        ("num_prefill_tokens,num_decode_tokens\n5,abc\n", 2, "not a number"),
        ("a,b\n5,5\n", 1, "num_prefill_tokens"),
        ("", None, "empty"),
    ],
    ids=["zero", "columns", "non-numeric", "header", "empty"],
)
def test_length_table_malformed(tmp_path, text, line, match):
    msg = _expect(tmp_path, "len.csv", text, load_length_table, line)
    assert match in msg


def test_load_trace_unrecognised_header(tmp_path):
    _expect(tmp_path, "x.csv", "foo,bar\n1,2\n", load_trace, 1)
