"""The scheduler's read-only view of the engine state, built once per scheduler call."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo_opt.schedulers.base import CachePlan, EngineView
from slo_opt.sim.kv import PrefixCache
from slo_opt.sim.queue import ids_array
from slo_opt.sim.state import EngineState

__all__ = ["SimView", "build_view"]


@dataclass(frozen=True, eq=False)
class SimView(EngineView):
    """The simulator's :class:`~slo_opt.schedulers.base.EngineView`: same data, cheaper
    per-request queries.

    ``next_tokens`` reads an array the simulator keeps equal to
    ``prompt_tokens + num_generated - num_computed``; the block size is a plain int.
    """

    nt_: np.ndarray | None = None
    b_: int = 1
    cache_: PrefixCache | None = None

    @property
    def prefix_caching(self) -> bool:
        """Whether the engine keeps freed KV blocks as a prefix cache."""
        return self.cache_ is not None

    def cache_plan(self) -> CachePlan:
        """A scratch plan of the engine's prefix cache (:class:`~.kv.SimCachePlan`)."""
        return self.cache_.plan() if self.cache_ is not None else CachePlan()

    @property
    def kv_block_tokens(self) -> int:
        """Block size of the paged KV cache."""
        return self.b_

    def next_tokens(self, rid: int) -> int:
        """Tokens ``rid`` must compute to emit its next output token."""
        return int(self.nt_[rid])  # type: ignore[index]

    def next_tokens_of(self, ids: np.ndarray) -> np.ndarray:
        """:meth:`next_tokens` of every id in ``ids``, vectorised."""
        return self.nt_[ids]  # type: ignore[index]

    def blocks_for(self, rid: int, tokens: int) -> int:
        """Extra KV blocks ``rid`` needs to compute ``tokens`` more tokens."""
        b = self.b_
        c = int(self.num_computed[rid])
        return -(-(c + tokens) // b) - (-(-c // b))

    def blocks_held(self, rid: int) -> int:
        """KV blocks ``rid`` holds (or would bring back on swap-in)."""
        return -(-int(self.num_computed[rid]) // self.b_)


def build_view(st: EngineState) -> EngineView:
    """The view of ``st`` now (queue id arrays cached in ``st.views`` until they change)."""
    v = st.views
    if v[0] is None:
        v[0] = st.waiting.array()
    if v[1] is None:
        st.running_ids()
    if v[2] is None:
        v[2] = ids_array(st.swapped)
    # same fields as SimView(...), without the frozen dataclass's per-field __setattr__
    view = SimView.__new__(SimView)
    view.__dict__.update(
        now_s=st.now,
        step=st.step,
        engine=st.e,
        workload=st.w,
        waiting=v[0],
        running=v[1],
        swapped=v[2],
        num_computed=st.computed,
        num_generated=st.generated,
        kv_free_blocks=st.kv.free_blocks,
        first_scheduled_s=st.first_scheduled_s,
        next_arrival_s=st.next_arrival_s(),
        nt_=st.nt,
        b_=st.kv.block_tokens,
        cache_=st.kv.cache,
    )
    return view
