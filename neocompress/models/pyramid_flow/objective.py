"""Pyramid-Flow's training objective as reusable pieces: one flow-matching input and target from clean latents.

Why shared: the miniature's MMDiT training, block-pruning recovery (stage 1 fine-tuning and stage 2's
ground-truth flow term) and later step distillation all draw the same (unit, stage, sigma) sample with the same
corrupted temporal-pyramid history (reference section 2); a copy per caller would drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from neocompress.models.pyramid_flow.history import corrupt_history, history_for
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler
from neocompress.models.pyramid_flow.text_encoders import TextBundle, TextEmbeddings


@dataclass
class FlowMatchingBatch:
    """The denoiser's inputs (history oldest first, then the noisy current unit) and the target velocity."""

    sample: list[Tensor]
    timestep: Tensor
    target: Tensor
    text: TextEmbeddings
    unit: int
    stage: int

    def call(self, denoiser: torch.nn.Module) -> Tensor:
        return denoiser(self.sample, self.text.tokens, self.text.mask, self.text.pooled, self.timestep)


def flow_matching_batch(
    scheduler: PyramidFlowScheduler,
    z: Tensor,
    text: TextEmbeddings,
    unit: int,
    stage: int,
    generator: torch.Generator | None = None,
    s_loc: Tensor | float | None = None,
) -> FlowMatchingBatch:
    """One pyramidal flow-matching sample for normalised latents z [B, C, units, h, w] at (unit, stage), at local
    sigma `s_loc` (a scalar or [B]; default uniform in [0, 1) per sample).

    The clean unit and the noise are taken at the stage's resolution, the start point mixes noise with the
    nearest-upsampled lower-stage latent, and earlier units form the temporal-pyramid history, corrupted with
    sigma ~ U(0, 1/3). Randomness comes from `generator` (or the global RNG), so a seeded caller repeats it.
    """
    clean_full = z[:, :, unit : unit + 1]
    clean = scheduler.latent_pyramid(clean_full)
    draw = generator.device if generator is not None else z.device
    noise_full = torch.randn(clean_full.shape, generator=generator, device=draw).to(z)
    noise = scheduler.noise_pyramid(noise_full)
    if s_loc is None:
        s_loc = torch.rand(z.shape[0], generator=generator, device=draw).to(z.device)
    elif not isinstance(s_loc, Tensor):
        s_loc = torch.full((z.shape[0],), float(s_loc), device=z.device)
    x_t, v_target, timestep = scheduler.training_sample(
        clean[stage], clean[stage - 1] if stage > 0 else None, noise[stage], stage, s_loc
    )
    history = history_for([z[:, :, j : j + 1] for j in range(unit)], stage, scheduler)
    history = corrupt_history(history, generator) if history else history
    timestep = torch.as_tensor(timestep, device=z.device, dtype=torch.float32)
    if timestep.dim() == 0:
        timestep = timestep.expand(z.shape[0])
    return FlowMatchingBatch([*history, x_t], timestep, v_target, text, unit, stage)


class PyramidFlowObjective:
    """The training draw as passes use it: `pick` chooses the (unit, stage) of a step, `batch` builds the
    flow-matching input for it. Two calls, so a caller can draw its own randomness (caption dropout) in between
    and a seeded run repeats exactly."""

    def __init__(self, scheduler: PyramidFlowScheduler):
        self.scheduler = scheduler

    def pick(self, latents: Tensor, generator: torch.Generator | None = None) -> dict[str, int]:
        unit = int(torch.randint(latents.shape[2], (), generator=generator))
        stage = int(torch.randint(self.scheduler.stages, (), generator=generator))
        return {"unit": unit, "stage": stage}

    def batch(
        self, latents: Tensor, text: TextEmbeddings, pick: dict[str, int], generator: torch.Generator | None = None
    ) -> FlowMatchingBatch:
        return flow_matching_batch(self.scheduler, latents, text, pick["unit"], pick["stage"], generator)


class CaptionCache:
    """Text embeddings of every distinct caption (and the empty prompt), computed once by the frozen bundle."""

    def __init__(self, text: TextBundle, captions: Sequence[str]):
        unique = sorted(set(captions) | {""})
        with torch.no_grad():
            self.emb = text.encode(unique)
        self.index = {c: i for i, c in enumerate(unique)}

    def get(self, captions: Sequence[str]) -> TextEmbeddings:
        idx = torch.tensor([self.index[c] for c in captions])
        return TextEmbeddings(self.emb.pooled[idx], self.emb.tokens[idx], self.emb.mask[idx])


class Indices(torch.utils.data.Dataset):
    """Item i is i: the engine's seeded order over a tensor of latents that the loss indexes itself."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i
