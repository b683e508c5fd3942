"""``slo-opt worst-case``: the instance where a scheduler is furthest from the exact optimum."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from slo_opt.cli.common import CLIError, build_scheduler, parse_params

__all__ = ["add_parser", "cmd_worst_case"]


def add_parser(sub: Any) -> None:
    """Add ``worst-case`` to the sub-command parsers."""
    s = sub.add_parser(
        "worst-case", help="search the instance where a scheduler is furthest from optimal",
        description=("Hypothesis-targeted search over small slotted-engine instances for the "
                     "largest gap between the exact optimum (MILP) and a scheduler; the worst "
                     "instance is shrunk to a minimal one and written with both schedules, "
                     "worst.json and a Gantt plot. Deterministic for a seed."))
    s.add_argument("--scheduler", required=True)
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="scheduler parameter")
    s.add_argument("--objective", default="attainment",
                   choices=("attainment", "goodput", "mean_jct"))
    s.add_argument("--n-max", type=int, default=8, help="most requests per instance (default 8)")
    s.add_argument("--examples", type=int, default=200, help="search examples (default 200)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shrink-examples", type=int, default=None,
                   help="new instances the shrink phase may evaluate (default max(examples, 300))")
    s.add_argument("--time-limit", type=float, default=20.0, help="MILP time limit per instance")
    s.add_argument("--max-prompt-tokens", type=int, default=32)
    s.add_argument("--max-output-tokens", type=int, default=8)
    s.add_argument("--simultaneous", action="store_true", help="all requests arrive at 0")
    s.add_argument("--step-s", type=float, default=None,
                   help="fix the engine (with --max-batch-tokens and --kv-capacity-tokens); "
                        "default: drawn with each instance")
    s.add_argument("--max-batch-tokens", type=int, default=None)
    s.add_argument("--kv-capacity-tokens", type=int, default=None)
    s.add_argument("--out", required=True)
    s.add_argument("--no-plot", action="store_true")
    s.add_argument("--quiet", action="store_true", help="no progress lines")


def _positive(name: str, v: Any) -> None:
    if v is not None and not v >= 1:
        raise CLIError(f"{name} must be >= 1, got {v}")


def cmd_worst_case(a: argparse.Namespace) -> int:
    """Run the search; write the instance, both schedules, worst.json and gantt.png."""
    try:
        from slo_opt.models.slot import SlotEngine
        from slo_opt.worst_case import save_worst_case, verify_worst_case, worst_case
    except ImportError as exc:
        raise CLIError(f"worst-case needs the solvers and test extras ({exc}); "
                       "pip install 'slo_opt[solvers,test]'") from None
    for name, v in (("--n-max", a.n_max), ("--examples", a.examples),
                    ("--max-prompt-tokens", a.max_prompt_tokens),
                    ("--max-output-tokens", a.max_output_tokens)):
        _positive(name, v)
    if not a.time_limit > 0:
        raise CLIError(f"--time-limit must be > 0, got {a.time_limit}")
    fixed = (a.step_s, a.max_batch_tokens, a.kv_capacity_tokens)
    engine = None
    if any(x is not None for x in fixed):
        if any(x is None for x in fixed):
            raise CLIError("fix the engine with all three of --step-s, --max-batch-tokens "
                           "and --kv-capacity-tokens (or none: the engine is drawn)")
        try:
            engine = SlotEngine(step_s=a.step_s, max_batch_tokens=a.max_batch_tokens,
                                kv_capacity_tokens=a.kv_capacity_tokens)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    params = parse_params(a.param)
    build_scheduler(a.scheduler, dict(params), max_num_batched_tokens=None, max_num_seqs=None)

    def factory() -> Any:
        return build_scheduler(a.scheduler, dict(params), max_num_batched_tokens=None,
                               max_num_seqs=None)

    last = [0.0]

    def progress(phase: str, evaluated: int, best: float) -> None:
        now = time.perf_counter()
        if a.quiet or now - last[0] < 2.0:
            return
        last[0] = now
        print(f"  {phase}: {evaluated} instances evaluated, worst score {best:.4g}",
              file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        wc = worst_case(factory, objective=a.objective, n_max=a.n_max, examples=a.examples,
                        engine=engine, seed=a.seed, shrink_examples=a.shrink_examples,
                        time_limit_s=a.time_limit, max_prompt_tokens=a.max_prompt_tokens,
                        max_output_tokens=a.max_output_tokens, simultaneous=a.simultaneous,
                        progress=progress)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    wall = time.perf_counter() - t0
    out = Path(a.out)
    paths = save_worst_case(wc, out, plot=not a.no_plot)
    verify_worst_case(out)
    ratio = "inf" if wc.ratio == float("inf") else f"{wc.ratio:.4g}"
    print(f"{wc.scheduler} ({a.objective}, n <= {a.n_max}, {a.examples} examples, seed "
          f"{a.seed}): gap {wc.gap:.4g}, ratio {ratio} on a {wc.n}-request instance "
          f"(policy {wc.value:.4g}, optimum {wc.optimum:.4g}); {wc.evaluated} instances "
          f"evaluated in {wall:.1f} s")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
