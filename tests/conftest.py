"""Hypothesis profiles: ``dev`` (fast, default), ``ci`` (>= 200 examples, derandomized) and
``mutants`` (tests/mutants.py: derandomized, 40 examples, no shrinking: a kill is a failure)."""

import os

from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "ci", max_examples=200, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "mutants", max_examples=40, derandomize=True, deadline=None, database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
