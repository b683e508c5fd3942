"""The batched mean-JCT MILP: equal to an exhaustive search on tiny instances, replay through
``violations`` and ``metrics``, below the batch-size-1 optimum, horizons from a heuristic."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest

pytest.importorskip("highspy")

from hypothesis import given, settings
from hypothesis import strategies as st

from slo_opt.checks import violations
from slo_opt.metrics import request_metrics
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate
from slo_opt.solvers import Instance, Status, solve
from slo_opt.solvers.jct_bounds import exact_mean_jct, jobs_from_workload
from slo_opt.solvers.jct_milp import MeanJCTMILP, earliest_finish_slots, serial_finish_slots

pytestmark = pytest.mark.solver


def brute_force_mean_jct(w: Workload, e: SlotEngine) -> float:
    """Exhaustive search over every non-preemptive slotted schedule (tiny instances only).

    State per request: prompt tokens computed, decode tokens computed, finished. Each slot
    chooses, for every arrived unfinished request, a prefill chunk (any size) or one decode
    token (only after the slot that completed its prompt), within the token budget; the KV
    of unfinished requests after the slot must fit; a request's KV is freed after the slot it
    finishes in.
    """
    D, B, M = e.step_s, e.max_batch_tokens, e.kv_capacity_tokens
    n = len(w)
    r = np.rint(np.asarray(w.arrival_s) / D).astype(int).tolist()
    P, O = w.prompt_tokens.tolist(), w.output_tokens.tolist()
    horizon = int(serial_finish_slots(w, D, B).max()) + 1

    @functools.cache
    def best(t: int, state: tuple) -> float:
        if all(s[2] for s in state):
            return 0.0
        if t > horizon + sum(P) + sum(O):
            return math.inf
        choices = []
        for i, (p, d, done) in enumerate(state):
            if done or r[i] > t:
                choices.append([(0, 0)])
            elif p < P[i]:
                choices.append([(x, 0) for x in range(0, P[i] - p + 1)])
            else:
                choices.append([(0, 0), (0, 1)])
        out = math.inf
        for pick in itertools.product(*choices):
            if sum(x + y for x, y in pick) > B:
                continue
            new, cost, kv = [], 0.0, 0
            for i, ((p, d, done), (x, y)) in enumerate(zip(state, pick)):
                if done:
                    new.append((p, d, True))
                    continue
                p2, d2 = p + x, d + y
                kv += p2 + d2
                fin = p2 == P[i] and d2 == O[i] - 1 and (x > 0 or y > 0)
                if fin:
                    cost += (t + 1) * D - w.arrival_s[i]
                new.append((p2, d2, fin))
            if kv > M:
                continue
            out = min(out, cost + best(t + 1, tuple(new)))
        return out

    return best(0, tuple((0, 0, False) for _ in range(n))) / n


@st.composite
def tiny(draw):
    n = draw(st.integers(1, 3))
    gaps = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    B = draw(st.integers(1, 4))
    P = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    O = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    M = draw(st.integers(max(p + o - 1 for p, o in zip(P, O)), 12))
    D = draw(st.sampled_from([0.05, 1.0]))
    w = Workload.from_arrays(np.cumsum(gaps) * D, P, O)
    return w, SlotEngine(step_s=D, max_batch_tokens=B, kv_capacity_tokens=M)


@settings(max_examples=40)
@given(inst=tiny())
def test_equals_exhaustive_search(inst):
    w, e = inst
    res = solve(MeanJCTMILP(), Instance(w, e), time_limit_s=30)
    assert res.status == Status.OPTIMAL, res.message
    want = brute_force_mean_jct(w, e)
    assert res.incumbent == pytest.approx(want, abs=1e-9)
    s = res.schedule
    assert violations(s, w, e) == []
    e2e = request_metrics(s, w)["e2e_s"]
    assert float(np.mean(e2e)) == pytest.approx(res.incumbent, rel=1e-12, abs=1e-12)


@st.composite
def small(draw):
    n = draw(st.integers(1, 6))
    gaps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    B = draw(st.integers(4, 16))
    P = draw(st.lists(st.integers(1, B), min_size=n, max_size=n))
    O = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    M = draw(st.integers(max(p + o - 1 for p, o in zip(P, O)), 48))
    w = Workload.from_arrays(np.cumsum(gaps) * 0.05, P, O)
    return w, SlotEngine(step_s=0.05, max_batch_tokens=B, kv_capacity_tokens=M)


@settings(max_examples=25)
@given(inst=small(), name=st.sampled_from(["fcfs", "vllm", "sjf", "mcsf"]))
def test_heuristic_horizon_gives_same_optimum_and_chain(inst, name):
    """Horizons from a heuristic's finishing slots leave the optimum unchanged; the optimum is
    <= every non-preemptive heuristic and <= the batch-size-1 optimum (jct_bounds)."""
    w, e = inst
    s = simulate(w, e, make(name), max_steps=100_000)
    full = solve(MeanJCTMILP(), Instance(w, e), time_limit_s=60)
    assert full.status == Status.OPTIMAL
    if len(s.events) == 0 and not s.rejected.any():
        fin = np.rint(s.finish_s / e.step_s).astype(int) - 1
        tight = solve(MeanJCTMILP(sum_finish_bound_slots=int(fin.sum())), Instance(w, e),
                      time_limit_s=60)
        assert tight.status == Status.OPTIMAL
        assert tight.incumbent == pytest.approx(full.incumbent, abs=1e-9)
        pol = float(np.mean(request_metrics(s, w)["e2e_s"]))
        assert full.incumbent <= pol + 1e-9
    rel, proc = jobs_from_workload(w, e)
    bs1 = exact_mean_jct(rel, proc, np.asarray(w.arrival_s) / e.step_s)
    assert full.incumbent <= bs1.mean_jct * e.step_s + 1e-9


def test_known_answer_two_requests_share_a_slot():
    """Two requests (prompt 2, output 2) at 0, B = 4, M = 6: both prefill in slot 0 (4 tokens,
    KV 4), both decode in slot 1 (KV 6) and finish there: JCT 2 slots each -> mean 2.0 s at
    step 1 s. With M = 5 one decode must wait: finishes in slots 1 and 2 -> mean 2.5 s."""
    w = Workload.from_arrays([0.0, 0.0], [2, 2], [2, 2])
    for M, want in ((6, 2.0), (5, 2.5)):
        e = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=M)
        res = solve(MeanJCTMILP(), Instance(w, e))
        assert res.status == Status.OPTIMAL
        assert res.incumbent == pytest.approx(want, abs=1e-12)
        assert brute_force_mean_jct(w, e) == pytest.approx(want, abs=1e-12)


def test_too_long_request_is_infeasible_and_bound_below_optimum_is_infeasible():
    w = Workload.from_arrays([0.0], [8], [4])
    e = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=8)
    assert solve(MeanJCTMILP(), Instance(w, e)).status == Status.INFEASIBLE
    e = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=16)
    fmin = int(earliest_finish_slots(w, 1.0, 8).sum())
    assert solve(MeanJCTMILP(sum_finish_bound_slots=fmin), Instance(w, e)).status == Status.OPTIMAL
    assert solve(MeanJCTMILP(sum_finish_bound_slots=fmin - 1),
                 Instance(w, e)).status == Status.INFEASIBLE
