"""Workloads: what the engine is asked to serve.

* :mod:`.generators`: arrival processes, length distributions, SLO classes, rescaling.
* :mod:`.traces`: trace loaders (Azure 2023, Mooncake, plain CSV) and the shipped default.
* :mod:`.edge`: SLICE's edge task mix (real-time / non-real-time classes).
* :mod:`.predictors`: output-length predictors (SSJF's classifier, oracle, ...).
"""
