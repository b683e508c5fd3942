"""Shared pieces of the learning dispatchers (CS-UCB and UCB): arm statistics, the UCB index,
the decision-time slacks and the reward built from the observed outcome of a decision.

Both learners get the same feedback (:class:`~slo_opt.edge.dispatchers.base.Feedback`): the
observed end-to-end time against the deadline (load-dependent: queueing and batching at the
site show up in it) and the request's model energy (realised transmission + marginal
batch-of-one inference energy). The reward (PerLLM eq. (2)/(4) as reconstructed from a
third-party re-implementation [S], ``papers.md`` 2.3)::

    r = -min(E / E_ref, 1) + lam * clip(min(y_time_observed, y_compute, y_memory), -1, 1)
        - penalty * [deadline missed]

``E_ref`` is the most expensive memory-feasible site's model energy for the request;
``penalty`` is the per-violation term ``theta P(t)`` of the paper's regret bound (0 = the
reconstruction's continuous slack only). A rejection scores ``-1 - lam - penalty``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from slo_opt.edge.dispatchers.base import ClusterView, Feedback

__all__ = ["ArmStats", "cs_reward", "pick_max", "slacks", "ucb_index"]


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


def slacks(view: ClusterView) -> np.ndarray:
    """Normalised decision-time slacks per site, shape ``(4, m)``: time, compute, memory, bw."""
    d = view.deadline_s
    work = view.request.prompt_tokens + view.request.output_tokens - 1
    cap = view.kv_capacity_tokens.astype(float)
    y_mem = np.where(view.fits_memory,
                     1.0 - (cap - view.kv_free_tokens + view.peak_tokens) / cap, -1.0)
    if math.isinf(d):
        one = np.ones(view.num_sites)
        return np.vstack([one, one, y_mem, one])
    y_time = (d - view.predicted_e2e_s()) / d
    y_comp = 1.0 - (view.outstanding_tokens + work) / (view.throughput_tokens_per_s * d)
    y_bw = 1.0 - (view.up_s + view.down_s) / d
    return np.vstack([y_time, y_comp, y_mem, y_bw])


def cs_reward(feedback: Feedback, e_ref: float, y_other: float, lam: float,
              penalty: float) -> float:
    """The reward of one observed outcome (module docstring)."""
    if feedback.rejected:
        return -1.0 - lam - penalty
    d = feedback.deadline_s
    y_time = 1.0 if math.isinf(d) else (d - feedback.e2e_s) / d
    f = float(np.clip(min(y_time, y_other), -1.0, 1.0))
    return -min(feedback.energy_j / e_ref, 1.0) + lam * f - (0.0 if feedback.met else penalty)
