"""A fast sample of the recipe fuzz campaign (tests/recipe/fuzz.py; 10,000 mutants run in `make bench`): every
mutant of every shipped recipe is either refused with the file, line and path, or accepted with every number in
range; nothing else escapes, within a few hundred MB. (Each validation's time is measured and bounded by the
benchmark, not asserted here: the test machines are noisy.)"""

from __future__ import annotations

from pathlib import Path

from neocompress.recipe import load_recipe
from tests.recipe.fuzz import RECIPES, Tally, judge, mutants

SAMPLE = 120


def test_every_mutant_is_refused_with_its_place_or_accepted_in_range(tmp_path: Path) -> None:
    load_recipe(RECIPES[0])  # imports and first-use set-up are not a validation's cost
    tally = Tally()
    for i, (origin, text) in enumerate(mutants(SAMPLE, seed=2026)):
        tally.add(judge(text, tmp_path, origin, memory=i % 10 == 0))
    assert tally.counts["unexpected"] == 0, tally.unexpected
    assert tally.counts["refused"] > SAMPLE // 2 and tally.counts["accepted"] > 0, tally.counts
    assert tally.peak_mb < 300, tally.peak_mb


def test_the_mutator_covers_every_shipped_recipe_and_both_kinds_of_damage() -> None:
    origins = {origin for origin, _ in mutants(4 * len(RECIPES), seed=1)}
    assert {o.split("#")[0] for o in origins} == {p.name for p in RECIPES}
    assert {o.split("#")[1] for o in origins} == {"text", "data"}
