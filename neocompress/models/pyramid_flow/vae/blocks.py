"""Building blocks of the causal video VAE: resnet, per-frame attention, resamplers, and blocks of them.

Attribute names (``resnets``, ``downsamplers``, ``temporal_downsamplers``, ``upsamplers``,
``temporal_upsamplers``, ``attentions``, ``to_out.0``) and their registration order mirror the public
checkpoint, so its state dict loads with strict=True and keys come out in the checkpoint's order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neocompress.models.pyramid_flow.vae.causal_conv import CausalConv3d, FrameGroupNorm


class CausalResnetBlock3D(nn.Module):
    """Pre-norm residual block: GN, SiLU, conv3, GN, SiLU, conv3; a 1x1x1 shortcut if the width changes.

    No timestep embedding and no dropout: the VAE has neither at inference.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels, eps=eps)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = FrameGroupNorm(groups, out_channels, eps=eps)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.conv_shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class FrameSelfAttention(nn.Module):
    """Single-head self-attention over the H*W positions of each frame, with a residual connection.

    Upstream uses diffusers' ``Attention`` with ``heads = channels // attention_head_dim`` and
    ``attention_head_dim = channels``, i.e. one head of full width, applied with time folded into the batch —
    so it never mixes frames and keeps the VAE causal.
    """

    def __init__(self, channels: int, groups: int, eps: float) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        tokens = self.group_norm(frames).reshape(b * t, c, h * w).transpose(1, 2)
        attended = F.scaled_dot_product_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens))
        out = self.to_out[0](attended).transpose(1, 2).reshape(b * t, c, h, w) + frames
        return out.reshape(b, t, c, h, w).transpose(1, 2)


class SpatialDownsample2x(nn.Module):
    """Halve H and W with a causal 3x3x3 conv of stride (1, 2, 2); T is unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride=(1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class TemporalDownsample2x(nn.Module):
    """Map 1 + 2m frames to 1 + m with a causal 3x3x3 conv of stride (2, 1, 1).

    The two zero frames in front make output frame 0 a function of input frame 0 only; no special first-frame
    branch is needed.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride=(2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SpatialUpsample2x(nn.Module):
    """Double H and W by depth-to-space: a causal conv to 4C channels, then a 2x2 pixel shuffle per frame.

    Channel ``c * 4 + 2 * dy + dx`` lands at pixel (2h + dy, 2w + dx), as upstream's
    ``'b (c p1 p2) t h w -> b c t (h p1) (w p2)'`` (the layout of torch's pixel_shuffle). Written as a per-frame
    pixel shuffle at rank <= 5 (ONNX DepthToSpace), because the Hexagon NPU takes no rank-7 reshape.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        b, c4, t, h, w = y.shape
        frames = F.pixel_shuffle(y.transpose(1, 2).reshape(b * t, c4, h, w), 2)  # [b*t, c, 2h, 2w]
        return frames.reshape(b, t, c4 // 4, h * 2, w * 2).transpose(1, 2)


class TemporalUpsample2x(nn.Module):
    """Map t frames to 2t - 1: causal conv to 2C channels, depth-to-time shuffle, drop the first frame.

    Channel ``c * 2 + p`` of frame i becomes frame ``2i + p``; dropping frame 0 leaves the first latent frame
    one output frame (it stands for the lone first video frame) and every later latent frame two. Three of
    these give 1 + k -> 1 + 8k. Upstream drops the frame whenever ``is_init_image`` is true, which is always
    the case outside its chunked inference.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        b, c2, t, h, w = y.shape  # rank 5 throughout (the NPU's limit): h and w ride together
        y = y.reshape(b, c2 // 2, 2, t, h * w).transpose(2, 3).reshape(b, c2 // 2, t * 2, h, w)
        return y[:, :, 1:]


class DownBlock(nn.Module):
    """``layers`` resnets, then an optional spatial and an optional temporal 2x downsampler."""

    def __init__(
        self, in_channels: int, out_channels: int, layers: int, groups: int, eps: float, spatial: bool, temporal: bool
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            CausalResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups, eps)
            for i in range(layers)
        )
        self.downsamplers = nn.ModuleList([SpatialDownsample2x(out_channels)]) if spatial else None
        self.temporal_downsamplers = nn.ModuleList([TemporalDownsample2x(out_channels)]) if temporal else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in (*self.resnets, *(self.downsamplers or ()), *(self.temporal_downsamplers or ())):
            x = module(x)
        return x


class UpBlock(nn.Module):
    """``layers`` resnets, then an optional spatial and an optional temporal 2x upsampler."""

    def __init__(
        self, in_channels: int, out_channels: int, layers: int, groups: int, eps: float, spatial: bool, temporal: bool
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            CausalResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups, eps)
            for i in range(layers)
        )
        self.upsamplers = nn.ModuleList([SpatialUpsample2x(out_channels)]) if spatial else None
        self.temporal_upsamplers = nn.ModuleList([TemporalUpsample2x(out_channels)]) if temporal else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in (*self.resnets, *(self.upsamplers or ()), *(self.temporal_upsamplers or ())):
            x = module(x)
        return x


class MidBlock(nn.Module):
    """resnet -> (per-frame attention) -> resnet at the bottleneck width.

    ``attentions`` is registered before ``resnets``: upstream does so and the checkpoint lists it first.
    """

    def __init__(self, channels: int, groups: int, eps: float, attention: bool) -> None:
        super().__init__()
        self.attentions = nn.ModuleList([FrameSelfAttention(channels, groups, eps)] if attention else [])
        self.resnets = nn.ModuleList(CausalResnetBlock3D(channels, channels, groups, eps) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)
