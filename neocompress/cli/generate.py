"""`neocompress generate SOURCE`: sample videos from a pipeline; write mp4/gif and a PNG frame grid."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from neocompress.analysis.video_io import frame_grid, to_uint8_frames, write_video
from neocompress.core.atomic import atomic_directory
from neocompress.core.errors import UserInputError
from neocompress.models.family import family_for_source, read_manifest


def _steps(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        steps = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UserInputError(f"steps must be comma-separated integers such as 20,20,20, got '{text}'") from None
    if len(steps) != 3 or min(steps) < 1:
        raise UserInputError(f"steps need three positive integers (one per pyramid stage), got '{text}'")
    return steps


def _recipe_generate_section(source: str) -> dict:
    """The `generate:` section of the recipe that produced SOURCE, if SOURCE is a neocompress output."""
    if source.startswith("builtin:"):
        return {}
    return (read_manifest(source).get("recipe") or {}).get("generate") or {}


def _tuple(value: list[int] | None) -> tuple[int, ...] | None:
    return tuple(value) if value else None


@click.command("generate")
@click.argument("source")
@click.option("--prompt", "-p", "prompts", multiple=True, help="Prompt (repeat for several videos).")
@click.option("--frames", type=int, default=None, help="Frames per video (1 + 8k). Default: the source's.")
@click.option("--height", type=int, default=None, help="Height in pixels (multiple of 64 at stage 0).")
@click.option("--width", type=int, default=None, help="Width in pixels.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--first-steps", default=None, help="Steps per stage for the first latent frame, e.g. 20,20,20.")
@click.option("--later-steps", default=None, help="Steps per stage for later latent frames, e.g. 10,10,10.")
@click.option("--guidance-first", type=float, default=None, help="CFG scale for the first frame (<= 1: off).")
@click.option("--guidance-later", type=float, default=None, help="CFG scale for later frames (<= 1: off).")
@click.option("--format", "fmt", type=click.Choice(["mp4", "gif"]), default="mp4", show_default=True)
@click.option("--fps", type=int, default=8, show_default=True)
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
def command(
    source: str,
    prompts: tuple[str, ...],
    frames: int | None,
    height: int | None,
    width: int | None,
    seed: int,
    first_steps: str | None,
    later_steps: str | None,
    guidance_first: float | None,
    guidance_later: float | None,
    fmt: str,
    fps: int,
    output: str,
    force: bool,
) -> None:
    """Generate videos from SOURCE (a builtin name or a pipeline directory)."""
    family = family_for_source(source)
    if not family.decodes_videos:
        raise UserInputError(
            f"'{source}' is a {family.name} transformer without a VAE: generate writes videos of pyramid-flow "
            "pipelines; load this folder into its diffusers pipeline to make images"
        )
    first, later = _steps(first_steps), _steps(later_steps)  # bad text fails before a model is loaded
    # A recipe's `generate:` section, recorded in the output's manifest, supplies the defaults; options win.
    saved = _recipe_generate_section(source)
    first = first or _tuple(saved.get("first_unit_steps"))
    later = later or _tuple(saved.get("later_unit_steps"))
    guidance_first = saved.get("guidance_first") if guidance_first is None else guidance_first
    guidance_later = saved.get("guidance_later") if guidance_later is None else guidance_later
    console = Console(stderr=True)
    t0 = time.perf_counter()
    pipe = family.pipeline(family.load(source))
    load_s = time.perf_counter() - t0
    prompts = prompts or tuple(saved.get("prompts") or ()) or (pipe.default_prompt(),)
    schedule = pipe.schedule_with(
        first=first,
        later=later,
        guidance_first=guidance_first,
        guidance_later=guidance_later,
    )
    video_cfg = pipe.resolve_video(
        frames if frames is not None else saved.get("frames"),
        height if height is not None else saved.get("height"),
        width if width is not None else saved.get("width"),
    )
    calls = schedule.calls(video_cfg["units"]) * len(prompts)
    with atomic_directory(Path(output), force=force) as tmp:
        with Progress(
            TextColumn("[cyan]denoising[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("denoise", total=calls)
            t1 = time.perf_counter()
            videos = []
            for i, prompt in enumerate(prompts):
                videos.append(
                    pipe.generate(
                        [prompt],
                        frames=video_cfg["frames"],
                        height=video_cfg["height"],
                        width=video_cfg["width"],
                        schedule=schedule,
                        seed=seed + i,
                        progress=lambda *_: bar.advance(task),
                    )[0]
                )
            gen_s = time.perf_counter() - t1
        records = []
        for i, (prompt, video) in enumerate(zip(prompts, videos, strict=True)):
            arr = to_uint8_frames(video)
            write_video(arr, tmp / f"video_{i:02d}.{fmt}", fps=fps)
            frame_grid(arr, tmp / f"frames_{i:02d}.png", caption=prompt)
            records.append(
                {"prompt": prompt, "video": f"video_{i:02d}.{fmt}", "grid": f"frames_{i:02d}.png", "seed": seed + i}
            )
        info = {
            "source": source,
            **video_cfg,
            "schedule": schedule.to_dict(),
            "nfe_per_video": schedule.nfe(video_cfg["units"]),
            "calls_per_video": schedule.calls(video_cfg["units"]),
            "load_seconds": round(load_s, 3),
            "generate_seconds": round(gen_s, 3),
            "videos": records,
        }
        (tmp / "generate.json").write_text(json.dumps(info, indent=2))
    console.print(
        f"[green]wrote[/] {len(videos)} video(s) to {escape(output)} in {gen_s:.1f} s "
        f"({info['nfe_per_video']} NFE per video)"
    )
