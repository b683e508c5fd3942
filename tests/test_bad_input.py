"""Bad input gets a clear error, never a hang or a wrong answer (the brief's Standards list)."""

import math

import numpy as np
import pytest

from slo_opt import SLO, InvalidPlan, Request, SchedulerStalled, StepPlan, Workload, make, simulate
from slo_opt.models import SlotEngine
from slo_opt.request import WorkloadError

E = SlotEngine(step_s=0.1, max_batch_tokens=32, kv_capacity_tokens=128)


def test_unsorted_arrivals():
    with pytest.raises(WorkloadError, match="sorted.*row 2"):
        Workload.from_arrays([0.0, 2.0, 1.0], [1, 1, 1], [1, 1, 1])


def test_negative_arrival():
    with pytest.raises(WorkloadError, match=">= 0"):
        Workload.from_arrays([-1.0, 2.0], [1, 1], [1, 1])
    with pytest.raises(WorkloadError):
        Request(0, -0.5, 1, 1)


@pytest.mark.parametrize("col", ["prompt_tokens", "output_tokens"])
@pytest.mark.parametrize("value", [0, -3])
def test_zero_or_negative_lengths(col, value):
    kw = {"prompt_tokens": [1, 1], "output_tokens": [1, 1]}
    kw[col] = [1, value]
    with pytest.raises(WorkloadError, match=f"row 1: {col}"):
        Workload.from_arrays([0.0, 1.0], **kw)


def test_non_integer_lengths():
    with pytest.raises(WorkloadError, match="integer"):
        Workload.from_arrays([0.0], [1.5], [1])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_arrival(bad):
    with pytest.raises(WorkloadError, match="finite"):
        Workload.from_arrays([0.0, bad], [1, 1], [1, 1])


def test_nan_slo():
    with pytest.raises(WorkloadError, match="NaN"):
        Workload.from_arrays([0.0], [1], [1], ttft_slo_s=math.nan)
    with pytest.raises(WorkloadError):
        SLO(ttft_s=math.nan)


@pytest.mark.parametrize("kw", [{"ttft_s": 0.0}, {"tpot_s": -1.0}, {"e2e_s": 0.0}])
def test_impossible_slo_values(kw):
    with pytest.raises(WorkloadError, match="> 0"):
        SLO(**kw)


def test_ids_must_match_rows():
    with pytest.raises(WorkloadError, match="ids"):
        Workload([Request(1, 0.0, 1, 1)])


def test_unknown_scheduler_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown scheduler 'nope'.*vllm"):
        make("nope")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter.*max_num_seqs"):
        make("vllm", max_num_sequences=4)


def test_invalid_parameter_value():
    with pytest.raises(ValueError):
        make("vllm", max_num_seqs=0)
    with pytest.raises(ValueError):
        make("fcfs", batching="sometimes")


def test_request_larger_than_kv_is_reported_rejected():
    w = Workload([Request(0, 0.0, 500, 10)])
    s = simulate(w, E, make("vllm"))
    assert s.rejected.tolist() == [True]


class _Greedy:
    name = "greedy_bad"

    def __init__(self, tokens):
        self.tokens = tokens

    def reset(self):
        pass

    def plan(self, view):
        return StepPlan({int(r): self.tokens for r in view.waiting})


def test_invalid_plan_names_scheduler_step_and_reason():
    w = Workload([Request(0, 0.0, 4, 2)])
    with pytest.raises(InvalidPlan, match=r"greedy_bad.*step 0.*next_tokens"):
        simulate(w, E, _Greedy(10))
    with pytest.raises(InvalidPlan, match="tokens must be >= 1"):
        simulate(w, E, _Greedy(0))


class _Future:
    name = "future"

    def reset(self):
        pass

    def plan(self, view):
        return StepPlan({1: 1})


def test_plan_for_unarrived_request():
    w = Workload([Request(0, 0.0, 1, 1), Request(1, 5.0, 1, 1)])
    with pytest.raises(InvalidPlan, match="request 1 has not arrived"):
        simulate(w, E, _Future())


class _Lazy:
    name = "lazy"

    def reset(self):
        pass

    def plan(self, view):
        return StepPlan.idle()


def test_stall_raises_instead_of_looping():
    w = Workload([Request(0, 0.0, 1, 1)])
    with pytest.raises(SchedulerStalled, match="lazy"):
        simulate(w, E, _Lazy())


class _KVHog:
    name = "kvhog"

    def reset(self):
        pass

    def plan(self, view):
        return StepPlan({int(r): view.next_tokens(int(r)) for r in view.waiting})


def test_kv_overflow_plan_rejected():
    e = SlotEngine(step_s=0.1, max_batch_tokens=1000, kv_capacity_tokens=100)
    w = Workload([Request(i, 0.0, 60, 2) for i in range(3)])
    with pytest.raises(InvalidPlan, match="KV overflow"):
        simulate(w, e, _KVHog())


def test_token_budget_overflow_plan_rejected():
    w = Workload([Request(i, 0.0, 20, 2) for i in range(3)])
    with pytest.raises(InvalidPlan, match="max_batch_tokens"):
        simulate(w, E, _KVHog())


def test_bad_engine_arguments():
    with pytest.raises(ValueError):
        SlotEngine(step_s=0.0, max_batch_tokens=1, kv_capacity_tokens=1)
    with pytest.raises(ValueError):
        SlotEngine(step_s=1.0, max_batch_tokens=1, kv_capacity_tokens=10, kv_block_tokens=16)


def test_simulate_rejects_non_workload():
    with pytest.raises(TypeError):
        simulate([Request(0, 0.0, 1, 1)], E, make("vllm"))


def test_max_steps_guard():
    w = Workload([Request(0, 0.0, 1, 100)])
    with pytest.raises(SchedulerStalled, match="max_steps"):
        simulate(w, E, make("vllm"), max_steps=10, fast_forward=False)


def test_workload_is_immutable():
    w = Workload.from_arrays([0.0], [1], [1])
    with pytest.raises(AttributeError):
        w.name = "x"
    with pytest.raises(ValueError):
        w.arrival_s[0] = 3.0
    assert np.asarray(w.arrival_s)[0] == 0.0
