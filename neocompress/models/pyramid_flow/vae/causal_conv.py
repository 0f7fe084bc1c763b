"""The two primitives that make the VAE causal in time: a front-padded 3-D conv and a per-frame GroupNorm.

Why causality matters here: Pyramid-Flow encodes the first frame alone (1 + 8k frames -> 1 + k latents) and
generates video autoregressively, so latent frame j may only see pixels up to its own frames. Every temporal
mixing op in the VAE is one of these two (plus the stride-2 conv and the temporal depth-to-space shuffle built
from them in `blocks.py`); attention works inside one frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]


def _triple(value: int | Triple) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    t, h, w = value
    return (t, h, w)


class CausalConv3d(nn.Module):
    """A Conv3d whose output frame i sees input frames <= i only.

    Time is padded with ``k_t - 1`` zero frames in front and none behind (two zero frames for k_t = 3, as
    upstream's ``pad_mode='constant'`` does); height and width get ``k // 2`` zeros on each side, so a
    stride-1 conv keeps T, H, W. With a temporal stride of 2 and k_t = 3, output frame i reads inputs 2i-2 ..
    2i, which is why a 1 + 2m frame clip maps to 1 + m frames and output frame 0 depends on input frame 0
    alone.

    The learnable conv sits in ``.conv`` so state-dict keys read ``<name>.conv.weight`` like the checkpoint.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Triple,
        stride: Triple = (1, 1, 1),
        bias: bool = True,
    ) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"spatial kernel must be odd, got {(kh, kw)}")
        # F.pad order: (w_left, w_right, h_top, h_bottom, t_front, t_back)
        self.padding = (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0)
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] == 1:
            return self._single_frame(x)
        if any(self.padding):
            x = F.pad(x, self.padding, mode="constant", value=0.0)
        return self.conv(x)

    def _single_frame(self, x: torch.Tensor) -> torch.Tensor:
        """One frame (an image): every temporal tap but the last reads front-padding zeros, so the conv is the
        2-D conv with the last temporal slice of the kernel — the same numbers at 1/k_t of the work, which makes
        image training and first-frame encoding k_t times cheaper."""
        conv = self.conv
        kw, _, kh, _, _, _ = self.padding
        out = F.conv2d(x[:, :, 0], conv.weight[:, :, -1], conv.bias, stride=conv.stride[1:], padding=(kh, kw))
        return out.unsqueeze(2)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm computed over each frame on its own, on [B, C, T, H, W] input.

    A plain GroupNorm on 5-D input would pool statistics over time and let later frames leak into earlier
    ones; upstream's ``CausalGroupNorm`` folds time into the batch, and so do we. Parameters are those of a
    normal GroupNorm (``weight``, ``bias``), so checkpoints load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        frames = super().forward(frames)
        return frames.reshape(b, t, c, h, w).transpose(1, 2)
