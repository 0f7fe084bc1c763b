"""Recipes: YAML files that say which model, which data, which passes in which order, which target, where."""

from neocompress.recipe.load import Recipe, load_recipe

__all__ = ["Recipe", "load_recipe"]
