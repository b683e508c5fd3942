"""Studies built on the library: sweeps, run records, certificates, solver inputs.

* :mod:`.sweep`: grids of simulation runs on a process pool or Ray.
* :mod:`.runrecord`: a run's records (CSV rows, config + provenance JSON).
"""
