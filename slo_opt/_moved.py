"""Module paths of the flat 0.1 layout, kept for one release with a ``DeprecationWarning``.

``import slo_opt.simulator`` (or any path in :data:`MOVED`, and the submodules of a moved
package such as ``slo_opt.dispatchers.base``) gives the module at its new path -- the same
module object, so classes, registries and ``isinstance`` checks are shared -- and warns once per
process and path. Names moved between modules are forwarded by :func:`forward`, used as a
module ``__getattr__`` (PEP 562).

Delete this module, its ``install()`` call in ``slo_opt/__init__.py`` and the
``__getattr__`` forwarders in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["MOVED", "forward", "install", "new_name"]

#: Old module path -> new module path (a package's submodules follow it).
MOVED: dict[str, str] = {
    "slo_opt.simulator": "slo_opt.sim.simulator",
    "slo_opt.sim_window": "slo_opt.sim.window",
    "slo_opt.workload": "slo_opt.workloads.generators",
    "slo_opt.traces": "slo_opt.workloads.traces",
    "slo_opt.slice_workload": "slo_opt.workloads.edge",
    "slo_opt.predictors": "slo_opt.workloads.predictors",
    "slo_opt.cluster": "slo_opt.edge.cluster",
    "slo_opt.cluster_sim": "slo_opt.edge.simulation",
    "slo_opt.dispatchers": "slo_opt.edge.dispatchers",
    "slo_opt.sweep": "slo_opt.study.sweep",
    "slo_opt.runrecord": "slo_opt.study.runrecord",
    "slo_opt.solvers.cli": "slo_opt.cli.solve",
}


def _warn(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=stacklevel + 1)


def new_name(old: str) -> str | None:
    """The new path of module ``old`` (``None`` if it did not move)."""
    if old in MOVED:
        return MOVED[old]
    for o, n in MOVED.items():
        if old.startswith(o + "."):
            return n + old[len(o):]
    return None


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module at its new path (``sys.modules`` holds the new one)."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        # stacklevel 2 = the importer: the warnings machinery skips importlib's own frames
        _warn(module.__name__, self.new, 2)
        sys.modules[module.__name__] = importlib.import_module(self.new)


class _MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths (first on ``sys.meta_path``, so that a moved package's submodules
    are never loaded a second time under their old names)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("slo_opt."):
            return None
        new = new_name(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the finder of old paths first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def forward(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names that moved to other modules.

    Parameters
    ----------
    module : str
        The module that used to define the names (for messages).
    names : mapping
        Old attribute name -> new module path (the name is the same there).
    """

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        _warn(f"{module}.{name}", f"{target}.{name}", 2)
        return getattr(importlib.import_module(target), name)

    return __getattr__
