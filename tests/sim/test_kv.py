"""KVBlockManager: block arithmetic and the vectorised shortage queries against step-by-step
counting."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from slo_opt.sim.kv import KVBlockManager


def _kv(free: int, b: int, n: int = 8) -> KVBlockManager:
    kv = KVBlockManager(n, b, 10_000 * b)
    kv.free_blocks = free
    return kv


def test_blocks_admissible_and_transfer():
    kv = KVBlockManager(3, 16, 100, kv_bytes_per_token=2.0, host_bandwidth_bytes_per_s=4.0)
    assert kv.capacity_blocks == 6 and kv.free_blocks == 6  # 100 // 16
    assert [kv.blocks(t) for t in (0, 1, 16, 17, 96)] == [0, 1, 1, 2, 6]
    assert kv.admissible(96) and not kv.admissible(97)
    assert kv.transfer_s(10) == 5.0
    assert KVBlockManager(1, 16, 64).transfer_s(10) == 0.0  # free swaps by default


def test_hold_and_release_conserve_blocks():
    kv = KVBlockManager(4, 4, 64)
    rids = np.array([0, 2])
    new = np.array([3, 2])
    extra = kv.extra_blocks(rids, new)
    assert extra == 5
    kv.set_held(rids, new, extra)
    assert kv.free_blocks == 11 and kv.held.tolist() == [3, 0, 2, 0]
    assert kv.extra_blocks(rids, np.array([4, 2])) == 1
    kv.release_one(0)
    assert kv.free_blocks == 14 and kv.held.tolist() == [0, 0, 2, 0]
    kv.release(np.array([2, 3]))
    assert kv.free_blocks == kv.capacity_blocks == 16 and not kv.held.any()


def _steps_constant_batch(comp: list[int], k: int, free: int, b: int) -> int:
    """Step by step: step s (1-based) takes a block for each request with (c+s-1) % b == 0."""
    for s in range(1, k + 1):
        need = sum((c + s - 1) % b == 0 for c in comp)
        if need > free:
            return s - 1
        free -= need
    return k


@given(st.lists(st.integers(0, 70), min_size=1, max_size=8), st.integers(1, 60),
       st.integers(0, 30), st.sampled_from([1, 2, 4, 16]))
def test_decode_steps_fitting_equals_stepping(comp, k, free, b):
    got = _kv(free, b).decode_steps_fitting(np.array(comp, np.int64), k)
    assert got == _steps_constant_batch(comp, k, free, b)


def _steps_shrinking_batch(comp: list[int], rem: list[int], K: int, free: int, b: int) -> int:
    """Step by step with completions: request i decodes at steps 0 .. rem_i - 1 and then
    returns its blocks."""
    for s in range(K):
        need = sum((c + s) % b == 0 for c, r in zip(comp, rem) if s < r)
        if need > free:
            return s
        free -= need
        free += sum(math.ceil((c + r) / b) for c, r in zip(comp, rem) if r - 1 == s)
    return K


@given(st.lists(st.tuples(st.integers(0, 70), st.integers(1, 40)), min_size=1, max_size=8),
       st.integers(0, 50), st.integers(0, 30), st.sampled_from([1, 2, 4, 16]))
def test_decode_run_steps_fitting_equals_stepping(reqs, K, free, b):
    comp = np.array([c for c, _ in reqs], np.int64)
    rem = np.array([r for _, r in reqs], np.int64)
    kv = _kv(free, b)
    kv.held[: comp.size] = -(-comp // b)
    got = kv.decode_run_steps_fitting(comp, rem, K)
    assert got == _steps_shrinking_batch(comp.tolist(), rem.tolist(), K, free, b)
