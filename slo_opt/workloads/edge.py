"""SLICE's edge workload: real-time / non-real-time x short / long task classes, Poisson arrivals.

The paper (arXiv:2510.18544) evaluates task classes with differentiated TTFT, TPOT and
end-to-end SLOs and utilities but does not publish the mix; papers.md (decisions 5, 13, 14)
records what is known and what we chose:

===========  ========  ========  ==========================  =======  ===========  ==========
class        TTFT      TPOT      e2e                         utility  prompt       output
===========  ========  ========  ==========================  =======  ===========  ==========
rt_short     0.5 s     50 ms     TTFT + TPOT (O - 1)          100     16-128       16-128
rt_long      0.5 s     50 ms     TTFT + TPOT (O - 1)          100     16-128       129-384
nrt_short    2 s       120 ms    none                         1       32-256       16-128
nrt_long     2 s       120 ms    none                         1       32-256       129-384
===========  ========  ========  ==========================  =======  ===========  ==========

Known from the reference code: TPOT 50 ms with U = 100 for real-time tasks, TPOT 120 ms with
U = 1 otherwise, the four priority classes, the short/long split at 128 output tokens
(``longTaskThreshold``). Our choices: TTFTs, the real-time deadline (the time a task needs at
exactly its TPOT after its TTFT, scaled by ``rt_e2e_slack``; with slack 1 it is implied by the
TTFT and TPOT targets), the 1:3 real-time share, the 1:1 short/long split and the uniform
length ranges. Lengths are drawn uniformly (integers, inclusive).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo_opt.request import Workload
from slo_opt.workloads.generators import poisson_arrivals

__all__ = ["EdgeTaskClass", "edge_task_classes", "edge_workload", "mean_output_tokens"]


@dataclass(frozen=True)
class EdgeTaskClass:
    """One SLICE task class."""

    name: str  # class label (the scheduler's priority class)
    ttft_s: float  # TTFT target
    tpot_s: float  # TPOT target
    utility: float  # U_i
    share: float  # fraction of tasks
    prompt_range: tuple[int, int]  # inclusive uniform range of prompt tokens
    output_range: tuple[int, int]  # inclusive uniform range of output tokens
    e2e_slack: float = math.inf  # e2e = slack * (TTFT + TPOT (O-1)); inf: no e2e target

    def __post_init__(self) -> None:
        for k in ("ttft_s", "tpot_s"):
            if not getattr(self, k) > 0:
                raise ValueError(f"{self.name}: {k} must be > 0")
        if not (math.isfinite(self.utility) and self.utility >= 0):
            raise ValueError(f"{self.name}: utility must be finite and >= 0")
        if not 0 <= self.share <= 1:
            raise ValueError(f"{self.name}: share must be in [0, 1]")
        for k in ("prompt_range", "output_range"):
            lo, hi = getattr(self, k)
            if not (1 <= lo <= hi):
                raise ValueError(f"{self.name}: {k} must satisfy 1 <= lo <= hi, got {(lo, hi)}")
        if not self.e2e_slack > 0:
            raise ValueError(f"{self.name}: e2e_slack must be > 0")


def edge_task_classes(*, rt_share: float = 0.25, long_share: float = 0.5,
                      rt_utility: float = 100.0, rt_e2e_slack: float = 1.0,
                      rt_ttft_s: float = 0.5, nrt_ttft_s: float = 2.0,
                      rt_tpot_s: float = 0.05, nrt_tpot_s: float = 0.12,
                      ) -> tuple[EdgeTaskClass, ...]:
    """The four classes of the module table (parameters override our documented choices)."""
    if not (0 <= rt_share <= 1 and 0 <= long_share <= 1):
        raise ValueError("rt_share and long_share must be in [0, 1]")
    short, long_ = (16, 128), (129, 384)
    rt_p, nrt_p = (16, 128), (32, 256)
    return (
        EdgeTaskClass("rt_short", rt_ttft_s, rt_tpot_s, rt_utility, rt_share * (1 - long_share),
                      rt_p, short, rt_e2e_slack),
        EdgeTaskClass("rt_long", rt_ttft_s, rt_tpot_s, rt_utility, rt_share * long_share,
                      rt_p, long_, rt_e2e_slack),
        EdgeTaskClass("nrt_short", nrt_ttft_s, nrt_tpot_s, 1.0,
                      (1 - rt_share) * (1 - long_share), nrt_p, short),
        EdgeTaskClass("nrt_long", nrt_ttft_s, nrt_tpot_s, 1.0, (1 - rt_share) * long_share,
                      nrt_p, long_),
    )


def mean_output_tokens(classes: Sequence[EdgeTaskClass]) -> float:
    """Expected output tokens of one task of the mix."""
    return float(sum(c.share * (c.output_range[0] + c.output_range[1]) / 2 for c in classes))


def edge_workload(n: int, rate_per_s: float, rng: np.random.Generator, *,
                  classes: Sequence[EdgeTaskClass] | None = None,
                  name: str = "slice-edge") -> Workload:
    """``n`` tasks with Poisson arrivals at ``rate_per_s`` and i.i.d. classes.

    ``rng`` is consumed in this order: arrivals, classes, prompt lengths, output lengths.
    """
    cls = tuple(edge_task_classes() if classes is None else classes)
    shares = np.array([c.share for c in cls], float)
    if not cls or abs(shares.sum() - 1.0) > 1e-9:
        raise ValueError(f"class shares must sum to 1, got {shares.sum()!r}")
    arr = poisson_arrivals(rate_per_s, n, rng)
    k = rng.choice(len(cls), size=n, p=shares / shares.sum())
    plo = np.array([c.prompt_range[0] for c in cls])[k]
    phi = np.array([c.prompt_range[1] for c in cls])[k]
    olo = np.array([c.output_range[0] for c in cls])[k]
    ohi = np.array([c.output_range[1] for c in cls])[k]
    p = rng.integers(plo, phi + 1)
    o = rng.integers(olo, ohi + 1)
    ttft = np.array([c.ttft_s for c in cls])[k]
    tpot = np.array([c.tpot_s for c in cls])[k]
    slack = np.array([c.e2e_slack for c in cls])[k]
    with np.errstate(invalid="ignore"):
        e2e = np.where(np.isfinite(slack), slack * (ttft + tpot * (o - 1)), np.inf)
    return Workload.from_arrays(
        arr, p, o, ttft_slo_s=ttft, tpot_slo_s=tpot, e2e_slo_s=e2e,
        utility=np.array([c.utility for c in cls])[k],
        class_label=np.array([c.name for c in cls], dtype=object)[k], name=name)
