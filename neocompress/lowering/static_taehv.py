"""The TAEHV decoder as one static graph: normalised latents of a fixed shape -> video in [-1, 1].

Why a view of its own: the decoder's `decode` checks the latents' rank and reshapes with sizes read from the
tensors, which torch.fx (AIMET's model preparer) and a static NPU graph want as constants. The view keeps the
decoder's own `decoder.<i>` Sequential (weights shared, names unchanged, so layer patterns and saved quantizer
state name the checkpoint's layers) and runs it with every frame count worked out once from the latent shape; the
previous-frame memory of each MemBlock is a concat of a zero frame and the frames before, as in `decode`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neocompress.models.taehv_decoder import MemBlock, TAEHVDecoder, TGrow


class StaticTAEHVDecoder(nn.Module):
    """Normalised latents [B, C, t, h, w] -> video [B, 3, 1 + 8(t - 1), 8h, 8w], clamped to [-1, 1]."""

    input_names = ["latents"]
    output_names = ["video"]

    def __init__(self, decoder: TAEHVDecoder, latent_norm: object, latent_shape: tuple[int, ...]):
        super().__init__()
        self.decoder = decoder.decoder
        self.latent_norm = latent_norm  # unused (the TAEHV reads normalised latents); kept for the common view API
        self.latent_shape = tuple(int(s) for s in latent_shape)
        b, c, t, h, w = self.latent_shape
        decoder.check_latents(torch.empty(self.latent_shape, device="meta"))
        self.trimmed = decoder.trimmed
        # Every layer's frame count and (C, H, W), fixed by the latent shape: fx traces no tensor sizes then.
        self._frames: list[int] = []
        self._shapes: list[tuple[int, int, int]] = []
        x = torch.empty(b * t, c, h, w, device="meta")
        n = t
        for layer in self.decoder:
            self._frames.append(n)
            self._shapes.append(tuple(int(d) for d in x.shape[1:]))  # type: ignore[arg-type]
            if isinstance(layer, MemBlock):
                x = torch.empty(x.shape[0], layer.conv[-1].out_channels, *x.shape[2:], device="meta")
            elif isinstance(layer, TGrow):
                n *= layer.stride
                x = torch.empty(x.shape[0] * layer.stride, *x.shape[1:], device="meta")
            elif isinstance(layer, nn.Conv2d):
                x = torch.empty(x.shape[0], layer.out_channels, *x.shape[2:], device="meta")
            elif isinstance(layer, nn.Upsample):
                x = torch.empty(*x.shape[:2], x.shape[2] * 2 if layer.scale_factor == 2 else x.shape[2],
                                x.shape[3] * 2 if layer.scale_factor == 2 else x.shape[3], device="meta")
        self._out = (n, *tuple(int(d) for d in x.shape[1:]))

    def example_inputs(self, seed: int = 0) -> tuple[Tensor]:
        return (torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(seed)),)

    def forward(self, latents: Tensor) -> Tensor:
        b, c, t, h, w = self.latent_shape
        x = latents.transpose(1, 2).reshape(b * t, c, h, w)
        for i, layer in enumerate(self.decoder):
            n, (ch, hh, ww) = self._frames[i], self._shapes[i]
            if isinstance(layer, MemBlock):
                frames = x.reshape(b, n, ch, hh, ww)
                past = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, : n - 1]], dim=1)
                x = layer(x, past.reshape(b * n, ch, hh, ww))
            elif isinstance(layer, TGrow):  # one frame -> `stride` frames, folded into time
                x = layer.conv(x).reshape(b * n * layer.stride, ch, hh, ww)
            else:
                x = layer(x)
        n, ch, hh, ww = self._out
        video = x.reshape(b, n, ch, hh, ww)[:, self.trimmed :]
        return video.transpose(1, 2).clamp(-1.0, 1.0)
