"""PerLLM's constraint-satisfaction UCB (CS-UCB) dispatcher.

Yang et al., "PerLLM: Personalized Inference Scheduling with Edge-Cloud Collaboration for
Diverse LLM Services", arXiv:2405.14636 (2024), sections on CS-UCB. The paper's code is not
public; the equation forms below follow ``shared/research/papers.md`` section 2.3-2.4, taken
from a third-party re-implementation [S] and therefore a *reconstruction*:

* arms are (service class, site) pairs; the combinatorial super-arm of a slot is handled by
  sequential per-request selection with capacity bookkeeping (decision 18);
* constraint filter (C1-C4): a site is feasible for request ``i`` iff every normalised slack
  ``y`` is >= 0:

  - time (C1): ``(Delta D_i - predicted e2e) / Delta D_i``,
  - compute (C2): ``1 - (backlog + work_i) / (throughput * Delta D_i)``,
  - memory (C3): ``1 - (KV in use + peak_i) / KV capacity`` and ``peak_i <= KV capacity``,
  - bandwidth (C3): ``1 - (up + down) / Delta D_i``;
  C4 (one site per request) holds by construction;
* reward (eq. (2)/(4) of the re-implementation): ``r = -E/E_ref + lambda * f(y)``, with
  ``f(y) = clip(min(y), -1, 1)`` using the *observed* time slack and the decision-time compute
  and memory slacks, ``E`` the feedback energy and ``E_ref`` the most expensive memory-feasible
  site's model energy for this request, minus ``penalty`` per missed deadline (the
  ``theta P(t)`` term of the paper's regret bound; default 0) --
  :func:`~slo_opt.edge.dispatchers.bandit.cs_reward`, shared with the UCB comparator;
* index (eq. (6)): ``R(a) + delta * sqrt(ln t / n(a))``; arms never observed get ``+inf``;
  the argmax is over feasible sites only.

Notes
-----
Documented choices where the paper is silent: ``delta = sqrt(2)`` (UCB1; decision 18),
``lam = 1`` (decision 19); when no site is feasible the request goes to the memory-feasible
site with the largest minimum slack (best effort; ``reject_infeasible=True`` rejects instead),
since an online dispatcher cannot "defer" in this simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from slo_opt.edge.dispatchers.bandit import ArmStats, cs_reward, pick_max, slacks, ucb_index
from slo_opt.edge.dispatchers.base import ClusterView, Feedback, check_seed, register

__all__ = ["PerLLMDispatcher", "slacks"]  # slacks: re-exported from .bandit


@register
@dataclass
class PerLLMDispatcher:
    """CS-UCB: constraint filter + UCB over (class, site) arms, energy/slack reward.

    Parameters
    ----------
    delta : float
        Exploration constant ``delta`` of the index (UCB1: ``sqrt(2)``).
    lam : float
        Weight ``lambda`` of the constraint-satisfaction term in the reward.
    penalty : float
        Reward penalty ``theta`` of a missed deadline (0: the continuous slack term only).
    reject_infeasible : bool
        Reject requests no site can serve within its constraints (default: best effort).
    seed : int
        Seed for tie-breaking among equal indices (e.g. several unexplored arms).
    """

    name: ClassVar[str] = "perllm"
    delta: float = math.sqrt(2.0)
    lam: float = 1.0
    penalty: float = 0.0
    reject_infeasible: bool = False
    seed: int = 0
    _stats: ArmStats = field(init=False, repr=False)
    _rng: np.random.Generator = field(init=False, repr=False)
    _pending: dict[int, tuple[str, float, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for nm in ("delta", "lam", "penalty"):
            v = getattr(self, nm)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{nm} must be finite and >= 0, got {v!r}")
        check_seed(self.seed)
        self.reset()

    def reset(self) -> None:
        """Forget all arm statistics; restart the tie-break stream."""
        self._stats = ArmStats()
        self._rng = np.random.default_rng(self.seed)
        self._pending = {}

    def choose(self, view: ClusterView) -> int | None:
        """Highest CS-UCB index among constraint-feasible sites."""
        self._stats.t += 1
        fits = view.fits_memory
        if not fits.any():
            return None
        y = slacks(view)
        ymin = y.min(axis=0)
        feasible = fits & (ymin >= 0)
        if not feasible.any():
            if self.reject_infeasible:
                return None
            j = int(np.flatnonzero(fits)[np.argmax(ymin[fits])])
        else:
            idx = ucb_index(self._stats, view.request.class_label, view.num_sites, self.delta)
            j = pick_max(idx, feasible, self._rng)  # type: ignore[assignment]
            assert j is not None
        e_ref = float(view.energy_j()[fits].max())
        y_other = float(min(y[1, j], y[2, j]))  # compute, memory slack at decision time
        self._pending[view.rid] = (view.request.class_label, e_ref if e_ref > 0 else 1.0,
                                   y_other)
        return j

    def observe(self, feedback: Feedback) -> None:
        """Reward :func:`~slo_opt.edge.dispatchers.bandit.cs_reward` of the observed outcome."""
        label, e_ref, y_other = self._pending.pop(feedback.rid, (feedback.class_label, 1.0, 1.0))
        self._stats.update((label, feedback.site),
                           cs_reward(feedback, e_ref, y_other, self.lam, self.penalty))
