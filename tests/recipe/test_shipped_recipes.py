"""Every recipe shipped in recipes/ loads and validates as a user's `neocompress validate` would see it."""

from __future__ import annotations

from pathlib import Path

import pytest

from neocompress.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_recipes_are_found() -> None:
    assert len(RECIPES) >= 5 and any(p.name == "tiny-neodragon-quality.yaml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_a_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.passes
