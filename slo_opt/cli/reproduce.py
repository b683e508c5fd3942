"""``slo-opt reproduce <paper>``: run a paper reproduction script from ``experiments/``."""

from __future__ import annotations

import argparse
import ast
import runpy
from pathlib import Path
from typing import Any

from slo_opt.cli.common import CLIError

__all__ = ["add_parser", "cmd_reproduce", "experiments_dir"]


def reproductions() -> dict[str, str]:
    """``{name: first line of its docstring}`` for every script in ``experiments/`` (read with
    :mod:`ast`, nothing is executed); empty outside a clone."""
    try:
        d = experiments_dir()
    except CLIError:
        return {}
    out = {}
    for p in sorted(d.glob("*.py")):
        if p.stem.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(p.read_text())) or ""
        except (OSError, SyntaxError):
            doc = ""
        out[p.stem] = " ".join(doc.split("\n\n")[0].split())
    return out


def add_parser(sub: Any) -> None:
    """Add ``reproduce`` to the sub-command parsers; its help lists the reproductions."""
    items = reproductions()
    epilog = "reproductions (each takes --quick, --out DIR, --seeds N; NAME --help shows its " \
             "options and the full run's expected time):\n" + "\n".join(
                 f"  {k:14} {v}" for k, v in items.items())
    r = sub.add_parser("reproduce", help="run a paper reproduction from experiments/",
                       description="Run experiments/NAME.py (a paper reproduction or study).",
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("paper", metavar="NAME", help=f"one of: {', '.join(items) or '(none found)'}")


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
