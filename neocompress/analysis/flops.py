"""Analytic FLOPs of the MMDiT denoiser: per call, per stage, and per generated video for a step schedule.

Why analytic: planning happens on weightless skeletons of the full-size model, and a closed formula answers for
any stage, history and schedule instantly. Convention: one multiply-add = 2 FLOPs; only matrix products are
counted (linears, the patch-embedding conv, QK^T and AV); norms, softmax, RoPE and element-wise ops are
ignored (they are a few percent at these widths). The attention mask does not reduce the count: the dense
product is what runs. Per call, with N image tokens (history + current clip), L text tokens, width D, FF width F:

  full block:      2*(2 * D * 6D)            adaLN-Zero of both streams (per sample, not per token)
                 + 2*(N+L) * D * 3D          q, k, v of both streams
                 + 2 * 2*(N+L)^2 * D         QK^T and AV over the joint sequence
                 + 2*(N+L) * D * D           to_out + to_add_out
                 + 2 * 2*(N+L) * D * F       both feed-forwards
  last (context_pre_only) block: the text stream's output path is dropped: adaLN 2*(D*6D + D*2D), q,k,v and
                   attention as above (text-query rows computed and discarded), to_out and FF on N tokens only.
  stem/head:       2*N*(C*p*p)*D patch embedding, 2*(256*D + D*D + P*D + D*D) time/pooled embedders,
                   2*L*J*D context embedder (if present), 2*D*2D norm_out, 2*Nc*D*(p*p*C_out) proj_out.

A test checks this formula against torch.utils.flop_counter on a tiny model (full, pruned, converted last block):
it is exact, with the "matmul" attention backend. With SDPA on the CPU the counter reads exactly the attention
term (4*(N+L)^2*D per block) less, because it does not see the fused CPU SDPA kernels; on meta tensors SDPA
decomposes into counted matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class DenoiserShape:
    """What the formula needs, read from a (possibly pruned) denoiser module."""

    width: int
    ff_width: int
    full_blocks: int
    pre_only_blocks: int
    in_channels: int
    out_channels: int
    patch: int
    joint_dim: int | None  # None when there is no context embedder
    pooled_dim: int
    timestep_channels: int = 256

    @classmethod
    def of(cls, module: nn.Module) -> DenoiserShape:
        cfg = module.config
        blocks = list(module.transformer_blocks)
        pre_only = sum(1 for b in blocks if getattr(b, "context_pre_only", False))
        ff_width = blocks[0].ff.net[0].proj.out_features if blocks else cfg.ff_inner_dim
        return cls(
            width=cfg.inner_dim,
            ff_width=ff_width,
            full_blocks=len(blocks) - pre_only,
            pre_only_blocks=pre_only,
            in_channels=cfg.in_channels,
            out_channels=cfg.out_channels,
            patch=cfg.patch_size,
            joint_dim=cfg.joint_attention_dim if cfg.use_context_embedder else None,
            pooled_dim=cfg.pooled_projection_dim,
            timestep_channels=cfg.timestep_proj_channels,
        )


def call_flops(s: DenoiserShape, image_tokens: int, current_tokens: int, text_tokens: int) -> int:
    """FLOPs of one denoiser call for batch 1."""
    D, F, N, L = s.width, s.ff_width, image_tokens, text_tokens
    S = N + L
    attn = 2 * S * D * 3 * D + 2 * 2 * S * S * D
    full = 2 * (2 * D * 6 * D) + attn + 2 * S * D * D + 2 * 2 * S * D * F
    pre_only = 2 * (D * 6 * D + D * 2 * D) + attn + 2 * N * D * D + 2 * 2 * N * D * F
    p2 = s.patch * s.patch
    stem = 2 * N * s.in_channels * p2 * D
    stem += 2 * (s.timestep_channels * D + D * D + s.pooled_dim * D + D * D)
    if s.joint_dim is not None:
        stem += 2 * L * s.joint_dim * D
    head = 2 * D * 2 * D + 2 * current_tokens * D * p2 * s.out_channels
    return s.full_blocks * full + s.pre_only_blocks * pre_only + stem + head


def tokens_per_frame(latent_h: int, latent_w: int, divisor: int, patch: int) -> int:
    return (latent_h // divisor // patch) * (latent_w // divisor // patch)


def unit_stage_tokens(
    unit: int, stage: int, latent_h: int, latent_w: int, patch: int, stages: int = 3, frames_per_unit: int = 1
) -> tuple[int, int]:
    """(image tokens in the call, tokens of the current clip) for `unit` at `stage` with the temporal pyramid."""
    from neocompress.models.pyramid_flow.history import history_stages

    div = 2 ** (stages - 1 - stage)
    current = tokens_per_frame(latent_h, latent_w, div, patch) * frames_per_unit
    hist = sum(
        tokens_per_frame(latent_h, latent_w, 2 ** (stages - 1 - hs), patch)
        for hs in history_stages(unit * frames_per_unit, stage)
    )
    return hist + current, current


@dataclass(frozen=True)
class VideoFlops:
    per_stage: list[int]  # summed over units, CFG included
    total: int
    calls: int
    nfe: int


def video_flops(
    s: DenoiserShape, schedule, *, num_units: int, latent_h: int, latent_w: int, text_tokens: int, stages: int = 3
) -> VideoFlops:
    """Denoiser FLOPs to generate one video with `schedule` (a StepSchedule); CFG doubles the batch."""
    per_stage = [0] * stages
    for u in range(num_units):
        cfg = 2 if schedule.uses_cfg(schedule.guidance_for(u)) else 1
        for st, steps in enumerate(schedule.steps_for(u)):
            n, cur = unit_stage_tokens(u, st, latent_h, latent_w, s.patch, stages)
            per_stage[st] += steps * cfg * call_flops(s, n, cur, text_tokens)
    return VideoFlops(per_stage, sum(per_stage), schedule.calls(num_units), schedule.nfe(num_units))
