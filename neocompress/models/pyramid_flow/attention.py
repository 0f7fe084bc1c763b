"""Joint (text + image) attention of the MMDiT, its qk-RMSNorm, and the Pyramid-Flow attention mask.

Why two kernels: SDPA is the fast path for training and evaluation, but AIMET's `prepare_model` silently drops
SDPA's `attn_mask=` keyword, and a -inf mask wrecks W8A16 calibration. `backend="matmul"` writes attention as
matmul -> scale -> add float mask -> softmax -> matmul; `additive_mask` turns the boolean mask into a finite
additive one (-100 calibrated best on Hexagon). A quantisation pass switches kernels without touching weights.
Nothing in the forward branches on a tensor's dtype or shape, so torch.fx can trace a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neocompress.models.pyramid_flow.embeddings import apply_rope

AttentionBackend = Literal["sdpa", "matmul"]


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * w over the last dim; plain arithmetic so torch.fx and ONNX take it."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def build_attention_mask(
    text_mask: Tensor, frame_token_counts: Sequence[int], frame_times: Sequence[int] | Tensor
) -> Tensor:
    """Boolean [B, 1, N, N] mask (True = may attend) for the sequence [text (L) | frame 0 | frame 1 | ...].

    It is the AND of (a) sample identity: padded text tokens get id 0, valid text and all image tokens id b+1,
    and a query attends only to keys of equal id (so padding never leaks into real tokens, while every row
    keeps at least itself and softmax stays finite), and (b) temporal causality: query time >= key time, text
    tokens at time 0. `frame_token_counts[i]` tokens of frame i sit at time `frame_times[i]`.
    """
    if len(frame_token_counts) != len(frame_times):
        raise ValueError("frame_token_counts and frame_times must have the same length")
    batch, text_len = text_mask.shape
    device = text_mask.device
    valid = text_mask != 0
    sample_id = torch.arange(1, batch + 1, device=device)[:, None]
    n_image = int(sum(frame_token_counts))
    text_ids = torch.where(valid, sample_id, torch.zeros_like(sample_id))
    ids = torch.cat([text_ids, sample_id.expand(batch, n_image)], dim=1)  # [B, N]
    times = token_times(text_len, frame_token_counts, frame_times, device=device)  # [N]
    same_sample = ids[:, None, :, None] == ids[:, None, None, :]
    causal = times[:, None] >= times[None, :]
    return same_sample & causal[None, None]


def token_times(
    text_len: int,
    frame_token_counts: Sequence[int],
    frame_times: Sequence[int] | Tensor,
    device: torch.device | None = None,
) -> Tensor:
    """[L + sum(counts)] float times: 0 for text tokens, frame_times[i] repeated for frame i's tokens."""
    frame_t = torch.as_tensor(frame_times, dtype=torch.float32, device=device)
    counts = torch.as_tensor(list(frame_token_counts), dtype=torch.long, device=device)
    image_t = torch.repeat_interleave(frame_t, counts)
    return torch.cat([torch.zeros(text_len, dtype=torch.float32, device=device), image_t])


def additive_mask(mask: Tensor, masked_value: float = float("-inf"), dtype: torch.dtype = torch.float32) -> Tensor:
    """Boolean mask -> additive float mask (0 where allowed, `masked_value` elsewhere)."""
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.full((), masked_value, dtype=dtype, device=mask.device))


class JointAttention(nn.Module):
    """MMDiT attention over [text | image] tokens with separate projections per stream.

    `context_pre_only` (last block): the text stream is only a source of keys/values, so there is no
    `to_add_out`; the text-query rows are still computed (as in the reference) and discarded.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        qk_norm_eps: float = 1e-5,
        context_pre_only: bool = False,
        backend: AttentionBackend = "sdpa",
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.context_pre_only = context_pre_only
        self.backend: AttentionBackend = backend
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.add_q_proj = nn.Linear(dim, inner)
        self.add_k_proj = nn.Linear(dim, inner)
        self.add_v_proj = nn.Linear(dim, inner)
        self.norm_q = RMSNorm(head_dim, qk_norm_eps)
        self.norm_k = RMSNorm(head_dim, qk_norm_eps)
        self.norm_add_q = RMSNorm(head_dim, qk_norm_eps)
        self.norm_add_k = RMSNorm(head_dim, qk_norm_eps)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])
        if not context_pre_only:
            self.to_add_out = nn.Linear(inner, dim)

    def _heads(self, x: Tensor) -> Tensor:
        """[B, N, H*Dh] -> [B, H, N, Dh] without reading the shape (fx-friendly)."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(
        self,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Image [B, Ni, D] and text [B, L, D] -> (image out [B, Ni, D], text out [B, L, D] or None).

        attention_mask: broadcastable to [B, H, L+Ni, L+Ni]; boolean (True = attend) or additive float with
        backend "sdpa", additive float only with backend "matmul" (see `additive_mask`).
        rope: (cos, sin), each broadcastable to [B, H, L+Ni, Dh/2], applied to q and k after the qk-norm.
        """
        text_len = encoder_hidden_states.shape[1]
        q = torch.cat(
            [
                self.norm_add_q(self._heads(self.add_q_proj(encoder_hidden_states))),
                self.norm_q(self._heads(self.to_q(hidden_states))),
            ],
            dim=2,
        )
        k = torch.cat(
            [
                self.norm_add_k(self._heads(self.add_k_proj(encoder_hidden_states))),
                self.norm_k(self._heads(self.to_k(hidden_states))),
            ],
            dim=2,
        )
        v = torch.cat(
            [self._heads(self.add_v_proj(encoder_hidden_states)), self._heads(self.to_v(hidden_states))],
            dim=2,
        )
        if rope is not None:
            q = apply_rope(q, rope[0], rope[1])
            k = apply_rope(k, rope[0], rope[1])
        out = self._attend(q, k, v, attention_mask)  # [B, H, N, Dh]
        out = out.transpose(1, 2).flatten(2)  # [B, N, D]
        image = self.to_out[1](self.to_out[0](out[:, text_len:]))
        text = None if self.context_pre_only else self.to_add_out(out[:, :text_len])
        return image, text

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        if self.backend == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if mask is not None:
            scores = scores + mask
        return torch.matmul(torch.softmax(scores, dim=-1), v)
