"""The VAE encoder as a pipeline component: video in [-1, 1] -> 16-channel latents, 8x smaller in T, H and W.

Why a component of its own: the pipeline graph treats the encoder and the decoder as separate nodes (Neodragon
keeps the encoder frozen and swaps only the decoder), so each owns its slice of the checkpoint —
``encoder.*`` and ``quant_conv.*`` here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neocompress.models.pyramid_flow.vae.blocks import DownBlock, MidBlock
from neocompress.models.pyramid_flow.vae.causal_conv import CausalConv3d, FrameGroupNorm
from neocompress.models.pyramid_flow.vae.config import CausalVAEConfig

# Upstream clamps the log-variance before exponentiating, so a saturated channel cannot give inf/0 std.
LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0


class EncoderTrunk(nn.Module):
    """conv_in -> down blocks -> mid block -> GN, SiLU -> conv_out to 2 * latent channels (mean, logvar)."""

    def __init__(self, config: CausalVAEConfig) -> None:
        super().__init__()
        widths = config.block_out_channels
        groups, eps = config.norm_num_groups, config.norm_eps
        self.conv_in = CausalConv3d(config.in_channels, widths[0], 3)
        self.down_blocks = nn.ModuleList(
            DownBlock(
                widths[max(i - 1, 0)],
                widths[i],
                config.encoder_layers_per_block[i],
                groups,
                eps,
                config.spatial_downsample[i],
                config.temporal_downsample[i],
            )
            for i in range(len(widths))
        )
        self.mid_block = MidBlock(widths[-1], groups, eps, config.mid_block_attention)
        self.conv_norm_out = FrameGroupNorm(groups, widths[-1], eps=eps)
        self.conv_out = CausalConv3d(widths[-1], 2 * config.latent_channels, 3)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(video)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class CausalVAEEncoder(nn.Module):
    """Pyramid-Flow's causal video VAE encoder (``encoder`` + ``quant_conv``).

    1 + 8k frames give 1 + k latent frames; latent frame 0 depends on video frame 0 alone, and latent frame j
    only on frames <= 8j, so an image is just a one-frame video.
    """

    def __init__(self, config: CausalVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or CausalVAEConfig.pyramid_flow_sd3()
        self.encoder = EncoderTrunk(self.config)
        self.quant_conv = CausalConv3d(2 * self.config.latent_channels, 2 * self.config.latent_channels, 1)

    def check_video(self, video: torch.Tensor) -> None:
        """Raise ValueError unless `video` is [B, in_channels, 1 + 8k, H, W] with H and W multiples of 8."""
        cfg = self.config
        s, t = cfg.spatial_compression, cfg.temporal_compression
        if video.dim() != 5 or video.shape[1] != cfg.in_channels:
            raise ValueError(f"video must be [B, {cfg.in_channels}, T, H, W], got shape {tuple(video.shape)}")
        frames, height, width = video.shape[2:]
        if (frames - 1) % t:
            below, above = 1 + t * max((frames - 1) // t, 0), 1 + t * ((frames - 1) // t + 1)
            raise ValueError(
                f"video has {frames} frames; the causal VAE needs 1 + {t}k frames (e.g. {below} or {above})"
            )
        if height % s or width % s:
            raise ValueError(f"video is {height}x{width}; height and width must be multiples of {s}")

    def encode_moments(self, video: torch.Tensor) -> torch.Tensor:
        """Posterior parameters [B, 2 * latent_channels, 1 + k, H/8, W/8]: mean first, then log-variance."""
        self.check_video(video)
        return self.quant_conv(self.encoder(video))

    def encode(
        self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Latents [B, 16, 1 + (T - 1) // 8, H / 8, W / 8] of a video in [-1, 1], not yet normalised.

        ``sample=False`` returns the posterior mean (deterministic, what a compression pass wants); ``True``
        draws ``mean + std * eps`` as upstream's ``latent_dist.sample()`` does, using `generator` for eps.
        """
        mean, logvar = self.encode_moments(video).chunk(2, dim=1)
        if not sample:
            return mean
        std = torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * eps

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Deterministic encode (posterior mean), the form used for export and calibration."""
        return self.encode(video)
