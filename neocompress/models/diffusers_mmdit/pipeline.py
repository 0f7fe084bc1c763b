"""Sampling and the flow-matching objective for a diffusers MMDiT transformer, as the passes need them.

Why no text encoders or VAE: a diffusers transformer folder (`config.json` + safetensors) is what the recipe
names, and pruning, importance and recovery only need the transformer's inputs. Text conditioning is a seeded
Gaussian embedding per prompt, with the shapes the transformer's config declares (the empty prompt is zeros,
the unconditional input); every output that used it says so. Sampling is diffusers' own
`FlowMatchEulerDiscreteScheduler` at the model's shift; latents are [B, C, h, w] in the transformer's space.
Flux takes them packed 2x2 into tokens with position ids, exactly as `FluxPipeline` packs them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from neocompress.core.errors import UserInputError
from neocompress.models.diffusers_mmdit.configs import MMDiTDefaults
from neocompress.models.pyramid_flow.text_encoders import TextEmbeddings

TEXT_CONDITIONING = "seeded Gaussian prompt embeddings (the transformer folder has no text encoders)"


class SeededTextEmbedder:
    """Prompt -> fixed embedding, the same on every machine (the seed is a hash of the prompt's bytes)."""

    def __init__(self, tokens: int, token_dim: int, pooled_dim: int):
        self.tokens, self.token_dim, self.pooled_dim = tokens, token_dim, pooled_dim

    def encode(self, prompts: list[str]) -> TextEmbeddings:
        pooled, tokens = [], []
        for p in prompts:
            if p == "":
                pooled.append(torch.zeros(self.pooled_dim))
                tokens.append(torch.zeros(self.tokens, self.token_dim))
                continue
            seed = int.from_bytes(hashlib.sha256(p.encode("utf-8")).digest()[:8], "little")
            gen = torch.Generator().manual_seed(seed)
            pooled.append(torch.randn(self.pooled_dim, generator=gen))
            tokens.append(torch.randn(self.tokens, self.token_dim, generator=gen))
        batch = len(prompts)
        return TextEmbeddings(
            torch.stack(pooled), torch.stack(tokens), torch.ones(batch, self.tokens, dtype=torch.long)
        )


@dataclass(frozen=True)
class ImageSchedule:
    steps: int
    guidance: float

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "guidance": self.guidance}


def latent_channels(kind: str, config: Any) -> int:
    """Channels of the latents [B, C, h, w]: Flux's `in_channels` counts them packed 2x2 into tokens."""
    return config.in_channels // (4 if kind == "flux" else 1)


def call_transformer(kind: str, model: nn.Module, x: Tensor, sigma: Tensor, text: TextEmbeddings, guidance: float):
    """The velocity (noise - clean) that `model` predicts for latents x [B, C, h, w] at noise level sigma [B]."""
    dtype = next(model.parameters()).dtype
    tokens, pooled = text.tokens.to(x.device, dtype), text.pooled.to(x.device, dtype)
    if kind == "sd3":
        return model(
            hidden_states=x.to(dtype), encoder_hidden_states=tokens, pooled_projections=pooled, timestep=sigma * 1000
        ).sample
    from diffusers import FluxPipeline

    b, c, h, w = x.shape
    packed = FluxPipeline._pack_latents(x.to(dtype), b, c, h, w)
    img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, x.device, dtype)
    txt_ids = torch.zeros(tokens.shape[1], 3, device=x.device, dtype=dtype)
    g = torch.full((b,), guidance, device=x.device, dtype=dtype) if model.config.guidance_embeds else None
    out = model(
        hidden_states=packed,
        encoder_hidden_states=tokens,
        pooled_projections=pooled,
        timestep=sigma.to(dtype),  # Flux's embedder multiplies by 1000 itself
        img_ids=img_ids,
        txt_ids=txt_ids,
        guidance=g,
    ).sample
    return FluxPipeline._unpack_latents(out, h * 8, w * 8, 8)  # (pixel size, VAE factor 8) -> [B, C, h, w]


