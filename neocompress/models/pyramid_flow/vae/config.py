"""Configuration of Pyramid-Flow's causal video VAE.

Why a config of our own rather than the public ``config.json`` as-is: the public file names every setting
twice (``encoder_*`` / ``decoder_*``) and carries knobs the checkpoint never varies (block types,
``interpolate``, ``double_z``). We keep one typed, frozen description with the few degrees of freedom a
compression pass can actually change (widths, depths, which blocks resample), and `from_dict` translates the
public file into it, refusing the settings our implementation does not reproduce instead of silently ignoring
them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

_Ints = tuple[int, ...]
_Bools = tuple[bool, ...]


@dataclass(frozen=True)
class CausalVAEConfig:
    """Shape of the causal video VAE (encoder and decoder).

    Per-block tuples of the encoder are in encoder order (block 0 sees full resolution); those of the decoder
    are in decoder order (up block 0 is the deepest, right after the mid block), as in the public config.
    `encoder_layers_per_block` / `decoder_layers_per_block` may be given as a single int; it is expanded to
    one entry per block. `decoder_block_out_channels=None` means "the same widths as the encoder".
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    block_out_channels: _Ints = (128, 256, 512, 512)
    decoder_block_out_channels: _Ints | None = None
    encoder_layers_per_block: _Ints = (2, 2, 2, 2)
    decoder_layers_per_block: _Ints = (3, 3, 3, 3)
    spatial_downsample: _Bools = (True, True, True, False)
    temporal_downsample: _Bools = (True, True, True, False)
    spatial_upsample: _Bools = (True, True, True, False)
    temporal_upsample: _Bools = (True, True, True, False)
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    mid_block_attention: bool = True

    def __post_init__(self) -> None:
        n = len(self.block_out_channels)
        for name in ("encoder_layers_per_block", "decoder_layers_per_block"):
            value = getattr(self, name)
            expanded = (value,) * n if isinstance(value, int) else tuple(int(v) for v in value)
            object.__setattr__(self, name, expanded)
        for name in (
            "block_out_channels",
            "spatial_downsample",
            "temporal_downsample",
            "spatial_upsample",
            "temporal_upsample",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.decoder_block_out_channels is not None:
            dec = tuple(self.decoder_block_out_channels)
            same = dec == self.block_out_channels
            object.__setattr__(self, "decoder_block_out_channels", None if same else dec)
        self._validate()

    def _validate(self) -> None:
        problems: list[str] = []
        n_enc = len(self.block_out_channels)
        n_dec = len(self.decoder_widths)
        for name, expected in (
            ("encoder_layers_per_block", n_enc),
            ("spatial_downsample", n_enc),
            ("temporal_downsample", n_enc),
            ("decoder_layers_per_block", n_dec),
            ("spatial_upsample", n_dec),
            ("temporal_upsample", n_dec),
        ):
            if len(getattr(self, name)) != expected:
                problems.append(f"{name} has {len(getattr(self, name))} entries, expected {expected}")
        for width in (*self.block_out_channels, *self.decoder_widths):
            if width % self.norm_num_groups:
                problems.append(f"width {width} is not divisible by norm_num_groups={self.norm_num_groups}")
        if any(d < 1 for d in (*self.encoder_layers_per_block, *self.decoder_layers_per_block)):
            problems.append("every block needs at least one resnet layer")
        if not problems and (
            self.spatial_compression != 2 ** sum(self.spatial_upsample)
            or self.temporal_compression != 2 ** sum(self.temporal_upsample)
        ):
            problems.append("decoder upsampling does not undo encoder downsampling")
        if problems:
            raise ValueError("invalid CausalVAEConfig: " + "; ".join(problems))

    # --- derived quantities -------------------------------------------------------------------------------

    @property
    def decoder_widths(self) -> _Ints:
        """Decoder widths in encoder order (index 0 = full resolution), as the public config stores them."""
        return self.decoder_block_out_channels or self.block_out_channels

    @property
    def spatial_compression(self) -> int:
        """How many pixels per latent along H and along W (8 for the real model)."""
        return 2 ** sum(self.spatial_downsample)

    @property
    def temporal_compression(self) -> int:
        """How many frames per latent frame after the first (8 for the real model: 1 + 8k -> 1 + k)."""
        return 2 ** sum(self.temporal_downsample)

    # --- presets ------------------------------------------------------------------------------------------

    @classmethod
    def pyramid_flow_sd3(cls) -> CausalVAEConfig:
        """The VAE shipped with `rain1011/pyramid-flow-sd3` (``causal_video_vae/config.json``)."""
        return cls()

    @classmethod
    def tiny(cls) -> CausalVAEConfig:
        """A ~3.8M-parameter VAE with the real topology (8x8x8 compression, 16 latent channels) for tests."""
        return cls(
            block_out_channels=(16, 32, 64, 64),
            encoder_layers_per_block=1,
            decoder_layers_per_block=1,
            norm_num_groups=8,
        )

    # --- (de)serialisation --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists); `from_dict` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CausalVAEConfig:
        """Build from our own `to_dict` output or from the public ``causal_video_vae/config.json``.

        Keys starting with ``_`` (``_class_name``, ``_diffusers_version``) are metadata and ignored. Unknown
        keys and public settings we do not implement raise ValueError, all listed together.
        """
        own = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        problems: list[str] = []
        public: dict[str, Any] = {}
        for key, value in data.items():
            if key.startswith("_"):
                continue
            if key in own:
                kwargs[key] = value
            elif key in _PUBLIC_KEYS:
                public[key] = value
            else:
                problems.append(f"unknown key {key!r}")
        kwargs.update(_translate_public(public, problems))
        if problems:
            raise ValueError("cannot read CausalVAEConfig: " + "; ".join(problems))
        for key in (
            "block_out_channels",
            "decoder_block_out_channels",
            "spatial_downsample",
            "temporal_downsample",
            "spatial_upsample",
            "temporal_upsample",
        ):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        config = cls(**kwargs)
        scale = public.get("downsample_scale", config.spatial_compression)
        if scale != config.spatial_compression:
            raise ValueError(
                f"cannot read CausalVAEConfig: downsample_scale={scale} but the down blocks "
                f"give {config.spatial_compression}"
            )
        return config


# Public key -> our field. Keys whose value must merely be checked are in _PUBLIC_FIXED; keys that only matter
# for training or for the upstream tiling heuristics are in _PUBLIC_IGNORED.
_PUBLIC_RENAMES = {
    "encoder_in_channels": "in_channels",
    "decoder_out_channels": "out_channels",
    "encoder_out_channels": "latent_channels",
    "encoder_block_out_channels": "block_out_channels",
    "encoder_spatial_down_sample": "spatial_downsample",
    "encoder_temporal_down_sample": "temporal_downsample",
    "decoder_spatial_up_sample": "spatial_upsample",
    "decoder_temporal_up_sample": "temporal_upsample",
    "encoder_norm_num_groups": "norm_num_groups",
}
_PUBLIC_FIXED: dict[str, Any] = {
    "encoder_act_fn": "silu",
    "decoder_act_fn": "silu",
    "encoder_double_z": True,
    "add_post_quant_conv": True,
    "interpolate": False,
    "encoder_type": "causal_vae_conv",
    "decoder_type": "causal_vae_conv",
}
_PUBLIC_BLOCK_TYPES = {
    "encoder_down_block_types": "DownEncoderBlockCausal3D",
    "decoder_up_block_types": "UpDecoderBlockCausal3D",
}
# Dropout is 0 at inference; sample_size / scaling_factor only steer upstream tiling and an unused default
# scale (Pyramid-Flow normalises latents with its own constants, see latents.py).
_PUBLIC_IGNORED = {"encoder_block_dropout", "decoder_block_dropout", "sample_size", "scaling_factor"}
# Checked against the other settings; downsample_scale is derived from the down blocks.
_PUBLIC_CROSS_CHECKED = {"decoder_in_channels", "decoder_norm_num_groups", "downsample_scale"}
_PUBLIC_KEYS = (
    set(_PUBLIC_RENAMES) | set(_PUBLIC_FIXED) | set(_PUBLIC_BLOCK_TYPES) | _PUBLIC_IGNORED | _PUBLIC_CROSS_CHECKED
)


def _translate_public(public: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Map public-config keys onto our fields, appending every unsupported setting to `problems`."""
    out = {_PUBLIC_RENAMES[k]: v for k, v in public.items() if k in _PUBLIC_RENAMES}
    for key, expected in _PUBLIC_FIXED.items():
        if key in public and public[key] != expected:
            problems.append(f"{key}={public[key]!r} is not supported (only {expected!r})")
    for key, expected in _PUBLIC_BLOCK_TYPES.items():
        if key in public and any(t != expected for t in public[key]):
            problems.append(f"{key}={public[key]!r} is not supported (only {expected!r} blocks)")
    if (
        "decoder_in_channels" in public
        and "encoder_out_channels" in public
        and public["decoder_in_channels"] != public["encoder_out_channels"]
    ):
        problems.append("decoder_in_channels differs from encoder_out_channels")
    if "decoder_norm_num_groups" in public and public["decoder_norm_num_groups"] != out.get(
        "norm_num_groups", public["decoder_norm_num_groups"]
    ):
        problems.append("encoder_norm_num_groups and decoder_norm_num_groups differ (one value is supported)")
    elif "decoder_norm_num_groups" in public:
        out["norm_num_groups"] = public["decoder_norm_num_groups"]
    return out
