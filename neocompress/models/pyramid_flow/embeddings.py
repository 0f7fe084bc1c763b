"""Input embeddings of the Pyramid-Flow MMDiT: patches + 2-D sincos positions, timestep + pooled text, RoPE.

Why these are written out by hand rather than borrowed from diffusers: later passes trace the model with
torch.fx (AIMET `prepare_model`) and export it to ONNX for the Hexagon NPU. diffusers' `PatchEmbed` and
`Timesteps` do not trace, and RoPE written with `reshape(*x.shape[:-1], ...)` or rank-5/6 tensors does not
trace or lower well, so every function here is plain tensor arithmetic on tensors of rank <= 4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ----------------------------------------------------------------------------------------------------------
# 2-D sincos position table
# ----------------------------------------------------------------------------------------------------------


def sincos_1d(embed_dim: int, positions: Tensor) -> Tensor:
    """[M] positions -> [M, embed_dim] = [sin(p * w_i) | cos(p * w_i)], w_i = 10000^(-i / (embed_dim/2))."""
    half = embed_dim // 2
    omega = torch.arange(half, dtype=torch.float64, device=positions.device) / half
    omega = 1.0 / (10000.0**omega)
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d_table(embed_dim: int, grid_size: int, base_size: int, device: torch.device | None = None) -> Tensor:
    """The SD3 / Pyramid-Flow 2-D table, [grid_size * grid_size, embed_dim], rows in (row, column) order.

    Coordinates are scaled so `base_size` patches span `base_size` units of the *training* grid
    (coord = index / (grid_size / base_size)). The first half of the channels encodes the column (x) and the
    second half the row (y), as in the reference (its meshgrid puts w first). The 1-D parts are computed in
    float64 (as the reference does in numpy) and only the broadcast result is float32, which keeps the
    56 M-element full-size table cheap to build.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4, got {embed_dim}")
    # float32 coordinates, like the reference's numpy float32 grid; only the angles are float64
    coords = torch.arange(grid_size, dtype=torch.float32, device=device) / (grid_size / base_size)
    per_axis = sincos_1d(embed_dim // 2, coords).to(torch.float32)  # [G, D/2]
    col = per_axis[None, :, :].expand(grid_size, grid_size, embed_dim // 2)  # varies along columns
    row = per_axis[:, None, :].expand(grid_size, grid_size, embed_dim // 2)  # varies along rows
    return torch.cat([col, row], dim=-1).reshape(grid_size * grid_size, embed_dim)


def crop_positions(table: Tensor, max_size: int, ref_h: int, ref_w: int, h: int, w: int) -> Tensor:
    """Positions for an h x w patch grid whose clip's *current* resolution is ref_h x ref_w.

    The table ([1, max*max, D]) is cropped at its centre to ref_h x ref_w; a lower-resolution history frame
    then gets that crop bilinearly resized to h x w (`interp_condition_pos`), so a history frame covers the
    same spatial extent as the current clip. Returns [1, h*w, D].
    """
    if ref_h > max_size or ref_w > max_size:
        raise ValueError(f"patch grid {ref_h}x{ref_w} exceeds pos_embed_max_size {max_size}")
    if h > ref_h or w > ref_w:
        raise ValueError(f"history grid {h}x{w} is larger than the current clip's grid {ref_h}x{ref_w}")
    top = (max_size - ref_h) // 2
    left = (max_size - ref_w) // 2
    grid = table.reshape(1, max_size, max_size, table.shape[-1])[:, top : top + ref_h, left : left + ref_w, :]
    if (h, w) != (ref_h, ref_w):
        grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
        grid = grid.permute(0, 2, 3, 1)
    return grid.reshape(1, h * w, table.shape[-1])


class PatchEmbed(nn.Module):
    """`pos_embed`: per-frame Conv2d patchify (k = s = patch) plus the cropped/interpolated sincos table.

    The table is a persistent buffer because the checkpoint stores it (`pos_embed.pos_embed`).
    """

    def __init__(
        self, in_channels: int, embed_dim: int, patch_size: int, pos_embed_max_size: int, base_size: int
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.pos_embed_max_size = pos_embed_max_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)
        device = torch.empty(0).device  # honours a `with torch.device(...)` context
        if device.type == "meta":
            # Shape only: meta `arange` routes through torch's Python decompositions (seconds to import).
            table = torch.empty(pos_embed_max_size * pos_embed_max_size, embed_dim)
        else:
            table = sincos_2d_table(embed_dim, pos_embed_max_size, base_size, device=device)
        self.register_buffer("pos_embed", table.unsqueeze(0), persistent=True)

    def forward(self, clip: Tensor, ref_hw: tuple[int, int]) -> Tensor:
        """[B, C, T, H, W] latents -> [B, T*h*w, D] tokens (frame-major, then rows, then columns).

        `ref_hw` is the current clip's patch grid (h, w): it fixes the centre crop for every clip.
        """
        b, c, t, height, width = clip.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"latent size {height}x{width} is not divisible by patch size {p}")
        frames = clip.transpose(1, 2).reshape(b * t, c, height, width)
        tokens = self.proj(frames).flatten(2).transpose(1, 2)  # [B*T, h*w, D]
        pos = crop_positions(self.pos_embed, self.pos_embed_max_size, ref_hw[0], ref_hw[1], height // p, width // p)
        tokens = tokens + pos.to(tokens.dtype)
        return tokens.reshape(b, t * tokens.shape[1], tokens.shape[2])


# ----------------------------------------------------------------------------------------------------------
# Timestep + pooled text conditioning
# ----------------------------------------------------------------------------------------------------------


def timestep_sinusoid(
    timesteps: Tensor,
    channels: int = 256,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
    max_period: float = 10000.0,
) -> Tensor:
    """[B] timesteps (fractional allowed, 0..1000) -> [B, channels]; flip puts cos first, as SD3 does."""
    half = channels // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device) * (-math.log(max_period))
    freqs = torch.exp(exponent / (half - downscale_freq_shift))
    angles = timesteps.to(torch.float32)[:, None] * freqs[None, :]
    if flip_sin_to_cos:
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class MLPEmbedder(nn.Module):
    """linear_1 -> SiLU -> linear_2; the layout of both `timestep_embedder` and `text_embedder`."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class TimestepTextEmbedding(nn.Module):
    """`time_text_embed`: temb = MLP(sinusoid(t)) + MLP(pooled CLIP projection); it drives every adaLN."""

    def __init__(self, embed_dim: int, pooled_projection_dim: int, timestep_channels: int = 256) -> None:
        super().__init__()
        self.timestep_channels = timestep_channels
        self.timestep_embedder = MLPEmbedder(timestep_channels, embed_dim)
        self.text_embedder = MLPEmbedder(pooled_projection_dim, embed_dim)

    def forward(self, timestep: Tensor, pooled_projections: Tensor) -> Tensor:
        t_proj = timestep_sinusoid(timestep, self.timestep_channels).to(pooled_projections.dtype)
        return self.timestep_embedder(t_proj) + self.text_embedder(pooled_projections)


# ----------------------------------------------------------------------------------------------------------
# Temporal RoPE
# ----------------------------------------------------------------------------------------------------------


def rope_angles(times: Tensor, head_dim: int, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos/sin tables for 1-D RoPE: [..., N] times -> two [..., N, head_dim / 2] tensors (float32).

    Pair i (channels 2i, 2i+1 of a head) rotates with frequency theta^(-2i / head_dim): the whole head dim
    carries time, as in Pyramid-Flow's `EmbedNDRoPE(axes_dim=[head_dim])`. Angles are formed in float64 where
    the device has it, like the reference.
    """
    dtype = torch.float32 if times.device.type == "mps" else torch.float64
    freqs = torch.arange(0, head_dim, 2, dtype=dtype, device=times.device) / head_dim
    freqs = 1.0 / (theta**freqs)
    angles = times.to(dtype).unsqueeze(-1) * freqs
    return torch.cos(angles).to(torch.float32), torch.sin(angles).to(torch.float32)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved channel pairs (2i, 2i+1) of x [B, H, N, Dh] by the angles in cos/sin [.., N, Dh/2].

    The result is returned with the pairs *de-interleaved*: [rotated evens | rotated odds]. Applied to both q
    and k this is the same fixed channel permutation on both sides, so every q.k product (and thus attention)
    equals the reference's, while the graph stays rank 4 (no [.., Dh/2, 2] view) and is exactly the
    rotate-half form that traces and lowers well. Never apply it to v.
    """
    x_even = x[..., 0::2]
    x_odd = x[..., 1::2]
    cos = cos.to(x.dtype)
    sin = sin.to(x.dtype)
    return torch.cat([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1)
