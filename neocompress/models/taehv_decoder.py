"""A TAEHV-style video decoder: the ~10M-parameter replacement Neodragon trained for Pyramid-Flow's 226M causal
VAE decoder (reference section 4), built from 2-D convolutions with one frame of memory per block.

Why this shape: every layer is a Conv2d over one frame, and time enters only through (a) MemBlocks, which read
the previous frame's input to the same block (zeros before the first), and (b) TGrow, a 1x1 conv that turns a
frame into `stride` frames. So the decoder is causal, an NPU runs it as plain 2-D convs, and a long video can be
decoded frame by frame holding one frame of features per MemBlock (`stream`). Layout (`decoder.<i>` in one
Sequential) follows the public TAEHV code, so its checkpoints' key names apply: Clamp (a config field, 3 as
published; a config saved without it means 3), conv(latent -> w0), ReLU,
then per stage 3 MemBlocks, a nearest 2x upsample, TGrow, conv(w_i -> w_i+1, no bias); ReLU, conv(w3 -> 3).

Neodragon upsamples time 2x in all three stages (8x, as Pyramid-Flow's latent is 8x8x8; TAEHV's default is 4x)
and trims the first 2^3 - 1 = 7 output frames, so t latent frames give 1 + 8(t - 1) frames, the causal VAE's
contract. Output in [-1, 1] (the pipeline's video range). Full size (widths 256, 128, 64, 64): 9.91M parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TAEHV_CLASS = "TAEHVDecoder"


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the latents to (-limit, limit): limit tanh(x / limit). The public TAEHV uses 3, which suits
    latents of unit scale with light tails; a latent space with heavier tails needs a wider limit, or values past
    it are squashed together (on the miniature's VAE, 2.5 % of normalised latents lie past 3 and reach 8: the
    native decoder fed them through this clamp at 3 falls from 0.941 to 0.703 MiniBench, at 12 it keeps 0.941;
    a TAEHV trained through it learns to undo most of that)."""

    def __init__(self, limit: float = 3.0):
        super().__init__()
        self.limit = float(limit)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x / self.limit) * self.limit


class MemBlock(nn.Module):
    """conv(concat(x, past) -> n_out), ReLU, conv, ReLU, conv; plus a skip (1x1 if widths differ); ReLU."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in * 2, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(),
                                  _conv(n_out, n_out))  # fmt: skip
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor, past: Tensor) -> Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    """One frame -> `stride` frames: a 1x1 conv to stride x C channels, folded into time (frame t -> t*s .. t*s+s-1)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        _, c, h, w = x.shape
        return self.conv(x).reshape(-1, c, h, w)


