"""`neocompress apply RECIPE`: run a recipe and write the compressed pipeline."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from neocompress.core.apply_run import apply_recipe
from neocompress.core.instruments import DumpIRInstrument, ProgressInstrument, TimingInstrument, VerifyInstrument
from neocompress.recipe import load_recipe


@click.command("apply")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Override the recipe's output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory (only once the new one is complete).")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=".neocompress-cache",
    show_default=True,
    help="Where each pass's output is cached; an interrupted run resumes from it.",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the pass cache.")
@click.option("--time", "timing", is_flag=True, help="Record the time of every pass.")
@click.option("--dump-ir", type=click.Path(file_okay=False), help="Write the IR before and after every pass here.")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Verify the IR after every pass.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress.")
def command(
    recipe: str,
    output: str | None,
    force: bool,
    cache_dir: str,
    no_cache: bool,
    timing: bool,
    dump_ir: str | None,
    verify: bool,
    progress: bool,
) -> None:
    """Apply RECIPE: validate it, run its passes in order, write the result atomically."""
    r = load_recipe(recipe)
    instruments = []
    if progress:
        instruments.append(ProgressInstrument(total=len(r.passes)))
    if timing:
        instruments.append(TimingInstrument())
    if dump_ir:
        instruments.append(DumpIRInstrument(Path(dump_ir)))
    if verify:
        instruments.append(VerifyInstrument())
    console = Console(stderr=True)

    def lowered(step: str) -> None:
        if progress:
            console.print(f"[cyan]lowering[/] {step}")

    outcome = apply_recipe(
        r,
        lowering_progress=lowered,
        force=force,
        cache_dir=None if no_cache else Path(cache_dir),
        instruments=instruments,
        output=Path(output) if output else None,
    )
    hub = [t.get("aihub") or {} for t in outcome.manifest.get("targets", [])]
    skipped = [h for h in hub if h.get("status") == "skipped"]
    if skipped:  # once, however many targets it affected
        from rich.panel import Panel

        console.print(Panel(skipped[0]["reason"], title="Qualcomm AI Hub skipped", border_style="yellow"))
    cached = sum(rec.cached for rec in outcome.run.records)
    console.print(
        f"[green]wrote[/] {outcome.output} ({len(outcome.run.records)} pass(es), {cached} from cache)"
    )
