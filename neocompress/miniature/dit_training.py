"""Stage 2 of the miniature: train the pyramidal flow-matching MMDiT on VAE latents of the world.

Exactly Pyramid-Flow's objective (see the reference, section 2): per step one latent frame (unit) and one
pyramid stage are drawn; the clean unit and the noise are taken at that stage's resolution, the start point mixes
noise with the nearest-upsampled lower-stage latent, the target velocity is start - end; earlier units form the
temporal-pyramid history, corrupted with sigma ~ U(0, 1/3). Text comes through the frozen tiny CLIP-L/G + T5,
and 10% of captions are dropped to the empty prompt so classifier-free guidance works at sampling time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from neocompress.miniature.latents_data import LatentSet
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.objective import CaptionCache, Indices, flow_matching_batch
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler
from neocompress.models.pyramid_flow.text_encoders import TextBundle, TextEmbeddings
from neocompress.train import TrainConfig, TrainResult, train

CAPTION_DROPOUT = 0.1


def flow_matching_loss(
    denoiser: PyramidFlowMMDiT,
    scheduler: PyramidFlowScheduler,
    z: torch.Tensor,
    text: TextEmbeddings,
    unit: int,
    stage: int,
) -> tuple[torch.Tensor, dict]:
    """One pyramidal flow-matching loss for latents z [B, C, units, h, w] at (unit, stage)."""
    batch = flow_matching_batch(scheduler, z, text, unit, stage)
    return F.mse_loss(batch.call(denoiser), batch.target), {}


@dataclass
class TrainedDenoiser:
    denoiser: PyramidFlowMMDiT
    result: TrainResult


def train_denoiser(
    denoiser: PyramidFlowMMDiT,
    text: TextBundle,
    data: LatentSet,
    work_dir: Path,
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 5e-4,
    seed: int = 0,
    ema_decay: float | None = 0.999,
    progress: bool = True,
    motion_fraction: float | None = None,
) -> TrainedDenoiser:
    scheduler = PyramidFlowScheduler()
    cache = CaptionCache(text, data.captions)
    units = data.latents.shape[2]
    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=min(200, steps // 10),
        lr_schedule="cosine",
        max_grad_norm=1.0,
        seed=seed,
        log_every=25,
        checkpoint_every=max(steps // 10, 1),
        ema_decay=ema_decay,
    )

    def loss_fn(batch: torch.Tensor, step: int):
        idx = batch.tolist()
        captions = [data.captions[i] if torch.rand(()) >= CAPTION_DROPOUT else "" for i in idx]
        if motion_fraction is None or units < 2:
            unit = int(torch.randint(units, ()))
        else:  # the later (motion) units drawn with probability motion_fraction, the first image unit otherwise
            unit = 1 + int(torch.randint(units - 1, ())) if float(torch.rand(())) < motion_fraction else 0
        stage = int(torch.randint(scheduler.stages, ()))
        return flow_matching_loss(modules["denoiser"], scheduler, data.latents[idx], cache.get(captions), unit, stage)

    modules = {"denoiser": denoiser}
    result = train(config, modules, loss_fn, Indices(len(data.captions)), work_dir, progress=progress)
    return TrainedDenoiser(denoiser.eval(), result)
