"""The causal VAE decoder as one static graph: normalised latents of a fixed shape -> video in [-1, 1].

Why a static view: the decoder's causal convs branch on the frame count (a single frame takes a cheaper 2-D
path), the latent check reads the rank, and the mid-block attention calls `scaled_dot_product_attention`; torch.fx
(AIMET's model preparer) cannot trace the first two and AIMET has no quantized form of the third. The view
rebuilds the module tree around the decoder's own layers (the weights are shared, nothing is copied): every
causal conv pads and runs its Conv3d (the same numbers as the 2-D path: the front padding is zeros), attention is
written as matmul + softmax, and the latent de-normalisation is part of the graph. Module names are the
component's (`decoder.up_blocks.0.resnets.0.conv1.conv`), so layer patterns and saved quantizer state refer to
the checkpoint's names.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neocompress.models.pyramid_flow.vae.blocks import FrameSelfAttention
from neocompress.models.pyramid_flow.vae.causal_conv import CausalConv3d
from neocompress.models.pyramid_flow.vae.latents import LatentNorm


class _PaddedConv3d(nn.Module):
    """A causal conv without the single-frame branch: constant padding, then the layer's own Conv3d."""

    def __init__(self, causal: CausalConv3d):
        super().__init__()
        self.conv = causal.conv
        self.padding = causal.padding

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.padding))


class _MatmulFrameAttention(nn.Module):
    """`FrameSelfAttention` with the attention written out (one head of full width, per frame)."""

    def __init__(self, attention: FrameSelfAttention):
        super().__init__()
        self.group_norm = attention.group_norm
        self.to_q, self.to_k, self.to_v, self.to_out = attention.to_q, attention.to_k, attention.to_v, attention.to_out
        self.scale = 1.0 / math.sqrt(attention.to_q.out_features)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        tokens = self.group_norm(frames).reshape(b * t, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        weights = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * self.scale, dim=-1)
        out = self.to_out[0](torch.matmul(weights, v)).transpose(1, 2).reshape(b * t, c, h, w) + frames
        return out.reshape(b, t, c, h, w).transpose(1, 2)


def _static_tree(decoder: nn.Module) -> nn.Module:
    """A structural copy of `decoder` sharing every parameter and buffer, its causal convs and attentions
    replaced by their static forms."""
    memo = {id(t): t for t in [*decoder.parameters(), *decoder.buffers()]}
    tree = copy.deepcopy(decoder, memo)
    for parent in list(tree.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, CausalConv3d):
                setattr(parent, name, _PaddedConv3d(child))
            elif isinstance(child, FrameSelfAttention):
                setattr(parent, name, _MatmulFrameAttention(child))
    return tree


class StaticVAEDecoder(nn.Module):
    """Normalised latents [B, C, t, h, w] -> video [B, 3, 1 + 8(t - 1), 8h, 8w], clamped to [-1, 1]."""

    input_names = ["latents"]
    output_names = ["video"]

    def __init__(self, decoder: nn.Module, latent_norm: LatentNorm, latent_shape: tuple[int, ...]):
        super().__init__()
        tree = _static_tree(decoder)
        self.post_quant_conv = tree.post_quant_conv
        self.decoder = tree.decoder
        self.latent_norm = latent_norm
        self.latent_shape = tuple(int(s) for s in latent_shape)

    def example_inputs(self, seed: int = 0) -> tuple[Tensor]:
        return (torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(seed)),)

    def forward(self, latents: Tensor) -> Tensor:
        n = self.latent_norm
        first = latents[:, :, :1] / n.image_scale + n.image_shift
        rest = latents[:, :, 1:] / n.video_scale + n.video_shift
        z = torch.cat([first, rest], dim=2)
        return self.decoder(self.post_quant_conv(z)).clamp(-1.0, 1.0)


def static_decoder(decoder: nn.Module, latent_norm: LatentNorm, latent_shape: tuple[int, ...]) -> nn.Module:
    """The static graph of whichever VAE decoder the pipeline holds (the causal VAE's, or a TAEHV that
    `decoder_swap` put in its place): normalised latents of `latent_shape` -> video in [-1, 1]."""
    from neocompress.models.taehv_decoder import TAEHVDecoder

    if isinstance(decoder, TAEHVDecoder):
        from neocompress.lowering.static_taehv import StaticTAEHVDecoder

        return StaticTAEHVDecoder(decoder, latent_norm, latent_shape)
    return StaticVAEDecoder(decoder, latent_norm, latent_shape)
