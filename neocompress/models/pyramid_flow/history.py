"""Temporal pyramid: which past frames the DiT sees, and at which resolution.

Pyramid-Flow conditions each new latent frame on all earlier ones, but only the most recent frame is given at
the current stage's resolution; the one before it one stage lower, and so on down to stage 0, where all
remaining older frames sit. This keeps the token count of long histories small. The frame at distance d
(1 = most recent) is at stage max(stage - d + 1, 0), which is what upstream's pointer walk in ``generate``
produces.

The history is returned one entry per frame ([B, C, 1, h, w]) rather than upstream's single multi-frame tensor
for the stage-0 frames: the DiT assigns temporal positions cumulatively over the list, so both give the same
tokens, positions and mask, and per-frame entries do not require the DiT to handle T > 1 clips.
"""

from __future__ import annotations

import torch

from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler, downsample


def history_stages(num_frames: int, stage: int) -> list[int]:
    """Stage resolution of each history frame, oldest first, for the current clip at ``stage``."""
    return [max(stage - (num_frames - j) + 1, 0) for j in range(num_frames)]


def history_for(clean_latents: list[torch.Tensor], stage: int, scheduler: PyramidFlowScheduler) -> list[torch.Tensor]:
    """History for the current unit at ``stage`` from earlier units' clean full-resolution latents.

    ``clean_latents`` holds [B, C, 1, H, W] tensors, oldest first. Returns, oldest first: all but the most
    recent max(stage, 1) frames at stage-0 resolution, one frame each at stages 1..stage-1, then the most
    recent frame at ``stage``'s resolution (fewer when fewer frames exist). Downsampling is bilinear without
    rescaling (the x2 is only for noise).
    """
    if not 0 <= stage < scheduler.stages:
        raise ValueError(f"stage must be in [0, {scheduler.stages}), got {stage}")
    out = []
    for frame, s in zip(clean_latents, history_stages(len(clean_latents), stage), strict=True):
        if frame.ndim != 5:
            raise ValueError(f"history frames must be [B, C, T, H, W], got {tuple(frame.shape)}")
        out.append(downsample(frame, scheduler.resolution_divisor(s)))
    return out


def corrupt_history(
    history: list[torch.Tensor],
    generator: torch.Generator | None = None,
    max_sigma: float = 1 / 3,
    *,
    per_frame: bool = False,
) -> list[torch.Tensor]:
    """Training-time corruption x = (1 - sigma) x + sigma * noise with sigma ~ U(0, max_sigma).

    Teaches the DiT to tolerate its own imperfect past frames. Upstream draws one sigma per sample and applies
    it to every history clip (``per_frame=False``, the default); ``per_frame=True`` draws one per sample and
    frame instead.
    """
    if not history:
        return []
    batch = history[0].shape[0]
    draw_device = generator.device if generator is not None else history[0].device

    def draw_sigma() -> torch.Tensor:
        return torch.rand(batch, generator=generator, device=draw_device) * max_sigma

    shared = None if per_frame else draw_sigma()
    out = []
    for x in history:
        sigma = draw_sigma() if per_frame else shared
        assert sigma is not None
        sigma = sigma.to(device=x.device, dtype=torch.float32).reshape(-1, *([1] * (x.ndim - 1)))
        noise = torch.randn(x.shape, generator=generator, device=draw_device).to(x.device)
        out.append(((1 - sigma) * x.float() + sigma * noise).to(x.dtype))
    return out
