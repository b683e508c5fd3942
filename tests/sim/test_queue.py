"""WaitingQueue against a sorted list, and its views never change after later updates."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from slo_opt.sim.queue import EMPTY_IDS, WaitingQueue, ids_array

_OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 300)),
    st.tuples(st.just("pop_prefix"), st.integers(0, 5)),
    st.tuples(st.just("remove_some"),
              st.lists(st.booleans(), min_size=16, max_size=16).map(
                  lambda bits: sum(1 << i for i, b in enumerate(bits) if b))),
    st.tuples(st.just("clear"), st.just(0)),
), max_size=120)


@given(_OPS)
@example([("add", 1), ("add", 2), ("add", 3), ("remove_some", 0b101), ("add", 0)])
def test_waiting_queue_is_a_sorted_set(ops):
    q = WaitingQueue(cap=2)
    model: list[int] = []
    views: list[tuple[np.ndarray, list[int]]] = []
    for op, x in ops:
        if op == "add":
            if x in model:
                continue
            q.add(x)
            model = sorted([*model, x])
        elif op == "pop_prefix":
            ids = np.array(model[:x], np.int64)
            q.remove(ids)
            model = model[x:]
        elif op == "remove_some":
            pick = [r for i, r in enumerate(model) if (x >> (i % 16)) & 1]
            q.remove(np.array(pick, np.int64))
            model = [r for r in model if r not in pick]
        else:
            q.clear()
            model = []
        a = q.array()
        assert a.tolist() == model and len(q) == len(model)
        assert not a.flags.writeable
        views.append((a, list(model)))
    for a, m in views:  # an earlier view still shows the queue of its time
        assert a.tolist() == m


def test_ids_array():
    assert ids_array([]) is EMPTY_IDS and not EMPTY_IDS.flags.writeable
    a = ids_array([3, 1])
    assert a.dtype == np.int64 and a.tolist() == [3, 1] and not a.flags.writeable
