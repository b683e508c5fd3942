"""``slo-opt reproduce <paper>``: run a paper reproduction script from ``experiments/``."""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path
from typing import Any

from slo_opt.cli.common import CLIError

__all__ = ["add_parser", "cmd_reproduce", "experiments_dir"]


def add_parser(sub: Any) -> None:
    """Add ``reproduce`` to the sub-command parsers."""
    r = sub.add_parser("reproduce", help="run a paper reproduction from experiments/")
    r.add_argument("paper")


def experiments_dir() -> Path:
    """The repository's ``experiments/`` folder (next to the package, or under the cwd)."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        d = base / "experiments"
        if d.is_dir():
            return d
    raise CLIError("experiments/ not found: run `slo-opt reproduce` from a clone of the repository")


def cmd_reproduce(a: argparse.Namespace, rest: list[str]) -> int:
    """Run ``experiments/<paper>.py``'s ``main(argv)``."""
    d = experiments_dir()
    papers = sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_"))
    if a.paper not in papers:
        raise CLIError(f"unknown paper {a.paper!r}; available: {papers}")
    ns = runpy.run_path(str(d / f"{a.paper}.py"), run_name="slo_opt_reproduce")
    return int(ns["main"](rest) or 0)
