"""The engine-model protocol: step time of one iteration's batch shape, and KV capacity.

The *same* engine object gives the simulator its step times and the solvers their
coefficients, so the two cannot drift apart (see ``solvers/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["BatchShape", "EngineModel", "decode_step_times_s", "kv_blocks"]


@dataclass(frozen=True, slots=True)
class BatchShape:
    """Shape of one engine iteration.

    Parameters
    ----------
    prefill_tokens : int
        Prompt (or recompute) tokens computed this iteration, summed over all chunks.
    decode_seqs : int
        Sequences computing exactly one token in the decode phase.
    decode_context_tokens : int
        KV tokens attended by the decoding sequences (their context after this step), summed.
    prefill_seqs : int
        Sequences contributing a prefill chunk.
    prefill_context_tokens : int
        KV tokens attended by the prefill chunks (prior context + chunk), summed over chunks.
    """

    prefill_tokens: int = 0
    decode_seqs: int = 0
    decode_context_tokens: int = 0
    prefill_seqs: int = 0
    prefill_context_tokens: int = 0

    @property
    def num_tokens(self) -> int:
        """Tokens computed this iteration (prefill + one per decode)."""
        return self.prefill_tokens + self.decode_seqs

    @property
    def num_seqs(self) -> int:
        """Sequences in the batch."""
        return self.prefill_seqs + self.decode_seqs

    @property
    def context_tokens(self) -> int:
        """All KV tokens read by attention in this iteration."""
        return self.decode_context_tokens + self.prefill_context_tokens


@runtime_checkable
class EngineModel(Protocol):
    """What the simulator and the solvers need from an engine.

    Attributes
    ----------
    name : str
        Human-readable identifier (``"h100/llama-3.1-8b"``).
    kv_capacity_tokens : int
        KV-cache capacity in tokens (a multiple of ``kv_block_tokens``).
    kv_block_tokens : int
        Paged-attention block size in tokens (vLLM: 16).
    max_batch_tokens : int
        Hard engine cap on tokens per iteration (schedulers may use a smaller budget).
    kv_bytes_per_token : int
        KV-cache bytes of one token (swap cost).
    host_bandwidth_bytes_per_s : float
        Host<->device link bandwidth used for KV swap.
    """

    name: str
    kv_capacity_tokens: int
    kv_block_tokens: int
    max_batch_tokens: int
    kv_bytes_per_token: int
    host_bandwidth_bytes_per_s: float

    def step_time_s(self, batch: BatchShape) -> float:
        """Seconds to run one iteration of this shape (> 0 for a non-empty batch)."""
        ...


def kv_blocks(tokens: int | np.ndarray, block_tokens: int) -> int | np.ndarray:
    """Paged-KV blocks needed to hold ``tokens`` tokens (ceil division)."""
    return -(-tokens // block_tokens)


def decode_step_times_s(
    engine: EngineModel, decode_seqs: int, decode_context_tokens: int, num_steps: int
) -> np.ndarray:
    """Step times of ``num_steps`` consecutive pure-decode iterations.

    The batch keeps ``decode_seqs`` sequences and every step adds one context token to each,
    so step ``j`` has ``decode_context_tokens + j * decode_seqs`` context tokens. Engines may
    provide a vectorised ``decode_step_times_s(decode_seqs, decode_context_tokens, num_steps)``
    method; otherwise the step time is evaluated per step.
    """
    fast = getattr(engine, "decode_step_times_s", None)
    if fast is not None:
        return np.asarray(fast(decode_seqs, decode_context_tokens, num_steps), dtype=float)
    return np.array(
        [
            engine.step_time_s(
                BatchShape(decode_seqs=decode_seqs,
                           decode_context_tokens=decode_context_tokens + j * decode_seqs)
            )
            for j in range(num_steps)
        ],
        dtype=float,
    )
