"""Sarathi-Serve: stall-free batching with a small chunk budget (decode-first, hybrid batches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from slo_opt.schedulers.base import register
from slo_opt.schedulers.vllm import VLLM

__all__ = ["Sarathi"]


@register
@dataclass
class Sarathi(VLLM):
    """Sarathi-Serve's scheduler: vLLM v1 semantics with a small token budget.

    Notes
    -----
    Sarathi-Serve's stall-free batching (decodes first, then chunked prefills filling a fixed
    token budget) is exactly the vLLM v1 loop with ``max_num_batched_tokens`` set to the chunk
    size, so this class only changes the defaults (512-token chunks, as in the paper's
    Yi-34B experiments). Dynamic chunk sizing is not modelled.

    References
    ----------
    .. [1] A. Agrawal et al., "Taming Throughput-Latency Tradeoff in LLM Inference with
       Sarathi-Serve", OSDI 2024.
    """

    name: ClassVar[str] = "sarathi"
    max_num_batched_tokens: int = 512
