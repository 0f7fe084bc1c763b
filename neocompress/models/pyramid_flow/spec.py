"""The configuration of a whole Pyramid-Flow pipeline, and the built-in sources.

Why one object: the family builds, skeletons, saves and reloads pipelines from it, and every number a pass
needs about the pipeline (latent normalisation, the CLIP-L share of the pooled vector, the default video) lives
in one place instead of being re-derived per command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.scheduler import SchedulerConfig, StepSchedule
from neocompress.models.pyramid_flow.text_config import TextBundleConfig
from neocompress.models.pyramid_flow.vae import CausalVAEConfig, LatentNorm


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


BUILTIN_SPECS = {
    "builtin:tiny": tiny_spec,
    "builtin:tiny-random": tiny_spec,
    "builtin:pyramid-flow-sd3": pyramid_flow_sd3_spec,
}
WEIGHTLESS = {"builtin:pyramid-flow-sd3"}  # structure only: for inspect/plan, or give a checkpoint directory
