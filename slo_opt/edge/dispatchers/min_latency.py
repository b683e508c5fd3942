"""Greedy on predicted completion: the site that returns the result soonest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slo_opt.edge.dispatchers.base import ClusterView, Stateless, argmin_masked, register

__all__ = ["MinLatencyDispatcher"]


@register
@dataclass
class MinLatencyDispatcher(Stateless):
    """Minimise predicted end-to-end time ``up + backlog/throughput + unloaded inference +
    down`` (:meth:`ClusterView.predicted_e2e_s`) over memory-feasible sites; energy-blind."""

    name: ClassVar[str] = "min_latency"

    def choose(self, view: ClusterView) -> int | None:
        """Site with the smallest predicted completion."""
        return argmin_masked(view.predicted_e2e_s(), view.fits_memory)
