"""`neocompress validate RECIPE`: every problem of a recipe at once, with lines; nothing heavy runs."""

from __future__ import annotations

import click
from rich.console import Console
from rich.markup import escape

from neocompress.recipe import load_recipe


@click.command("validate")
@click.argument("recipe", type=click.Path(dir_okay=False))
def command(recipe: str) -> None:
    """Check RECIPE (schema, pass configs, and each pass against the model's structure)."""
    r = load_recipe(recipe)
    summary = f"{recipe}: {len(r.passes)} pass(es) on {r.model.model.source} -> {r.model.output}"
    Console().print(f"[green]ok[/] {escape(summary)}")  # escaped: a path like out/[v2] is not markup
