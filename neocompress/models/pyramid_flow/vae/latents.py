"""Latent normalisation between the VAE and the denoiser.

Why two sets of constants: the first latent frame encodes one image and the later ones eight frames each, so
their statistics differ; Pyramid-Flow whitens them separately, ``(z - shift) * scale``, before the DiT sees
them, and undoes it before decoding. Neodragon re-estimated the video scale for its checkpoints, hence a
parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatentNorm:
    """Shift and scale for the first latent frame (``image_*``) and for the later ones (``video_*``)."""

    image_shift: float
    image_scale: float
    video_shift: float
    video_scale: float

    @classmethod
    def pyramid_flow_sd3(cls) -> LatentNorm:
        """Upstream's `pyramid_mmdit` constants, written as upstream writes them (1/1.8415 and 1/3.0986, i.e.
        0.54304 and 0.32273 to five places)."""
        return cls(image_shift=0.1490, image_scale=1 / 1.8415, video_shift=-0.2343, video_scale=1 / 3.0986)

    @classmethod
    def neodragon(cls) -> LatentNorm:
        """Neodragon's checkpoints: as Pyramid-Flow's, but the video scale is 0.3031."""
        return cls(image_shift=0.1490, image_scale=1 / 1.8415, video_shift=-0.2343, video_scale=0.3031)


PYRAMID_FLOW_SD3 = LatentNorm.pyramid_flow_sd3()
NEODRAGON = LatentNorm.neodragon()


def _check(z: torch.Tensor) -> None:
    if z.dim() != 5 or z.shape[2] < 1:
        raise ValueError(f"latents must be [B, C, t>=1, h, w], got shape {tuple(z.shape)}")


def normalize_latents(z: torch.Tensor, norm: LatentNorm = PYRAMID_FLOW_SD3) -> torch.Tensor:
    """VAE latents -> denoiser latents: frame 0 ``(z - image_shift) * image_scale``, later frames the video
    constants. Returns a new tensor; `z` is not modified (upstream edits in place)."""
    _check(z)
    first = (z[:, :, :1] - norm.image_shift) * norm.image_scale
    rest = (z[:, :, 1:] - norm.video_shift) * norm.video_scale
    return torch.cat([first, rest], dim=2)


def denormalize_latents(z: torch.Tensor, norm: LatentNorm = PYRAMID_FLOW_SD3) -> torch.Tensor:
    """Inverse of `normalize_latents`: denoiser latents -> what the VAE decoder expects."""
    _check(z)
    first = z[:, :, :1] / norm.image_scale + norm.image_shift
    rest = z[:, :, 1:] / norm.video_scale + norm.video_shift
    return torch.cat([first, rest], dim=2)


def decode_normalised(decoder: torch.nn.Module, z: torch.Tensor, norm: LatentNorm) -> torch.Tensor:
    """Denoiser latents -> video in [-1, 1] with whichever decoder the pipeline holds: the causal VAE decoder
    reads de-normalised latents, a decoder that declares `reads_normalised_latents` (the TAEHV) reads `z` as is."""
    if getattr(decoder, "reads_normalised_latents", False):
        return decoder.decode(z)
    return decoder.decode(denormalize_latents(z, norm))
