"""Join the least-loaded site (fewest outstanding tokens relative to its throughput)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slo_opt.edge.dispatchers.base import ClusterView, Stateless, argmin_masked, register

__all__ = ["LeastLoadedDispatcher"]


@register
@dataclass
class LeastLoadedDispatcher(Stateless):
    """Send each request to the memory-feasible site with the smallest backlog drain time
    (outstanding tokens / saturated throughput); ties go to the lowest site index.
    Network transfers and the request's own size are ignored (unlike ``min_latency``)."""

    name: ClassVar[str] = "least_loaded"

    def choose(self, view: ClusterView) -> int | None:
        """Site with the smallest queue estimate."""
        return argmin_masked(view.queue_estimate_s(), view.fits_memory)
