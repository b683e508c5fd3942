"""Offline formulations and solver back-ends. Imported as ``slo_opt.solvers``.

* :mod:`.base`: :class:`Instance`, :class:`LinearModel`, :class:`SolveResult`, :func:`solve`.
* :mod:`.backends`: HiGHS (highspy), Pyomo and cvxpy adapters, availability flags.
* :mod:`.goodput_milp`: the exact SLO-attainment MILP of the slotted engine.
* :mod:`.pattern_milp`: the pattern (start slot x stride) MILP (fast primal schedules).
* :mod:`.fluid_bound`: an aggregated-time LP bound for thousands of requests.
* :mod:`.jct_bounds`: single-server mean-JCT bounds (SRPT, exact non-preemptive MILP).
"""

from slo_opt._moved import forward
from slo_opt.solvers.base import (
    Formulation,
    Instance,
    LinearModel,
    NotRepresentable,
    SolveResult,
    Status,
    first_slots,
    slot_deadlines,
    solve,
)
from slo_opt.solvers.goodput_milp import GoodputMILP, request_windows
from slo_opt.solvers.pattern_milp import PatternMILP

__all__ = [
    "Formulation",
    "GoodputMILP",
    "Instance",
    "LinearModel",
    "NotRepresentable",
    "PatternMILP",
    "SolveResult",
    "Status",
    "first_slots",
    "request_windows",
    "slot_deadlines",
    "solve",
]


# moved: the certificate (schedulers vs formulations) is a study, `slo-opt solve` is the CLI's
__getattr__ = forward(__name__, {"solve_with_certificate": "slo_opt.study.certificate",
                                 "cli_solve": "slo_opt.cli.solve"})
