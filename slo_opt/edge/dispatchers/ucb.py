"""Plain UCB1 over (service class, site) arms with an energy-only reward (no constraints).

The "UCB without constraint satisfaction" comparator of PerLLM (``papers.md`` decision 21):
the same arms and index as :mod:`slo_opt.edge.dispatchers.perllm` but no feasibility filter and
reward ``r = -E / E_ref`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from slo_opt.edge.dispatchers.base import ClusterView, Feedback, check_seed, register

__all__ = ["ArmStats", "UCBDispatcher", "ucb_index"]


@dataclass
class ArmStats:
    """Pull counts and running mean rewards of (class, site) arms, plus the decision count."""

    pulls: dict[tuple[str, int], int] = field(default_factory=dict)
    mean: dict[tuple[str, int], float] = field(default_factory=dict)
    t: int = 0

    def update(self, arm: tuple[str, int], reward: float) -> None:
        """Incremental mean: ``R <- (n R + r) / (n + 1)``."""
        n = self.pulls.get(arm, 0)
        self.mean[arm] = (n * self.mean.get(arm, 0.0) + reward) / (n + 1)
        self.pulls[arm] = n + 1


def ucb_index(stats: ArmStats, label: str, num_sites: int, delta: float) -> np.ndarray:
    """``R(a) + delta * sqrt(ln t / n(a))`` per site; ``+inf`` for arms never observed."""
    t = max(stats.t, 1)
    out = np.empty(num_sites)
    for j in range(num_sites):
        n = stats.pulls.get((label, j), 0)
        out[j] = math.inf if n == 0 else stats.mean[(label, j)] + delta * math.sqrt(
            math.log(t) / n)
    return out


def pick_max(index: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> int | None:
    """Argmax of ``index`` over ``mask``, ties broken uniformly at random (seeded)."""
    cand = np.flatnonzero(mask)
    if cand.size == 0:
        return None
    v = index[cand]
    best = cand[v == v.max()]
    return int(best[0] if best.size == 1 else best[rng.integers(best.size)])


@register
@dataclass
class UCBDispatcher:
    """UCB1 over (class, site) arms, reward ``-E / E_ref`` (energy normalised per request by
    the most expensive memory-feasible site). Deadline-blind.

    Parameters
    ----------
    delta : float
        Exploration constant (UCB1: ``sqrt(2)``).
    seed : int
        Seed for tie-breaking among equal indices.
    """

    name: ClassVar[str] = "ucb"
    delta: float = math.sqrt(2.0)
    seed: int = 0
    _stats: ArmStats = field(init=False, repr=False)
    _rng: np.random.Generator = field(init=False, repr=False)
    _pending: dict[int, tuple[str, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delta) and self.delta >= 0):
            raise ValueError(f"delta must be finite and >= 0, got {self.delta}")
        check_seed(self.seed)
        self.reset()

    def reset(self) -> None:
        """Forget all arm statistics; restart the tie-break stream."""
        self._stats = ArmStats()
        self._rng = np.random.default_rng(self.seed)
        self._pending = {}

    def choose(self, view: ClusterView) -> int | None:
        """Highest UCB index among memory-feasible sites."""
        self._stats.t += 1
        fits = view.fits_memory
        if not fits.any():
            return None
        label = view.request.class_label
        j = pick_max(ucb_index(self._stats, label, view.num_sites, self.delta), fits, self._rng)
        e_ref = float(view.energy_j()[fits].max())
        self._pending[view.rid] = (label, e_ref if e_ref > 0 else 1.0)
        return j

    def observe(self, feedback: Feedback) -> None:
        """Reward ``-E / E_ref`` (rejections count as ``-1``)."""
        label, e_ref = self._pending.pop(feedback.rid, (feedback.class_label, 1.0))
        r = -1.0 if feedback.rejected else -min(feedback.energy_j / e_ref, 1.0)
        self._stats.update((label, feedback.site), r)
