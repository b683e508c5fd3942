"""Earliest-deadline-first admission on the TTFT deadline (an SLO-aware baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slo_opt.schedulers.base import EngineView, register
from slo_opt.schedulers.fcfs import FCFS

__all__ = ["EDF"]


@register
@dataclass
class EDF(FCFS):
    """Earliest TTFT deadline (``arrival_s + ttft_slo_s``) first, in FCFS's batching modes.

    Only the admission order differs from :class:`~slo_opt.schedulers.fcfs.FCFS` (same
    parameters, continuous batching by default): waiting requests are admitted by increasing
    TTFT deadline, ties (and requests without a TTFT SLO, deadline ``inf``) in arrival order.
    Running requests are never preempted for a more urgent one (see ``least_slack`` for that).

    Notes
    -----
    Classic EDF (Liu & Layland, 1973) is optimal for meeting deadlines on one preemptive
    machine; here it orders admissions only, a common SLO-aware baseline (not from the papers).
    The order does not change with time, so FCFS's fast-forward promise stays valid.
    """

    name: ClassVar[str] = "edf"

    def order(self, view: EngineView) -> list[int]:
        """Waiting requests by TTFT deadline, then arrival."""
        w = view.workload
        dl = w.arrival_s + w.ttft_slo_s
        return sorted((int(r) for r in view.waiting), key=lambda r: (float(dl[r]), r))
