"""Quality of a pipeline on MiniBench, for reports: before and after a recipe, and after each pass.

The glue between a model family's pipeline and `neocompress.bench.minibench`: MiniBench asks for videos of its
held-out captions at the procedural world's size and length, and scores them with the shipped judges.
"""

from __future__ import annotations

from typing import Any

from neocompress.core.instruments import Instrument
from neocompress.core.pass_base import PassResult
from neocompress.ir.pipeline_ir import PipelineIR


def minibench(family: Any, ir: PipelineIR, *, prompts: int, seed: int, simulated: bool = True,
              schedule: Any = None) -> dict[str, Any]:  # fmt: skip
    """MiniBench's JSON for `ir`, plus how long it took; `simulated=False` scores a quantized pipeline's float
    weights (the families that quantize take it); `schedule` samples with that step schedule instead of the
    pipeline's own (the families with one)."""
    from neocompress.bench.minibench import run_minibench
    from neocompress.world import WorldConfig

    world = WorldConfig()
    pipe = family.pipeline(ir) if simulated else family.pipeline(ir, simulated=False)

    extra = {} if schedule is None else {"schedule": schedule}

    def generate(batch: list[str], s: int):
        return pipe.generate(batch, seed=s, frames=world.frames, height=world.size, width=world.size, **extra)

    result = run_minibench(generate, num_prompts=prompts, seed=seed, world_config=world)
    return {**result.to_json(), "seconds": sum(result.timings.values())}


def minibench_of(ir: PipelineIR, prompts: int, seed: int, schedule: Any = None) -> dict[str, Any]:
    """`minibench` with `ir`'s own family: what a pass scores before and after its change (sampled with
    `schedule` instead of the pipeline's own when given)."""
    from neocompress.models.family import get_family

    return minibench(get_family(ir.family), ir, prompts=prompts, seed=seed, schedule=schedule)


class MiniBenchInstrument(Instrument):
    """Scores the pipeline after every pass (a recipe's `evaluate.per_pass`)."""

    def __init__(self, family: Any, *, prompts: int, seed: int):
        self.family, self.prompts, self.seed = family, prompts, seed
        self.per_pass: list[dict[str, Any]] = []

    def after_pass(self, index: int, name: str, result: PassResult, seconds: float, cached: bool) -> None:
        if cached:  # a resumed run replays cached passes with the restored (final) IR: nothing true to score
            self.per_pass.append({"index": index, "pass": name, "cached": True})
            return
        score = minibench(self.family, result.ir, prompts=self.prompts, seed=self.seed)
        self.per_pass.append({"index": index, "pass": name, **score})

    def record(self) -> dict[str, Any]:
        return {"minibench_per_pass": self.per_pass}