@dataclass
class ImageFlowBatch:
    """One rectified-flow input: x_t = (1 - sigma) x0 + sigma noise; the target velocity is noise - x0."""

    kind: str
    sample: Tensor
    sigma: Tensor
    target: Tensor
    text: TextEmbeddings
    guidance: float

    def call(self, model: nn.Module) -> Tensor:
        return call_transformer(self.kind, model, self.sample, self.sigma, self.text, self.guidance).float()


class RectifiedFlowObjective:
    """SD3's training objective: sigma from a logit-normal(0, 1) (the SD3 paper's choice), Gaussian noise."""

    def __init__(self, kind: str, guidance: float):
        self.kind, self.guidance = kind, guidance

    def pick(self, latents: Tensor, generator: torch.Generator | None = None) -> dict[str, int]:
        return {}  # one kind of step: every draw is a noise level and a noise sample

    def batch(
        self, latents: Tensor, text: TextEmbeddings, pick: dict[str, int], generator: torch.Generator | None = None
    ) -> ImageFlowBatch:
        b = latents.shape[0]
        sigma = torch.sigmoid(torch.randn(b, generator=generator))
        noise = torch.randn(latents.shape, generator=generator)
        s = sigma.view(b, 1, 1, 1)
        x_t = (1 - s) * latents + s * noise
        return ImageFlowBatch(self.kind, x_t, sigma, noise - latents, text, self.guidance)


class _OneStage:
    """`measure_importance` records scores per sampler stage; a plain flow-matching sampler has one."""

    stages = 1


class MMDiTImagePipeline:
    """Generate latents with a diffusers MMDiT on seeded text conditioning; what importance and recovery call."""

    latent_dims = 4
    text_conditioning = TEXT_CONDITIONING

    def __init__(self, kind: str, model: nn.Module, defaults: MMDiTDefaults):
        self.kind, self.denoiser, self.defaults = kind, model.eval(), defaults
        cfg = model.config
        self.channels = latent_channels(kind, cfg)
        self.text = SeededTextEmbedder(defaults.text_tokens, cfg.joint_attention_dim, cfg.pooled_projection_dim)
        self.schedule = ImageSchedule(defaults.steps, defaults.guidance)
        self.scheduler = _OneStage()
        self.stages = 1
        self.objective = RectifiedFlowObjective(kind, defaults.guidance)

    def schedule_with(self, *, first: tuple[int, ...] | None = None, later: tuple[int, ...] | None = None, **_: Any):
        if later is not None:
            raise UserInputError("calibration.later: an image model has no later frames; give `first: [steps]`")
        if first is None:
            return self.schedule
        if len(first) != 1:
            raise UserInputError(f"calibration.first: an image model has one stage; give [steps], got {list(first)}")
        return ImageSchedule(int(first[0]), self.schedule.guidance)

    @torch.no_grad()
    def sample_latents(
        self,
        prompts: list[str],
        *,
        schedule: ImageSchedule | None = None,
        seed: int = 0,
        progress: Callable[[int, int, int], None] | None = None,
        **_: Any,
    ) -> Tensor:
        """Clean latents [B, C, h, w] by Euler steps of diffusers' flow-matching scheduler (no CFG: the seeded
        conditioning has no meaningful negative prompt; Flux's guidance is the distilled embedding)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        if not prompts:
            raise UserInputError("generate needs at least one prompt, got an empty list")
        schedule = schedule or self.schedule
        sched = FlowMatchEulerDiscreteScheduler(shift=self.defaults.shift)
        sched.set_timesteps(schedule.steps)
        size = self.defaults.latent_size
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(len(prompts), self.channels, size, size, generator=gen)
        text = self.text.encode(prompts)
        for i, t in enumerate(sched.timesteps):
            if progress is not None:
                progress(0, 0, i)
            sigma = (t / 1000).expand(len(prompts))
            v = call_transformer(self.kind, self.denoiser, x, sigma, text, schedule.guidance).float()
            x = sched.step(v, t, x).prev_sample
        return x

    def generate(self, prompts: list[str], **kwargs: Any) -> Tensor:
        """Latents (the family has no VAE decoder): the same as `sample_latents`."""
        return self.sample_latents(prompts, **kwargs)
