"""The explicit pass registry.

Why explicit and lazy: `@register_pass` makes a pass known by name; built-in passes are listed by module path
in `neocompress.passes.BUILTIN_PASSES` and imported only when asked for, so heavy dependencies (AIMET, AI Hub)
load only for recipes that use them. An unknown name lists the known ones and the nearest match.
"""

from __future__ import annotations

import difflib
import importlib
import re

from neocompress.core.errors import UserInputError
from neocompress.core.pass_base import Pass

_REGISTRY: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make `cls` available under `cls.name`."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} has no `name`")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"pass name '{name}' must be snake_case (lower-case letters, digits, underscores)")
    if not hasattr(cls, "Config"):
        raise TypeError(f"pass '{name}' has no `Config`")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"pass name '{name}' is already registered by {existing.__module__}.{existing.__name__}")
    _REGISTRY[name] = cls
    return cls


def _builtin_table() -> dict[str, str]:
    from neocompress.passes import BUILTIN_PASSES

    return BUILTIN_PASSES


def known_pass_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_builtin_table()))


class UnknownPassError(UserInputError):
    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.suggestion = (difflib.get_close_matches(name, known, n=1) or [None])[0]
        hint = f" Did you mean '{self.suggestion}'?" if self.suggestion else ""
        super().__init__(f"unknown pass '{name}'.{hint} Known passes: {', '.join(known)}")


def get_pass(name: str) -> type[Pass]:
    """The pass class registered under `name`, importing its built-in module on first use."""
    if name not in _REGISTRY:
        module = _builtin_table().get(name)
        if module is not None:
            importlib.import_module(module)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownPassError(name, known_pass_names()) from None
