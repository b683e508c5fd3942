"""``slo-opt sweep CONFIG.toml``: a grid of simulation runs on a process pool or Ray."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from slo_opt.study.sweep import Sweep, SweepConfigError, run_sweep

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``slo-opt sweep CONFIG.toml [--executor local|ray] [--address ADDR] [--out DIR]``."""
    from slo_opt.cli.common import Parser, positive_int

    p = Parser(prog="slo-opt sweep", description="Run a TOML parameter sweep: workloads x "
               "schedulers (x parameter grid) x engines x seeds, on local processes or Ray.",
               epilog="examples:\n  slo-opt sweep study.toml --out sweep_out/study\n"
               "  slo-opt sweep study.toml --executor ray --address auto\n\n"
               "outputs: OUT/results.csv (+ results.parquet) and OUT/config.json; a rerun "
               "resumes finished runs (--no-resume recomputes).",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="sweep TOML file")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None, help="join this Ray cluster (executor=ray)")
    p.add_argument("--out", default=None, help="output directory (default: sweep_out/<name>)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="local processes, >= 1 (default: cores)")
    p.add_argument("--num-cpus", type=positive_int, default=2,
                   help="CPUs of a locally started Ray, >= 1 (default 2)")
    p.add_argument("--no-resume", action="store_true", help="recompute finished runs")
    p.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress bar (--no-progress is the old name)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        sweep = Sweep.from_toml(args.config)
    except SweepConfigError as exc:
        print(f"slo-opt sweep: error: {exc}", file=sys.stderr)
        return 2
    if args.address is not None and args.executor != "ray":
        print("slo-opt sweep: error: --address needs --executor ray", file=sys.stderr)
        return 2
    out = args.out or str(Path("sweep_out") / sweep.name)
    rows = run_sweep(sweep, executor=args.executor, address=args.address, out_dir=out,
                     resume=not args.no_resume, progress=not args.no_progress,
                     workers=args.workers, num_cpus=args.num_cpus)
    print(f"{len(rows)} runs -> {out}/results.csv")
    return 0


#: The name of :func:`main` in 0.1 (``slo_opt.sweep.cli_main``).
cli_main = main


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
