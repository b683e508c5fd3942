"""Multi-turn conversations with shared prefixes: each turn's prompt repeats the conversation so far.

A conversation is a stream of tokens ``[system | user_0 | reply_0 | user_1 | reply_1 | ...]``;
turn ``k`` is one request whose prompt is the stream up to and including ``user_k`` and whose
output is ``reply_k``. Every turn carries :class:`~slo_opt.request.PrefixIds` naming the blocks of
the stream it computes (prompt and output), so a prefix cache can serve turn ``k + 1`` the
blocks turn ``k`` computed, and every conversation the blocks of a shared system prompt.
The only randomness comes from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np

from slo_opt.request import PrefixIds, Workload
from slo_opt.workloads.generators import EmpiricalLengths, LengthDistribution

__all__ = ["conversations"]


def _pos_float(name: str, x: float) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {x!r}")
    x = float(x)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {x!r}")
    return x


def _int(name: str, x: int, lo: int) -> int:
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or x < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {x!r}")
    return int(x)


def conversations(
    num_conversations: int,
    rate_per_s: float,
    rng: np.random.Generator,
    *,
    lengths: LengthDistribution | None = None,
    mean_turns: float = 3.0,
    max_turns: int = 8,
    think_time_s: float = 20.0,
    system_prompt_tokens: int = 0,
    max_prompt_tokens: int = 32768,
    block_tokens: int = 16,
    name: str = "conversations",
) -> Workload:
    """Open-loop multi-turn chat sessions as a workload with prefix identity.

    Parameters
    ----------
    num_conversations : int
        Number of conversations (>= 0).
    rate_per_s : float
        Poisson rate of conversation starts (first turns).
    rng : numpy.random.Generator
        Consumed in this order: start gaps, turn counts, then per conversation its think
        gaps and its ``(user, reply)`` lengths.
    lengths : LengthDistribution, optional
        ``(user message, reply)`` lengths of one turn (default: the shipped ShareGPT table,
        whose prompts stand for one user message).
    mean_turns : float
        Mean turns per conversation (>= 1): ``1 + Geometric``, clipped to ``max_turns``.
    max_turns : int
        At most this many turns (>= 1).
    think_time_s : float
        Mean exponential gap between the arrivals of consecutive turns of one conversation.
    system_prompt_tokens : int
        Tokens of a system prompt that every conversation starts with (>= 0); its full
        ``block_tokens`` blocks are shared by all conversations.
    max_prompt_tokens : int
        A conversation ends before a turn whose prompt would exceed this.
    block_tokens : int
        Tokens per prefix id (the KV block size of the engine it will run on, or a multiple).
    name : str
        Workload name.

    Returns
    -------
    Workload
        Turns sorted by arrival (ties by conversation, then turn), with ``class_label`` set to
        ``"c<conversation>t<turn>"`` and :class:`~slo_opt.request.PrefixIds` covering each
        turn's computed tokens (``prompt + reply - 1``).

    Notes
    -----
    Open loop: turn ``k + 1`` arrives a think gap after turn ``k`` *arrives*, not after its
    reply is complete (a simulation decides that); with short gaps a turn may arrive while the
    previous one still runs, and then it finds only the blocks computed so far.
    """
    n_conv = _int("num_conversations", num_conversations, 0)
    rate = _pos_float("rate_per_s", rate_per_s)
    mean_turns = _pos_float("mean_turns", mean_turns)
    if mean_turns < 1:
        raise ValueError(f"mean_turns must be >= 1, got {mean_turns!r}")
    max_turns = _int("max_turns", max_turns, 1)
    think = _pos_float("think_time_s", think_time_s)
    sys_tok = _int("system_prompt_tokens", system_prompt_tokens, 0)
    max_prompt = _int("max_prompt_tokens", max_prompt_tokens, 1)
    g = _int("block_tokens", block_tokens, 1)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {rng!r}")
    if lengths is None:
        lengths = EmpiricalLengths.default()
    if not callable(getattr(lengths, "sample", None)):
        raise ValueError(f"lengths must have a sample(n, rng) method, got {lengths!r}")

    starts = np.cumsum(rng.exponential(1.0 / rate, size=n_conv))
    p_more = 1.0 - 1.0 / mean_turns  # 1 + Geometric(1 / mean_turns - failures) has that mean
    turns = (np.minimum(rng.geometric(1.0 - p_more, size=n_conv), max_turns)
             if p_more > 0 else np.ones(n_conv, np.int64))
    shared_blocks = sys_tok // g
    arr, pr, out, conv, turn_of = [], [], [], [], []
    ids: list[np.ndarray] = []
    covered: list[int] = []
    next_id = shared_blocks  # ids 0..shared_blocks-1 name the system prompt's full blocks
    for c in range(n_conv):
        k = int(turns[c])
        gaps = rng.exponential(think, size=k - 1)
        user, reply = lengths.sample(k, rng)
        t = float(starts[c])
        stream = sys_tok  # tokens of the conversation before this turn's user message
        conv_ids = np.arange(shared_blocks, dtype=np.int64)  # the stream's block ids so far
        for j in range(k):
            p = stream + int(user[j])
            if p > max_prompt:
                break
            o = int(reply[j])
            work = p + o - 1  # tokens this turn computes
            nblk = -(-work // g)
            if nblk > conv_ids.size:  # name the stream's new blocks (unique to this conversation)
                new = np.arange(next_id, next_id + nblk - conv_ids.size, dtype=np.int64)
                next_id += new.size
                conv_ids = np.concatenate((conv_ids, new))
            arr.append(t)
            pr.append(p)
            out.append(o)
            conv.append(c)
            turn_of.append(j)
            ids.append(conv_ids[:nblk])
            covered.append(work)
            stream = p + o
            if j + 1 < k:
                t += float(gaps[j])
    a = np.asarray(arr, dtype=float)
    order = np.lexsort((np.asarray(turn_of, np.int64), np.asarray(conv, np.int64), a))
    w = Workload.from_arrays(
        a[order], np.asarray(pr, np.int64)[order], np.asarray(out, np.int64)[order],
        class_label=np.array([f"c{conv[i]}t{turn_of[i]}" for i in order], dtype=object),
        name=name)
    return w.with_prefix_ids(PrefixIds.from_lists([ids[i] for i in order], g,
                                                  np.asarray(covered, np.int64)[order]))
