"""A recipe is untrusted input: its YAML's cost is bounded by its size. Alias bombs, deep nesting, recursive
aliases, non-scalar keys and scalars their tag cannot hold are each a RecipeError with the line, within a few MB
(their time is measured by `benchmarks/recipe_fuzz.py`, not asserted here), and the shipped recipes stay far
inside every bound."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from neocompress.core.errors import RecipeError
from neocompress.recipe.yaml_bounds import MAX_DEPTH, MAX_NODES
from neocompress.recipe.yaml_lines import load_yaml_with_lines

ROOT = Path(__file__).resolve().parents[2]
TINY = (ROOT / "recipes" / "tiny.yaml").read_text()


def _bomb(levels: int) -> str:
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


CASES = {
    "alias bomb, 6 levels": (_bomb(6), "more than 20,000 values", 5),
    "alias bomb, 9 levels": (_bomb(9), "more than 20,000 values", 5),
    "flow nesting 500": ("x: " + "[" * 500 + "]" * 500 + "\n", f"deeper than {MAX_DEPTH}", 1),
    "flow nesting 2000": ("x: " + "[" * 2000 + "]" * 2000 + "\n", f"deeper than {MAX_DEPTH}", 1),
    "block nesting 200": ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n",
                          f"deeper than {MAX_DEPTH}", None),
    "recursive alias": ("x: &a [*a]\n", "recursive alias", 1),
    "complex key": (TINY + "? [a, b]: 1\n", "a key must be a plain value", None),
    "bad float tag": ("model: {seed: !!float abc}\n", "'abc' is not a valid float", 1),
    "impossible date": ("output: 2001-13-45\n", "not a valid timestamp", 1),
    "python tag": ("x: !!python/object/apply:os.system ['true']\n", "could not determine a constructor", 1),
    "too big": ("x: " + "a" * 300_000 + "\n", "at most", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_costly_or_malformed_recipe_is_a_recipe_error_in_bounded_time_and_memory(case: str) -> None:
    text, message, line = CASES[case]
    tracemalloc.start()
    with pytest.raises(RecipeError) as err:
        load_yaml_with_lines(text, "r.yaml")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    problem = err.value.problems[0]
    assert message in problem.message and problem.file == "r.yaml", problem
    if line is not None:
        assert problem.line == line, problem
    assert peak < 50e6, peak


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_far_inside_the_bounds(recipe: Path) -> None:
    data, lines = load_yaml_with_lines(recipe.read_text(), str(recipe))
    assert isinstance(data, dict) and len(lines) < MAX_NODES // 10


def test_shared_aliases_within_the_bound_still_load() -> None:
    data, _ = load_yaml_with_lines("base: &b {steps: 10, lr: 1.0e-3}\na: *b\nb: *b\n", "r.yaml")
    assert data["a"] == data["b"] == {"steps": 10, "lr": 1.0e-3}
