"""Fluid LP bounds over request windows: hand-checked cases and the bound chain against every
simulated scheduler (an independent computation: the simulator + metrics)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from slo_opt.metrics import request_metrics
from slo_opt.models.catalog import get_engine
from slo_opt.schedulers import make
from slo_opt.sim.simulator import simulate
from slo_opt.solvers.tpot_fluid import batch_groups, tpot_fluid_bound
from slo_opt.solvers.window_fluid import site_fluid_bound, window_cells
from slo_opt.workloads.edge import edge_workload

pytest.importorskip("highspy")


def test_window_cells_cover_each_window():
    edges = np.arange(0.0, 10.5, 1.0)
    m, c = window_cells(edges, np.array([0.5, 3.0, 9.9]), np.array([2.2, 3.0, 10.0]))
    got = {i: sorted(c[m == i].tolist()) for i in range(3)}
    assert got == {0: [0, 1, 2], 1: [3], 2: [9]}


def test_site_fluid_bound_hand_instance():
    # one site; two requests need 0.8 s each in windows of 1 s that overlap fully: one fits
    rel = np.array([[0.0], [0.0]])
    fin = np.array([[1.0], [1.0]])
    mi = np.array([[0.5], [0.5]])
    work = [np.array([[0.8], [0.8]])]
    b = site_fluid_bound(rel, fin, mi, work, cell_s=0.5)
    assert b.value == pytest.approx(1.25, rel=1e-6)  # LP: 1 / 0.8 requests fit
    # a second site doubles the capacity; a window shorter than the isolation time is out
    b2 = site_fluid_bound(np.hstack([rel, rel]), np.hstack([fin, fin]),
                          np.hstack([mi, [[2.0], [2.0]]]), [np.hstack([work[0], work[0]])])
    assert b2.value == pytest.approx(1.25, rel=1e-6)
    b3 = site_fluid_bound(np.hstack([rel, rel]), np.hstack([fin, fin]),
                          np.hstack([mi, mi]), [np.hstack([work[0], work[0]])])
    assert b3.value == pytest.approx(2.0, rel=1e-6)


def test_batch_groups_partition():
    g = batch_groups(256)
    assert g[0] == (1, 1) and g[15] == (16, 16) and g[-1][1] == 256
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(g))


SCHEDS = [("slice", {}), ("slice", {"restart_on_replan": False}), ("orca", {"max_batch_seqs": 16}),
          ("fastserve", {"max_batch_seqs": 16}), ("vllm", {"max_num_seqs": 16}),
          ("edf", {"max_batch_seqs": 16}),
          ("fcfs", {"batching": "continuous", "max_batch_seqs": 16})]


@pytest.mark.parametrize("engine_name", ["slice-edge/chatglm2-6b-int4", "h100/llama-3.1-8b"])
@pytest.mark.parametrize("rate", [0.5, 3.0])
def test_tpot_fluid_bound_above_every_scheduler(engine_name, rate):
    eng = get_engine(engine_name)
    if engine_name.startswith("h100"):
        rate *= 40
    w = edge_workload(40, rate, np.random.default_rng([3, int(rate * 10)]))
    bc = tpot_fluid_bound(w, eng, 16)
    bu = tpot_fluid_bound(w, eng, 16, weights="utility")
    assert bc.status.value == "optimal"
    for name, kw in SCHEDS:
        met = request_metrics(simulate(w, eng, make(name, **kw)), w)["slo_met"]
        assert met.mean() <= bc.fraction + 1e-9, name
        assert (w.utility * met).sum() / w.utility.sum() <= bu.fraction + 1e-9, name


def test_tpot_fluid_bound_binds_under_overload():
    eng = get_engine("slice-edge/chatglm2-6b-int4")
    w = edge_workload(60, 5.0, np.random.default_rng(1))
    assert tpot_fluid_bound(w, eng, 16).fraction < 0.8
    light = edge_workload(20, 0.05, np.random.default_rng(1))
    assert tpot_fluid_bound(light, eng, 16).fraction == pytest.approx(1.0)
