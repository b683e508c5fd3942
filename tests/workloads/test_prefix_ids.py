"""Prefix identity of workloads: PrefixIds, the Mooncake loader, the conversation generator."""

import json

import numpy as np
import pytest

from slo_opt.request import PrefixIds, Workload, WorkloadError
from slo_opt.workloads.conversations import conversations
from slo_opt.workloads.generators import FixedLengths, clip_lengths, time_scale, window
from slo_opt.workloads.traces import TraceError, load_mooncake


def _w(n=3):
    return Workload.from_arrays(np.arange(n, dtype=float), [40] * n, [10] * n)


def test_prefix_ids_validation():
    ok = PrefixIds.from_lists([[1, 2], [1], []], 16, [20, 16, 0])
    assert ok.row(0).tolist() == [1, 2] and len(ok) == 3
    with pytest.raises(WorkloadError, match="tokens must be in"):
        PrefixIds.from_lists([[1, 2]], 16, [16])  # two ids describe more than 16 tokens
    with pytest.raises(WorkloadError, match="tokens must be 0"):
        PrefixIds.from_lists([[]], 16, [3])
    with pytest.raises(WorkloadError, match="block_tokens"):
        PrefixIds.from_lists([[1]], 0)
    with pytest.raises(WorkloadError, match="rows"):
        _w(2).with_prefix_ids(ok)
    with pytest.raises(WorkloadError, match="prompt_tokens \\+ output_tokens - 1"):
        _w(1).with_prefix_ids(PrefixIds.from_lists([[1, 2, 3, 4]], 16))  # 64 > 49


def test_prefix_ids_follow_the_rows():
    ids = PrefixIds.from_lists([[1], [1, 2], [3]], 16)
    w = _w().with_prefix_ids(ids)
    assert w != _w() and w == _w().with_prefix_ids(ids)
    sub = w.subset([2, 0])
    assert [sub.prefix_ids.row(i).tolist() for i in range(2)] == [[1], [3]]
    assert w.head(2).prefix_ids.tokens.tolist() == [16, 32]
    assert w.replace(name="x").prefix_ids == ids
    assert time_scale(w, 2.0).prefix_ids == ids
    clipped = clip_lengths(w, max_prompt_tokens=10, max_output_tokens=5)  # 14 tokens computed
    assert clipped.prefix_ids.tokens.tolist() == [14, 14, 14]
    assert [clipped.prefix_ids.row(i).tolist() for i in range(3)] == [[1], [1], [3]]
    assert window(w, 1.0, 5.0).prefix_ids == ids.subset(np.array([1, 2]))


def test_mooncake_loader_attaches_hash_ids(tmp_path):
    rows = [{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [7, 8]},
            {"timestamp": 10, "input_length": 512, "output_length": 2, "hash_ids": [7]}]
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w = load_mooncake(p)
    assert w.prefix_ids.block_tokens == 512
    assert w.prefix_ids.tokens.tolist() == [600, 512]
    assert w.prefix_ids.row(0).tolist() == [7, 8]
    rows[1]["hash_ids"] = [7, 9]  # two ids for 512 tokens
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(TraceError, match="line 2"):
        load_mooncake(p)


def test_conversations_share_earlier_turns():
    rng = np.random.default_rng(3)
    w = conversations(6, 0.5, rng, lengths=FixedLengths(50, 30), mean_turns=3,
                      system_prompt_tokens=40, block_tokens=16, think_time_s=5.0)
    again = conversations(6, 0.5, np.random.default_rng(3), lengths=FixedLengths(50, 30),
                          mean_turns=3, system_prompt_tokens=40, block_tokens=16,
                          think_time_s=5.0)
    assert w == again  # deterministic for a seed
    assert np.all(np.diff(w.arrival_s) >= 0)
    pid = w.prefix_ids
    labels = w.class_label.tolist()
    by_conv: dict[str, list[int]] = {}
    for r, lab in enumerate(labels):
        by_conv.setdefault(lab.split("t")[0], []).append(r)
    assert any(len(v) > 1 for v in by_conv.values())
    for rows in by_conv.values():
        rows.sort(key=lambda r: int(labels[r].split("t")[1]))
        for k, r in enumerate(rows):
            # prompt = system + k * (user + reply) + user; ids cover prompt + reply - 1 tokens
            assert w.prompt_tokens[r] == 40 + k * 80 + 50
            assert pid.tokens[r] == w.prompt_tokens[r] + 30 - 1
            if k:  # the previous turn's ids are a prefix of this turn's
                prev = pid.row(rows[k - 1])
                assert np.array_equal(pid.row(r)[:prev.size], prev)
    # every conversation shares the system prompt's two full blocks (ids 0, 1), nothing else
    firsts = [pid.row(rows[0]) for rows in by_conv.values()]
    assert all(f[:2].tolist() == [0, 1] for f in firsts)
    assert len({int(f[2]) for f in firsts}) == len(firsts)
    with pytest.raises(TypeError):
        conversations(2, 1.0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        conversations(2, 1.0, rng, mean_turns=0.5)
