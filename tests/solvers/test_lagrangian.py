"""Lagrangian bounds (solvers/lagrangian.py) against exact optima and simulated schedulers, and
the bad-input guards of issue 14 (FluidBound size, build time vs limit)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

pytest.importorskip("highspy")

from hypothesis import given, settings

from slo_opt.checks import violations
from slo_opt.metrics import attainment, goodput_tokens
from slo_opt.models.linear import LinearEngineModel
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.sim.simulator import simulate
from slo_opt.solvers import GoodputMILP, Instance, Status, solve
from slo_opt.solvers.fluid_bound import FluidBound
from slo_opt.solvers.lagrangian import slot_lagrangian_bound, time_lagrangian_bound
from slo_opt.solvers.real_length import real_length_workload, slot_engine_for, slot_step_s
from slo_opt.solvers.scenarios import scaled_workload

from ..instances import ALL
from .test_goodput_milp import instances

pytestmark = pytest.mark.solver


@pytest.mark.parametrize("case", ALL, ids=lambda f: f.__name__)
def test_slot_bound_is_above_known_optima(case):
    k = case()
    r = slot_lagrangian_bound(Instance(k.workload, k.engine, k.num_slots), max_iter=200)
    assert r.bound >= k.optimum - 1e-9
    assert "SlotEngine" in r.valid_for


@settings(max_examples=25, deadline=None)
@given(instances())
def test_slot_bound_is_above_the_exact_milp(we):
    w, e = we
    inst = Instance(w, e)
    for objective in ("attainment", "goodput"):
        opt = solve(GoodputMILP(objective=objective), inst, time_limit_s=30)
        assert opt.status == Status.OPTIMAL
        r = slot_lagrangian_bound(inst, objective=objective, max_iter=150)
        assert r.bound >= opt.incumbent - 1e-7 * max(1.0, abs(opt.incumbent))


def _binding(seed: int, n: int = 60, M: int = 1024):
    e = SlotEngine(step_s=0.05, max_batch_tokens=128, kv_capacity_tokens=M)
    w = scaled_workload(n, 3.0, np.random.default_rng(seed), e, prompt=(16, 96),
                        output=(4, 24))
    return w, e


@pytest.mark.parametrize("seed", [0, 1])
def test_slot_bound_is_above_every_scheduler_and_binds(seed):
    w, e = _binding(seed)
    inst = Instance(w, e)
    r = slot_lagrangian_bound(inst, max_iter=300)
    assert r.bound < 0.99  # the prices bite: below the count of servable requests
    best = 0.0
    for name in sorted(SCHEDULERS):
        s = simulate(w, e, make(name), max_steps=1_000_000)
        assert violations(s, w, e) == []
        best = max(best, attainment(s, w))
        assert attainment(s, w) <= r.bound + 1e-9, name
        assert goodput_tokens(s, w) <= slot_lagrangian_bound(
            inst, objective="goodput", max_iter=100).bound + 1e-6
    # the bound is not above the LP relaxation of the exact MILP by much, nor below the best
    lp = solve(GoodputMILP(), inst, relax=True, time_limit_s=60)
    assert best <= r.bound and lp.bound is not None and r.bound <= lp.bound + 0.1


def test_iterations_only_tighten_and_time_limit_zero():
    w, e = _binding(2)
    inst = Instance(w, e)
    r0 = slot_lagrangian_bound(inst, time_limit_s=0)
    assert r0.iterations == 0 and r0.stop == "time_limit"
    assert r0.bound == pytest.approx(r0.servable / len(w))
    r = slot_lagrangian_bound(inst, max_iter=100)
    assert r.bound <= min(r.history) + 1e-12 and r.bound <= r0.bound


def _linear(M: int = 4096) -> LinearEngineModel:
    return LinearEngineModel(name="lin-test", c0_s=0.01, c_prefill_s=2e-4, c_decode_s=4e-4,
                             c_ctx_s=1e-6, kv_capacity_tokens=M, kv_block_tokens=1,
                             max_batch_tokens=256)


@pytest.mark.parametrize("seed", [0, 1])
def test_time_bound_is_above_every_scheduler_on_a_linear_engine(seed):
    e = _linear()
    w = scaled_workload(80, 2.0, np.random.default_rng(seed),
                        SlotEngine(step_s=0.06, max_batch_tokens=256, kv_capacity_tokens=4096))
    r = time_lagrangian_bound(w, e, cell_s=0.1, max_iter=300)
    assert "LinearEngineModel" in r.valid_for
    assert r.bound < 1.0
    for name in sorted(SCHEDULERS):
        s = simulate(w, e, make(name), max_steps=1_000_000)
        assert attainment(s, w) <= r.bound + 1e-9, name


def test_real_length_slot_is_a_real_iteration():
    lin = _linear()
    se = slot_engine_for(lin, 128, max_context_tokens=600)
    from slo_opt.engine import BatchShape

    rng = np.random.default_rng(0)
    for _ in range(200):
        p = int(rng.integers(0, 129))
        b = int(rng.integers(0, 129 - p))
        if p + b == 0:
            continue
        t = lin.step_time_s(BatchShape(prefill_tokens=p, decode_seqs=b,
                                       decode_context_tokens=int(rng.integers(0, 4097)),
                                       prefill_seqs=1, prefill_context_tokens=600))
        assert t <= se.step_s + 1e-12
    assert se.step_s == slot_step_s(lin, 128, 600)
    base = Workload.from_arrays(np.arange(10.0), [100] * 10, [20] * 10)
    w = real_length_workload(base, 5, 2.0, se, start=3)
    cap = se.max_batch_tokens / se.step_s
    assert np.sum(w.work_tokens) / w.arrival_s.max() == pytest.approx(2.0 * cap)
    with pytest.raises(ValueError, match="start"):
        real_length_workload(base, 9, 1.0, se, start=3)
    with pytest.raises(TypeError, match="LinearEngineModel"):
        slot_engine_for(se)


# -- bad input (issue 14) -------------------------------------------------------------------
def test_fluid_bound_refuses_huge_models_at_once():
    e = SlotEngine(step_s=0.05, max_batch_tokens=256, kv_capacity_tokens=2048)
    n = 400
    w = Workload.from_arrays(np.arange(n) * 0.01, [1000] * n, [200] * n, ttft_slo_s=2.0)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="max_columns"):
        FluidBound(max_columns=100_000).build(Instance(w, e))
    assert time.perf_counter() - t0 < 5.0
    with pytest.raises(ValueError, match="max_columns"):
        FluidBound(max_columns=0)


def test_lagrangian_handles_empty_and_unservable():
    e = SlotEngine(step_s=0.05, max_batch_tokens=64, kv_capacity_tokens=256)
    empty = Workload.from_arrays(np.zeros(0), np.zeros(0, int), np.zeros(0, int))
    r = slot_lagrangian_bound(Instance(empty, e))
    assert r.stop == "empty" and r.bound == GoodputMILP().weights(Instance(empty, e))[1]
    too_long = Workload.from_arrays([0.0, 0.0], [400, 10], [5, 5], ttft_slo_s=1.0)
    r = slot_lagrangian_bound(Instance(too_long, e))
    assert r.servable == 1 and r.bound <= 0.5 + 1e-12
    with pytest.raises(ValueError, match="time_limit_s"):
        slot_lagrangian_bound(Instance(too_long, e), time_limit_s=-1)
    with pytest.raises(ValueError, match="time_limit_s"):
        time_lagrangian_bound(too_long, _linear(), time_limit_s=math.nan)
