"""Edge-cloud dispatchers (site choice per request): the table of contents.

One import line per policy file; see :mod:`slo_opt.edge.dispatchers.base` for the contract.
"""

from slo_opt.edge.dispatchers import (
    cloud_only,
    edge_only,
    least_loaded,
    min_latency,
    perllm,
    random_,
    round_robin,
    ucb,
)
from slo_opt.edge.dispatchers.base import (
    DISPATCHERS,
    ClusterView,
    Dispatcher,
    Feedback,
    dispatcher_params,
    make,
    register,
)

__all__ = [
    "DISPATCHERS",
    "ClusterView",
    "Dispatcher",
    "Feedback",
    "cloud_only",
    "dispatcher_params",
    "edge_only",
    "least_loaded",
    "make",
    "min_latency",
    "perllm",
    "random_",
    "register",
    "round_robin",
    "ucb",
]
