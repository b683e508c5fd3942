"""Trace loaders: real request traces and length tables as :class:`~slo_opt.request.Workload`.

Formats
-------
``azure``
    Azure LLM inference trace 2023 (Splitwise, ISCA'24): CSV with header
    ``TIMESTAMP,ContextTokens,GeneratedTokens``; timestamps like ``2023-11-16 18:17:03.9799600``
    (7 fractional digits, kept at nanosecond resolution).
``mooncake``
    Mooncake FAST'25 traces: JSON lines with ``timestamp`` (ms), ``input_length``,
    ``output_length``, ``hash_ids`` (512-token prefix-block ids, see :func:`mooncake_hash_ids`).
``csv`` (ours)
    ``arrival_s,prompt_tokens,output_tokens[,ttft_slo_s,tpot_slo_s,e2e_slo_s,utility,class,origin]``
    with a header; columns in any order, the first three required. Written by :func:`save_csv`.
``length table``
    sarathi-serve / Vidur length CSVs (``num_prefill_tokens,num_decode_tokens,...``), lengths
    only, read by :func:`load_length_table`.

Raw traces (Azure, Mooncake) are re-based so that the first request arrives at 0 s. Every
malformed input raises :class:`TraceError`, whose message names the file and the 1-based line.

Named traces (:func:`load_trace`): ``"default"`` is the shipped 1,000-row head of the Azure
2023 conversation trace (``slo_opt/data``); ``"azure-conv"``, ``"azure-code"``,
``"mooncake-conv"`` and ``"mooncake-synthetic"`` are read from the traces directory
(:func:`traces_dir`) when it exists. Licences and citations are in :data:`TRACES`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from slo_opt.request import SLO, PrefixIds, Workload, WorkloadError

__all__ = [
    "DEFAULT_SLO",
    "TRACES",
    "TraceError",
    "TraceInfo",
    "available_traces",
    "default_workload",
    "load_azure_2023",
    "load_csv",
    "load_length_table",
    "load_mooncake",
    "load_trace",
    "mooncake_hash_ids",
    "save_csv",
    "trace_path",
    "traces_dir",
]

PathLike = str | os.PathLike[str]

#: Default SLO of :func:`default_workload`: interactive chat, TTFT 2 s and TPOT 200 ms, the
#: targets of Vidur-Search (TTFT-P90 < 2 s, TBT-P99 < 200 ms), applied per request.
DEFAULT_SLO = SLO(ttft_s=2.0, tpot_s=0.2)

#: Environment variable naming the directory of the full traces (overrides ``../shared/traces``).
TRACES_DIR_ENV = "SLO_OPT_TRACES_DIR"


class TraceError(ValueError):
    """A trace file is malformed. The message names the file and, where known, the 1-based line.

    Attributes
    ----------
    path : str
        The file.
    line : int or None
        1-based line number (the header is line 1), ``None`` for whole-file problems.
    """

    def __init__(self, path: PathLike, line: int | None, msg: str) -> None:
        self.path = str(path)
        self.line = line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {msg}")


# -- named traces -------------------------------------------------------------------------------

AZURE_CITATION = (
    "Azure LLM inference trace 2023 (Azure/AzurePublicDataset, CC-BY-4.0). Cite: P. Patel et al., "
    '"Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.'
)
MOONCAKE_CITATION = (
    "Mooncake FAST'25 traces (kvcache-ai/Mooncake, Apache-2.0). Cite: R. Qin et al., "
    '"Mooncake: A KVCache-centric Disaggregated Architecture for LLM Serving", FAST 2025.'
)


@dataclass(frozen=True)
class TraceInfo:
    """A named trace: where it lives, how to read it, and whom to credit."""

    name: str
    file: str  # package-data file name (shipped) or path relative to traces_dir()
    fmt: str  # "azure" | "mooncake" | "csv"
    shipped: bool  # True: in slo_opt/data, always available
    licence: str
    citation: str


TRACES: dict[str, TraceInfo] = {
    t.name: t
    for t in (
        TraceInfo(
            "default", "azure_conv_2023_head1000.csv", "csv", True, "CC-BY-4.0",
            AZURE_CITATION + " First 1,000 rows of the conversation trace, re-based.",
        ),
        TraceInfo(
            "azure-conv", "azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure", False,
            "CC-BY-4.0", AZURE_CITATION,
        ),
        TraceInfo(
            "azure-code", "azure_llm_2023/AzureLLMInferenceTrace_code.csv", "azure", False,
            "CC-BY-4.0", AZURE_CITATION,
        ),
        TraceInfo(
            "mooncake-conv", "mooncake_fast25/conversation_trace.jsonl", "mooncake", False,
            "Apache-2.0", MOONCAKE_CITATION,
        ),
        TraceInfo(
            "mooncake-synthetic", "mooncake_fast25/synthetic_trace.jsonl", "mooncake", False,
            "Apache-2.0", MOONCAKE_CITATION,
        ),
    )
}


def traces_dir() -> Path | None:
    """The directory of the full (unshipped) traces, or ``None`` if there is none.

    ``$SLO_OPT_TRACES_DIR`` if set (``None`` if it does not exist), else ``../shared/traces``
    relative to the repository root (the folder holding ``slo_opt/``), if it exists.
    """
    env = os.environ.get(TRACES_DIR_ENV)
    if env:
        p = Path(env)
    else:
        p = Path(__file__).resolve().parents[2].parent / "shared" / "traces"
    return p if p.is_dir() else None


def _data_file(name: str) -> Path:
    return Path(str(resources.files("slo_opt.data").joinpath(name)))


def trace_path(name: str) -> Path:
    """The file of a named trace (see :data:`TRACES`).

    Raises
    ------
    ValueError
        Unknown name.
    FileNotFoundError
        The trace is not shipped and the traces directory is absent.
    """
    try:
        info = TRACES[name]
    except KeyError:
        raise ValueError(f"unknown trace {name!r}; known: {sorted(TRACES)}") from None
    if info.shipped:
        return _data_file(info.file)
    root = traces_dir()
    if root is None:
        raise FileNotFoundError(
            f"trace {name!r} needs the traces directory: set ${TRACES_DIR_ENV} or provide "
            "../shared/traces next to the repository"
        )
    return root / info.file


def available_traces() -> list[str]:
    """Names of the traces loadable here (``"default"`` always; the others if their file exists)."""
    out = []
    for name, info in TRACES.items():
        try:
            if info.shipped or trace_path(name).is_file():
                out.append(name)
        except FileNotFoundError:
            pass
    return out


def load_trace(path_or_name: PathLike, *, sort: bool = False) -> Workload:
    """Load a named trace or a file, choosing the reader by name, suffix and header.

    Parameters
    ----------
    path_or_name : str or path
        A key of :data:`TRACES` (e.g. ``"default"``, ``"azure-conv"``) or a file: ``*.jsonl`` is
        read as Mooncake, ``*.csv`` by its header (``TIMESTAMP,...`` Azure, ``arrival_s,...``
        ours).
    sort : bool
        Passed to the raw-trace readers: stable-sort unsorted arrivals instead of raising.

    Returns
    -------
    Workload
        ``name`` is the trace name or the file stem. The named traces carry no SLO (``inf``);
        use :func:`default_workload` or :func:`slo_opt.workloads.generators.with_slo`.
    """
    name = os.fspath(path_or_name)
    if isinstance(path_or_name, str) and name in TRACES:
        info = TRACES[name]
        path = trace_path(name)
        fmt = info.fmt
    else:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"no such trace file {name!r} (named traces: {sorted(TRACES)})"
            )
        name = path.stem
        fmt = _sniff(path)
    if fmt == "azure":
        w = load_azure_2023(path, sort=sort)
    elif fmt == "mooncake":
        w = load_mooncake(path, sort=sort)
    else:
        w = load_csv(path, sort=sort)
    return _renamed(w, name)


def _sniff(path: Path) -> str:
    if path.suffix == ".jsonl":
        return "mooncake"
    with open(path, encoding="utf-8-sig") as f:
        head = f.readline().strip()
    if head.startswith("TIMESTAMP"):
        return "azure"
    if "arrival_s" in head.split(","):
        return "csv"
    if not head:
        raise TraceError(path, 1, "empty file (expected a header line)")
    raise TraceError(path, 1, f"unrecognised trace header {head[:80]!r}")


def default_workload(slo: SLO | None = None) -> Workload:
    """The package's default workload: 1,000 Azure conversation requests with one SLO.

    Parameters
    ----------
    slo : SLO, optional
        Applied to every request. Default :data:`DEFAULT_SLO` (TTFT 2 s, TPOT 0.2 s, no e2e
        target: interactive chat as in Vidur-Search).

    Returns
    -------
    Workload
        The first 1,000 rows of the Azure LLM 2023 conversation trace, re-based to start at 0
        (about 3 minutes, 5.5 req/s). CC-BY-4.0; cite Splitwise (ISCA'24), see
        ``slo_opt/data/README.md``.
    """
    slo = DEFAULT_SLO if slo is None else slo
    if not isinstance(slo, SLO):
        raise TypeError(f"slo must be an SLO, got {type(slo).__name__}")
    w = load_csv(_data_file(TRACES["default"].file))
    cols = w.columns()
    cols.update(ttft_slo_s=slo.ttft_s, tpot_slo_s=slo.tpot_s, e2e_slo_s=slo.e2e_s)  # type: ignore[call-overload]
    return Workload.from_arrays(name="azure-conv-2023-head1000", **cols)


def _renamed(w: Workload, name: str) -> Workload:
    return w if w.name == name else w.replace(name=name)


# -- low-level parsing helpers -------------------------------------------------------------------


def _read_lines(path: PathLike) -> list[str]:
    """Lines of a text file without the trailing blank ones; raises on an empty file."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise TraceError(path, None, f"not UTF-8 text ({e.reason})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TraceError(path, None, "empty file (expected a header line)")
    return lines


def _split_rows(path: PathLike, lines: Sequence[str], ncols: int) -> list[list[str]]:
    """CSV-split data lines (after the header) and check the column count."""
    rows = list(csv.reader(lines[1:]))
    bad = [i for i, r in enumerate(rows) if len(r) != ncols]
    if bad:
        i = bad[0]
        raise TraceError(
            path, i + 2, f"expected {ncols} columns, got {len(rows[i])}: {lines[i + 1][:80]!r}"
        )
    return rows


def _floats(path: PathLike, col: Sequence[str], what: str) -> np.ndarray:
    try:
        return np.array(col, dtype=float)
    except ValueError:
        pass
    for i, s in enumerate(col):
        try:
            float(s)
        except ValueError:
            raise TraceError(path, i + 2, f"{what} is not a number: {s!r}") from None
    return np.array([float(s) for s in col], dtype=float)


def _check_lengths(path: PathLike, x: np.ndarray, what: str, line0: int = 2) -> np.ndarray:
    """Integer token counts >= 1 (floats that are whole numbers are accepted)."""
    bad = ~np.isfinite(x) | (x < 1) | (x != np.round(x))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(path, i + line0, f"{what} must be an integer >= 1, got {x[i]!r}")
    return x.astype(np.int64)


def _check_order(path: PathLike, t: np.ndarray, sort: bool, line0: int = 2) -> np.ndarray | None:
    """``None`` if sorted; a stable sort order if ``sort``; else raise at the first decrease."""
    dec = np.flatnonzero(np.diff(t) < 0)
    if dec.size == 0:
        return None
    if sort:
        return np.argsort(t, kind="stable")
    i = int(dec[0]) + 1
    raise TraceError(
        path, i + line0,
        "arrival times are not sorted (this row is earlier than the previous one); "
        "pass sort=True to stable-sort them",
    )


def _check_header(path: PathLike, got: list[str], want: Sequence[str]) -> None:
    if [h.strip() for h in got] != list(want):
        raise TraceError(path, 1, f"expected header {','.join(want)!r}, got {','.join(got)!r}")


# -- Azure 2023 ---------------------------------------------------------------------------------

_AZURE_HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def load_azure_2023(path: PathLike, *, sort: bool = False) -> Workload:
    """Read an Azure LLM inference trace 2023 CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``).

    Parameters
    ----------
    path : str or path
        E.g. ``AzureLLMInferenceTrace_conv.csv``.
    sort : bool
        If the timestamps are not non-decreasing: ``False`` raises :class:`TraceError` at the
        first decrease, ``True`` stable-sorts the rows by arrival.

    Returns
    -------
    Workload
        ``arrival_s`` in seconds from the first request (nanosecond resolution before the
        conversion to float), ``prompt_tokens = ContextTokens``,
        ``output_tokens = GeneratedTokens``; no SLO. ``name`` is the file stem.

    Notes
    -----
    Timestamps are parsed by numpy's ISO-8601 reader (``datetime64[ns]``), so any number of
    fractional digits up to 9 is kept; no time zone is assumed. A trace of 19,366 rows loads in
    a few tens of milliseconds.
    """
    lines = _read_lines(path)
    header = next(csv.reader(lines[:1]))
    _check_header(path, header, _AZURE_HEADER)
    rows = _split_rows(path, lines, 3)
    if not rows:
        raise TraceError(path, None, "no data rows after the header")
    ts_col, p_col, o_col = (tuple(c) for c in zip(*rows))
    ts = _parse_timestamps(path, ts_col)
    p = _check_lengths(path, _floats(path, p_col, "ContextTokens"), "ContextTokens")
    o = _check_lengths(path, _floats(path, o_col, "GeneratedTokens"), "GeneratedTokens")
    ns = ts.astype(np.int64)
    order = _check_order(path, ns, sort)
    if order is not None:
        ns, p, o = ns[order], p[order], o[order]
    arrival_s = (ns - ns[0]) / 1e9
    return Workload.from_arrays(arrival_s, p, o, name=Path(path).stem)


def _parse_timestamps(path: PathLike, col: Sequence[str]) -> np.ndarray:
    try:
        ts = np.array([s.strip() for s in col], dtype="datetime64[ns]")
    except ValueError:
        ts = None
    if ts is None or np.isnat(ts).any():
        for i, s in enumerate(col):
            try:
                v = np.datetime64(s.strip(), "ns")
            except ValueError:
                v = np.datetime64("NaT")  # type: ignore[assignment]
            if np.isnat(v):
                raise TraceError(path, i + 2, f"bad TIMESTAMP {s!r}") from None
    assert ts is not None  # a NaT or unparsable row raised above
    return ts


# -- Mooncake -----------------------------------------------------------------------------------


def _parse_mooncake(path: PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    lines = _read_lines(path)
    n = len(lines)
    t = np.empty(n)
    p = np.empty(n)
    o = np.empty(n)
    hashes: list = [None] * n
    for i, ln in enumerate(lines):
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError as e:
            raise TraceError(path, i + 1, f"invalid JSON ({e.msg}): {ln[:80]!r}") from None
        if not isinstance(rec, dict):
            raise TraceError(path, i + 1, f"expected a JSON object, got {type(rec).__name__}")
        for key, arr in (("timestamp", t), ("input_length", p), ("output_length", o)):
            v = rec.get(key)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise TraceError(path, i + 1, f"{key} must be a number, got {v!r}")
            arr[i] = v
        hashes[i] = rec.get("hash_ids", [])
    if not np.isfinite(t).all():
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise TraceError(path, i + 1, f"timestamp must be finite, got {t[i]!r}")
    return t, p, o, hashes


#: Tokens per Mooncake ``hash_ids`` block (FAST'25 trace README).
MOONCAKE_BLOCK_TOKENS = 512


def load_mooncake(path: PathLike, *, sort: bool = False) -> Workload:
    """Read a Mooncake FAST'25 JSON-lines trace (``timestamp`` in ms, lengths in tokens).

    Parameters
    ----------
    path : str or path
        E.g. ``conversation_trace.jsonl``.
    sort : bool
        ``False`` raises :class:`TraceError` on a decreasing timestamp, ``True`` stable-sorts.

    Returns
    -------
    Workload
        ``arrival_s = (timestamp - first) / 1000``, ``prompt_tokens = input_length``,
        ``output_tokens = output_length``; no SLO. ``prefix_ids``: the ``hash_ids`` (one id
        per 512 prompt tokens, the last one naming a partial block; equal ids at equal
        positions are equal prefixes) describing each prompt, for prefix caching.

    Raises
    ------
    TraceError
        A row whose ``hash_ids`` is not a list of ``ceil(input_length / 512)`` integers.
    """
    t, p, o, hashes = _parse_mooncake(path)
    p_i = _check_lengths(path, p, "input_length", line0=1)
    o_i = _check_lengths(path, o, "output_length", line0=1)
    ids = []
    g = MOONCAKE_BLOCK_TOKENS
    for i, h in enumerate(hashes):
        if not isinstance(h, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                              for x in h):
            raise TraceError(path, i + 1, f"hash_ids must be a list of integers, got {h!r:.80}")
        if len(h) != -(-int(p_i[i]) // g):
            raise TraceError(path, i + 1, f"hash_ids has {len(h)} ids for input_length "
                             f"{int(p_i[i])} (expected ceil(input_length / {g}))")
        ids.append(h)
    order = _check_order(path, t, sort, line0=1)
    if order is not None:
        t, p_i, o_i = t[order], p_i[order], o_i[order]
        ids = [ids[int(k)] for k in order]
    w = Workload.from_arrays((t - t[0]) / 1000.0, p_i, o_i, name=Path(path).stem)
    return w.with_prefix_ids(PrefixIds.from_lists(ids, g, p_i))


def mooncake_hash_ids(path: PathLike, *, sort: bool = False) -> list[np.ndarray]:
    """Per-request prefix-block ids (512-token blocks) of a Mooncake trace, in workload row order.

    Rows are aligned with ``load_mooncake(path, sort=sort)``; lengths are not validated here
    (``load_mooncake(...).prefix_ids`` holds the validated ids).
    """
    t, _, _, hashes = _parse_mooncake(path)
    order = _check_order(path, t, sort, line0=1)
    idx = range(len(hashes)) if order is None else order
    return [np.asarray(hashes[int(i)], dtype=np.int64) for i in idx]


# -- length tables ------------------------------------------------------------------------------


def load_length_table(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a sarathi-serve / Vidur length CSV.

    Parameters
    ----------
    path : str or path
        CSV whose header contains ``num_prefill_tokens`` and ``num_decode_tokens`` (other
        columns, e.g. ``num_total_tokens,pd_ratio``, are ignored but must be present per row).

    Returns
    -------
    prompt_tokens, output_tokens : numpy.ndarray
        int64 arrays, one entry per row, in file order.
    """
    lines = _read_lines(path)
    header = [h.strip() for h in next(csv.reader(lines[:1]))]
    for need in ("num_prefill_tokens", "num_decode_tokens"):
        if need not in header:
            raise TraceError(path, 1, f"header lacks column {need!r}: {lines[0][:80]!r}")
    rows = _split_rows(path, lines, len(header))
    if not rows:
        raise TraceError(path, None, "no data rows after the header")
    cols = list(zip(*rows))
    out = []
    for need in ("num_prefill_tokens", "num_decode_tokens"):
        x = _floats(path, cols[header.index(need)], need)
        out.append(_check_lengths(path, x, need))
    return out[0], out[1]


# -- our plain CSV ------------------------------------------------------------------------------

_REQUIRED = ("arrival_s", "prompt_tokens", "output_tokens")
_OPTIONAL_FLOAT = {"ttft_slo_s": math.inf, "tpot_slo_s": math.inf, "e2e_slo_s": math.inf,
                   "utility": 1.0}
_OPTIONAL_STR = {"class": "class_label", "origin": "origin"}
_CSV_ORDER = (*_REQUIRED, *_OPTIONAL_FLOAT, *_OPTIONAL_STR)


def load_csv(path: PathLike, *, sort: bool = False, rebase: bool = False) -> Workload:
    """Read our plain CSV format (see :func:`save_csv`).

    Parameters
    ----------
    path : str or path
        CSV with header; required columns ``arrival_s,prompt_tokens,output_tokens``; optional
        ``ttft_slo_s,tpot_slo_s,e2e_slo_s`` (``inf`` or empty = no target), ``utility``
        (default 1), ``class``, ``origin`` (default ``""``). Any column order.
    sort : bool
        ``False`` raises on decreasing ``arrival_s``; ``True`` stable-sorts the rows.
    rebase : bool
        Shift arrivals so that the first is 0. Off by default so that ``save_csv`` /
        ``load_csv`` round-trips exactly.

    Returns
    -------
    Workload
        ``name`` is the file stem.
    """
    lines = _read_lines(path)
    header = [h.strip() for h in next(csv.reader(lines[:1]))]
    missing = [h for h in _REQUIRED if h not in header]
    if missing:
        raise TraceError(
            path, 1, f"missing header or required column(s) {missing}: {lines[0][:80]!r}"
        )
    unknown = [h for h in header if h not in _CSV_ORDER]
    if unknown:
        raise TraceError(
            path, 1, f"unknown column(s) {unknown} (known: {','.join(_CSV_ORDER)})"
        )
    if len(set(header)) != len(header):
        raise TraceError(path, 1, f"duplicate column in header {header}")
    rows = _split_rows(path, lines, len(header))
    raw = dict(zip(header, (tuple(c) for c in zip(*rows)))) if rows else {h: () for h in header}

    t = _floats(path, raw["arrival_s"], "arrival_s")
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(path, i + 2, f"arrival_s must be finite and >= 0, got {t[i]!r}")
    cols: dict[str, np.ndarray] = {
        "prompt_tokens": _check_lengths(
            path, _floats(path, raw["prompt_tokens"], "prompt_tokens"), "prompt_tokens"),
        "output_tokens": _check_lengths(
            path, _floats(path, raw["output_tokens"], "output_tokens"), "output_tokens"),
    }
    for k, default in _OPTIONAL_FLOAT.items():
        if k not in raw:
            continue
        x = _floats(path, [s if s.strip() else repr(default) for s in raw[k]], k)
        bad = np.isnan(x) | (x <= 0) if k != "utility" else ~np.isfinite(x) | (x < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            rule = "finite and >= 0" if k == "utility" else "> 0 (inf or empty = no target)"
            raise TraceError(path, i + 2, f"{k} must be {rule}, got {x[i]!r}")
        cols[k] = x
    for k, attr in _OPTIONAL_STR.items():
        if k in raw:
            cols[attr] = np.array(raw[k], dtype=object)
    order = _check_order(path, t, sort)
    if order is not None:
        t = t[order]
        cols = {k: v[order] for k, v in cols.items()}
    if rebase and t.size:
        t = t - t[0]
    try:
        return Workload.from_arrays(t, name=Path(path).stem, **cols)
    except WorkloadError as e:  # pragma: no cover - every rule is checked above
        raise TraceError(path, None, str(e)) from e


def save_csv(workload: Workload, path: PathLike, *, all_columns: bool = False) -> None:
    """Write ``workload`` in our plain CSV format; ``load_csv`` reads it back equal.

    Parameters
    ----------
    workload : Workload
        Any workload.
    path : str or path
        Output file (overwritten).
    all_columns : bool
        Write every column. By default columns that hold only their default (SLO ``inf``,
        utility 1, empty class/origin) are left out.

    Notes
    -----
    Floats are written with ``repr`` (shortest exact round trip). Class and origin labels
    must not contain line breaks.
    """
    w = workload
    defaults = {"ttft_slo_s": w.ttft_slo_s, "tpot_slo_s": w.tpot_slo_s, "e2e_slo_s": w.e2e_slo_s,
                "utility": w.utility}
    labels = {"class": w.class_label, "origin": w.origin}
    header = list(_REQUIRED)
    data: list[list[str]] = [
        [repr(float(x)) for x in w.arrival_s],
        [str(int(x)) for x in w.prompt_tokens],
        [str(int(x)) for x in w.output_tokens],
    ]
    for k, arr in defaults.items():
        if all_columns or np.any(arr != _OPTIONAL_FLOAT[k]):
            header.append(k)
            data.append([repr(float(x)) for x in arr])
    for k, arr in labels.items():
        vals = [str(x) for x in arr]
        if any("\n" in v or "\r" in v for v in vals):
            raise ValueError(f"{k} labels must not contain line breaks")
        if all_columns or any(vals):
            header.append(k)
            data.append(vals)
    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(header)
        wr.writerows(zip(*data))
