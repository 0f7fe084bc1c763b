"""The configuration of a whole Pyramid-Flow pipeline, and the built-in sources.

Why one object: the family builds, skeletons, saves and reloads pipelines from it, and every number a pass
needs about the pipeline (latent normalisation, the CLIP-L share of the pooled vector, the default video) lives
in one place instead of being re-derived per command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.scheduler import SchedulerConfig, StepSchedule
from neocompress.models.pyramid_flow.text_config import TextBundleConfig
from neocompress.models.pyramid_flow.vae import CausalVAEConfig, LatentNorm

PIXELS_PER_LATENT = 8  # the causal VAE compresses 8x in space


@dataclass(frozen=True)
class VideoSetting:
    """The default video a pipeline generates (and that FLOPs per video are counted for)."""

    frames: int
    height: int
    width: int

    @property
    def units(self) -> int:
        return 1 + (self.frames - 1) // 8

    def to_dict(self) -> dict[str, int]:
        return {"frames": self.frames, "height": self.height, "width": self.width}


@dataclass(frozen=True)
class PyramidFlowSpec:
    text: TextBundleConfig
    denoiser: DenoiserConfig
    vae: CausalVAEConfig
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    schedule: StepSchedule = field(default_factory=StepSchedule.pyramid_flow)
    latent_norm: LatentNorm = field(default_factory=LatentNorm.pyramid_flow_sd3)
    video: VideoSetting = VideoSetting(49, 320, 512)
    denoiser_folder: str = "diffusion_transformer_384p"
    # The TAEHV decoder's config when `decoder_swap` replaced the causal VAE decoder (None: the VAE's own decoder).
    decoder: dict[str, Any] | None = field(default=None, hash=False)

    def video_problems(self, frames: int, height: int, width: int) -> dict[str, str]:
        """What is wrong with a requested video size, by field name (empty when it can be generated)."""
        problems: dict[str, str] = {}
        if frames < 1 or (frames - 1) % 8:
            problems["frames"] = f"frames must be 1 + 8k (e.g. 9, 17, 49), got {frames}"
        # Stage 0 works at 1/2^(stages-1) of the latent size with patches on top: pixels must divide by all of it.
        div = PIXELS_PER_LATENT * 2 ** (self.scheduler.stages - 1) * self.denoiser.patch_size
        for name, val in (("height", height), ("width", width)):
            if val < div or val % div:
                problems[name] = f"{name} must be a positive multiple of {div}, got {val}"
        return problems

    @property
    def clip_l_pooled(self) -> int:
        return int(self.text.clip_l["projection_dim"])

    def extras_dict(self) -> dict[str, Any]:
        """What the manifest stores beyond the component folders."""
        return {
            "schedule": self.schedule.to_dict(),
            "latent_norm": self.latent_norm.__dict__,
            "video": self.video.to_dict(),
            "denoiser_folder": self.denoiser_folder,
            "text_lengths": {"clip_max_length": self.text.clip_max_length, "t5_max_length": self.text.t5_max_length},
        }


def pyramid_flow_sd3_spec() -> PyramidFlowSpec:
    """The released rain1011/pyramid-flow-sd3 at its real sizes; 49 frames at 320x512 as Neodragon deploys it."""
    return PyramidFlowSpec(
        TextBundleConfig.pyramid_flow_sd3(), DenoiserConfig.pyramid_flow_sd3(), CausalVAEConfig.pyramid_flow_sd3()
    )


def tiny_spec() -> PyramidFlowSpec:
    """The embedded default: the same architecture at toy sizes, 9 frames at 64x64 (2 latent frames)."""
    return PyramidFlowSpec(
        TextBundleConfig.tiny(), DenoiserConfig.tiny(), CausalVAEConfig.tiny(), video=VideoSetting(9, 64, 64)
    )


# Builtins whose trained weights ship inside the package (written by `neocompress train-miniature --ship`); until
# the folder holds a pipeline, the name falls back to the seeded init of its spec above.
SHIPPED_DIRS = {"builtin:tiny": Path(__file__).resolve().parents[2] / "assets" / "miniature"}

BUILTIN_SPECS = {
    "builtin:tiny": tiny_spec,
    "builtin:tiny-random": tiny_spec,
    "builtin:pyramid-flow-sd3": pyramid_flow_sd3_spec,
}
WEIGHTLESS = {"builtin:pyramid-flow-sd3"}  # structure only: for inspect/plan, or give a checkpoint directory


def override_schedule(
    schedule: StepSchedule,
    *,
    first: tuple[int, ...] | None = None,
    later: tuple[int, ...] | None = None,
    guidance_first: float | None = None,
    guidance_later: float | None = None,
    hybrid: bool | None = None,
    grid: str | None = None,
) -> StepSchedule:
    """`schedule` with whichever of its settings are given replaced."""
    return StepSchedule(
        tuple(first) if first else schedule.first_unit,
        tuple(later) if later else schedule.later_units,
        schedule.guidance_first if guidance_first is None else guidance_first,
        schedule.guidance_later if guidance_later is None else guidance_later,
        schedule.hybrid if hybrid is None else hybrid,
        schedule.grid if grid is None else grid,
    )
