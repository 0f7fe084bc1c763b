"""What a recipe value may be before any schema sees it: JSON's kinds, with numbers in a range that runs.

Why before the schema: YAML can say more than a recipe means. `2024-01-01` is a date, `!!binary` bytes, `!!set`
a set, `.inf` infinity, and an integer has no size limit, so `d_model: 10**30` would reach torch. Each is
refused here with its path and line. What passes is then validated by pydantic in strict JSON mode, so a
string or a boolean is never coerced into a number (`steps: "100"` and `steps: true` are errors) while a list
still fills a tuple field. And YAML 1.1 reads `1e-4` (no dot) as text; the loader reads it as the number the
user meant (YAML 1.2 does), so strictness costs no surprise.
"""

from __future__ import annotations

import math
from typing import Any

from neocompress.core.errors import Problem
from neocompress.recipe.yaml_lines import PathKey, format_path, line_of

MAX_INT = 2**31 - 1  # every count, size and index a recipe gives fits; anything larger cannot run
MAX_FLOAT = 1e12


def value_problems(data: Any, lines: dict[PathKey, int], file: str) -> list[Problem]:
    """Every value that is not JSON-like, or is a number out of range, with its path and line."""
    problems: list[Problem] = []
    stack: list[tuple[PathKey, Any]] = [((), data)]
    while stack:  # bounded: the YAML loader caps the expanded size
        path, value = stack.pop()
        message = _problem(value)
        if message:
            problems.append(Problem(message, file=file, path=format_path(path) or None, line=line_of(lines, path)))
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.append(Problem(f"key {key!r} must be a name (text), not a {type(key).__name__}",
                                            file=file, path=format_path(path) or None,
                                            line=line_of(lines, path)))  # fmt: skip
                    continue
                stack.append((path + (key,), item))
        elif isinstance(value, list):
            stack.extend((path + (i,), item) for i, item in enumerate(value))
    return problems


def _problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool | str | dict | list):
        return None
    if isinstance(value, int):
        return None if abs(value) <= MAX_INT else f"{value} is out of range (at most {MAX_INT:,} in size)"
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{value} is not a finite number"
        return None if abs(value) <= MAX_FLOAT else f"{value:g} is out of range (at most {MAX_FLOAT:g} in size)"
    kind = type(value).__name__
    return f"a YAML {kind} is not a recipe value (quote it to make it text)"
