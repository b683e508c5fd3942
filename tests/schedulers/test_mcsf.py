"""MC-SF: the projected-peak check against a step-by-step count, a hand-solved schedule,
no preemption ever, rejections, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.checks import violations
from slo_opt.models.slot import SlotEngine
from slo_opt.request import Workload
from slo_opt.schedulers import make
from slo_opt.schedulers.mcsf import MCSF, peak_fits
from slo_opt.sim.simulator import simulate
from slo_opt.testing import slot_engines, workloads


@given(rows=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12)), max_size=6),
       cap=st.integers(0, 80), b=st.sampled_from([1, 4, 16]))
def test_peak_check_equals_counting_every_step(rows, cap, b):
    c = np.array([x for x, _ in rows], np.int64)
    r = np.array([y for _, y in rows], np.int64)
    horizon = int(r.max()) if r.size else 0
    want = all(
        sum(-(-(int(c[j]) + k + 1) // b) for j in range(c.size) if k <= r[j] - 1) <= cap
        for k in range(horizon))
    assert peak_fits(c, r, cap, b) == want


def test_hand_solved_schedule():
    """KV 8 tokens, B 16, all at 0: A (P2, O5), Bq (P2, O2), C (P2, O3). Shortest output first:
    Bq, C fit at step 0; adding A would need 3 + 3 + 3 = 9 > 8 tokens at step 1, so A waits;
    at step 1 (Bq finishing: 3, C: 3, A's prompt: 2 -> 8; then C 4 + A 3; A's peak 6) A is
    admitted. Finishing steps: Bq 1, C 2, A 5. FCFS instead starts all three at once."""
    w = Workload.from_arrays([0.0] * 3, [2, 2, 2], [5, 2, 3])
    e = SlotEngine(step_s=1.0, max_batch_tokens=16, kv_capacity_tokens=8)
    s = simulate(w, e, make("mcsf"))
    assert violations(s, w, e) == []
    assert s.first_token_step.tolist() == [1, 0, 0]
    assert s.finish_step.tolist() == [5, 1, 2]
    assert len(s.events) == 0
    e10 = SlotEngine(step_s=1.0, max_batch_tokens=16, kv_capacity_tokens=10)
    s10 = simulate(w, e10, make("mcsf"))
    assert s10.first_token_step.tolist() == [0, 0, 0]  # 9 <= 10: all start together


def test_token_budget_and_stop_at_first_misfit():
    """B = 4: running decodes take budget first; a prompt that does not fit what is left
    stops admission (backfill=False) or is skipped (backfill=True)."""
    w = Workload.from_arrays([0.0, 0.0, 0.0], [3, 3, 1], [2, 3, 4])
    e = SlotEngine(step_s=1.0, max_batch_tokens=4, kv_capacity_tokens=64)
    strict = simulate(w, e, MCSF())
    # step 0: r0 (3 tokens); r1 (3) does not fit the 1 left -> stop; r2 waits too
    assert strict.allocs.expand()[1][strict.allocs.expand()[0] == 0].tolist() == [0]
    back = simulate(w, e, MCSF(backfill=True))
    assert back.allocs.expand()[1][back.allocs.expand()[0] == 0].tolist() == [0, 2]
    for s in (strict, back):
        assert violations(s, w, e) == []


@given(w=workloads(max_requests=8, max_prompt=64, max_output=16, max_gap_s=0.1),
       e=slot_engines(min_batch_tokens=16, max_batch_tokens=128),
       over=st.sampled_from([1.0, 1.5, 3.0]))
def test_never_preempts_and_only_rejects_what_can_never_fit(w, e, over):
    s = simulate(w, e, MCSF(overestimate=over), max_steps=100_000)
    assert violations(s, w, e) == []
    assert len(s.events) == 0
    b = e.kv_block_tokens
    pred = np.ceil(w.output_tokens * over - 1e-9).astype(int)
    never = (w.prompt_tokens > e.max_batch_tokens) | (
        -(-(w.prompt_tokens + pred - 1) // b) > e.kv_capacity_tokens // b)
    assert s.rejected.tolist() == never.tolist()
    assert np.all((s.finish_step >= 0) | s.rejected)


@pytest.mark.parametrize("kw", [{"overestimate": 0.5}, {"overestimate": "2"},
                                {"overestimate": True}, {"overestimate": float("inf")},
                                {"max_batch_seqs": 0}, {"backfill": "false"}])
def test_bad_parameters(kw):
    with pytest.raises(ValueError):
        MCSF(**kw)
