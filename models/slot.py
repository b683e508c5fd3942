"""The slotted reference engine: every iteration takes ``step_s`` (the MILP's exact time model)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slo_opt.engine import BatchShape

__all__ = ["SlotEngine"]


@dataclass(frozen=True, slots=True)
class SlotEngine:
    """Fixed-duration iterations with a token budget and a KV capacity.

    Under this engine the simulator and the time-indexed MILPs in ``slo_opt.solvers`` share
    identical semantics: slot ``t`` covers ``[t*step_s, (t+1)*step_s)`` when the engine is
    never idle, which is what makes the replay / fix-and-solve / bound-chain cross-checks exact.

    Parameters
    ----------
    step_s : float
        Duration of every non-empty iteration.
    max_batch_tokens : int
        Tokens per iteration (Sarathi's budget ``B``).
    kv_capacity_tokens : int
        KV capacity in tokens.
    kv_block_tokens : int
        Block size; 1 gives token-exact KV accounting (the MILP's model).
    """

    step_s: float
    max_batch_tokens: int
    kv_capacity_tokens: int
    kv_block_tokens: int = 1
    kv_bytes_per_token: int = 131072
    host_bandwidth_bytes_per_s: float = 25e9
    name: str = "slot"

    def __post_init__(self) -> None:
        if not (self.step_s > 0 and np.isfinite(self.step_s)):
            raise ValueError(f"SlotEngine.step_s must be finite and > 0, got {self.step_s}")
        if self.max_batch_tokens < 1 or self.kv_capacity_tokens < 1 or self.kv_block_tokens < 1:
            raise ValueError("SlotEngine: max_batch_tokens, kv_capacity_tokens, kv_block_tokens must be >= 1")
        if self.kv_capacity_tokens % self.kv_block_tokens:
            raise ValueError("SlotEngine: kv_capacity_tokens must be a multiple of kv_block_tokens")

    def step_time_s(self, batch: BatchShape) -> float:
        """Always ``step_s``."""
        return self.step_s

    def slot_of(self, t_s: float) -> int:
        """Index of the first slot starting at or after ``t_s`` (1e-9 relative float tolerance)."""
        return max(0, math.ceil(t_s / self.step_s - 1e-9))

    def align_start_s(self, t_s: float) -> float:
        """Start of the first slot at or after ``t_s``: iterations run on the slot grid."""
        return self.slot_of(t_s) * self.step_s

    def decode_step_times_s(self, decode_seqs: int, decode_context_tokens: int, num_steps: int) -> np.ndarray:
        """Vectorised pure-decode step times (all equal to ``step_s``)."""
        return np.full(num_steps, self.step_s)
