"""`neocompress eval PIPELINE --bench mini`: score a pipeline's videos of held-out world captions with MiniBench.

Videos are 9 frames of 64 x 64 (the world the judges were trained on) with the pipeline's own default step
schedule (which a recipe's passes may have changed); `--first-steps` / `--later-steps` override it like
`neocompress generate`. The table goes to stdout, or the JSON with `--json`; progress and timings to stderr.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click
from rich.console import Console

from neocompress.cli.generate import _steps
from neocompress.core.errors import UserInputError
from neocompress.models.family import family_for_source

if TYPE_CHECKING:
    import torch

BENCHES = ("mini",)
EVAL_FRAMES = 9
EVAL_SIZE = 64


@click.command("eval")
@click.argument("pipeline")
@click.option("--bench", type=click.Choice(BENCHES), default="mini", show_default=True, help="Which benchmark.")
@click.option("--prompts", "num_prompts", type=click.IntRange(min=1), default=None, help="Prompts (default 64).")
@click.option("--seed", type=int, default=0, show_default=True, help="Generation and reference seed.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Videos per call.")
@click.option("--first-steps", default=None, help="Steps per stage for the first latent frame, e.g. 20,20,20.")
@click.option("--later-steps", default=None, help="Steps per stage for later latent frames, e.g. 10,10,10.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def command(
    pipeline: str,
    bench: str,
    num_prompts: int | None,
    seed: int,
    batch_size: int,
    first_steps: str | None,
    later_steps: str | None,
    as_json: bool,
) -> None:
    """Score PIPELINE (a builtin name or a pipeline directory) on a quality benchmark."""
    from neocompress.bench.judges import Judges
    from neocompress.bench.minibench import DEFAULT_NUM_PROMPTS, run_minibench

    family = family_for_source(pipeline)
    if family.minibench_refusal():
        raise UserInputError(family.minibench_refusal())
    first, later = _steps(first_steps), _steps(later_steps)  # bad text fails before a model is loaded
    judges = Judges.load()  # missing judge weights fail before a model is loaded too
    err = Console(stderr=True)
    t0 = time.perf_counter()
    pipe = family.pipeline(family.load(pipeline))
    load_s = time.perf_counter() - t0
    schedule = pipe.schedule_with(first=first, later=later)

    def generate(prompts: list[str], s: int) -> torch.Tensor:
        return pipe.generate(prompts, frames=EVAL_FRAMES, height=EVAL_SIZE, width=EVAL_SIZE, schedule=schedule, seed=s)

    def progress(done: int, total: int) -> None:
        if err.is_terminal:
            err.print(f"[cyan]generated[/] {done}/{total}", end="\r")

    result = run_minibench(
        generate,
        num_prompts=num_prompts or DEFAULT_NUM_PROMPTS,
        seed=seed,
        judges=judges,
        batch_size=batch_size,
        progress=progress,
    )
    err.print(
        f"{bench}bench of {pipeline}: load {load_s:.1f} s, generate {result.timings['generate_s']:.1f} s, "
        f"score {result.timings['score_s']:.1f} s"
    )
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        Console().print(result.table(title=f"MiniBench: {pipeline}"))
