"""The ``slo-opt`` command line: demo, simulate, schedulers, profiles, profile, solve, sweep,
reproduce, worst-case.

One module per command group (:mod:`.demo`, :mod:`.simulate`, :mod:`.solve`, :mod:`.sweep`,
:mod:`.reproduce`, :mod:`.worst_case`; ``profile`` runs :mod:`slo_opt.models.gpu_profile`), the shared
boundary helpers in :mod:`.common`. Strings live only here, at the outer boundary; everything
inside is typed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from slo_opt import __version__
from slo_opt.cli import demo, reproduce, simulate, worst_case
from slo_opt.cli.common import (
    DEFAULT_PROFILE,
    CLIError,
    Parser,
    build_scheduler,
    get_engine,
    load_workload,
    parse_params,
    require_extra,
    warn_deprecated,
    write_records,
)
from slo_opt.cli.reproduce import cmd_reproduce, experiments_dir

__all__ = ["DEFAULT_PROFILE", "CLIError", "build_parser", "build_scheduler", "experiments_dir",
           "get_engine", "load_workload", "main", "parse_params", "write_records"]


def _delegate(module: str, func: str, argv: list[str], what: str) -> int:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise CLIError(f"{what} needs {module} ({exc}); install the matching extra") from None
    fn = getattr(mod, func, None)
    if fn is None:
        raise CLIError(f"{what} is not available in this build ({module}.{func} missing)")
    rc = fn(argv)
    return int(rc or 0)


_DESCRIPTION = ("SLO-aware LLM serving: simulate online schedulers on request traces, compare "
                "them with offline optima and bounds, and reproduce papers.")
_EPILOG = """examples:
  slo-opt demo                                  every scheduler on the shipped workload
  slo-opt simulate --scheduler vllm --out runs/vllm
  slo-opt solve --n 20                          schedulers vs the exact optimum (solvers extra)
  slo-opt sweep study.toml --out sweep_out      a grid of runs from a TOML file
  slo-opt reproduce --help                      the paper reproductions
  slo-opt schedulers | slo-opt profiles         what can be simulated

COMMAND --help shows each command's flags. Errors are one line and exit with status 2."""

#: Modules each delegated command needs, checked before any work.
_NEEDS = {"solve": ("slo-opt solve", ("pyomo", "highspy")),
          "profile": ("slo-opt profile", ("torch",))}


# -- parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``slo-opt``."""
    p = Parser(prog="slo-opt", description=_DESCRIPTION, epilog=_EPILOG,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"slo_opt {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    demo.add_parser(sub)
    simulate.add_parsers(sub)
    sub.add_parser("profile", help="GPU profiling sweep (needs CUDA + PyTorch)", add_help=False)
    sub.add_parser("solve", help="schedulers next to the offline optimum and its bounds "
                   "(needs slo_opt[solvers])", add_help=False)
    sub.add_parser("sweep", help="run a TOML sweep (local or ray)", add_help=False)
    reproduce.add_parser(sub)
    worst_case.add_parser(sub)
    return p


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    return f"slo-opt: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``slo-opt``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    fmt = warnings.formatwarning
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", FutureWarning)
            return _main(argv)
    finally:
        warnings.formatwarning = fmt


def _main(argv: list[str]) -> int:
    try:
        if argv and argv[0] != "reproduce":  # a reproduction's own flags are its own
            warn_deprecated(argv)
        if argv and argv[0] in _NEEDS and not {"-h", "--help"} & set(argv[1:]):
            what, mods = _NEEDS[argv[0]]
            require_extra(what, *mods)
        if argv and argv[0] in ("profile", "solve", "sweep"):
            target = {"profile": ("slo_opt.models.gpu_profile", "main", "slo-opt profile"),
                      "solve": ("slo_opt.cli.solve", "main", "slo-opt solve"),
                      "sweep": ("slo_opt.cli.sweep", "main", "slo-opt sweep")}[argv[0]]
            return _delegate(target[0], target[1], argv[1:], target[2])
        if len(argv) >= 2 and argv[0] == "reproduce" and not argv[1].startswith("-"):
            return cmd_reproduce(argparse.Namespace(paper=argv[1]), argv[2:])
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        if args.cmd == "reproduce":
            return cmd_reproduce(args, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return {"demo": demo.cmd_demo, "simulate": simulate.cmd_simulate,
                "schedulers": simulate.cmd_schedulers,
                "profiles": simulate.cmd_profiles,
                "worst-case": worst_case.cmd_worst_case}[args.cmd](args)
    except CLIError as exc:
        print(f"slo-opt: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


