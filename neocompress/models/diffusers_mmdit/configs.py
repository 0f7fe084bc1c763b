"""Configurations of the diffusers MMDiT builtins: tiny seeded models for tests and demos, and the public
full-size configurations (structure only) for `inspect` and `plan`.

The full-size values are those of the public checkpoints' `transformer/config.json`: Stable Diffusion 3 medium
(24 joint blocks of width 1536) and FLUX.1-dev (19 double-stream + 38 single-stream blocks of width 3072).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MMDiTDefaults:
    """What a transformer folder does not say about sampling: latent size, steps, guidance, the flow shift."""

    latent_size: int
    steps: int = 28
    guidance: float = 1.0
    shift: float = 3.0
    text_tokens: int = 77

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MMDiTDefaults:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Builtin:
    config: dict[str, Any]
    defaults: MMDiTDefaults
    weightless: bool = False
    notes: list[str] = field(default_factory=list)


SD3_BUILTINS: dict[str, Builtin] = {
    "builtin:sd3-tiny": Builtin(
        {
            "sample_size": 8,
            "patch_size": 2,
            "in_channels": 4,
            "out_channels": 4,
            "num_layers": 6,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 24,
            "caption_projection_dim": 32,
            "pooled_projection_dim": 16,
            "pos_embed_max_size": 16,
            "dual_attention_layers": [0, 1],
            "qk_norm": "rms_norm",
        },
        MMDiTDefaults(latent_size=8, steps=6, text_tokens=8),
    ),
    "builtin:sd3-medium": Builtin(
        {
            "sample_size": 128,
            "patch_size": 2,
            "in_channels": 16,
            "out_channels": 16,
            "num_layers": 24,
            "attention_head_dim": 64,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "caption_projection_dim": 1536,
            "pooled_projection_dim": 2048,
            "pos_embed_max_size": 192,
        },
        MMDiTDefaults(latent_size=128, steps=28, text_tokens=333),
        weightless=True,
    ),
}

FLUX_BUILTINS: dict[str, Builtin] = {
    "builtin:flux-tiny": Builtin(
        {
            "patch_size": 1,
            "in_channels": 16,
            "num_layers": 3,
            "num_single_layers": 4,
            "attention_head_dim": 16,
            "num_attention_heads": 2,
            "joint_attention_dim": 24,
            "pooled_projection_dim": 16,
            "guidance_embeds": True,
            "axes_dims_rope": [4, 6, 6],
        },
        MMDiTDefaults(latent_size=8, steps=6, guidance=3.5, text_tokens=8),
    ),
    "builtin:flux-dev": Builtin(
        {
            "patch_size": 1,
            "in_channels": 64,
            "num_layers": 19,
            "num_single_layers": 38,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "pooled_projection_dim": 768,
            "guidance_embeds": True,
            "axes_dims_rope": [16, 56, 56],
        },
        MMDiTDefaults(latent_size=128, steps=28, guidance=3.5, text_tokens=512),
        weightless=True,
    ),
}
