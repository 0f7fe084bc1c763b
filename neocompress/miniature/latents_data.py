"""The denoiser's training data: world videos encoded once by the frozen miniature VAE, plus their captions.

Encoding once (not per step) is what makes DiT training cheap here: a latent clip is 16 x 2 x 8 x 8 numbers.
The latent normalisation is fitted on these latents the way Pyramid-Flow's constants were: one shift/scale for
the first latent frame (an image) and one for the later frames (video).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neocompress.models.pyramid_flow.vae import CausalVAEEncoder, LatentNorm, normalize_latents
from neocompress.world import World, WorldConfig, to_tensor


@dataclass
class LatentSet:
    latents: torch.Tensor  # [N, C, units, h, w], normalised
    captions: list[str]
    norm: LatentNorm


@torch.no_grad()
def encode_world(
    encoder: CausalVAEEncoder,
    world_config: WorldConfig,
    count: int,
    *,
    split: str = "train",
    batch_size: int = 32,
    progress=None,
) -> tuple[torch.Tensor, list[str]]:
    world = World(world_config)
    latents, captions = [], []
    for start in range(0, count, batch_size):
        samples = [world.sample(i, split) for i in range(start, min(start + batch_size, count))]
        video = torch.stack([to_tensor(s.video) for s in samples])
        latents.append(encoder.encode(video))
        captions += [s.caption for s in samples]
        if progress is not None:
            progress(len(captions), count)
    return torch.cat(latents), captions


def fit_latent_norm(z: torch.Tensor) -> LatentNorm:
    """Shift to zero mean and scale to unit std, separately for the first and the later latent frames."""
    first, rest = z[:, :, :1], z[:, :, 1:]
    return LatentNorm(
        image_shift=float(first.mean()),
        image_scale=float(1 / first.std()),
        video_shift=float(rest.mean()) if rest.numel() else 0.0,
        video_scale=float(1 / rest.std()) if rest.numel() else 1.0,
    )


def build_latent_set(encoder: CausalVAEEncoder, world_config: WorldConfig, count: int, **kw) -> LatentSet:
    z, captions = encode_world(encoder, world_config, count, **kw)
    norm = fit_latent_norm(z)
    return LatentSet(normalize_latents(z, norm), captions, norm)
