"""Every registered scheduler through every conformance property (feasibility, conservation,
completion-or-rejection, determinism, fast-forward equivalence)."""

import pytest
from hypothesis import given

from slo_opt.schedulers import SCHEDULERS, make
from slo_opt.testing import check_conformance, slot_engines, workloads

NAMES = sorted(SCHEDULERS)


@pytest.mark.parametrize("name", NAMES)
@given(workload=workloads(), engine=slot_engines())
def test_conformance_slot_engine(name, workload, engine):
    check_conformance(lambda: make(name), workload, engine)


@pytest.mark.parametrize("name", NAMES)
@given(workload=workloads(max_requests=8, max_prompt=200, max_output=30, max_gap_s=0.05),
       engine=slot_engines(min_batch_tokens=32, max_batch_tokens=256, block_tokens=(16,)))
def test_conformance_under_load(name, workload, engine):
    """Bursty arrivals and KV pressure: preemption and rejection paths are exercised."""
    check_conformance(lambda: make(name), workload, engine)


def test_every_scheduler_has_defaults():
    for name in NAMES:
        s = make(name)
        assert s.name == name
