"""The checker flags each rule at its smallest violation (one token, one block, 1 ms, 1 ppm).

The broad detections in ``test_checks.py`` break a schedule by a wide margin, where any of
several rules catches it; a checker off by one token, one block or a loose tolerance still
passes them. These cases sit exactly one unit past each limit and name the rule that must
fire (``tests/mutants.py`` injects those off-by-ones).
"""

import dataclasses

import numpy as np

from slo_opt import Request, Workload, make, simulate, violations
from slo_opt.models import SlotEngine
from slo_opt.schedule import AllocTable, StepTable

# one request, 3 prompt tokens, 1 output token, 2-token KV blocks: its prefill step holds
# ceil(3 / 2) = 2 blocks (by hand), so 2 blocks of capacity fit and 1 block overflows by one
W1 = Workload([Request(0, 0.0, 3, 1)])
BIG = SlotEngine(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=16, kv_block_tokens=2)
S1 = simulate(W1, BIG, make("vllm"))


def _engine(**kw):
    base = dict(step_s=1.0, max_batch_tokens=8, kv_capacity_tokens=16, kv_block_tokens=2)
    return SlotEngine(**(base | kw))


def test_case_is_what_the_comments_say():
    assert violations(S1, W1, BIG) == []
    assert S1.allocs.tokens.tolist() == [3] and S1.num_steps == 1
    assert violations(S1, W1, _engine(kv_capacity_tokens=4)) == []  # exactly 2 blocks
    assert violations(S1, W1, _engine(max_batch_tokens=3)) == []  # exactly the budget


def test_kv_overflow_by_one_block_of_a_partial_block():
    # 2 tokens of capacity = 1 block; the 3-token prefill needs 2 (a floor would say 1)
    v = violations(S1, W1, _engine(kv_capacity_tokens=2))
    assert any("KV overflow at step 0: 2 blocks held > capacity 1" in m for m in v), v


def test_token_budget_overflow_by_one_token():
    v = violations(S1, W1, _engine(max_batch_tokens=2))
    assert any("computes 3 tokens > max_batch_tokens 2" in m for m in v), v


def test_one_token_more_than_needed():
    w = Workload([Request(0, 0.0, 2, 1)])  # needs 2 tokens for its only output token
    bad = dataclasses.replace(S1, allocs=AllocTable(np.array([0]), np.array([0]), np.array([3]),
                                                    np.array([1])))
    v = violations(bad, w, BIG, check_step_times=False)
    assert any("3 tokens at step 0 but only 2 needed" in m for m in v), v


def test_step_one_ppm_too_long():
    st = S1.steps
    end = np.array(st.end_s, float) * (1 + 1e-6)
    bad = dataclasses.replace(S1, steps=StepTable(st.start_s, end, st.prefill_tokens,
                                                  st.decode_seqs, st.context_tokens, st.swap_s))
    v = violations(bad, W1, BIG)
    assert any("lasts" in m for m in v), v


def test_computing_one_millisecond_before_arrival():
    w = Workload([Request(0, float(S1.steps.start_s[0]) + 1e-3, 3, 1)])
    v = violations(S1, w, BIG)
    assert any("before its arrival" in m for m in v), v



def test_admission_at_the_capacity_boundary():
    # 4 tokens of capacity in 2-token blocks = 2 blocks. Prompt 4 + 1 output token peaks at
    # 4 computed tokens (2 blocks): served. Prompt 5 peaks at 5 tokens (3 blocks): the
    # simulator must reject it up front, not admit it and overflow or stall
    e = _engine(kv_capacity_tokens=4)
    fits = Workload([Request(0, 0.0, 4, 1)])
    s = simulate(fits, e, make("vllm"))
    assert s.rejected.tolist() == [False] and s.finish_step.tolist() == [0]
    assert violations(s, fits, e) == []
    too_big = Workload([Request(0, 0.0, 5, 1)])
    s = simulate(too_big, e, make("vllm"))
    assert s.rejected.tolist() == [True] and len(s.allocs) == 0
    assert violations(s, too_big, e) == []
