"""The calibration sampling that passes measure a teacher over (block_prune's importance, quantize's encodings):
which prompt set, how many prompts and samples, and the steps per stage. One config and one way to resolve it,
so every pass names its prompts and reports a missing set the same way."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from neocompress.core.config_types import SamplingSteps
from neocompress.core.errors import UserInputError
from neocompress.core.pass_base import PassConfig


class CalibrationConfig(PassConfig):
    prompts: str = Field("calibration", description="name of the recipe's data.prompts set to sample with")
    count: int | None = Field(None, ge=1, description="use the first `count` prompts of the set (default: all)")
    samples: int = Field(1, ge=1, description="noise samples per prompt")
    batch: int = Field(4, ge=1, description="prompts per sampler call")
    first: list[SamplingSteps] | None = Field(
        None, min_length=1, description="steps per stage for the first latent frame (default: the model's)"
    )
    later: list[SamplingSteps] | None = Field(None, min_length=1, description="steps per stage for later frames")

    def prompt_set(self, ctx: Any, pass_name: str) -> list[str]:
        """The whole named set (a pass may use the prompts past `count`, e.g. as held-out ones)."""
        prompts = ctx.data.get(self.prompts) if ctx.data is not None else None
        if not prompts:
            raise UserInputError(f"{pass_name} needs calibration prompts: data.prompts.{self.prompts} is not set")
        return list(prompts)

    def chosen_prompts(self, ctx: Any, pass_name: str) -> list[str]:
        prompts = self.prompt_set(ctx, pass_name)
        return prompts[: self.count] if self.count else prompts

    def schedule(self, pipeline: Any) -> Any:
        """The pipeline's schedule with these steps per stage (the model's where unset)."""
        return pipeline.schedule_with(
            first=tuple(self.first) if self.first is not None else None,
            later=tuple(self.later) if self.later is not None else None,
        )
