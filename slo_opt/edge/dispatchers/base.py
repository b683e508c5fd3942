"""Dispatcher contract: choose the serving site of each request at its arrival.

Mirrors :mod:`slo_opt.schedulers.base`: a dispatcher is a ``@register``-ed dataclass whose fields
are its hyper-parameters (validated in ``__post_init__``); ``reset()`` clears per-run state
(bandit statistics, the random stream, which comes from an explicit ``seed`` field);
``choose(view)`` returns a site index into ``view.sites`` or ``None`` to *explicitly reject*
the request; ``observe(feedback)`` receives the outcome of every earlier decision once its
result is back at the origin (bandit feedback).

A dispatcher sees only :class:`ClusterView` (read-only arrays, one entry per serving site).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from slo_opt.registry import Registry
from slo_opt.request import Request

__all__ = [
    "DISPATCHERS",
    "ClusterView",
    "Dispatcher",
    "Feedback",
    "dispatcher_params",
    "make",
    "register",
]


@dataclass(frozen=True, eq=False)
class ClusterView:
    """What a dispatcher may see when request ``rid`` arrives (read-only; one entry per site).

    Attributes
    ----------
    now_s : float
        Arrival time of the request.
    request : Request
        The request (its ``slo.e2e_s`` is the processing-time requirement ``Delta D_i``).
    sites, tiers : tuple of str
        Serving sites (``Cluster.sites`` order) and their tiers.
    up_s, down_s : numpy.ndarray
        Prompt transfer origin -> site and result transfer site -> origin, at the current
        decision slot's bandwidth (the result's actual transfer uses the slot it finishes in).
    tran_energy_j : numpy.ndarray
        Transmission energy of prompt + result at the current slot's bandwidth.
    infer_s : numpy.ndarray
        Unloaded (batch-of-one) inference time on each site's engine.
    infer_energy_j : numpy.ndarray
        Marginal unloaded inference energy: batch-of-one board energy minus ``idle_w x
        infer_s`` (:func:`slo_opt.edge.cluster.service_energy_j`; two-level power models:
        ``(busy_w - idle_w) * infer_s``).
    kv_capacity_tokens, kv_free_tokens : numpy.ndarray
        KV capacity and currently free KV tokens.
    num_open, num_running, num_waiting : numpy.ndarray
        Pushed-but-unfinished, running and waiting requests per site.
    outstanding_tokens : numpy.ndarray
        Tokens still to compute for the open requests of each site.
    throughput_tokens_per_s : numpy.ndarray
        Saturated decode throughput estimate of each site (load heuristic).
    """

    now_s: float
    request: Request
    sites: tuple[str, ...]
    tiers: tuple[str, ...]
    up_s: np.ndarray
    down_s: np.ndarray
    tran_energy_j: np.ndarray
    infer_s: np.ndarray
    infer_energy_j: np.ndarray
    kv_capacity_tokens: np.ndarray
    kv_free_tokens: np.ndarray
    num_open: np.ndarray
    num_running: np.ndarray
    num_waiting: np.ndarray
    outstanding_tokens: np.ndarray
    throughput_tokens_per_s: np.ndarray

    @property
    def rid(self) -> int:
        """Request id."""
        return self.request.id

    @property
    def num_sites(self) -> int:
        """Number of serving sites."""
        return len(self.sites)

    @property
    def deadline_s(self) -> float:
        """Processing-time requirement (the request's e2e SLO; ``inf`` = none)."""
        return self.request.slo.e2e_s

    @property
    def peak_tokens(self) -> int:
        """KV tokens the request holds at its end."""
        return self.request.prompt_tokens + self.request.output_tokens - 1

    @property
    def fits_memory(self) -> np.ndarray:
        """Sites whose KV capacity can ever hold the request (otherwise the engine rejects it)."""
        return self.kv_capacity_tokens >= self.peak_tokens

    def queue_estimate_s(self) -> np.ndarray:
        """Backlog drain time: outstanding tokens / saturated throughput (heuristic)."""
        return self.outstanding_tokens / self.throughput_tokens_per_s

    def predicted_e2e_s(self) -> np.ndarray:
        """Greedy completion estimate: up + queue estimate + unloaded inference + down."""
        return self.up_s + self.queue_estimate_s() + self.infer_s + self.down_s

    def energy_j(self) -> np.ndarray:
        """Model energy of serving the request at each site: transmission + marginal inference."""
        return self.tran_energy_j + self.infer_energy_j


@dataclass(frozen=True)
class Feedback:
    """Outcome of one decision, delivered when the result is back at the origin.

    ``energy_j`` is the model energy of the request at its site (realised transmission energy
    + marginal unloaded inference energy, as ``ClusterView.infer_energy_j``); per-request
    measured energy (token share of each step's batch-aware energy) is only known after the
    run (see ``cluster_sim``).
    """

    rid: int
    site: int
    class_label: str
    e2e_s: float
    deadline_s: float
    met: bool
    rejected: bool
    energy_j: float


class Dispatcher(Protocol):
    """An online site-choice policy. Dataclass fields are its hyper-parameters."""

    name: ClassVar[str]

    def reset(self) -> None:
        """Clear per-run state (statistics, random stream)."""
        ...

    def choose(self, view: ClusterView) -> int | None:
        """Site index for ``view.request``, or ``None`` to reject it explicitly."""
        ...

    def observe(self, feedback: Feedback) -> None:
        """Outcome of an earlier decision."""
        ...


DISPATCHERS = Registry("dispatcher")
D = TypeVar("D", bound=type)


def register(cls: D) -> D:
    """Class decorator adding a dispatcher to :data:`DISPATCHERS` under ``cls.name``."""
    return DISPATCHERS.register(cls)


def dispatcher_params(name_or_cls: str | type) -> dict[str, Any]:
    """Hyper-parameters of a dispatcher and their defaults."""
    return DISPATCHERS.params(name_or_cls)


def make(name: str, **params: Any) -> Any:
    """Instantiate a registered dispatcher; unknown names or parameters list the valid ones."""
    return DISPATCHERS.make(name, **params)


class Stateless:
    """Mixin for dispatchers without per-run state or feedback use."""

    def reset(self) -> None:
        """Nothing to clear."""

    def observe(self, feedback: Feedback) -> None:
        """Ignored."""


def argmin_masked(values: np.ndarray, mask: np.ndarray) -> int | None:
    """Index of the smallest value among ``mask`` (lowest index on ties); ``None`` if empty."""
    if not mask.any():
        return None
    v = np.where(mask, values, math.inf)
    if not np.isfinite(v).any():
        return int(np.flatnonzero(mask)[0])
    return int(np.argmin(v))


def check_seed(seed: Any) -> None:
    """Validate a dispatcher's ``seed`` field."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