class TAEHVDecoder(nn.Module):
    """Normalised or raw latents [B, C, t, h, w] -> video [B, 3, 1 + 8(t - 1), 8h, 8w] in [-1, 1]."""

    def __init__(
        self,
        latent_channels: int = 16,
        widths: Sequence[int] = (256, 128, 64, 64),
        time_upscale: Sequence[bool] = (True, True, True),
        space_upscale: Sequence[bool] = (True, True, True),
        out_channels: int = 3,
        blocks_per_stage: int = 3,
        latent_clamp: float = 3.0,
    ):
        super().__init__()
        if not latent_clamp > 0:
            raise ValueError(f"latent_clamp must be positive, got {latent_clamp}")
        if len(widths) != 4 or len(time_upscale) != 3 or len(space_upscale) != 3:
            raise ValueError("a TAEHV decoder has 4 widths and 3 stages of time and space upscaling")
        layers: list[nn.Module] = [Clamp(latent_clamp), _conv(latent_channels, widths[0]), nn.ReLU()]
        for i in range(3):
            layers += [MemBlock(widths[i], widths[i]) for _ in range(blocks_per_stage)]
            layers += [
                nn.Upsample(scale_factor=2 if space_upscale[i] else 1),
                TGrow(widths[i], 2 if time_upscale[i] else 1),
                _conv(widths[i], widths[i + 1], bias=False),
            ]
        layers += [nn.ReLU(), _conv(widths[3], out_channels)]
        self.decoder = nn.Sequential(*layers)
        self.latent_channels = latent_channels
        self.time_factor = 2 ** sum(bool(t) for t in time_upscale)
        self.space_factor = 2 ** sum(bool(s) for s in space_upscale)
        self.trimmed = self.time_factor - 1  # the warm-up frames: t latents give time_factor * t - trimmed frames
        self._config = {"latent_channels": latent_channels, "widths": [int(w) for w in widths],
                        "time_upscale": [bool(t) for t in time_upscale],
                        "space_upscale": [bool(x) for x in space_upscale], "out_channels": out_channels,
                        "blocks_per_stage": blocks_per_stage, "latent_clamp": float(latent_clamp)}  # fmt: skip

    # The pipeline feeds it the normalised latents the denoiser produces (unit scale, what the soft clamp at its
    # default 3 assumes), not the causal VAE's de-normalised ones.
    reads_normalised_latents = True

    def checkpoint_config(self) -> dict[str, object]:
        """What `from_checkpoint_config` rebuilds it from (the `taehv_decoder/config.json` of a saved pipeline)."""
        return {"neocompress_class": TAEHV_CLASS, **self._config}

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, object]) -> TAEHVDecoder:
        if config.get("neocompress_class") != TAEHV_CLASS:
            raise ValueError("not a TAEHVDecoder config (no neocompress_class: TAEHVDecoder)")
        return cls(**{k: v for k, v in config.items() if k != "neocompress_class"})  # type: ignore[arg-type]

    def frames_for(self, latent_frames: int) -> int:
        return self.time_factor * latent_frames - self.trimmed

    def check_latents(self, latents: Tensor) -> None:
        c = self.latent_channels
        if latents.dim() != 5 or latents.shape[1] != c or latents.shape[2] < 1:
            raise ValueError(f"latents must be [B, {c}, t>=1, h, w], got shape {tuple(latents.shape)}")

    def decode(self, latents: Tensor) -> Tensor:
        """The whole clip at once (time folded into the batch; memory grows with t)."""
        self.check_latents(latents)
        b, _, t, _, _ = latents.shape
        x = latents.transpose(1, 2).reshape(b * t, *latents.shape[1:2], *latents.shape[3:])
        for layer in self.decoder:
            if isinstance(layer, MemBlock):
                frames = x.reshape(b, -1, *x.shape[1:])
                past = F.pad(frames, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1]  # the previous frame; zeros before the first
                x = layer(x, past.reshape(x.shape))
            else:
                x = layer(x)
        video = x.reshape(b, -1, *x.shape[1:])[:, self.trimmed :]
        return video.transpose(1, 2).clamp(-1.0, 1.0)

    def forward(self, latents: Tensor) -> Tensor:
        return self.decode(latents)

    @torch.no_grad()
    def stream(self, latents: Tensor) -> Iterator[Tensor]:
        """Frames [B, 3, 8h, 8w] one at a time, reading one latent frame at a time: the memory held is one frame
        of features per MemBlock, whatever the video's length."""
        self.check_latents(latents)
        memory: dict[int, Tensor] = {}
        emitted = 0
        for t in range(latents.shape[2]):
            for frame in self._push(0, latents[:, :, t], memory):
                if emitted >= self.trimmed:
                    yield frame.clamp(-1.0, 1.0)
                emitted += 1

    def _push(self, start: int, x: Tensor, memory: dict[int, Tensor]) -> Iterator[Tensor]:
        """Run one frame from layer `start` on, in causal order; yields the output frames it completes."""
        for i in range(start, len(self.decoder)):
            layer = self.decoder[i]
            if isinstance(layer, MemBlock):
                past = memory.get(i, torch.zeros_like(x))
                memory[i] = x
                x = layer(x, past)
            elif isinstance(layer, TGrow) and layer.stride > 1:
                for sub in layer(x).reshape(x.shape[0], layer.stride, *x.shape[1:]).unbind(1):
                    yield from self._push(i + 1, sub, memory)
                return
            else:
                x = layer(x)
        yield x


# A TAEHV pretrained for the miniature's VAE (tools/build_tiny_taehv.py), so a recipe on `builtin:tiny` can start
# decoder_swap from trained weights, as a real run starts from a public TAEHV checkpoint.
BUILTIN_TINY_TAEHV = "builtin:tiny-taehv"


def taehv_folder(source: str) -> Path:
    """The folder of a TAEHV checkpoint: a path, or `builtin:tiny-taehv` (shipped in the package)."""
    if source == BUILTIN_TINY_TAEHV:
        from importlib.resources import files

        return Path(str(files("neocompress.assets") / "miniature-taehv"))
    if source.startswith("builtin:"):
        raise ValueError(f"unknown TAEHV checkpoint '{source}' (builtin: {BUILTIN_TINY_TAEHV})")
    return Path(source)


def load_taehv(source: str) -> TAEHVDecoder:
    """A TAEHV saved in its folder layout (config.json with `neocompress_class: TAEHVDecoder`, model.safetensors),
    loaded strictly: a key missing or left over is an error naming the folder."""
    from neocompress.core.errors import CheckpointError
    from neocompress.models.checkpoint import load_component, read_config

    root = taehv_folder(source)
    if not root.is_dir():
        raise CheckpointError(f"TAEHVDecoder: checkpoint folder '{root}' does not exist")
    config = read_config(root, TAEHV_CLASS)
    try:
        with torch.device("meta"):  # a config it cannot build from is reported as the file's problem
            TAEHVDecoder.from_checkpoint_config(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"TAEHVDecoder: '{root / 'config.json'}': {e}") from None
    return load_component(lambda: TAEHVDecoder.from_checkpoint_config(config), root, TAEHV_CLASS)
