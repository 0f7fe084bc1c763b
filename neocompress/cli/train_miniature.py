"""`neocompress train-miniature`: reproduce the trained `builtin:tiny` (VAE, then the pyramidal MMDiT)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from neocompress.miniature.build import MiniatureRecipe, build_miniature, ship


@click.command("train-miniature")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    required=True,
    help="Where the pipeline, training record and checkpoints go (re-running resumes).",
)
@click.option("--vae-image-steps", type=int, default=MiniatureRecipe.vae_image_steps, show_default=True)
@click.option("--vae-image-batch", type=int, default=MiniatureRecipe.vae_image_batch, show_default=True)
@click.option("--vae-crop-steps", type=int, default=MiniatureRecipe.vae_crop_steps, show_default=True)
@click.option("--vae-crop-batch", type=int, default=MiniatureRecipe.vae_crop_batch, show_default=True)
@click.option("--vae-crop", type=int, default=MiniatureRecipe.vae_crop, show_default=True, help="Crop side, pixels.")
@click.option(
    "--vae-steps",
    type=int,
    default=MiniatureRecipe.vae_steps,
    show_default=True,
    help="Full-frame VAE steps after the crop phase.",
)
@click.option("--vae-batch", type=int, default=MiniatureRecipe.vae_batch, show_default=True)
@click.option(
    "--vae-long-steps",
    type=click.IntRange(min=0),
    default=MiniatureRecipe.vae_long_steps,
    show_default=True,
    help="A second full-clip VAE phase from the first (its own work directory); 0 skips it.",
)
@click.option(
    "--latents",
    type=int,
    default=MiniatureRecipe.latents,
    show_default=True,
    help="World clips encoded once for MMDiT training.",
)
@click.option("--dit-steps", type=int, default=MiniatureRecipe.dit_steps, show_default=True)
@click.option("--dit-batch", type=int, default=MiniatureRecipe.dit_batch, show_default=True)
@click.option(
    "--dit-patch-size",
    type=click.IntRange(1, 2),
    default=MiniatureRecipe.dit_patch_size,
    show_default=True,
    help="MMDiT patch size in latent cells (the smallest pyramid stage is 2x2 cells).",
)
@click.option(
    "--dit-motion-steps",
    type=click.IntRange(min=0),
    default=MiniatureRecipe.dit_motion_steps,
    show_default=True,
    help="MMDiT steps of a second phase that mostly trains the later (motion) latent frames; 0 skips it.",
)
@click.option(
    "--dit-motion-fraction",
    type=click.FloatRange(0.0, 1.0),
    default=MiniatureRecipe.dit_motion_fraction,
    show_default=True,
    help="Probability that a motion-phase step trains a later latent frame rather than the first.",
)
@click.option("--seed", type=int, default=MiniatureRecipe.seed, show_default=True)
@click.option("--ship", "do_ship", is_flag=True, help="Copy the result into the package as builtin:tiny.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(
    output: str,
    vae_image_steps: int,
    vae_image_batch: int,
    vae_crop_steps: int,
    vae_crop_batch: int,
    vae_crop: int,
    vae_steps: int,
    vae_batch: int,
    vae_long_steps: int,
    latents: int,
    dit_steps: int,
    dit_batch: int,
    dit_patch_size: int,
    dit_motion_steps: int,
    dit_motion_fraction: float,
    seed: int,
    do_ship: bool,
    progress: bool,
) -> None:
    """Train the miniature Pyramid-Flow on the procedural world."""
    for name, value in (
        ("--vae-image-steps", vae_image_steps),
        ("--vae-image-batch", vae_image_batch),
        ("--vae-crop-steps", vae_crop_steps),
        ("--vae-crop-batch", vae_crop_batch),
        ("--vae-crop", vae_crop),
        ("--vae-steps", vae_steps),
        ("--vae-batch", vae_batch),
        ("--latents", latents),
        ("--dit-steps", dit_steps),
        ("--dit-batch", dit_batch),
    ):
        if value < 1:
            raise click.BadParameter(f"must be >= 1, got {value}", param_hint=name)
    console = Console(stderr=True)
    if vae_crop % 8 or vae_crop > 64:
        raise click.BadParameter(f"must be a multiple of 8 and at most 64, got {vae_crop}", param_hint="--vae-crop")
    recipe = MiniatureRecipe(
        vae_image_steps=vae_image_steps,
        vae_image_batch=vae_image_batch,
        vae_crop_steps=vae_crop_steps,
        vae_crop_batch=vae_crop_batch,
        vae_crop=vae_crop,
        vae_steps=vae_steps,
        vae_batch=vae_batch,
        vae_long_steps=vae_long_steps,
        latents=latents,
        dit_steps=dit_steps,
        dit_batch=dit_batch,
        dit_patch_size=dit_patch_size,
        seed=seed,
        dit_motion_steps=dit_motion_steps,
        dit_motion_fraction=dit_motion_fraction,
    )
    summary = build_miniature(Path(output), recipe, progress=progress, log=console.print)
    t = summary["timings_s"]
    console.print(
        f"[green]trained[/] in {sum(t.values()) / 60:.1f} min (VAE {t['vae_s']:.0f} s, latents "
        f"{t['latents_s']:.0f} s, MMDiT {t['dit_s']:.0f} s); pipeline in {output}/pipeline"
    )
    if do_ship:
        console.print(f"[green]shipped[/] to {ship(Path(output))}")
