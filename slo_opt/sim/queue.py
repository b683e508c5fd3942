"""The waiting queue: ascending request ids in a numpy buffer.

FCFS queues change at both ends: arrivals append larger ids, admissions pop a prefix; both are
O(1) here (a Python list or a rebuilt array costs O(queue) per step, which dominates
simulations of overloaded, long-queue traces).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EMPTY_IDS", "WaitingQueue", "ids_array"]

#: A read-only empty id array (shared).
EMPTY_IDS = np.zeros(0, np.int64)
EMPTY_IDS.setflags(write=False)


def ids_array(xs: list[int]) -> np.ndarray:
    """``xs`` as a read-only int64 array (:data:`EMPTY_IDS` when empty)."""
    if not xs:
        return EMPTY_IDS
    a = np.array(xs, dtype=np.int64)
    a.setflags(write=False)
    return a


class WaitingQueue:
    """Ascending request ids: the arrived requests without resident KV.

    ``array()`` is a read-only view that later updates never modify: appends write past every
    earlier view and a prefix pop writes nothing, while inserts, removals elsewhere and growth
    build a new buffer.
    """

    __slots__ = ("buf", "hi", "lo")

    def __init__(self, cap: int = 64) -> None:
        self.buf = np.empty(cap, np.int64)
        self.lo = 0
        self.hi = 0

    def __len__(self) -> int:
        return self.hi - self.lo

    def array(self) -> np.ndarray:
        """The ids, ascending (read-only view)."""
        a = self.buf[self.lo:self.hi]
        a.flags.writeable = False
        return a

    def _rebuild(self, ids: np.ndarray) -> None:
        buf = np.empty(max(64, 2 * ids.size), np.int64)
        buf[:ids.size] = ids
        self.buf, self.lo, self.hi = buf, 0, int(ids.size)

    def add(self, rid: int) -> None:
        """Insert ``rid`` (not present) in order."""
        lo, hi = self.lo, self.hi
        if hi > lo and rid < self.buf[hi - 1]:
            a = self.buf[lo:hi]
            self._rebuild(np.insert(a, int(a.searchsorted(rid)), rid))
            return
        if hi == self.buf.size:
            self._rebuild(self.buf[lo:hi])
            hi = self.hi
        self.buf[hi] = rid
        self.hi = hi + 1

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids`` (ascending, all present)."""
        k = int(ids.size)
        if not k:
            return
        lo = self.lo
        if np.array_equal(self.buf[lo:lo + k], ids):  # FCFS: a prefix
            self.lo = lo + k
            return
        a = self.buf[lo:self.hi]
        self._rebuild(a[~np.isin(a, ids)])

    def clear(self) -> None:
        """Remove everything."""
        self.lo = self.hi
