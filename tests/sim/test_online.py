"""The online Simulation, fed every request at its arrival, gives simulate()'s schedule."""

from __future__ import annotations

import numpy as np
import pytest

from slo_opt import make, simulate
from slo_opt.models.linear import LinearEngineModel
from slo_opt.sim.online import Simulation
from slo_opt.workloads.generators import EmpiricalLengths, synthetic


def _tables(s):
    return [s.steps.start_s, s.steps.end_s, s.steps.prefill_tokens, s.steps.decode_seqs,
            s.allocs.request, s.allocs.step, s.allocs.tokens, s.allocs.num_steps,
            s.events.kind, s.first_token_step, s.finish_step, s.rejected]


@pytest.mark.parametrize("name", ["vllm", "fcfs", "fastserve"])
def test_pushing_at_arrival_equals_offline(name):
    w = synthetic(60, 20.0, EmpiricalLengths.default(), np.random.default_rng(3))
    e = LinearEngineModel(name="lin", c0_s=0.01, c_prefill_s=1e-4, c_decode_s=1e-4,
                          c_ctx_s=1e-6, kv_capacity_tokens=8192, kv_block_tokens=16,
                          max_batch_tokens=2048)
    off = simulate(w, e, make(name))
    sim = Simulation(w, e, make(name))
    for rid, t in enumerate(w.arrival_s.tolist()):
        sim.run_until(t)
        sim.push(rid)
    assert sim.num_open > 0 and sim.outstanding_tokens() > 0
    on = sim.finish()
    for a, b in zip(_tables(off), _tables(on)):
        assert np.array_equal(a, b)
    assert sim.num_open == 0 and sim.outstanding_tokens() == 0
    with pytest.raises(RuntimeError, match="finished"):
        sim.push(0)
