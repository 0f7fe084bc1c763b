"""The VAE decoder as a pipeline component: 16-channel latents -> video in [-1, 1], 8x larger in T, H and W.

Why a component of its own: it is the node Neodragon replaces (with a TAEHV-style decoder), so it must own
exactly its slice of the checkpoint — ``post_quant_conv.*`` and ``decoder.*`` — and expose the same
latents -> video contract as its replacement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neocompress.models.pyramid_flow.vae.blocks import MidBlock, UpBlock
from neocompress.models.pyramid_flow.vae.causal_conv import CausalConv3d, FrameGroupNorm
from neocompress.models.pyramid_flow.vae.config import CausalVAEConfig


class DecoderTrunk(nn.Module):
    """conv_in -> mid block -> up blocks (deepest first) -> GN, SiLU -> conv_out to RGB.

    ``up_blocks`` is registered before ``mid_block`` (though run after it) to match the checkpoint's order.
    """

    def __init__(self, config: CausalVAEConfig) -> None:
        super().__init__()
        widths = tuple(reversed(config.decoder_widths))
        groups, eps = config.norm_num_groups, config.norm_eps
        self.conv_in = CausalConv3d(config.latent_channels, widths[0], 3)
        self.up_blocks = nn.ModuleList(
            UpBlock(
                widths[max(i - 1, 0)],
                widths[i],
                config.decoder_layers_per_block[i],
                groups,
                eps,
                config.spatial_upsample[i],
                config.temporal_upsample[i],
            )
            for i in range(len(widths))
        )
        self.mid_block = MidBlock(widths[0], groups, eps, config.mid_block_attention)
        self.conv_norm_out = FrameGroupNorm(groups, widths[-1], eps=eps)
        self.conv_out = CausalConv3d(widths[-1], config.out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class CausalVAEDecoder(nn.Module):
    """Pyramid-Flow's causal video VAE decoder (``post_quant_conv`` + ``decoder``).

    t latent frames give 1 + 8(t - 1) video frames: latent frame 0 -> video frame 0, latent frame j >= 1 ->
    frames 8j - 7 .. 8j. Causal: changing latent frame j leaves every frame before 8j - 7 untouched.
    """

    def __init__(self, config: CausalVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or CausalVAEConfig.pyramid_flow_sd3()
        self.decoder = DecoderTrunk(self.config)
        self.post_quant_conv = CausalConv3d(self.config.latent_channels, self.config.latent_channels, 1)

    def check_latents(self, latents: torch.Tensor) -> None:
        """Raise ValueError unless `latents` is [B, latent_channels, t >= 1, h, w]."""
        c = self.config.latent_channels
        if latents.dim() != 5 or latents.shape[1] != c or latents.shape[2] < 1:
            raise ValueError(f"latents must be [B, {c}, t>=1, h, w], got shape {tuple(latents.shape)}")

    def decode(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Video [B, 3, 1 + 8(t - 1), 8h, 8w] from un-normalised latents (see `latents.denormalize_latents`).

        The network is trained towards [-1, 1] but overshoots slightly; ``clamp=True`` clips to [-1, 1]
        (upstream clips later, when converting to uint8, which is equivalent). Pass ``clamp=False`` for the
        raw output, e.g. when measuring the fidelity of a compressed decoder or training through it.
        """
        self.check_latents(latents)
        video = self.decoder(self.post_quant_conv(latents))
        return video.clamp(-1.0, 1.0) if clamp else video

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Same as `decode` with the default clamp, the form used for export."""
        return self.decode(latents)
