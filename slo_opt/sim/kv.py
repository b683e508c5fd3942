"""Paged KV memory of one engine: fixed-size blocks, the blocks each request holds, swap cost.

vLLM's block-manager model (PagedAttention, Kwon et al., SOSP 2023, section 4): a request
with ``c`` computed tokens holds ``ceil(c / block_tokens)`` blocks; computing more tokens takes
new blocks from the free pool, finishing or a preemption returns them; a swap moves them to
host memory at ``kv_bytes_per_token / host_bandwidth_bytes_per_s`` seconds per token. The
vectorised queries (:meth:`KVBlockManager.decode_steps_fitting`,
:meth:`KVBlockManager.decode_run_steps_fitting`) tell the fast-forward paths how many decode
steps run before the pool runs short.

:class:`PrefixCache` adds vLLM v1's automatic prefix caching on top (see its Notes).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from slo_opt.request import Workload
from slo_opt.schedulers.base import CachePlan
from slo_opt.sim._ops import nz as _nz
from slo_opt.sim._ops import sum_ as _sum

__all__ = ["KVBlockManager", "PrefixCache", "SimCachePlan"]


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

    __slots__ = ("block_tokens", "cache", "capacity_blocks", "free_blocks", "held",
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
        #: the prefix cache (:class:`PrefixCache`), or ``None`` without prefix caching
        self.cache: PrefixCache | None = None

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

    def sync_cache(self, rids: np.ndarray, new_held: np.ndarray, extra: int) -> None:
        """With a prefix cache: ``rids`` now hold ``new_held`` blocks after the cache took
        ``extra`` blocks from its free queue (checked against the queue: two counts)."""
        c = self.cache
        assert c is not None
        self.held[rids] = new_held
        f = len(c.free_q)
        if f != self.free_blocks - extra:
            raise RuntimeError(f"prefix cache: {f} free blocks in the queue, the step's "
                               f"accounting gives {self.free_blocks - extra}")
        self.free_blocks = f

    def release(self, rids: np.ndarray) -> None:
        """Return every block of ``rids`` to the pool (finished requests, in that order)."""
        c = self.cache
        if c is not None:
            for r in rids.tolist():
                c.free(r)
            self.free_blocks = len(c.free_q)
        else:
            self.free_blocks += int(_sum(self.held[rids]))
        self.held[rids] = 0

    def release_one(self, rid: int) -> None:
        """Return ``rid``'s blocks to the pool (a preemption or a swap-out)."""
        c = self.cache
        if c is not None:
            c.free(rid)
            self.free_blocks = len(c.free_q)
        else:
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


