"""Automatic prefix caching (sim/kv.py PrefixCache): vLLM v1's block pool, hits, exact
fast-forward, the checker's CACHE_HIT rules and the summary counters."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.checks import violations
from slo_opt.metrics import summary
from slo_opt.models import LinearEngineModel, SlotEngine
from slo_opt.request import PrefixIds, Workload
from slo_opt.schedule import EventKind, EventTable, Schedule
from slo_opt.schedulers import make
from slo_opt.sim.kv import PrefixCache
from slo_opt.sim.simulator import simulate
from slo_opt.testing import linear_engines, slot_engines, workloads


def _w(P, O, arr=None):
    n = len(P)
    return Workload.from_arrays(arrival_s=np.zeros(n) if arr is None else np.asarray(arr, float),
                                prompt_tokens=np.asarray(P), output_tokens=np.asarray(O))


def _cache(w, b, blocks):
    comp = np.zeros(len(w), np.int64)
    gen = np.zeros(len(w), np.int64)
    return PrefixCache(w, b, blocks, comp, gen), comp, gen


def test_pool_lru_reverse_free_and_hit_cap():
    # b = 4; request 0 computes 12 tokens (3 full blocks), is freed, then looked up again
    w = _w([13, 13, 17], [2, 2, 2])
    c, _comp, _gen = _cache(w, 4, 6)
    assert c.admit(0, 12) == 0 and c.table[0] == [0, 1, 2] and len(c.free_q) == 3
    c.free(0)
    # freed last block first: the queue is [3, 4, 5, 2, 1, 0]: block 2 (its tail) goes first
    assert list(c.free_q) == [3, 4, 5, 2, 1, 0]
    assert len(c.lookup(0)) == 3  # 13 prompt tokens: at most (13 - 1) // 4 = 3 blocks
    # request 2 takes 4 blocks: 3, 4, 5 (blank) and 2 (evicts request 0's third block)
    assert c.admit(2, 8) == 0  # its own private blocks: no hit
    c.grow(2, 16)
    assert c.table[2] == [3, 4, 5, 2]
    assert len(c.lookup(0)) == 2  # only its first two blocks are still cached
    c.free(2)
    assert list(c.free_q) == [1, 0, 2, 5, 4, 3]
    # re-admission: the hit blocks come out of the free queue, new blocks from its head
    assert c.admit(0, 5) == 8 and c.table[0] == [0, 1, 2, 5] and list(c.free_q) == [4, 3]
    assert c.stats()["hit_tokens"] == 8 and c.stats()["queries"] == 3


def test_hit_leaves_the_last_token():
    w = _w([8], [3])
    c, _comp, gen = _cache(w, 4, 4)
    c.admit(0, 8)
    c.free(0)
    assert len(c.lookup(0)) == 1  # 8 tokens = 2 full blocks, but the 8th must be computed
    gen[0] = 1
    assert len(c.lookup(0)) == 2  # 9 tokens: both blocks


def test_shared_prefix_names_and_same_step_hits():
    # prefix ids of 8 tokens (2 KV blocks each): requests 0 and 1 share id 7, request 2 not
    pid = PrefixIds.from_lists([[7, 1], [7, 2], [9]], 8, [16, 16, 8])
    w = _w([20, 20, 20], [2, 2, 2]).with_prefix_ids(pid)
    c, _comp, _gen = _cache(w, 4, 20)
    assert c.names(0)[:2] == c.names(1)[:2] and c.names(0)[2] != c.names(1)[2]
    assert c.names(2)[0] != c.names(0)[0]
    # a scratch plan sees blocks named earlier in the same step (vLLM caches at scheduling)
    p = c.plan()
    assert p.lookup(0) == (0, 0)
    p.admit(0, 0, 12)
    assert p.lookup(1) == (8, 0)  # two shared blocks, held by request 0: not charged
    p.admit(1, 8, 4)
    assert p.used == 3 + 1
    # the real pool agrees
    assert c.admit(0, 12) == 0 and c.admit(1, 4) == 8
    assert c.ref[c.table[0][0]] == 2 and len(c.free_q) == 20 - 4
    c.free(0)
    c.free(1)
    q = c.plan()
    assert q.lookup(1) == (12, 3)  # its own third block too; all in the free queue: charged


@st.composite
def _cached_workloads(draw, **kw):
    w = draw(workloads(**kw))
    g = draw(st.sampled_from([4, 8, 16]))
    rows, toks = [], []
    for i in range(len(w)):
        top = int(w.prompt_tokens[i] + w.output_tokens[i] - 1)
        t = draw(st.integers(0, min(top, 3 * g)))
        k = -(-t // g)
        rows.append(draw(st.lists(st.integers(0, 2), min_size=k, max_size=k)))
        toks.append(t)
    return w.with_prefix_ids(PrefixIds.from_lists(rows, g, toks))


_PARAMS = [("vllm", {}), ("vllm", {"scheduler_reserve_full_isl": True}),
           ("vllm", {"chunked_prefill": False}), ("vllm", {"long_prefill_token_threshold": 8}),
           ("vllm_v0", {})]


def _same(name, params, w, e):
    a = simulate(w, e, make(name, enable_prefix_caching=True, **params), fast_forward=True,
                 max_steps=100_000)
    b = simulate(w, e, make(name, enable_prefix_caching=True, **params), fast_forward=False,
                 max_steps=100_000)
    assert a == b
    assert a.steps.start_s.tobytes() == b.steps.start_s.tobytes()
    assert a.steps.end_s.tobytes() == b.steps.end_s.tobytes()
    assert a.meta["prefix_cache"] == b.meta["prefix_cache"]
    return a


@given(w=_cached_workloads(max_requests=7, max_prompt=48, max_output=40, max_gap_s=0.2),
       e=linear_engines(kv_tokens=(32, 400)), k=st.integers(0, len(_PARAMS) - 1))
def test_fast_forward_equals_stepping_with_caching_linear(w, e, k):
    name, params = _PARAMS[k]
    if w.prefix_ids.block_tokens % e.kv_block_tokens:
        return
    a = _same(name, params, w, e)
    v = violations(a, w, e)
    assert not v or "cannot verify" in v[0], v


@given(w=_cached_workloads(max_requests=6, max_prompt=40, max_output=30, max_gap_s=0.2),
       e=slot_engines(min_batch_tokens=16, max_batch_tokens=96, block_tokens=(1, 4)),
       k=st.integers(0, len(_PARAMS) - 1))
def test_fast_forward_equals_stepping_with_caching_slot(w, e, k):
    name, params = _PARAMS[k]
    _same(name, params, w, e)


def _preempting():
    rng = np.random.default_rng(3)
    n = 40
    w = _w(rng.integers(20, 200, n), rng.integers(20, 200, n), np.sort(rng.uniform(0, 2, n)))
    e = LinearEngineModel(name="lin", c0_s=0.01, c_prefill_s=1e-4, c_ctx_s=1e-6,
                          kv_capacity_tokens=1600, kv_block_tokens=16,
                          max_batch_tokens=512)
    return w, e


def test_resumed_requests_hit_their_own_blocks():
    w, e = _preempting()
    off = simulate(w, e, make("vllm"))
    on = simulate(w, e, make("vllm", enable_prefix_caching=True))
    assert violations(on, w, e) == [] and violations(off, w, e) == []
    ev = on.events
    hit = ev.kind == int(EventKind.CACHE_HIT)
    pre = ev.kind == int(EventKind.PREEMPT_RECOMPUTE)
    assert hit.any() and pre.any()
    # no prefix ids: only a request preempted before can hit (its own blocks)
    first_pre = {int(r): int(s) for s, r in zip(ev.step[pre][::-1], ev.request[pre][::-1])}
    for s, r in zip(ev.step[hit], ev.request[hit]):
        assert int(r) in first_pre and first_pre[int(r)] < int(s)
    # the hits are prompt tokens not computed again
    assert on.steps.prefill_tokens.sum() < off.steps.prefill_tokens.sum()
    sm = summary(on, w)
    assert sm["num_cache_hits"] == int(hit.sum())
    assert sm["cache_hit_tokens"] == int(ev.tokens[hit].sum()) == on.meta["prefix_cache"]["hit_tokens"]
    assert sm["num_preemptions"] == len(ev) - int(hit.sum())
    assert summary(off, w)["num_cache_hits"] == 0


def _with_events(s, events):
    ev = np.array(events, np.int64).reshape(-1, 4)
    return Schedule(num_requests=s.num_requests, steps=s.steps, allocs=s.allocs,
                    events=EventTable(step=ev[:, 0], request=ev[:, 1], kind=ev[:, 2],
                                      tokens=ev[:, 3]),
                    first_token_step=s.first_token_step, finish_step=s.finish_step,
                    rejected=s.rejected, meta=s.meta)


def test_checker_cache_hit_rules():
    w, e = _preempting()
    s = simulate(w, e, make("vllm", enable_prefix_caching=True))
    rows = list(zip(s.events.step.tolist(), s.events.request.tolist(),
                    s.events.kind.tolist(), s.events.tokens.tolist()))
    i = next(j for j, r in enumerate(rows) if r[2] == int(EventKind.CACHE_HIT))
    st_, r, k, y = rows[i]
    for bad_y, msg in ((y + 1, "multiple of the block size"), (y + 16 * 1000, "nothing to compute")):
        mut = rows.copy()
        mut[i] = (st_, r, k, bad_y)
        assert any(msg in v for v in violations(_with_events(s, mut), w, e))
    # a hit on a fresh request without shared prefix ids: nothing of it can be cached
    fresh = next(q for q in range(len(w)) if q not in set(s.events.request.tolist()))
    first = int(s.allocs.step[s.allocs.request == fresh].min())
    mut = [*rows, (first, fresh, int(EventKind.CACHE_HIT), 16)]
    assert any("exceeds what the cache can hold" in v for v in violations(_with_events(s, mut), w, e))


def test_prefix_ids_block_size_must_divide():
    pid = PrefixIds.from_lists([[1]], 6, [6])
    w = _w([10], [2]).with_prefix_ids(pid)
    e = SlotEngine(step_s=0.1, max_batch_tokens=64, kv_capacity_tokens=64, kv_block_tokens=4)
    try:
        simulate(w, e, make("vllm", enable_prefix_caching=True))
    except ValueError as err:
        assert "multiple of the KV block size" in str(err)
    else:
        raise AssertionError("expected a ValueError")


def test_milps_reject_cache_hits_explicitly():
    from slo_opt.solvers import GoodputMILP, Instance, NotRepresentable, solve

    w = _w([9, 9], [6, 6], [0.0, 0.0])
    e = SlotEngine(step_s=0.1, max_batch_tokens=16, kv_capacity_tokens=20, kv_block_tokens=1)
    s = simulate(w, e, make("vllm", enable_prefix_caching=True, max_num_batched_tokens=16))
    assert (s.events.kind == int(EventKind.CACHE_HIT)).any()
    assert violations(s, w, e) == []
    try:
        solve(GoodputMILP(), Instance(w, e), fix=s)
    except NotRepresentable as err:
        assert "prefix-cache hits" in str(err)
    else:
        raise AssertionError("expected NotRepresentable")
