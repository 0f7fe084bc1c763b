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
        frames = []
        n = t
        for layer in self.decoder:  # the frame count each layer sees, fixed by the latent shape
            frames.append(n)
            if isinstance(layer, TGrow):
                n *= layer.stride
        self._frames = frames

    def example_inputs(self, seed: int = 0) -> tuple[Tensor]:
        return (torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(seed)),)

    def forward(self, latents: Tensor) -> Tensor:
        b, c, t, h, w = self.latent_shape
        x = latents.transpose(1, 2).reshape(b * t, c, h, w)
        for i, layer in enumerate(self.decoder):
            if isinstance(layer, MemBlock):
                n = self._frames[i]
                frames = x.reshape(b, n, *x.shape[1:])
                past = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, : n - 1]], dim=1)
                x = layer(x, past.reshape(b * n, *x.shape[1:]))
            else:
                x = layer(x)
        n = self._frames[-1]
        video = x.reshape(b, n, *x.shape[1:])[:, self.trimmed :]
        return video.transpose(1, 2).clamp(-1.0, 1.0)
