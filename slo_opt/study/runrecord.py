"""Run records for experiments and sweeps: flat CSV rows and a provenance-stamped config.

Every experiment writes ``records.csv`` (one flat row per measurement) and ``config.json``
(the resolved configuration plus :func:`provenance`), so any figure can be traced back to the
code and configuration that produced it. Plots and tables are pure functions of the rows.
"""

from __future__ import annotations

import csv
import json
import platform
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["git_sha", "provenance", "write_config", "write_rows_csv"]


def git_sha(path: str | Path | None = None) -> str:
    """Commit of the repository containing ``path`` (default: this package), or ``""``."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    if cwd.is_file():
        cwd = cwd.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def provenance() -> dict[str, str]:
    """Package version, git commit, Python and numpy versions, platform."""
    import numpy as np

    try:
        from importlib.metadata import version

        ver = version("slo_opt")
    except Exception:  # not installed (running from a source tree)
        ver = ""
    return {"version": ver, "git_sha": git_sha(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}


def write_rows_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write dict rows as CSV; columns are the union of keys in order of first appearance."""
    rows = list(rows)
    cols: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=cols)
        wr.writeheader()
        wr.writerows(rows)
    return p


def write_config(path: str | Path, config: Mapping[str, Any], **extra: Any) -> Path:
    """Write ``{"config": config, **extra, **provenance()}`` as indented JSON."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {"config": dict(config), **extra, **provenance()}
    p.write_text(json.dumps(doc, indent=2, default=str))
    return p
