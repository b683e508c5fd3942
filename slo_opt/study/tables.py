"""Tables of results on disk: the one writer (and reader) of per-request records and sweep
results, through Apache Arrow.

Columns are numpy arrays (the core's representation); :func:`write_table` turns them into an
Arrow table once and writes CSV (``pyarrow.csv``; NaN is written as an empty field, booleans
as ``true``/``false``) or Parquet (``pyarrow.parquet``, typed and compressed). :func:`to_pandas`
gives the same table as a :class:`pandas.DataFrame` (needs pandas).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["FORMATS", "Format", "read_table", "to_arrow", "to_pandas", "write_table"]

Format = Literal["csv", "parquet"]
#: The formats :func:`write_table` writes.
FORMATS: tuple[str, ...] = ("csv", "parquet")


def to_arrow(columns: Mapping[str, Any]) -> Any:
    """An Arrow table of ``columns`` (equal-length arrays; float NaN becomes null).

    Raises ``ValueError`` naming the first column whose length differs from the first one's.
    """
    import pyarrow as pa

    cols = {k: np.asarray(v) for k, v in columns.items()}
    if cols:
        k0 = next(iter(cols))
        n0 = len(cols[k0])
        for k, v in cols.items():
            if v.ndim != 1 or len(v) != n0:
                raise ValueError(f"column {k!r} has shape {v.shape}, expected ({n0},) like "
                                 f"column {k0!r}")
    arrays = []
    for v in cols.values():
        if v.dtype.kind == "f":
            arrays.append(pa.array(v, mask=np.isnan(v)))
        elif v.dtype.kind in "OU":
            arrays.append(pa.array(v.tolist()))
        else:
            arrays.append(pa.array(v))
    return pa.table(arrays, names=list(cols))


def _column(values: list[Any]) -> Any:
    """An Arrow array of row values; a column mixing types (``1`` and ``"a"``) is written as
    text, float NaN as null."""
    import pyarrow as pa

    values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values])


def write_table(path: str | os.PathLike[str], data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                *, format: Format | None = None) -> Path:
    """Write columns (``{name: array}``) or rows (a list of dicts; missing keys are null) to
    ``path`` as CSV or Parquet (``format``; default from the suffix, else CSV). Returns the
    path written."""
    import pyarrow as pa

    p = Path(path)
    fmt = format or ("parquet" if p.suffix == ".parquet" else "csv")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    if isinstance(data, Mapping):
        table = to_arrow(data)
    else:
        keys: list[str] = []
        for r in data:
            keys.extend(k for k in r if k not in keys)
        table = pa.table({k: _column([r.get(k) for r in data]) for k in keys})
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, p)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, p, pcsv.WriteOptions(quoting_style="needed"))
    return p


def read_table(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Columns of a table written by :func:`write_table` (CSV or Parquet, by suffix); nulls
    come back as NaN in float columns."""
    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(p)
    else:
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(p)
    out: dict[str, np.ndarray] = {}
    for name, col in zip(table.column_names, table.columns):
        arr = col.to_numpy(zero_copy_only=False)
        out[name] = arr
    return out


def to_pandas(columns: Mapping[str, Any]) -> Any:
    """``columns`` as a :class:`pandas.DataFrame` (through Arrow; nulls become NaN/None)."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError("to_pandas() needs pandas: pip install \"slo_opt[pandas]\"") from None
    return to_arrow(columns).to_pandas()
