"""The teacher's samples with the points its last pyramid stage started from: DMD's paired regression data.

Why pairs: a one-step student asked to reproduce a texture whose phase is random learns the texture's mean (a
flat colour), whatever loss compares it with samples drawn from fresh noise. Given the very start point the
teacher's ODE left from, the phase is a function of that point, and a regression towards the teacher's end point
can learn it (DMD, Yin et al. 2024, section 3.3: the regression loss on noise-image pairs from the teacher's ODE).
On the miniature the last stage is where the textures are drawn (one step there loses every striped and
checkered background; one step in the first two costs almost nothing), so the pairs are (last-stage start, final
latent) per unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from neocompress.prune.recovery import LatentData, teacher_latents


def teacher_samples_with_starts(pipeline: Any, prompts: Sequence[str], count: int, *, seed: int,
                                schedule: Any) -> tuple[LatentData, Tensor]:  # fmt: skip
    """`count` teacher samples drawn by `recovery.teacher_latents` itself, and for each sample and unit the input
    of the first denoiser call of the last pyramid stage: [count, C, units, h, w] like the latents."""
    last = pipeline.scheduler.stages - 1
    where: dict[str, int] = {}
    starts: list[Tensor] = []  # one per unit of the chunk being sampled
    chunk_starts: list[Tensor] = []

    def progress(unit: int, stage: int, step: int) -> None:
        where.update(unit=unit, stage=stage, step=step)

    def grab(_module: Any, args: tuple) -> None:
        if where.get("stage") == last and where.get("step") == 0:
            starts.append(args[0][-1].detach().clone())

    def collect(n: int) -> None:
        # one call per unit (a CFG call holds [uncond, cond]: the same start twice)
        chunk_starts.append(torch.cat([s[:n] for s in starts], dim=2))
        starts.clear()

    handle = pipeline.denoiser.register_forward_pre_hook(grab)
    try:
        data = teacher_latents(pipeline, prompts, count, seed=seed, schedule=schedule, progress=progress,
                               after_chunk=collect)  # fmt: skip
    finally:
        handle.remove()
    start = torch.cat(chunk_starts).float()
    if start.shape != data.latents.shape:
        raise RuntimeError(f"captured last-stage starts {list(start.shape)} do not match the samples "
                           f"{list(data.latents.shape)}")  # fmt: skip
    return data, start
