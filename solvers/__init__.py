"""Offline formulations and solver back-ends. Imported as ``slo_opt.solvers``."""
