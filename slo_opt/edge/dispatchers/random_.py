"""Uniform random site choice (a PerLLM comparator; ``papers.md`` decision 21)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from slo_opt.edge.dispatchers.base import ClusterView, Feedback, check_seed, register

__all__ = ["RandomDispatcher"]


@register
@dataclass
class RandomDispatcher:
    """Pick a site uniformly among those whose KV capacity can hold the request.

    Parameters
    ----------
    seed : int
        Seed of the dispatcher's own random stream (re-created by ``reset()``).
    """

    name: ClassVar[str] = "random"
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_seed(self.seed)
        self.reset()

    def reset(self) -> None:
        """Restart the random stream from ``seed``."""
        self._rng = np.random.default_rng(self.seed)

    def choose(self, view: ClusterView) -> int | None:
        """A uniformly random memory-feasible site (``None`` if there is none)."""
        ok = np.flatnonzero(view.fits_memory)
        if ok.size == 0:
            return None
        return int(ok[self._rng.integers(ok.size)])

    def observe(self, feedback: Feedback) -> None:
        """Ignored."""
