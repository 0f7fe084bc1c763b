"""A seeded recipe mutator and the judge of what validation did with each mutant (issue 17).

Mutants come from the shipped recipes, as a careless or hostile user would write them: a value replaced by one
of another kind or out of range (negative, zero, huge, -0.0, NaN, a date, a long string, a deep list), a key
removed or misspelt or added, passes reordered or renamed, and text-level damage (truncation, a stray character,
an alias bomb, deep nesting, a tab). `judge` runs `load_recipe` (what `validate` runs) on each and sorts the
outcome: a RecipeError whose every problem names the file (and a line, unless it is about the whole file), an
accepted recipe, or anything else (a bug). Used by `tests/recipe/test_recipe_fuzz.py` (a fast sample) and
`benchmarks/recipe_fuzz.py` (10,000 in `make bench`).
"""

from __future__ import annotations

import copy
import math
import random
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))

ODD_VALUES: list[Any] = [
    -1, 0, 1, -0.0, 0.5, 2**31, 2**63, -(2**63), 1e30, -1e-30, float("nan"), float("inf"), True, False, None,
    "", "abc", "1e-4", "100", "builtin:nothing", "x" * 5000, [], [0], [-1, -1], [1, 2, 3, 4, 5, 6, 7, 8],
    {}, {"x": 1}, [[[[[[1]]]]]], "2001-13-45", "/nonexistent/path", "builtin:tiny", 3.0,
]  # fmt: skip
TEXT_DAMAGE = ("truncate", "stray", "bomb", "deep", "tab", "dup_key", "garbage_line")


@dataclass
class Outcome:
    kind: str  # "refused", "accepted", "unexpected"
    seconds: float
    peak_mb: float
    detail: str = ""


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: {"refused": 0, "accepted": 0, "unexpected": 0})
    slowest_s: float = 0.0
    peak_mb: float = 0.0
    unexpected: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        self.slowest_s = max(self.slowest_s, outcome.seconds)
        self.peak_mb = max(self.peak_mb, outcome.peak_mb)
        if outcome.kind == "unexpected" and len(self.unexpected) < 20:
            self.unexpected.append(outcome.detail)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _parent(data: Any, path: tuple) -> tuple[Any, Any]:
    for key in path[:-1]:
        data = data[key]
    return data, path[-1]


def mutate_data(data: dict, rng: random.Random) -> dict:
    """One to three structural mutations of the parsed recipe."""
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent, key = _parent(data, path)
        op = rng.random()
        if op < 0.55:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif op < 0.65 and isinstance(parent, dict):
            del parent[key]
        elif op < 0.75 and isinstance(parent, dict):
            parent[f"{key}x" if rng.random() < 0.5 else "unknown_key"] = rng.choice(ODD_VALUES)
        elif op < 0.85 and isinstance(parent, list) and len(parent) > 1:
            rng.shuffle(parent)
        elif op < 0.92 and isinstance(parent, dict) and key == "name":
            parent[key] = rng.choice(["block_prune", "quantize", "step_distill", "remove_blocks", "nope"])
        elif isinstance(parent[key], int | float) and not isinstance(parent[key], bool):
            parent[key] = rng.choice([-parent[key], parent[key] * 1000, parent[key] + 0.5, 0])
        else:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    return data


def damage_text(text: str, rng: random.Random) -> str:
    kind = rng.choice(TEXT_DAMAGE)
    if kind == "truncate":
        return text[: rng.randrange(len(text))]
    if kind == "stray":
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(":-[]{}&*!|>'\"%@`#,?") + text[i:]
    if kind == "bomb":
        levels = rng.randint(3, 9)
        lines = ["b0: &b0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        lines += [f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]" for i in range(1, levels)]
        return text + "\n" + "\n".join(lines) + "\n"
    if kind == "deep":
        n = rng.choice([40, 500, 3000])
        return text + f"\ndeep: {'[' * n}{']' * n}\n"
    if kind == "tab":
        return text.replace("  ", "\t", 1)
    lines = text.splitlines()
    i = rng.randrange(len(lines))
    if kind == "dup_key":
        lines.insert(i, lines[i])
    else:
        lines[i] = rng.choice(["? [a, b]: 1", "x: &a [*a]", "y: !!float abc", "z: !!python/name:os.system", "]]]"])
    return "\n".join(lines) + "\n"


def mutants(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(origin, text) for `count` mutants, round-robin over the shipped recipes."""
    rng = random.Random(seed)
    sources = [(p.name, p.read_text()) for p in RECIPES]
    out = []
    for i in range(count):
        name, text = sources[i % len(sources)]
        if rng.random() < 0.25:
            out.append((f"{name}#text", damage_text(text, rng)))
        else:
            mutated = mutate_data(yaml.safe_load(text), rng)
            out.append((f"{name}#data", yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True)))
    return out


def _numbers_in_range(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_numbers_in_range(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_numbers_in_range(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) <= 1e12
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) <= 2**31 - 1
    return True


def judge(text: str, work: Path, origin: str, memory: bool = False) -> Outcome:
    """Validate one mutant as `neocompress validate` would and sort what happened; `memory` also traces its
    peak Python allocation (tracing slows validation several times, so timings come from untraced runs)."""
    from neocompress.core.errors import RecipeError
    from neocompress.recipe import load_recipe

    f = work / "mutant.yaml"
    f.write_text(text)
    if memory:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        recipe = load_recipe(f)
        kind, detail = "accepted", ""
        if not _numbers_in_range(recipe.resolved()):
            kind, detail = "unexpected", f"{origin}: accepted with a number out of range"
    except RecipeError as e:
        kind, detail = "refused", ""
        for p in e.problems:
            whole_file = "recipe is" in p.message or "invalid YAML" in p.message or "a recipe must be" in p.message
            if p.file != str(f) or (p.line is None and not whole_file):
                kind, detail = "unexpected", f"{origin}: problem without file or line: {p}"
                break
    except Exception as e:  # what the campaign exists to find
        kind, detail = "unexpected", f"{origin}: {type(e).__name__}: {str(e)[:200]}"
    seconds = time.perf_counter() - start
    peak = 0.0
    if memory:
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        seconds = 0.0  # not a timing: tracing inflates it
    return Outcome(kind, seconds, peak, detail)
