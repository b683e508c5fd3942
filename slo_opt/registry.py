"""A name -> dataclass plugin registry, shared by schedulers and dispatchers.

Plugins are dataclasses whose fields are their hyper-parameters (scikit-learn's estimator
convention); the registry maps the plugin's ``name`` class attribute to the class, and
:meth:`Registry.make` rejects unknown names and unknown parameters with messages that list
the valid ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["Registry"]

T = TypeVar("T", bound=type)


class Registry(dict[str, type]):
    """Plugins of one family (``kind`` names it in error messages)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, cls: T) -> T:
        """Class decorator adding ``cls`` under ``cls.name``."""
        name = cls.name  # type: ignore[attr-defined]
        if name in self and self[name] is not cls:
            raise ValueError(f"{self.kind} name {name!r} already registered")
        self[name] = cls
        return cls

    def params(self, name_or_cls: str | type) -> dict[str, Any]:
        """Hyper-parameters of a plugin and their defaults (``None`` if required)."""
        cls = self.lookup(name_or_cls) if isinstance(name_or_cls, str) else name_or_cls
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = None
        return out

    def lookup(self, name: str) -> type:
        """The class registered under ``name``; unknown names list the known ones."""
        try:
            return self[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {sorted(self)}") from None

    def make(self, name: str, **params: Any) -> Any:
        """Instantiate ``name`` with ``params``; unknown parameters list the valid ones."""
        cls = self.lookup(name)
        valid = self.params(cls)
        bad = sorted(set(params) - set(valid))
        if bad:
            raise ValueError(
                f"unknown parameter(s) {bad} for {self.kind} {name!r}; valid: {sorted(valid)}")
        return cls(**params)
