"""The MMDiT block (SD3 `JointTransformerBlock` as Pyramid-Flow uses it) and its adaLN modulations.

Why `convert_to_context_pre_only` lives here: block pruning that removes the teacher's last block leaves a
full block at the end whose text-stream output nobody reads; the reference architecture (and Neodragon's
18-block checkpoint) expects that block in the `context_pre_only` form. The conversion keeps exactly the part
of `norm1_context` that shapes the text keys/values, so the image output is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neocompress.models.pyramid_flow.attention import AttentionBackend, JointAttention


class AdaLayerNormZero(nn.Module):
    """LN(x) * (1 + scale_msa) + shift_msa, and the gates/mlp modulation, all from `linear(SiLU(temb))`.

    Chunk order of `linear`'s output: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(dim, 6 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)

    def forward(self, x: Tensor, emb: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Returns (modulated x, gate_msa, shift_mlp, scale_mlp, gate_mlp); modulations are [B, 1, D]."""
        mod = self.linear(self.silu(emb)).unsqueeze(1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)
        return self.norm(x) * (1 + scale_msa) + shift_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp


class AdaLayerNormContinuous(nn.Module):
    """LN(x) * (1 + scale) + shift with (scale, shift) = chunks of `linear(SiLU(cond))` in that order."""

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.silu = nn.SiLU()
        self.linear = nn.Linear(cond_dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=eps)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.linear(self.silu(cond)).unsqueeze(1).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class GELUProjection(nn.Module):
    """`ff.net.0`: a Linear (`proj`) followed by tanh-approximated GELU."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """`net` = [GELUProjection, Dropout, Linear], so the keys are `net.0.proj` and `net.2`."""

    def __init__(self, dim: int, inner_dim: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, inner_dim), nn.Dropout(0.0), nn.Linear(inner_dim, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class JointTransformerBlock(nn.Module):
    """One MMDiT block: joint attention of both streams, then a gated FF per stream.

    image: x += gate_msa * attn;  x += gate_mlp * FF(LN(x) * (1 + scale_mlp) + shift_mlp); the text stream
    the same with its own modulation, or (context_pre_only) not updated at all.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        ff_inner_dim: int,
        context_pre_only: bool = False,
        qk_norm_eps: float = 1e-5,
        norm_eps: float = 1e-6,
        attention_backend: AttentionBackend = "sdpa",
    ) -> None:
        super().__init__()
        self.context_pre_only = context_pre_only
        self.norm1 = AdaLayerNormZero(dim, norm_eps)
        self.norm1_context: AdaLayerNormZero | AdaLayerNormContinuous
        if context_pre_only:
            self.norm1_context = AdaLayerNormContinuous(dim, dim, norm_eps)
        else:
            self.norm1_context = AdaLayerNormZero(dim, norm_eps)
        self.attn = JointAttention(dim, num_heads, head_dim, qk_norm_eps, context_pre_only, attention_backend)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)
        self.ff = FeedForward(dim, ff_inner_dim)
        if not context_pre_only:
            self.norm2_context = nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)
            self.ff_context = FeedForward(dim, ff_inner_dim)

    def forward(
        self,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor,
        temb: Tensor,
        attention_mask: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor | None, Tensor]:
        """(image [B, Ni, D], text [B, L, D], temb [B, D]) -> (text or None, image), diffusers' order."""
        norm_x, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, temb)
        if self.context_pre_only:
            norm_c = self.norm1_context(encoder_hidden_states, temb)
        else:
            norm_c, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(encoder_hidden_states, temb)

        attn_x, attn_c = self.attn(norm_x, norm_c, attention_mask, rope)

        hidden_states = hidden_states + gate_msa * attn_x
        ff_in = self.norm2(hidden_states) * (1 + scale_mlp) + shift_mlp
        hidden_states = hidden_states + gate_mlp * self.ff(ff_in)

        if self.context_pre_only:
            return None, hidden_states
        encoder_hidden_states = encoder_hidden_states + c_gate_msa * attn_c
        ff_c_in = self.norm2_context(encoder_hidden_states) * (1 + c_scale_mlp) + c_shift_mlp
        encoder_hidden_states = encoder_hidden_states + c_gate_mlp * self.ff_context(ff_c_in)
        return encoder_hidden_states, hidden_states


def convert_to_context_pre_only(block: JointTransformerBlock) -> None:
    """Turn a full block into the `context_pre_only` form in place, keeping its image output unchanged.

    The text stream only feeds keys/values to the image queries, and those depend on `norm1_context` only
    through shift_msa and scale_msa; they become the (scale, shift) rows of a new AdaLayerNormContinuous.
    `to_add_out`, `ff_context`, `norm2_context` and the other four modulation chunks are dropped. Parameters
    are sliced, never re-initialised, so this works on meta tensors too. A block already in that form is left
    as it is.
    """
    if block.context_pre_only:
        return
    old = block.norm1_context
    if not isinstance(old, AdaLayerNormZero):
        raise TypeError(f"expected an AdaLayerNormZero norm1_context, got {type(old).__name__}")
    dim = old.linear.in_features
    weight, bias = old.linear.weight, old.linear.bias
    with torch.device("meta"):
        new = AdaLayerNormContinuous(dim, dim, old.norm.eps)
    # rows [0, D) = shift_msa, [D, 2D) = scale_msa  ->  new order (scale, shift)
    new.linear.weight = nn.Parameter(
        torch.cat([weight[dim : 2 * dim], weight[:dim]]).detach().clone(), requires_grad=weight.requires_grad
    )
    new.linear.bias = nn.Parameter(
        torch.cat([bias[dim : 2 * dim], bias[:dim]]).detach().clone(), requires_grad=bias.requires_grad
    )
    new.train(old.training)
    block.norm1_context = new
    del block.attn.to_add_out
    del block.ff_context
    del block.norm2_context
    block.attn.context_pre_only = True
    block.context_pre_only = True
