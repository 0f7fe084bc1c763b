"""The training run of `decoder_swap`: clips through the frozen encoder into latents, the new decoder trained to
reconstruct them (or, without clips, to reproduce the native decoder on the teacher's own samples), and PSNR on
held-out clips before and after, against ground truth and against the native decoder.

Why the latents come from the frozen encoder (or the denoiser's own samples): the denoiser's latent space must
not move, so the new decoder learns to read the latents the pipeline will hand it. Training reads normalised
latents, which is what the pipeline's sampler returns and what the TAEHV decodes.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neocompress.core.hashing import hash_json
from neocompress.models.pyramid_flow.objective import Indices
from neocompress.models.pyramid_flow.vae import decode_normalised, normalize_latents
from neocompress.train import plot_losses, train
from neocompress.train.stage import stage_train_config

PERCEPTUAL_NOTE = (
    "no perceptual loss: LPIPS needs pretrained VGG/AlexNet weights, which are not on this machine and cannot be "
    "downloaded here; trained on MSE alone (Neodragon used MSE + LPIPS)"
)


@dataclass
class DecoderData:
    """Normalised latents [N, C, t, h, w] and what each should decode to; `truth` is None when the targets are the
    native decoder's outputs (no ground-truth videos)."""

    latents: Tensor
    targets: Tensor
    truth: Tensor | None
    source: str

    def split(self, heldout: int) -> tuple[DecoderData, DecoderData]:
        n = self.latents.shape[0] - heldout

        def part(sl: slice) -> DecoderData:
            truth = None if self.truth is None else self.truth[sl]
            return DecoderData(self.latents[sl], self.targets[sl], truth, self.source)

        return part(slice(0, n)), part(slice(n, None))

    def before(self, clips: DecoderData) -> DecoderData:
        """These (teacher samples, no ground truth) followed by `clips`: `split` holds out from the end, so the
        held-out rows stay clips with their truth; a sample's own row of `truth` is its target, never read."""
        assert clips.truth is not None, "clips carry their ground truth"
        return DecoderData(torch.cat([self.latents, clips.latents]), torch.cat([self.targets, clips.targets]),
                           torch.cat([self.targets, clips.truth]), f"{clips.source} + {self.source}")  # fmt: skip


@torch.no_grad()
def encode_clips(encoder: nn.Module, clips: list[Tensor], norm: Any, batch: int = 8) -> Tensor:
    """Clips [3, F, H, W] -> normalised posterior-mean latents [N, C, t, h, w] through the frozen encoder."""
    encoder.eval()
    out = [normalize_latents(encoder.encode(torch.stack(clips[i : i + batch])), norm)
           for i in range(0, len(clips), batch)]  # fmt: skip
    return torch.cat(out)


@torch.no_grad()
def native_decode(decoder: nn.Module, latents: Tensor, norm: Any, batch: int = 8) -> Tensor:
    decoder.eval()
    return torch.cat([decode_normalised(decoder, latents[i : i + batch], norm) for i in range(0, len(latents), batch)])


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of videos in [-1, 1] (peak-to-peak 2)."""
    mse = float(F.mse_loss(a.float(), b.float()))
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


@torch.no_grad()
def heldout_psnr(student: nn.Module, held: DecoderData, native: Tensor, norm: Any) -> dict[str, float | None]:
    got = native_decode(student, held.latents, norm)
    out: dict[str, float | None] = {"vs_native_db": psnr(got, native)}
    out["vs_truth_db"] = psnr(got, held.truth) if held.truth is not None else None
    return out


def latent_range(latents: Tensor, clamp: float) -> dict[str, float]:
    """How much of the training latents the decoder's soft clamp (c tanh(x / c)) squashes: past c it keeps under
    76 % of a value, so a few per cent of latents out there lose what they carry (saturated colours, on the
    miniature)."""
    magnitude = latents.detach().abs().float()
    return {"clamp": clamp, "max_abs": round(float(magnitude.max()), 3),
            "share_past_clamp": round(float((magnitude > clamp).float().mean()), 5)}  # fmt: skip


SQUASHED_SHARE = 0.001  # past this share of latents beyond the clamp, the pass warns


def crop_window(size: int, crop: int, margin: int, g: torch.Generator) -> tuple[slice, slice]:
    """A random window along one latent axis: (`decoded`, the crop plus up to `margin` of real context each side,
    clipped to the frame; `scored`, the crop's place inside it)."""
    start = int(torch.randint(0, size - crop + 1, (1,), generator=g))
    lo, hi = max(start - margin, 0), min(start + crop + margin, size)
    return slice(lo, hi), slice(start - lo, start - lo + crop)


def train_decoder(student: nn.Module, data: DecoderData, stage: Any, work: Path, seed: int, norm: Any,
                  crop: int | None = None, margin: int = 2) -> Any:  # fmt: skip
    """MSE between the student's decode of each latent clip and its target, on the shared engine. With `crop`,
    each step trains on one random crop-by-crop latent window (and the target's matching 8x window): the decoder
    is fully convolutional with memory only in time, so windows teach it the same mapping at a fraction of the
    cost. The window is decoded with `margin` latent pixels of real context around it and scored inside only:
    scored at its edges, it would learn to decode next to zero padding where the full frame has neighbours (on
    the tiny model's 8x8 latents, 1500 steps on crops of 4 without context measured 13.8 dB held-out, 500 steps
    without cropping 17.6 dB). The window is drawn from the step number, so a resumed run draws the same ones."""
    h, w = data.latents.shape[-2:]
    scale = data.targets.shape[-1] // w

    def loss_fn(batch: Tensor, step: int):
        idx = batch.tolist()
        z, target = data.latents[idx], data.targets[idx]
        if crop is None or crop >= min(h, w):
            return F.mse_loss(decode_normalised(student, z, norm), target), {}
        g = torch.Generator().manual_seed(seed * 100_003 + step)
        (rows, inner_r), (cols, inner_c) = crop_window(h, crop, margin, g), crop_window(w, crop, margin, g)
        video = decode_normalised(student, z[..., rows, cols], norm)
        px = lambda s: slice(s.start * scale, s.stop * scale)  # noqa: E731 - latent window -> pixel window
        target = target[..., px(rows), px(cols)][..., px(inner_r), px(inner_c)]
        return F.mse_loss(video[..., px(inner_r), px(inner_c)], target), {}

    return train(stage_train_config(stage, seed), {"decoder": student}, loss_fn, Indices(data.latents.shape[0]),
                 work, progress=sys.stderr.isatty())  # fmt: skip


def run_key(config: dict[str, Any], data: DecoderData, seed: int) -> str:
    sums = [float(data.latents.double().sum()), float(data.targets.double().sum())]
    return hash_json({"config": config, "seed": seed, "source": data.source, "data": sums})[:16]


def frame_grid(rows: list[tuple[str, Tensor]], path: Path, title: str) -> Path:
    """A PNG grid: one row per (label, video [3, F, H, W] in [-1, 1]), one column per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = rows[0][1].shape[1]
    fig, axes = plt.subplots(len(rows), frames, figsize=(1.3 * frames, 1.4 * len(rows)), squeeze=False)
    for r, (label, video) in enumerate(rows):
        pictures = ((video.clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu().numpy()
        for f in range(frames):
            ax = axes[r][f]
            ax.imshow(pictures[f], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if f == 0:
                ax.set_ylabel(label, fontsize=7)
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loss_curve(history: list[dict[str, float]], path: Path) -> Path:
    return plot_losses(history, path, title="decoder_swap: reconstruction loss (MSE)")
