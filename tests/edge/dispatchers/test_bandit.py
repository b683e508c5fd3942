"""The learners' shared reward and what separates UCB from CS-UCB (the constraint filter)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slo_opt.edge.dispatchers import make
from slo_opt.edge.dispatchers.bandit import cs_reward
from slo_opt.edge.dispatchers.base import Feedback
from slo_opt.edge.simulation import simulate_cluster

from .test_conformance import cluster, workload


def fb(e2e: float, deadline: float, energy: float, rejected: bool = False) -> Feedback:
    return Feedback(0, 0, "c", e2e, deadline, e2e <= deadline, rejected, energy)


def test_cs_reward_hand_values():
    # on time with 50 % slack, half the reference energy: -0.5 + 1 * 0.5
    assert cs_reward(fb(1.0, 2.0, 5.0), 10.0, 1.0, 1.0, 0.0) == pytest.approx(0.0)
    # decision-time slack binds: min(0.5, 0.2)
    assert cs_reward(fb(1.0, 2.0, 5.0), 10.0, 0.2, 1.0, 0.0) == pytest.approx(-0.3)
    # 10 % late: slack -0.1; the penalty theta charges the miss itself
    assert cs_reward(fb(2.2, 2.0, 0.0), 10.0, 1.0, 1.0, 0.0) == pytest.approx(-0.1)
    assert cs_reward(fb(2.2, 2.0, 0.0), 10.0, 1.0, 1.0, 1.0) == pytest.approx(-1.1)
    assert cs_reward(fb(math.inf, 2.0, 0.0, True), 10.0, 1.0, 0.5, 2.0) == pytest.approx(-3.5)
    # energy term capped at the reference
    assert cs_reward(fb(1.0, math.inf, 50.0), 10.0, 1.0, 1.0, 0.0) == pytest.approx(0.0)


def test_ucb_is_cs_ucb_without_the_filter():
    """With no deadlines every memory-feasible site passes CS-UCB's filter, so UCB (same arms,
    index and reward) must make exactly CS-UCB's choices; with tight deadlines they differ."""
    c = cluster()
    w = workload(3, 80)
    # prompts that use at most a quarter of the small KV cache, no deadlines: every
    # memory-feasible site passes every CS constraint while few requests are open
    w = w.replace(prompt_tokens=np.minimum(w.prompt_tokens, 20),
                  output_tokens=np.minimum(w.output_tokens, 10),
                  arrival_s=np.asarray(w.arrival_s) * 20)
    loose = w.replace(e2e_slo_s=np.full(len(w), math.inf))
    site = {}
    for wl, tag in ((loose, "loose"), (w, "tight")):
        for name in ("ucb", "perllm"):
            r = simulate_cluster(wl, c, make(name, seed=1), rng=np.random.default_rng(0))
            site[(tag, name)] = r.records["site"]
    assert (site[("loose", "ucb")] == site[("loose", "perllm")]).all()
    assert (site[("tight", "ucb")] != site[("tight", "perllm")]).any()


def test_penalty_changes_choices_only_through_misses():
    c = cluster()
    w = workload(5, 80)
    a = simulate_cluster(w, c, make("perllm"), rng=np.random.default_rng(0)).records
    b = simulate_cluster(w, c, make("perllm", penalty=1.0), rng=np.random.default_rng(0)).records
    first_miss = int(np.argmax(~a["met"])) if (~a["met"]).any() else len(w)
    # identical until the first request whose miss could have been observed
    assert (a["site"][:first_miss + 1] == b["site"][:first_miss + 1]).all()


def test_penalty_is_validated():
    with pytest.raises(ValueError):
        make("perllm", penalty=-1.0)
    with pytest.raises(ValueError):
        make("ucb", lam=float("nan"))
