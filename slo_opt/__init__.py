"""slo_opt: formal optimisation and analysis of SLO-aware LLM inference scheduling."""

from slo_opt import _moved
from slo_opt.checks import is_feasible, violations
from slo_opt.engine import BatchShape, EngineModel
from slo_opt.request import SLO, Request, Workload, WorkloadError
from slo_opt.schedule import AllocTable, EventTable, Schedule, StepTable
from slo_opt.schedulers import (
    SCHEDULERS,
    AdmitPromise,
    EngineView,
    Scheduler,
    StepPlan,
    make,
    register,
)
from slo_opt.sim.simulator import InvalidPlan, SchedulerStalled, replay, simulate

_moved.install()  # old module paths (slo_opt.simulator, ...) for one release

__version__ = "0.1.0"

__all__ = [
    "SCHEDULERS",
    "SLO",
    "AdmitPromise",
    "AllocTable",
    "BatchShape",
    "EngineModel",
    "EngineView",
    "EventTable",
    "InvalidPlan",
    "Request",
    "Schedule",
    "Scheduler",
    "SchedulerStalled",
    "StepPlan",
    "StepTable",
    "Workload",
    "WorkloadError",
    "__version__",
    "is_feasible",
    "make",
    "register",
    "replay",
    "simulate",
    "violations",
]
