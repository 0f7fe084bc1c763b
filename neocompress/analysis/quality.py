"""Quality of a pipeline on MiniBench, for reports: before and after a recipe, and after each pass.

The glue between a model family's pipeline and `neocompress.bench.minibench`: MiniBench asks for videos of its
held-out captions at the procedural world's size and length, and scores them with the shipped judges.
"""

from __future__ import annotations

import functools
from typing import Any

from neocompress.analysis.score_cache import ScoreCache, plain_value, remembers
from neocompress.core.instruments import Instrument
from neocompress.core.pass_base import PassResult
from neocompress.ir.pipeline_ir import PipelineIR


@functools.lru_cache(maxsize=1)
def _judges_fingerprint() -> str:
    """The shipped judges' weights hash: a remembered score is only reused with the judges that gave it."""
    from neocompress.bench.judges import WEIGHTS_FILE, default_judges_dir
    from neocompress.core.hashing import hash_file

    return hash_file(default_judges_dir() / WEIGHTS_FILE)


def minibench(family: Any, ir: PipelineIR, *, prompts: int, seed: int, simulated: bool = True,
              schedule: Any = None, cache: ScoreCache | None = None) -> dict[str, Any]:  # fmt: skip
    """MiniBench's JSON for `ir` (scores, 95 % intervals, validity), plus how long it took; `simulated=False`
    scores a quantized pipeline's float weights (the families that quantize take it); `schedule` samples with
    that step schedule instead of the pipeline's own (the families with one). With a `cache`, a pipeline
    already scored under the same settings is not sampled again (the JSON then says `"reused": true`)."""
    from neocompress.bench.minibench import MINIBENCH_VERSION, run_minibench
    from neocompress.world import WorldConfig

    world = WorldConfig()

    def run() -> tuple[dict[str, Any], Any]:
        pipe = family.pipeline(ir) if simulated else family.pipeline(ir, simulated=False)
        extra = {} if schedule is None else {"schedule": schedule}

        def generate(batch: list[str], s: int):
            return pipe.generate(batch, seed=s, frames=world.frames, height=world.size, width=world.size, **extra)

        result = run_minibench(generate, num_prompts=prompts, seed=seed, world_config=world)
        assert result.scores is not None
        return {**result.to_json(), "seconds": sum(result.timings.values())}, result.scores.evidence

    settings = {"bench": MINIBENCH_VERSION, "judges": _judges_fingerprint(), "prompts": prompts, "seed": seed,
                "simulated": simulated, "schedule": plain_value(schedule), "world": world.to_dict()}  # fmt: skip
    return (cache or ScoreCache()).score(ir, settings, run, remember=remembers(ir, simulated))


def minibench_of(ir: PipelineIR, prompts: int, seed: int, schedule: Any = None,
                 cache: ScoreCache | None = None) -> dict[str, Any]:  # fmt: skip
    """`minibench` with `ir`'s own family: what a pass scores before and after its change (sampled with
    `schedule` instead of the pipeline's own when given)."""
    from neocompress.models.family import get_family

    return minibench(get_family(ir.family), ir, prompts=prompts, seed=seed, schedule=schedule, cache=cache)


def pipeline_cost(family: Any, ir: PipelineIR) -> dict[str, Any]:
    """What one video costs the pipeline: denoiser evaluations (NFE, CFG counted), denoiser blocks, and
    parameters; NFE x blocks is the block evaluations per video that the chain's 25x target counts."""
    nfe = family.scheduler_summary(ir).get("nfe")
    blocks = None
    if "denoiser" in ir and ir["denoiser"].extras.get("block_adapter") is not None:
        blocks = len(ir["denoiser"].extras["block_adapter"].blocks(ir["denoiser"].module))
    return {"nfe": nfe, "blocks": blocks, "params": sum(c.num_params() for c in ir),
            "block_evaluations": nfe * blocks if nfe is not None and blocks is not None else None}  # fmt: skip


class MiniBenchInstrument(Instrument):
    """Scores the pipeline after every pass (a recipe's `evaluate.per_pass`).

    A resumed run replays its cached passes with one IR, the one restored from the last cached pass's entry: it
    is that pass's true output, so that pass is scored (from the score cache when an earlier run scored it),
    before the first pass that runs changes it; the passes before it have no IR of their own here and are
    marked cached without a score."""

    def __init__(self, family: Any, *, prompts: int, seed: int, cache: ScoreCache | None = None):
        self.family, self.prompts, self.seed, self.cache = family, prompts, seed, cache
        self.per_pass: list[dict[str, Any]] = []
        self._restored: PipelineIR | None = None

    def after_pass(self, index: int, name: str, result: PassResult, seconds: float, cached: bool) -> None:
        if cached:
            self.per_pass.append({"index": index, "pass": name, "cached": True})
            self._restored = result.ir
            return
        self.per_pass.append({"index": index, "pass": name, **self._scored(result.ir)})

    def before_pass(self, index: int, name: str, ir: PipelineIR) -> None:
        self._score_restored()

    def record(self) -> dict[str, Any]:
        self._score_restored()
        return {"minibench_per_pass": self.per_pass}

    def _scored(self, ir: PipelineIR) -> dict[str, Any]:
        score = minibench(self.family, ir, prompts=self.prompts, seed=self.seed, cache=self.cache)
        return {"cost": pipeline_cost(self.family, ir), **score}

    def _score_restored(self) -> None:
        """Score the last cached pass with the restored IR, once, before anything changes it."""
        if self._restored is not None:
            self.per_pass[-1].update(self._scored(self._restored))
            self._restored = None
