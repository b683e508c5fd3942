"""Online schedulers: the table of contents (one import line per policy file)."""

from slo_opt.schedulers import (
    edf,
    fastserve,
    fcfs,
    least_slack,
    mcsf,
    orca,
    sarathi,
    sjf,
    slice_,
    vllm,
    vllm_v0,
)
from slo_opt.schedulers.base import (
    SCHEDULERS,
    AdmitPromise,
    EngineView,
    Scheduler,
    StepPlan,
    admit,
    make,
    register,
    scheduler_params,
)

__all__ = [
    "SCHEDULERS",
    "AdmitPromise",
    "EngineView",
    "Scheduler",
    "StepPlan",
    "admit",
    "edf",
    "fastserve",
    "fcfs",
    "least_slack",
    "make",
    "mcsf",
    "orca",
    "register",
    "sarathi",
    "scheduler_params",
    "sjf",
    "slice_",
    "vllm",
    "vllm_v0",
]
