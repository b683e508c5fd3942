"""StepRecorder: online run-length merging gives exactly compress_allocs' rows."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.schedule import compress_allocs
from slo_opt.sim.records import Columns, StepRecorder

N = 6


@st.composite
def _steps(draw):
    """A sequence of recorded calls: plan steps (tokens, mergeable flags) and decode runs."""
    out = []
    for _ in range(draw(st.integers(1, 25))):
        rids = draw(st.lists(st.integers(0, N - 1), min_size=1, max_size=N, unique=True))
        if draw(st.booleans()):  # a decode run: every row one token, k steps (or per-request k)
            if draw(st.booleans()):
                k = draw(st.integers(1, 4))
            else:
                k = np.array([draw(st.integers(1, 4)) for _ in rids], np.int64)
            out.append(("run", rids, k, None))
        else:
            toks = [draw(st.integers(1, 3)) for _ in rids]
            merge = [t == 1 and draw(st.booleans()) for t in toks]
            out.append(("plan", rids, toks, merge))
    return out


@given(_steps())
def test_online_merging_equals_compress_allocs(calls):
    rec = StepRecorder(N)
    req, step, tok, mg = [], [], [], []
    s = 0
    for kind, rids, a, merge in calls:
        r = np.array(rids, np.int64)
        if kind == "run":
            rec.record_allocs(r, None, s, a)
            ks = np.broadcast_to(a, r.shape)
            for rid, k in zip(rids, ks.tolist()):
                for j in range(k):
                    req.append(rid), step.append(s + j), tok.append(1), mg.append(True)
            s += int(np.max(ks))
        else:
            t = np.array(a, np.int64)
            rec.record_allocs(r, t, s, 1, np.array(merge, bool))
            for rid, tk, m in zip(rids, a, merge):
                req.append(rid), step.append(s), tok.append(tk), mg.append(m)
            s += 1
    _, got, _ = rec.tables()
    req_a, step_a = np.array(req, np.int64), np.array(step, np.int64)
    want = compress_allocs(req_a, step_a, np.ones(len(req), np.int64), np.array(tok, np.int64),
                           np.array(mg, bool))
    for col in ("request", "step", "tokens", "num_steps"):
        assert getattr(got, col).tolist() == getattr(want, col).tolist(), col
    assert int((got.tokens * got.num_steps).sum()) == sum(tok)


def test_step_rows_and_events():
    rec = StepRecorder(2)
    rec.add_step(0.0, 0.5, 10, 0, 10, 0.0)
    rec.add_step(0.5, 0.7, 0, 1, 11, 0.25)
    rec.events.append((1, 0, 2, 11))
    steps, allocs, events = rec.tables()
    assert steps.start_s.tolist() == [0.0, 0.5] and steps.end_s.tolist() == [0.5, 0.7]
    assert steps.prefill_tokens.tolist() == [10, 0] and steps.decode_seqs.tolist() == [0, 1]
    assert steps.swap_s.tolist() == [0.0, 0.25] and len(allocs) == 0
    assert events.step.tolist() == [1] and events.tokens.tolist() == [11]


def test_columns_grow_and_keep_rows():
    c = Columns((np.int64, float), cap=1)
    for i in range(10):
        j = c.reserve(1)
        c.cols[0][j] = i
        c.cols[1][j] = i / 2
    j = c.reserve(3)
    c.cols[0][j:j + 3] = 7
    c.cols[1][j:j + 3] = 0.0
    a, b = c.columns()
    assert a.tolist() == [*range(10), 7, 7, 7] and b[:10].tolist() == [i / 2 for i in range(10)]
