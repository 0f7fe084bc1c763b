"""Architecture description of the Pyramid-Flow MMDiT denoiser (and of its pruned Neodragon variants).

Why a frozen dataclass with the diffusers-style field names: the same object has to round-trip through the
`config.json` that sits next to a real checkpoint (`diffusion_transformer_384p/config.json`), through our own
saved artefacts, and through recipes. Field names therefore follow the public config; the few fields the
public config does not carry (`qk_norm_eps`, `rope_theta`, `use_context_embedder`, ...) hold values that the
reference code hard-codes, so a pass that changes them (Neodragon drops the `context_embedder`) can say so.

Keys of a real `config.json` that do not describe the architecture are ignored by `from_dict`:
- keys starting with "_" (`_class_name`, `_diffusers_version`, `_name_or_path`);
- `RUNTIME_ONLY_KEYS`: training/kernel switches that never change the weights or the maths;
- `PIPELINE_OVERRIDDEN_KEYS`: flags that Pyramid-Flow's pipeline overrides when it loads the denoiser
  (`from_pretrained(..., use_t5_mask=True, add_temp_pos_embed=True, temp_pos_embed_type="rope",
  use_temporal_causal=True, interp_condition_pos=True)`), so whatever the file says, the deployed model uses
  temporal RoPE, the T5 padding mask, temporal-causal attention and interpolated history positions; our model
  implements exactly that behaviour.
Every other unknown key raises `CheckpointError`: we cannot prove it leaves the architecture unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from neocompress.core.errors import CheckpointError

RUNTIME_ONLY_KEYS: frozenset[str] = frozenset(
    {"use_gradient_checkpointing", "gradient_checkpointing_ratio", "use_flash_attn"}
)
PIPELINE_OVERRIDDEN_KEYS: frozenset[str] = frozenset(
    {
        "use_t5_mask",
        "add_temp_pos_embed",
        "temp_pos_embed_type",
        "use_temporal_causal",
        "interp_condition_pos",
    }
)
# Keys the reference accepts with other values, but only this value is what the released model uses.
FIXED_VALUE_KEYS: dict[str, Any] = {"pos_embed_type": "sincos"}


@dataclass(frozen=True)
class DenoiserConfig:
    """Shape-defining hyper-parameters of `PyramidFlowMMDiT`; defaults are the released 24-block model."""

    sample_size: int = 128  # latent side the sincos table is scaled for (base_size = sample_size // patch)
    patch_size: int = 2
    in_channels: int = 16
    out_channels: int = 16
    num_layers: int = 24
    attention_head_dim: int = 64
    num_attention_heads: int = 24
    caption_projection_dim: int = 1536  # text-stream width; must equal inner_dim
    joint_attention_dim: int = 4096  # T5-XXL width, input of context_embedder
    pooled_projection_dim: int = 2048  # CLIP-L 768 + CLIP-G 1280
    pos_embed_max_size: int = 192  # side of the 2-D sincos table (in patches)
    max_num_frames: int = 200  # informational: only a sincos temporal table (unused with RoPE) depends on it
    qk_norm: str = "rms_norm"
    qk_norm_eps: float = 1e-5  # RMSNorm over the head dim on q, k, add_q, add_k
    norm_eps: float = 1e-6  # the affine-free LayerNorms of adaLN, norm2 and norm_out
    rope_theta: float = 10000.0  # 1-D temporal RoPE over the whole head dim
    ff_mult: int = 4
    timestep_proj_channels: int = 256  # width of the timestep sinusoid
    use_context_embedder: bool = True  # Neodragon: False (its ContextAdapter already outputs inner_dim)
    context_pre_only_last: bool = True  # the last block has no text-stream output path

    def __post_init__(self) -> None:
        positive = (
            "sample_size",
            "patch_size",
            "in_channels",
            "out_channels",
            "num_layers",
            "attention_head_dim",
            "num_attention_heads",
            "caption_projection_dim",
            "joint_attention_dim",
            "pooled_projection_dim",
            "pos_embed_max_size",
            "max_num_frames",
            "ff_mult",
            "timestep_proj_channels",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"DenoiserConfig.{name} must be a positive int, got {value!r}")
        if self.attention_head_dim % 2:
            raise ValueError(f"attention_head_dim must be even for RoPE, got {self.attention_head_dim}")
        if self.inner_dim % 4:
            raise ValueError(f"inner_dim must be divisible by 4 for the 2-D sincos table, got {self.inner_dim}")
        if self.timestep_proj_channels % 2:
            raise ValueError(f"timestep_proj_channels must be even, got {self.timestep_proj_channels}")
        if self.caption_projection_dim != self.inner_dim:
            raise ValueError(
                f"caption_projection_dim ({self.caption_projection_dim}) must equal inner_dim "
                f"({self.inner_dim} = {self.num_attention_heads} heads x {self.attention_head_dim}): "
                "the text stream runs through the same blocks as the image stream"
            )
        if self.qk_norm != "rms_norm":
            raise ValueError(f"only qk_norm='rms_norm' is supported, got {self.qk_norm!r}")
        for name in ("qk_norm_eps", "norm_eps", "rope_theta"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"DenoiserConfig.{name} must be > 0, got {getattr(self, name)!r}")

    @property
    def inner_dim(self) -> int:
        """Hidden width of both streams (heads x head dim)."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def text_token_dim(self) -> int:
        """Width of the text tokens the denoiser reads: T5's (joint_attention_dim) with its context embedder, the
        hidden width without it (a ContextAdapter in replace mode already projects to it)."""
        return self.joint_attention_dim if self.use_context_embedder else self.inner_dim

    @property
    def ff_inner_dim(self) -> int:
        return self.inner_dim * self.ff_mult

    def replace(self, **changes: Any) -> DenoiserConfig:
        """A copy with some fields changed (validated again), e.g. `num_layers=18` after pruning."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenoiserConfig:
        """Build from our own `to_dict()` output or from a real diffusers-style `config.json` dict.

        Raises `CheckpointError` naming every key that would change the architecture but is not understood,
        any fixed-value key holding another value, and any invalid value.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        unknown: list[str] = []
        problems: list[str] = []
        for key, value in d.items():
            if key.startswith("_") or key in RUNTIME_ONLY_KEYS or key in PIPELINE_OVERRIDDEN_KEYS:
                continue
            if key in FIXED_VALUE_KEYS:
                if value != FIXED_VALUE_KEYS[key]:
                    problems.append(f"{key}={value!r} is not supported (only {FIXED_VALUE_KEYS[key]!r})")
                continue
            if key not in fields:
                unknown.append(key)
                continue
            kwargs[key] = _coerce(key, value, fields[key].type)
        if unknown:
            problems.append(
                "unknown denoiser config key(s) that may change the architecture: " + ", ".join(sorted(unknown))
            )
        if problems:
            raise CheckpointError("; ".join(problems))
        if "out_channels" not in d and "in_channels" in kwargs:
            kwargs["out_channels"] = kwargs["in_channels"]  # the reference predicts in_channels channels
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"invalid denoiser config: {exc}") from exc

    @classmethod
    def pyramid_flow_sd3(cls) -> DenoiserConfig:
        """The released `rain1011/pyramid-flow-sd3` denoiser (24 blocks, hidden 1536)."""
        return cls()

    @classmethod
    def tiny(cls) -> DenoiserConfig:
        """A structurally complete toy (hidden 32, 6 blocks) for fast tests."""
        return cls(
            sample_size=8,
            num_layers=6,
            num_attention_heads=2,
            attention_head_dim=16,
            caption_projection_dim=32,
            joint_attention_dim=64,
            pooled_projection_dim=64,
            pos_embed_max_size=32,
        )


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """JSON only knows int/float/bool/str: accept ints for float fields, reject any other mismatch."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {"int": int, "float": float, "bool": bool, "str": str}.get(kind)
    if expected is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
        raise CheckpointError(f"denoiser config key {key!r} must be {kind}, got {value!r}")
    return value
