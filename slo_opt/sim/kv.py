"""Paged KV memory of one engine: fixed-size blocks, the blocks each request holds, swap cost.

vLLM's block-manager model (PagedAttention, Kwon et al., SOSP 2023, section 4): a request
with ``c`` computed tokens holds ``ceil(c / block_tokens)`` blocks; computing more tokens takes
new blocks from the free pool, finishing or a preemption returns them; a swap moves them to
host memory at ``kv_bytes_per_token / host_bandwidth_bytes_per_s`` seconds per token. The
vectorised queries (:meth:`KVBlockManager.decode_steps_fitting`,
:meth:`KVBlockManager.decode_run_steps_fitting`) tell the fast-forward paths how many decode
steps run before the pool runs short.
"""

from __future__ import annotations

import math

import numpy as np

from slo_opt.sim._ops import nz as _nz
from slo_opt.sim._ops import sum_ as _sum

__all__ = ["KVBlockManager"]


class KVBlockManager:
    """Free and held KV blocks of one engine.

    Parameters
    ----------
    num_requests : int
        Size of the per-request ``held`` array.
    block_tokens : int
        Tokens per block.
    capacity_tokens : int
        KV capacity; ``capacity_tokens // block_tokens`` blocks.
    kv_bytes_per_token : float
        Bytes of one token's KV (swap cost).
    host_bandwidth_bytes_per_s : float
        Device-host bandwidth (swap cost; ``inf``: free swaps).

    Attributes
    ----------
    free_blocks : int
        Blocks in the free pool.
    held : numpy.ndarray
        Per request, resident blocks (0 when waiting, swapped or closed).
    """

    __slots__ = ("block_tokens", "capacity_blocks", "free_blocks", "held",
                 "host_bandwidth_bytes_per_s", "kv_bytes_per_token")

    def __init__(self, num_requests: int, block_tokens: int, capacity_tokens: int,
                 kv_bytes_per_token: float = 0.0,
                 host_bandwidth_bytes_per_s: float = math.inf) -> None:
        self.block_tokens = int(block_tokens)
        self.capacity_blocks = int(capacity_tokens) // self.block_tokens
        self.free_blocks = self.capacity_blocks
        self.held = np.zeros(num_requests, np.int64)
        self.kv_bytes_per_token = float(kv_bytes_per_token)
        self.host_bandwidth_bytes_per_s = float(host_bandwidth_bytes_per_s)

    def blocks(self, tokens: int) -> int:
        """Blocks that hold ``tokens`` tokens."""
        return -(-tokens // self.block_tokens)

    def admissible(self, peak_tokens: int) -> bool:
        """Whether a request whose KV peaks at ``peak_tokens`` fits the whole cache."""
        return self.blocks(peak_tokens) <= self.capacity_blocks

    def transfer_s(self, tokens: int) -> float:
        """Seconds to move ``tokens`` tokens of KV between device and host."""
        return tokens * self.kv_bytes_per_token / self.host_bandwidth_bytes_per_s

    def extra_blocks(self, rids: np.ndarray, new_held: np.ndarray) -> int:
        """Blocks ``rids`` take from the pool when they come to hold ``new_held``."""
        return int(_sum(new_held)) - int(_sum(self.held[rids]))

    def set_held(self, rids: np.ndarray, new_held: np.ndarray, extra: int) -> None:
        """``rids`` now hold ``new_held`` blocks, ``extra`` more than before in total."""
        self.free_blocks -= extra
        self.held[rids] = new_held

    def release(self, rids: np.ndarray) -> None:
        """Return every block of ``rids`` to the pool (finished requests)."""
        self.free_blocks += int(_sum(self.held[rids]))
        self.held[rids] = 0

    def release_one(self, rid: int) -> None:
        """Return ``rid``'s blocks to the pool (a preemption or a swap-out)."""
        self.free_blocks += int(self.held[rid])
        self.held[rid] = 0

    def decode_steps_fitting(self, comp: np.ndarray, k: int) -> int:
        """Decode steps (``<= k``) of a constant batch before the pool runs short.

        Every request of the batch (``comp``: its computed tokens) computes one token per
        step and none finishes within ``k`` steps; step ``s`` (1-based) of request ``i`` takes a
        new block iff ``comp_i + s - 1`` is a multiple of the block size. The batch stops
        before the acquisition that would exceed the free pool.
        """
        b = self.block_tokens
        first_acq = (-(-comp // b)) * b - comp + 1  # step at which a new block is first needed
        counts = (k - first_acq) // b + 1
        np.maximum(counts, 0, out=counts)
        tot = int(_sum(counts))
        if tot > self.free_blocks:
            offs = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            acq = np.repeat(first_acq, counts) + b * offs
            f = self.free_blocks
            k = min(k, int(np.partition(acq, f)[f]) - 1)
        return k

    def decode_run_steps_fitting(self, comp: np.ndarray, rem: np.ndarray, K: int) -> int:
        """Decode steps (``<= K``) of a shrinking batch before the pool runs short.

        Request ``i`` (``comp_i`` computed tokens) decodes ``rem_i`` more tokens, one per step,
        and returns its ``ceil((comp_i + rem_i) / b)`` blocks after its last step; it needs a
        new block at 0-based step ``s < rem_i`` with ``(comp_i + s) % b == 0``. Returns the
        index of the first step whose acquisitions exceed the pool (``K`` if none).
        """
        b = self.block_tokens
        m = int(comp.size)
        if self.free_blocks >= m * ((K - 1) // b + 1):  # cannot run short in K steps
            return K
        first0 = (-comp) % b
        last = np.minimum(rem, K) - 1
        counts = (last - first0) // b + 1
        np.maximum(counts, 0, out=counts)
        tot = int(_sum(counts))
        if tot > self.free_blocks:
            offs = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            acq = np.bincount(np.repeat(first0, counts) + b * offs, minlength=K)[:K]
            fin = rem <= K
            rel = np.bincount(rem[fin] - 1, weights=-(-(comp[fin] + rem[fin]) // b),
                              minlength=K)[:K].astype(np.int64)
            used = np.cumsum(acq - rel)
            short = acq > self.free_blocks - (used - acq + rel)
            if _nz(short):
                K = int(np.argmax(short))
        return K
