"""Cloud-only reference: every request is served at its nearest cloud site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from slo_opt.edge.dispatchers.base import ClusterView, Stateless, argmin_masked, register

__all__ = ["CloudOnlyDispatcher"]


@register
@dataclass
class CloudOnlyDispatcher(Stateless):
    """Nearest cloud site (smallest prompt transfer time) whose KV capacity holds the request;
    ``None`` (reject) when no cloud site fits. Load-blind."""

    name: ClassVar[str] = "cloud_only"

    def choose(self, view: ClusterView) -> int | None:
        """Nearest memory-feasible cloud site."""
        cloud = np.array([t == "cloud" for t in view.tiers])
        return argmin_masked(view.up_s, cloud & view.fits_memory)
