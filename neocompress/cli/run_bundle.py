"""`neocompress run-bundle BUNDLE`: generate videos from a lowered bundle alone (its ONNX graphs or its compiled
Hexagon parts), so the lowered pipeline is proven rather than assumed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from neocompress.analysis.video_io import frame_grid, to_uint8_frames, write_video
from neocompress.cli.generate import _steps
from neocompress.core.atomic import atomic_directory
from neocompress.models.pyramid_flow.spec import override_schedule
from neocompress.targets.bundle import read_manifest


@click.command("run-bundle")
@click.argument("bundle", type=click.Path(file_okay=False, exists=True))
@click.option("--prompt", "-p", "prompts", multiple=True, help="Prompt (repeat for several videos).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--first-steps", default=None, help="Steps per stage for the first latent frame, e.g. 20,20,20.")
@click.option("--later-steps", default=None, help="Steps per stage for later latent frames, e.g. 10,10,10.")
@click.option("--device", default=None, help="Hexagon bundles: the compiled device to simulate (default: the first).")
@click.option("--fused", is_flag=True, help="onnxruntime bundles: fuse QDQ into integer kernels (faster; ~1e-2 from "
              "the AIMET simulation, which the default reproduces)")
@click.option("--fps", type=int, default=8, show_default=True)
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
def command(bundle: str, prompts: tuple[str, ...], seed: int, first_steps: str | None, later_steps: str | None,
            device: str | None, fused: bool, fps: int, output: str, force: bool) -> None:  # fmt: skip
    """Generate from BUNDLE (written by a recipe's onnxruntime or hexagon target) without any torch model."""
    from neocompress.targets.onnxruntime.runtime import BundleRuntime, cpu_session, fused_cpu_session

    first, later = _steps(first_steps), _steps(later_steps)
    manifest = read_manifest(Path(bundle))
    factory = fused_cpu_session if fused else cpu_session
    where = "onnxruntime (CPU" + (", QDQ fused)" if fused else ")")
    if manifest["target"]["name"] == "hexagon":
        from neocompress.targets.hexagon.runtime import simulator_factory

        factory = simulator_factory(manifest, device)
        where = f"the HTP simulator ({device or next(iter(manifest['compiled']))})"
    t0 = time.perf_counter()
    runtime = BundleRuntime(bundle, session_factory=factory)
    runtime.schedule = override_schedule(runtime.schedule, first=first, later=later)
    load_s = time.perf_counter() - t0
    prompts = prompts or ("a red circle moving left slowly on a grey background",)
    console = Console(stderr=True)
    with atomic_directory(Path(output), force=force) as tmp:
        t1 = time.perf_counter()
        with console.status(f"generating {len(prompts)} video(s) in {where}"):
            records = []
            for i, prompt in enumerate(prompts):
                arr = to_uint8_frames(runtime.generate([prompt], seed=seed + i)[0])
                write_video(arr, tmp / f"video_{i:02d}.mp4", fps=fps)
                frame_grid(arr, tmp / f"frames_{i:02d}.png", caption=prompt)
                records.append({"prompt": prompt, "video": f"video_{i:02d}.mp4", "grid": f"frames_{i:02d}.png",
                                "seed": seed + i})  # fmt: skip
        gen_s = time.perf_counter() - t1
        info = {"bundle": bundle, "runs_on": where, "schedule": runtime.schedule.to_dict(), **runtime.video,
                "graph_calls": runtime.calls, "load_seconds": load_s, "generate_seconds": gen_s,
                "videos": records}  # fmt: skip
        (tmp / "run-bundle.json").write_text(json.dumps(info, indent=2))
    console.print(f"[green]wrote[/] {len(records)} video(s) to {escape(output)} from {escape(bundle)} in {gen_s:.1f} s")
