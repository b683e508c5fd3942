"""Plans are executed in their own order; a bad plan's error names the smallest offending id."""

import numpy as np
import pytest

from slo_opt import StepPlan, Workload, simulate
from slo_opt.models import SlotEngine
from slo_opt.sim.simulator import InvalidPlan


def _workload():
    return Workload.from_arrays(arrival_s=np.zeros(4), prompt_tokens=np.array([3, 3, 3, 3]),
                                output_tokens=np.array([2, 2, 2, 2]), name="four")


class _Fixed:
    name = "fixed"

    def __init__(self, tokens):
        self.tokens = tokens

    def reset(self):
        pass

    def plan(self, view):
        return StepPlan(dict(self.tokens))


ENGINE = SlotEngine(step_s=0.01, max_batch_tokens=64, kv_capacity_tokens=64)


@pytest.mark.parametrize("tokens, msg", [
    ([(3, 9), (1, 9), (2, 1)], "request 1: 9 tokens > next_tokens 3"),
    ([(3, 0), (2, 9), (0, 0)], "request 0: tokens must be >= 1"),
    ([(3, 1), (7, 1), (5, 1)], "unknown request id in [3, 5, 7]"),
])
def test_error_names_smallest_bad_id_in_any_plan_order(tokens, msg):
    for order in (tokens, tokens[::-1]):
        with pytest.raises(InvalidPlan, match=msg.replace("[", r"\[").replace("]", r"\]")):
            simulate(_workload(), ENGINE, _Fixed(order), fast_forward=False, max_steps=10)


def test_plan_order_does_not_change_the_schedule():
    class _Rev:
        name = "rev"

        def reset(self):
            pass

        def plan(self, view):
            ids = list(view.running) + list(view.waiting)
            return StepPlan({int(r): view.next_tokens(int(r)) for r in reversed(ids)})

    class _Fwd(_Rev):
        def plan(self, view):
            ids = list(view.running) + list(view.waiting)
            return StepPlan({int(r): view.next_tokens(int(r)) for r in sorted(ids)})

    a = simulate(_workload(), ENGINE, _Rev(), fast_forward=False, max_steps=100)
    b = simulate(_workload(), ENGINE, _Fwd(), fast_forward=False, max_steps=100)
    assert a.allocs == b.allocs and a.steps == b.steps
    assert a.first_token_step.tolist() == b.first_token_step.tolist()
