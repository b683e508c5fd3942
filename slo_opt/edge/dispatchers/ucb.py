"""UCB1 over (service class, site) arms *without* PerLLM's constraint-satisfaction filter.

The "UCB" comparator of PerLLM (``papers.md`` decision 21; the paper's comparators are not named
in its available text). It gets exactly the feedback and reward CS-UCB gets
(:func:`~slo_opt.edge.dispatchers.bandit.cs_reward`: observed deadline slack plus model energy,
the same ``lam`` and ``penalty``) and the same arms and index; the only difference is that it
chooses among all sites whose KV cache can hold the request instead of the sites that pass
CS-UCB's constraint check (C1-C4). It is therefore the ablation "CS-UCB minus the CS
mechanism".

Notes
-----
Before this version the UCB baseline's reward was the model energy alone (a fixed
batch-of-one number per site), so it never saw load or deadlines and learned to send most
traffic to the cheapest site; that version is gone (it measured nothing PerLLM claims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from slo_opt.edge.dispatchers.bandit import ArmStats, cs_reward, pick_max, slacks, ucb_index
from slo_opt.edge.dispatchers.base import ClusterView, Feedback, check_seed, register

__all__ = ["ArmStats", "UCBDispatcher", "ucb_index"]


@register
@dataclass
class UCBDispatcher:
    """UCB1 over (class, site) arms, CS-UCB's reward, no constraint filter.

    Parameters
    ----------
    delta : float
        Exploration constant (UCB1: ``sqrt(2)``).
    lam : float
        Weight of the observed-slack term of the reward (as CS-UCB's ``lam``).
    penalty : float
        Reward penalty of a missed deadline (as CS-UCB's ``penalty``).
    seed : int
        Seed for tie-breaking among equal indices.
    """

    name: ClassVar[str] = "ucb"
    delta: float = math.sqrt(2.0)
    lam: float = 1.0
    penalty: float = 0.0
    seed: int = 0
    _stats: ArmStats = field(init=False, repr=False)
    _rng: np.random.Generator = field(init=False, repr=False)
    _pending: dict[int, tuple[str, float, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for nm in ("delta", "lam", "penalty"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not (isinstance(v, int | float) and math.isfinite(v)
                                           and v >= 0):
                raise ValueError(f"{nm} must be finite and >= 0, got {v!r}")
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
        assert j is not None
        y = slacks(view)
        e_ref = float(view.energy_j()[fits].max())
        self._pending[view.rid] = (label, e_ref if e_ref > 0 else 1.0,
                                   float(min(y[1, j], y[2, j])))
        return j

    def observe(self, feedback: Feedback) -> None:
        """CS-UCB's reward of the observed outcome."""
        label, e_ref, y_other = self._pending.pop(feedback.rid,
                                                  (feedback.class_label, 1.0, 1.0))
        self._stats.update((label, feedback.site),
                           cs_reward(feedback, e_ref, y_other, self.lam, self.penalty))
