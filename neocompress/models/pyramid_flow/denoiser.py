"""`PyramidFlowMMDiT`: the Pyramid-Flow SD3-variant denoiser, with the checkpoint's exact state-dict layout.

Why a re-implementation instead of the reference class: the reference mixes batched pyramid stages,
sequence parallelism and flash-attention paths into one forward and does not build on the meta device. This
module keeps only the inference/training maths of one stage call (history clips + the current noisy clip),
in a form whose blocks trace with torch.fx, and whose submodule names match `rain1011/pyramid-flow-sd3` so a
real checkpoint loads strictly (and a Neodragon-style variant without `context_embedder` loads too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from neocompress.models.pyramid_flow.attention import (
    AttentionBackend,
    additive_mask,
    build_attention_mask,
    token_times,
)
from neocompress.models.pyramid_flow.blocks import AdaLayerNormContinuous, JointTransformerBlock
from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.embeddings import PatchEmbed, TimestepTextEmbedding, rope_angles


class TokenCounts(NamedTuple):
    """Sequence-length bookkeeping of one denoiser call (what attention cost scales with)."""

    text: int
    history: int  # image tokens of all history clips
    current: int  # image tokens of the clip being denoised
    per_frame: tuple[int, ...]  # image tokens per latent frame, oldest first

    @property
    def image(self) -> int:
        return self.history + self.current

    @property
    def total(self) -> int:
        return self.text + self.history + self.current


class PyramidFlowMMDiT(nn.Module):
    """Temporal-causal MMDiT over [T5 tokens | history frames | current clip]; predicts the current clip."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.inner_dim
        self.pos_embed = PatchEmbed(
            config.in_channels,
            dim,
            config.patch_size,
            config.pos_embed_max_size,
            base_size=config.sample_size // config.patch_size,
        )
        self.time_text_embed = TimestepTextEmbedding(dim, config.pooled_projection_dim, config.timestep_proj_channels)
        if config.use_context_embedder:
            self.context_embedder = nn.Linear(config.joint_attention_dim, config.caption_projection_dim)
        self.transformer_blocks = nn.ModuleList(
            JointTransformerBlock(
                dim,
                config.num_attention_heads,
                config.attention_head_dim,
                config.ff_inner_dim,
                context_pre_only=config.context_pre_only_last and i == config.num_layers - 1,
                qk_norm_eps=config.qk_norm_eps,
                norm_eps=config.norm_eps,
            )
            for i in range(config.num_layers)
        )
        self.norm_out = AdaLayerNormContinuous(dim, dim, config.norm_eps)
        self.proj_out = nn.Linear(dim, config.patch_size * config.patch_size * config.out_channels)
        # None: hand the boolean mask to SDPA; a float: use that additive value (e.g. -100 for Hexagon).
        self.masked_value: float | None = None

    # ---- structure -------------------------------------------------------------------------------------

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer_blocks

    @property
    def num_blocks(self) -> int:
        return len(self.transformer_blocks)

    def set_attention_backend(self, backend: AttentionBackend, masked_value: float | None = None) -> None:
        """Switch every block between SDPA and explicit matmul attention, and choose the mask form.

        The "matmul" backend needs an additive mask; without a `masked_value` it gets -inf.
        """
        if backend not in ("sdpa", "matmul"):
            raise ValueError(f"unknown attention backend {backend!r}")
        for block in self.transformer_blocks:
            block.attn.backend = backend
        self.masked_value = float("-inf") if backend == "matmul" and masked_value is None else masked_value

    @staticmethod
    def token_counts(sample_shapes: Sequence[Sequence[int]], text_len: int, patch_size: int = 2) -> TokenCounts:
        """Token counts for clips of shapes [..., T, H, W] (history oldest first, current clip last)."""
        if not sample_shapes:
            raise ValueError("sample_shapes must hold at least the current clip")
        per_clip: list[tuple[int, ...]] = []
        for shape in sample_shapes:
            t, h, w = (int(s) for s in shape[-3:])
            per_clip.append((h // patch_size * (w // patch_size),) * t)
        history = tuple(n for clip in per_clip[:-1] for n in clip)
        return TokenCounts(text_len, sum(history), sum(per_clip[-1]), history + per_clip[-1])

    # ---- forward ---------------------------------------------------------------------------------------

    def forward(
        self,
        sample: Sequence[Tensor],
        encoder_hidden_states: Tensor,
        encoder_attention_mask: Tensor,
        pooled_projections: Tensor,
        timestep: Tensor,
    ) -> Tensor:
        """Predict the flow of the current clip.

        sample: history clips oldest first, then the current noisy clip LAST, each [B, C, T_i, H_i, W_i];
            history may be at lower spatial resolution (it gets interpolated positions).
        encoder_hidden_states: [B, L, joint_attention_dim] T5 tokens ([B, L, inner_dim] without
            context_embedder); encoder_attention_mask: [B, L], 1 valid / 0 pad.
        pooled_projections: [B, pooled_projection_dim]; timestep: [B] (or scalar) float in [0, 1000].
        Returns [B, out_channels, T_cur, H_cur, W_cur].
        """
        if len(sample) == 0:
            raise ValueError("sample must hold at least the current clip")
        cfg = self.config
        p = cfg.patch_size
        current = sample[-1]
        batch, _, t_cur, h_cur, w_cur = current.shape
        ref_hw = (h_cur // p, w_cur // p)

        if timestep.dim() == 0:
            timestep = timestep.expand(batch)
        temb = self.time_text_embed(timestep, pooled_projections)

        if cfg.use_context_embedder:
            context = self.context_embedder(encoder_hidden_states)
        else:
            if encoder_hidden_states.shape[-1] != cfg.inner_dim:
                raise ValueError(
                    f"without a context_embedder the text tokens must be {cfg.inner_dim} wide, "
                    f"got {encoder_hidden_states.shape[-1]}"
                )
            context = encoder_hidden_states
        text_len = context.shape[1]

        tokens = torch.cat([self.pos_embed(clip, ref_hw) for clip in sample], dim=1)
        counts = self.token_counts([tuple(clip.shape) for clip in sample], text_len, p)
        frame_times = list(range(len(counts.per_frame)))  # consecutive over history then current

        mask = build_attention_mask(encoder_attention_mask, counts.per_frame, frame_times)
        if self.masked_value is not None:
            mask = additive_mask(mask, self.masked_value, tokens.dtype)
        times = token_times(text_len, counts.per_frame, frame_times, device=tokens.device)
        cos, sin = rope_angles(times, cfg.attention_head_dim, cfg.rope_theta)
        rope = (cos[None, None], sin[None, None])  # [1, 1, N, Dh/2]: shared by the batch and the heads

        hidden = tokens
        for block in self.transformer_blocks:
            new_context, hidden = block(hidden, context, temb, mask, rope)
            if new_context is not None:
                context = new_context

        hidden = hidden[:, counts.history :]  # only the current clip is predicted
        hidden = self.proj_out(self.norm_out(hidden, temb))
        return self.unpatchify(hidden, t_cur, ref_hw[0], ref_hw[1])

    def unpatchify(self, tokens: Tensor, t: int, h: int, w: int) -> Tensor:
        """[B, T*h*w, p*p*C] (channels ordered p1, p2, C) -> [B, C, T, h*p, w*p]."""
        p, c = self.config.patch_size, self.config.out_channels
        x = tokens.reshape(tokens.shape[0], t, h, w, p, p, c)
        x = x.permute(0, 6, 1, 2, 4, 3, 5)
        return x.reshape(tokens.shape[0], c, t, h * p, w * p)
