"""`neocompress eval PIPELINE --bench mini`: score a pipeline's videos of held-out world captions with MiniBench.

Videos are 9 frames of 64 x 64 (the world the judges were trained on) with the pipeline's own default step
schedule (which a recipe's passes may have changed); `--first-steps` / `--later-steps` override it like
`neocompress generate`. The table goes to stdout, or the JSON with `--json`; progress and timings to stderr.

Every score comes with its 95 % bootstrap interval over prompts. `--against BASE` also scores BASE on the same
prompts and seed and reports PIPELINE minus BASE per part with the paired interval of each difference: the
number to read when asking whether a compression step cost quality (it is much narrower than the two separate
intervals, since both pipelines face the same captions). A run with NaN or infinite videos is marked invalid.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from neocompress.cli.generate import _steps
from neocompress.core.errors import UserInputError
from neocompress.models.family import family_for_source

if TYPE_CHECKING:
    import torch

    from neocompress.bench.minibench import MiniBenchResult

BENCHES = ("mini",)
EVAL_FRAMES = 9
EVAL_SIZE = 64


@click.command("eval")
@click.argument("pipeline")
@click.option("--bench", type=click.Choice(BENCHES), default="mini", show_default=True, help="Which benchmark.")
@click.option("--prompts", "num_prompts", type=click.IntRange(min=1), default=None, help="Prompts (default 320).")
@click.option("--seed", type=int, default=0, show_default=True, help="Generation and reference seed.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Videos per call.")
@click.option("--first-steps", default=None, help="Steps per stage for the first latent frame, e.g. 20,20,20.")
@click.option("--later-steps", default=None, help="Steps per stage for later latent frames, e.g. 10,10,10.")
@click.option("--grid", type=click.Choice(("upstream", "uniform")), default=None,
              help="Euler grid inside each pyramid stage (default: the pipeline's own): uniform puts the steps of a "
              "few-step stage at 1, 1/2 ... instead of upstream's 1, 0.001.")
@click.option("--against", default=None, help="Also score this pipeline and report the paired difference.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def command(
    pipeline: str,
    bench: str,
    num_prompts: int | None,
    seed: int,
    batch_size: int,
    first_steps: str | None,
    later_steps: str | None,
    grid: str | None,
    against: str | None,
    as_json: bool,
) -> None:
    """Score PIPELINE (a builtin name or a pipeline directory) on a quality benchmark."""
    from neocompress.bench.judges import Judges
    from neocompress.bench.minibench import DEFAULT_NUM_PROMPTS

    first, later = _steps(first_steps), _steps(later_steps)  # bad text fails before a model is loaded
    schedule = {"first": first, "later": later, **({"grid": grid} if grid else {})}
    sources = [pipeline] if against is None else [pipeline, against]
    families = [family_for_source(source) for source in sources]
    for family in families:
        if family.minibench_refusal():
            raise UserInputError(family.minibench_refusal())
    judges = Judges.load()  # missing judge weights fail before a model is loaded too
    err = Console(stderr=True)
    results = [
        _score(source, family, judges, schedule, num_prompts or DEFAULT_NUM_PROMPTS, seed, batch_size, bench, err)
        for source, family in zip(sources, families, strict=True)
    ]
    difference = None
    if against is not None:
        if not all(r.valid for r in results):
            raise UserInputError("no difference: a run made NaN or infinite videos (see its table)")
        difference = results[0].difference(results[1])
    if as_json:
        data = results[0].to_json()
        if against is not None:
            data |= {"against": {"source": against, **results[1].to_json()}, "difference": difference}
        click.echo(json.dumps(data))
        return
    out = Console()
    for source, result in zip(sources, results, strict=True):
        out.print(result.table(title=f"MiniBench: {source}"))
    if difference is not None:
        out.print(difference_table(difference, f"{pipeline} minus {against}"))


def _score(
    source: str,
    family: Any,
    judges: Any,
    schedule_overrides: dict[str, Any],
    prompts: int,
    seed: int,
    batch_size: int,
    bench: str,
    err: Console,
) -> MiniBenchResult:
    """One pipeline's MiniBench run, with its load, generation and scoring times on stderr."""
    from neocompress.bench.minibench import run_minibench

    t0 = time.perf_counter()
    pipe = family.pipeline(family.load(source))
    load_s = time.perf_counter() - t0
    schedule = pipe.schedule_with(**schedule_overrides)

    def generate(batch: list[str], s: int) -> torch.Tensor:
        return pipe.generate(batch, frames=EVAL_FRAMES, height=EVAL_SIZE, width=EVAL_SIZE, schedule=schedule, seed=s)

    def progress(done: int, total: int) -> None:
        if err.is_terminal:
            err.print(f"[cyan]{source}: generated[/] {done}/{total}", end="\r")

    result = run_minibench(generate, num_prompts=prompts, seed=seed, judges=judges, batch_size=batch_size,
                           progress=progress)  # fmt: skip
    err.print(
        f"{bench}bench of {source}: load {load_s:.1f} s, generate {result.timings['generate_s']:.1f} s, "
        f"score {result.timings['score_s']:.1f} s, total {result.total:.3f} +- {result.half_width:.3f}"
    )
    return result


def difference_table(difference: dict[str, dict[str, Any]], title: str) -> Any:
    """A rich Table of a paired difference: per part the change and its interval, flagged where it excludes 0."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("part", "difference", "95% interval", ""):
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, d in difference.items():
        lo, hi = d["interval"]
        verdict = "[red]worse[/]" if hi < 0 else "[green]better[/]" if lo > 0 else "no change shown"
        table.add_row(name, f"{d['delta']:+.3f}", f"{lo:+.3f} to {hi:+.3f}", verdict)
    return table
