"""Edge-only reference: every request is served at its nearest edge site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from slo_opt.edge.dispatchers.base import ClusterView, Stateless, argmin_masked, register

__all__ = ["EdgeOnlyDispatcher"]


@register
@dataclass
class EdgeOnlyDispatcher(Stateless):
    """Nearest edge site (smallest prompt transfer time) whose KV capacity holds the request;
    ``None`` (reject) when no edge site fits. Load-blind."""

    name: ClassVar[str] = "edge_only"

    def choose(self, view: ClusterView) -> int | None:
        """Nearest memory-feasible edge site."""
        edge = np.array([t == "edge" for t in view.tiers])
        return argmin_masked(view.up_s, edge & view.fits_memory)
