"""The recipe schema. Every section rejects unknown keys; pass entries are checked by each pass's own Config.

Why pydantic: its error list gives every problem with a location, which we map to YAML lines; nothing is
validated by hand that a schema can state.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from neocompress.core.config_types import Guidance, SamplingSteps

StageSteps = tuple[SamplingSteps, SamplingSteps, SamplingSteps]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSection(Strict):
    family: str = Field("pyramid-flow", description="model family, e.g. 'pyramid-flow'")
    source: str = Field(..., description="'builtin:NAME' or a checkpoint directory")
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "cpu"
    seed: int = Field(0, ge=0, description="seed for random init (builtin sources) and every pass")


class PromptSet(Strict):
    source: str = Field(
        "builtin:vbench", description="'builtin:vbench', 'builtin:world' or a text file with one prompt a line"
    )
    count: int | None = Field(None, gt=0, description="use only the first COUNT prompts")


class DataSection(Strict):
    prompts: dict[str, PromptSet] = Field(default_factory=dict)


class TargetSection(Strict):
    """Where the compressed pipeline is lowered to; the bundle is written inside the recipe's output."""

    name: Literal["onnxruntime", "hexagon"] = "onnxruntime"
    device: str | None = Field(None, description="device profile, e.g. 'snapdragon-8-elite' (hexagon)")
    also_compile: list[str] = Field(
        default_factory=list, description="more Hexagon device profiles to compile and simulate the parts for"
    )
    max_part_mb: float = Field(
        1024.0, gt=0, description="most deployed weight MiB per part (hexagon; AI Hub takes models under 2 GB)"
    )
    simulate: bool = Field(True, description="run every compiled part in the HTP simulator and report its SQNR")
    components: list[Literal["text_encoders", "denoiser", "vae_decoder"]] | None = Field(
        None, description="what to lower (hexagon; default: all)"
    )
    aihub: bool = Field(True, description="hexagon: compile, link and profile the parts on Qualcomm AI Hub when a "
                        "token is configured (skipped, with a note, when not)")  # fmt: skip
    aihub_wait: bool = Field(True, description="wait for the AI Hub jobs and record measured latency and memory")
    output: str | None = Field(None, description="bundle folder inside the output (default bundles/NAME)")

    def folder(self) -> str:
        return self.output or f"bundles/{self.name}"


class GenerateSection(Strict):
    """How `neocompress generate` samples from the output by default; unset keys keep the model's defaults."""

    prompts: list[str] | None = Field(None, min_length=1, description="prompts to sample")
    frames: int | None = Field(None, gt=0, description="video frames; must be 1 + 8k")
    height: int | None = Field(None, gt=0, description="height in pixels")
    width: int | None = Field(None, gt=0, description="width in pixels")
    first_unit_steps: StageSteps | None = Field(None, description="steps per stage, first latent frame")
    later_unit_steps: StageSteps | None = Field(None, description="steps per stage, later latent frames")
    guidance_first: Guidance | None = Field(None, description="CFG scale for the first latent frame (<= 1: off)")
    guidance_later: Guidance | None = Field(None, description="CFG scale for later latent frames (<= 1: off)")

    @field_validator("frames")
    @classmethod
    def _frames_fit_vae(cls, v: int | None) -> int | None:
        if v is not None and (v - 1) % 8 != 0:
            raise ValueError(f"frames must be 1 + 8k for the 8x temporal VAE (e.g. 9, 17, 49), got {v}")
        return v


class EvaluateSection(Strict):
    """Quality measured around the recipe: before, after, and (if asked) after every pass."""

    bench: Literal["mini"] = Field("mini", description="the benchmark: 'mini' (MiniBench, offline)")
    prompts: int = Field(32, gt=0, description="held-out captions to generate and score")
    seed: int = Field(0, ge=0, description="seed of the generated and the reference videos")
    per_pass: bool = Field(False, description="also score the pipeline after every pass")


class RecipeModel(Strict):
    model: ModelSection
    data: DataSection = Field(default_factory=DataSection)
    passes: list[dict[str, Any]] = Field(default_factory=list)
    target: TargetSection | None = Field(None, description="one target (or use `targets` for several)")
    targets: list[TargetSection] = Field(default_factory=list, description="targets, lowered in order")
    generate: GenerateSection | None = None
    evaluate: EvaluateSection | None = None
    output: str = Field(..., description="output directory")

    def all_targets(self) -> list[TargetSection]:
        return ([self.target] if self.target is not None else []) + list(self.targets)
