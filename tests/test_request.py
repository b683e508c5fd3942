"""Value types."""

import math

import numpy as np

from slo_opt import SLO, Request, Workload


def test_work_tokens():
    assert Request(0, 0.0, 10, 5).work_tokens == 14


def test_workload_from_requests_and_arrays_agree():
    reqs = [Request(0, 0.0, 3, 2, SLO(1.0, 0.1), utility=5.0, class_label="rt"),
            Request(1, 0.5, 4, 1)]
    a = Workload(reqs)
    b = Workload.from_arrays([0.0, 0.5], [3, 4], [2, 1], ttft_slo_s=[1.0, math.inf],
                             tpot_slo_s=[0.1, math.inf], utility=[5.0, 1.0],
                             class_label=["rt", ""])
    assert a == b
    assert b.requests == tuple(reqs)
    assert b[0].slo == SLO(1.0, 0.1)
    assert len(b) == 2
    np.testing.assert_array_equal(b.work_tokens, [4, 4])


def test_subset_replace_head():
    w = Workload.from_arrays([0.0, 1.0, 2.0], [1, 2, 3], [1, 1, 1])
    s = w.subset([2, 0])
    assert s.prompt_tokens.tolist() == [1, 3]
    assert w.head(2).arrival_s.tolist() == [0.0, 1.0]
    r = w.replace(output_tokens=[5, 5, 5], name="x")
    assert r.output_tokens.tolist() == [5, 5, 5] and r.name == "x"