class PrefixCache:
    """vLLM v1's automatic prefix caching over the blocks of one engine.

    Parameters
    ----------
    workload : Workload
        The requests; ``workload.prefix_ids`` (optional) names shared leading blocks.
    block_tokens : int
        KV block size ``b``; ``prefix_ids.block_tokens`` must be a multiple of it.
    capacity_blocks : int
        Blocks of the pool (all free at the start).
    computed, generated : numpy.ndarray
        The simulator's per-request computed and generated token counts (read, not written).

    Notes
    -----
    The behaviour of ``vllm/v1/core/block_pool.py``, ``kv_cache_manager.py`` and
    ``single_type_kv_cache_manager.py`` (vLLM 0.19), restated in our words:

    * *Identity.* Block ``j`` of a request holds its tokens ``[j b, (j + 1) b)`` (prompt, then
      output). vLLM names a full block by a hash of (its parent block's hash, its tokens); here
      a full block inside the part that ``prefix_ids`` describes is named by the chain of ids up
      to it (a trie node: two requests share it iff their id chains agree, the same identity
      without hash collisions) and its offset inside the id's span; any other block is private
      to its request (only the request itself, resumed after a preemption, can hit it).
    * *Pool.* Every block is in the free queue or held (reference count > 0). The free queue
      starts with all blocks; an allocation takes blocks from its head and, if such a block
      still carries a name, evicts it from the cache; a freed block (reference count back to
      0) is appended to the tail but keeps its name, so it can still be hit until it reaches
      the head (least recently freed first). A request's blocks are freed last block first,
      so its tail is evicted before its head.
    * *Naming.* When a step is planned, a request's blocks that its computed tokens after the
      step fill completely are named right away (``cache_blocks`` at ``allocate_slots``), so
      a request admitted later in the same step can already hit them. Two blocks may carry
      the same name (two requests computed the same block); a lookup takes the oldest named
      copy.
    * *Hits.* Only a request without resident KV (fresh, or preempted by recompute) looks up
      the cache, at admission: the longest run of named blocks from its first block, at most
      ``floor((num_tokens - 1) / b)`` blocks (the last token is always computed). Its hit
      blocks are touched (reference count + 1, out of the free queue if they were in it), and
      the hit blocks that were in the free queue count against the free blocks of the
      admission check.
    * *Counters.* ``queries`` (admissions that looked up), ``query_tokens`` (their
      ``num_tokens``), ``hit_tokens``, and ``hits`` (admissions with a hit); vLLM's
      ``PrefixCacheStats`` counts the same per lookup.

    Physical block numbers here are handles only: which free block an allocation gets is
    its queue position, as in vLLM, and no timing depends on the number itself.
    """

    __slots__ = ("L", "M", "P", "b", "bkey", "cached", "comp", "free_q", "gen", "hit_tokens",
                 "hits", "keys", "ncached", "pid", "q", "queries", "query_tokens", "ref",
                 "table", "trie")

    def __init__(self, workload: Workload, block_tokens: int, capacity_blocks: int,
                 computed: np.ndarray, generated: np.ndarray) -> None:
        b = int(block_tokens)
        pid = workload.prefix_ids
        if pid is not None and pid.block_tokens % b:
            raise ValueError(f"prefix caching: prefix_ids.block_tokens {pid.block_tokens} is not "
                             f"a multiple of the KV block size {b}")
        self.b = b
        self.pid = pid
        self.q = pid.block_tokens // b if pid is not None else 1
        self.P = workload.prompt_tokens
        self.L = workload.prompt_tokens + workload.output_tokens - 1
        self.M = int(np.max(self.L)) // b + 1 if len(workload) else 1
        self.comp = computed
        self.gen = generated
        n = int(capacity_blocks)
        self.free_q: OrderedDict[int, None] = OrderedDict.fromkeys(range(n))
        self.ref = [0] * n
        self.bkey: list[int | None] = [None] * n
        self.cached: dict[int, dict[int, None]] = {}
        self.table: dict[int, list[int]] = {}
        self.ncached: dict[int, int] = {}
        self.keys: dict[int, list[int]] = {}
        self.trie: dict[tuple[int, int], int] = {}
        self.queries = self.query_tokens = self.hit_tokens = self.hits = 0

    # -- names ---------------------------------------------------------------------------
    def names(self, r: int) -> list[int]:
        """The names of request ``r``'s full blocks (as many as it can ever fill; memoised).

        Shared names are ``node * q + offset`` (>= 0; ``node`` the trie node of the id chain,
        ``q`` KV blocks per id); private names are ``-(1 + r * M + j)``.
        """
        k = self.keys.get(r)
        if k is not None:
            return k
        b = self.b
        nfull = int(self.L[r]) // b  # a request never computes more than P + O - 1 tokens
        shared = 0
        out: list[int] = []
        pid = self.pid
        if pid is not None:
            shared = min(int(pid.tokens[r]) // b, nfull)
            if shared:
                q = self.q
                trie = self.trie
                node = 0
                ids = pid.row(r).tolist()
                for k_, i_ in enumerate(ids):
                    if k_ * q >= shared:
                        break
                    nxt = trie.get((node, i_))
                    if nxt is None:
                        nxt = trie[(node, i_)] = len(trie) + 1
                    node = nxt
                    out.extend(range(node * q, node * q + min(q, shared - k_ * q)))
        base = -(1 + r * self.M)
        out.extend(range(base - shared, base - nfull, -1))
        self.keys[r] = out
        return out

    # -- real operations -----------------------------------------------------------------
    def lookup(self, r: int) -> list[int]:
        """The blocks of ``r``'s longest cached prefix (``r`` holds no blocks)."""
        num_tokens = int(self.P[r] + self.gen[r])
        mx = (num_tokens - 1) // self.b
        names = self.names(r)
        cached = self.cached
        out: list[int] = []
        for j in range(mx):
            d = cached.get(names[j])
            if not d:
                break
            out.append(next(iter(d)))
        return out

    def admit(self, r: int, tokens: int) -> int:
        """Admit waiting request ``r``: reuse its longest cached prefix (``h`` tokens), then
        grow it by ``tokens`` computed tokens; returns ``h``."""
        hit = self.lookup(r)
        self.queries += 1
        self.query_tokens += int(self.P[r] + self.gen[r])
        h = len(hit) * self.b
        if hit:
            self.hits += 1
            self.hit_tokens += h
            fq = self.free_q
            ref = self.ref
            for bid in hit:
                if ref[bid] == 0:
                    del fq[bid]
                ref[bid] += 1
        self.table[r] = hit
        self.ncached[r] = len(hit)
        self.grow(r, h + int(tokens))
        return h

    def grow(self, r: int, new_computed: int) -> None:
        """``r`` comes to hold the blocks of ``new_computed`` tokens; name its full blocks."""
        b = self.b
        t = self.table.get(r)
        if t is None:
            t = self.table[r] = []
            self.ncached[r] = 0
        need = -(-new_computed // b) - len(t)
        if need > 0:
            fq = self.free_q
            ref = self.ref
            bkey = self.bkey
            for _ in range(need):
                bid = fq.popitem(last=False)[0]
                k = bkey[bid]
                if k is not None:
                    self._evict(bid, k)
                ref[bid] = 1
                t.append(bid)
        full = new_computed // b
        nc = self.ncached[r]
        if full > nc:
            names = self.names(r)
            cached = self.cached
            bkey = self.bkey
            for j in range(nc, full):
                bid = t[j]
                k = names[j]
                bkey[bid] = k
                d = cached.get(k)
                if d is None:
                    cached[k] = {bid: None}
                else:
                    d[bid] = None
            self.ncached[r] = full

    def _evict(self, bid: int, k: int) -> None:
        d = self.cached[k]
        del d[bid]
        if not d:
            del self.cached[k]
        self.bkey[bid] = None

    def free(self, r: int) -> None:
        """Free ``r``'s blocks, last block first; named blocks stay cached."""
        t = self.table.pop(r, None)
        self.ncached.pop(r, None)
        if not t:
            return
        ref = self.ref
        fq = self.free_q
        for bid in reversed(t):
            ref[bid] -= 1
            if ref[bid] == 0:
                fq[bid] = None

    def decode_run(self, rids: np.ndarray, comp: np.ndarray, k: int) -> None:
        """``k`` decode steps of every request in ``rids`` (from ``comp`` computed tokens),
        with no admission, preemption or completion before the last step's end: the
        allocations and namings in step order, then request order, as stepping does."""
        b = self.b
        comp = np.asarray(comp, np.int64)
        # step s (0-based) allocates iff (c + s) % b == 0, fills a block iff (c + s + 1) % b == 0
        fa = (-comp) % b
        ff = (b - 1 - comp) % b
        na = np.maximum((k - 1 - fa) // b + 1, 0)
        nf = np.maximum((k - 1 - ff) // b + 1, 0)
        if not (int(_sum(na)) or int(_sum(nf))):
            return
        m = int(rids.size)
        pos = np.arange(m, dtype=np.int64)

        def ev(first: np.ndarray, cnt: np.ndarray, kind: int) -> tuple[np.ndarray, np.ndarray]:
            tot = int(_sum(cnt))
            off = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            s = np.repeat(first, cnt) + b * off
            who = np.repeat(pos, cnt)
            return (s * m + who) * 2 + kind, s

        ka, sa = ev(fa, na, 0)
        kf, sf = ev(ff, nf, 1)
        key = np.concatenate((ka, kf))
        steps = np.concatenate((sa, sf))
        o = np.argsort(key, kind="stable")
        key = key[o]
        steps = steps[o]
        who = (key >> 1) % m
        rl = rids.tolist()
        cl = comp.tolist()
        for w, s in zip(who.tolist(), steps.tolist()):
            self.grow(rl[w], cl[w] + s + 1)

    def plan(self) -> SimCachePlan:
        """A scratch :class:`~slo_opt.schedulers.base.CachePlan` of the cache as it is now."""
        return SimCachePlan(self)

    def stats(self) -> dict[str, Any]:
        """The counters (JSON-serialisable)."""
        return {"queries": self.queries, "query_tokens": self.query_tokens,
                "hits": self.hits, "hit_tokens": self.hit_tokens,
                "hit_rate": (self.hit_tokens / self.query_tokens) if self.query_tokens else 0.0}


class SimCachePlan(CachePlan):
    """A scratch copy of a :class:`PrefixCache` for planning one step (changes only itself).

    It predicts what :meth:`PrefixCache.admit` and :meth:`PrefixCache.grow` will do when the
    plan is applied in the same order: allocations walk the free queue from its head
    (skipping blocks touched in this step) and evict the names they meet; blocks named in this
    step can be hit by a later admission of the same step.
    """

    __slots__ = ("c", "dec", "evicted", "it", "last", "named", "short", "touched", "used",
                 "virt")

    def __init__(self, cache: PrefixCache) -> None:
        self.c = cache
        self.evicted: set[int] = set()
        self.touched: set[int] = set()
        self.named: dict[int, int] = {}  # names given in this step -> copies
        self.virt: dict[int, int] = {}  # request -> blocks it holds after this step's ops
        self.dec: dict[int, int] = {}  # block -> holders released by preemptions planned here
        self.it = iter(cache.free_q)
        self.last: tuple[int, list[int]] = (-1, [])
        #: blocks taken from the free queue so far (allocations and touched free hits)
        self.used = 0
        #: allocations the free queue could not serve
        self.short = 0

    def _held(self, r: int) -> int:
        v = self.virt.get(r)
        if v is not None:
            return v
        t = self.c.table.get(r)
        return len(t) if t else 0

    def lookup(self, rid: int) -> tuple[int, int]:
        c = self.c
        rid = int(rid)
        num_tokens = int(c.P[rid] + c.gen[rid])
        mx = (num_tokens - 1) // c.b
        names = c.names(rid)
        cached = c.cached
        ev = self.evicted
        named = self.named
        ref = c.ref
        touched = self.touched
        hit: list[int] = []
        free_hit = 0
        for j in range(mx):
            k = names[j]
            bid = -1
            d = cached.get(k)
            if d:
                for x in d:
                    if x not in ev:
                        bid = x
                        break
            if bid >= 0:
                hit.append(bid)
                if ref[bid] == 0 and bid not in touched:
                    free_hit += 1
            elif named.get(k):
                hit.append(-1)  # a block named in this step (held)
            else:
                break
        self.last = (rid, hit)
        return len(hit) * c.b, free_hit

    def _alloc(self, n: int) -> None:
        touched = self.touched
        ev = self.evicted
        it = self.it
        self.used += n
        while n > 0:
            bid = next(it, -1)
            if bid < 0:
                self.short += n
                return
            if bid in touched:
                continue
            ev.add(bid)
            n -= 1

    def _name(self, r: int, lo: int, hi: int) -> None:
        if hi > lo:
            names = self.c.names(r)
            named = self.named
            for j in range(lo, hi):
                named[names[j]] = named.get(names[j], 0) + 1

    def grow(self, rid: int, tokens: int) -> None:
        c = self.c
        b = c.b
        rid = int(rid)
        comp = int(c.comp[rid])
        held = self._held(rid)
        new_c = comp + int(tokens)
        need = -(-new_c // b) - held
        if need > 0:
            self._alloc(need)
            self.virt[rid] = held + need
        self._name(rid, c.ncached.get(rid, 0), new_c // b)

    def release(self, rid: int, held_blocks: int) -> int:
        c = self.c
        ref = c.ref
        dec = self.dec
        freed = 0
        for bid in c.table.get(int(rid)) or ():
            d = dec.get(bid, 0) + 1
            dec[bid] = d
            if ref[bid] == d:
                freed += 1
        return freed

    def admit(self, rid: int, hit_tokens: int, tokens: int) -> None:
        c = self.c
        b = c.b
        rid = int(rid)
        if self.last[0] != rid:
            self.lookup(rid)
        hit = self.last[1]
        if len(hit) * b != hit_tokens:
            raise ValueError(f"admit({rid}): hit_tokens {hit_tokens} differs from the lookup's "
                             f"{len(hit) * b}")
        ref = c.ref
        for bid in hit:
            if bid >= 0:
                if ref[bid] == 0 and bid not in self.touched:
                    self.used += 1
                self.touched.add(bid)
        new_c = hit_tokens + int(tokens)
        need = -(-new_c // b) - len(hit)
        if need > 0:
            self._alloc(need)
        self.virt[rid] = len(hit) + max(need, 0)
        self._name(rid, len(hit), new_c // b)
        self.last = (-1, [])
