"""Round-robin over the serving sites (a PerLLM comparator; ``papers.md`` decision 21)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from slo_opt.edge.dispatchers.base import ClusterView, Feedback, register

__all__ = ["RoundRobinDispatcher"]


@register
@dataclass
class RoundRobinDispatcher:
    """Cycle through the sites in ``Cluster.sites`` order, skipping those whose KV capacity
    cannot hold the request."""

    name: ClassVar[str] = "round_robin"
    _next: int = field(default=0, init=False, repr=False)

    def reset(self) -> None:
        """Start again at site 0."""
        self._next = 0

    def choose(self, view: ClusterView) -> int | None:
        """The next memory-feasible site in cyclic order (``None`` if there is none)."""
        fits = view.fits_memory
        m = view.num_sites
        for k in range(m):
            j = (self._next + k) % m
            if fits[j]:
                self._next = (j + 1) % m
                return j
        return None

    def observe(self, feedback: Feedback) -> None:
        """Ignored."""
