"""A name -> dataclass plugin registry, shared by schedulers and dispatchers.

Plugins are dataclasses whose fields are their hyper-parameters (scikit-learn's estimator
convention); the registry maps the plugin's ``name`` class attribute to the class, and
:meth:`Registry.make` rejects unknown names and unknown parameters with messages that list
the valid ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

import numpy as np

__all__ = ["Registry", "check_param"]

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

    def convert(self, name: str, params: dict[str, Any], *, text: bool = False
                ) -> dict[str, Any]:
        """``params`` checked against the fields' annotated types (:func:`check_param`);
        ``text=True`` also converts strings (``KEY=VALUE`` from a command line)."""
        cls = self.lookup(name)
        return {k: check_param(self.kind, name, cls, k, v, text=text) for k, v in params.items()}

    def make(self, name: str, **params: Any) -> Any:
        """Instantiate ``name`` with ``params``; unknown parameters list the valid ones."""
        cls = self.lookup(name)
        valid = self.params(cls)
        bad = sorted(set(params) - set(valid))
        if bad:
            raise ValueError(
                f"unknown parameter(s) {bad} for {self.kind} {name!r}; valid: {sorted(valid)}")
        params = self.convert(name, params)
        try:
            return cls(**params)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{self.kind} {name!r}: {exc}") from None


_WHAT = {bool: "true or false", int: "an integer", float: "a number"}
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _field_type(cls: type, key: str) -> Any:
    """The annotated type of field ``key`` with ``Optional`` unwrapped (``None``: unknown)."""
    try:
        hint = typing.get_type_hints(cls).get(key)
    except Exception:  # unresolvable annotations: no type check
        return None
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0], True) if len(rest) == 1 else None
    return (hint, False)


def check_param(kind: str, name: str, cls: type, key: str, value: Any, *, text: bool = False
                ) -> Any:
    """``value`` checked against field ``key``'s annotated type (``bool``, ``int``, ``float``,
    ``str``, ``Literal``, optionally ``| None``).

    With ``text`` (command-line ``KEY=VALUE``) strings are converted: ``true/false/yes/no/on/off/1/0`` for a
    bool, decimal integers for an int, numbers for a float. Anything else of the wrong type
    (``True`` for an int, ``"no"`` for a bool, ``nan`` for a float) raises ``TypeError`` naming
    the parameter, the value and what is allowed, before the plugin is built.
    """
    ft = _field_type(cls, key)
    if ft is None:
        return value
    typ, optional = ft
    if value is None and optional:
        return None
    where = f"{kind} {name!r} parameter {key}"
    if typing.get_origin(typ) is typing.Literal:
        allowed = typing.get_args(typ)
        if value not in allowed:
            raise ValueError(f"{where} must be one of {list(allowed)}, got {value!r}")
        return value
    if not text and isinstance(value, str) and typ in (bool, int, float):
        raise TypeError(f"{where} must be {_WHAT[typ]}, got {value!r}")
    if typ is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise TypeError(f"{where} must be {_WHAT[bool]}, got {value!r}")
    if typ is int:
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        elif isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            return int(value)
        raise TypeError(f"{where} must be an integer, got {value!r}")
    if typ is float:
        v: Any = value
        if isinstance(v, str):
            with contextlib.suppress(ValueError):
                v = float(v.strip())
        if isinstance(v, int | float | np.integer | np.floating) and not isinstance(
                v, bool | np.bool_):
            if math.isnan(float(v)):
                raise ValueError(f"{where} must be a number, got nan")
            return float(v)
        raise TypeError(f"{where} must be a number, got {value!r}")
    if typ is str and not isinstance(value, str):
        raise TypeError(f"{where} must be a string, got {value!r}")
    return value
