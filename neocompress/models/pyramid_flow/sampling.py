"""Autoregressive pyramidal sampling loop, independent of any particular denoiser.

The loop only needs a velocity function, so the same code drives the full teacher, pruned students, the
one-step distilled DiT and fake denoisers in tests. CFG lives in the caller's velocity function (it knows how
to batch [uncond, cond]); the loop just tells it which guidance scale the current unit uses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neocompress.models.pyramid_flow.history import history_for
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler, StepSchedule

VelocityFn = Callable[[list[torch.Tensor], torch.Tensor, float], torch.Tensor]
ProgressFn = Callable[[int, int, int], None]


def pyramidal_sample(
    velocity_fn: VelocityFn,
    *,
    batch: int,
    channels: int,
    height: int,
    width: int,
    num_units: int,
    schedule: StepSchedule,
    scheduler: PyramidFlowScheduler,
    generator: torch.Generator | None,
    progress: ProgressFn | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    first_unit: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate ``num_units`` latent frames: [B, C, num_units, height, width] at full latent resolution.

    Per unit (one latent frame; unit 0 has no history) and per stage: the history from ``history_for``, the
    stage's timesteps and local sigma grid, and Euler updates x += (sigma_next - sigma) * v with
    v = velocity_fn(history + [x], timestep[B], guidance). Stage 0 starts from ``initial_noise`` (drawn once
    for the whole video at full resolution, like upstream); later stages from ``upsample_renoise``.
    ``progress(unit, stage, step)`` is called before every denoiser call.

    ``first_unit`` [B, C, 1, height, width]: a latent frame made elsewhere (Neodragon's hybrid mode: an image model's
    picture, VAE-encoded) taken as unit 0; the denoiser then runs for units 1.. only, with it as their history.
    The initial noise is drawn for all units as without it (later units start from the same noise).
    """
    stages = scheduler.stages
    for name in ("first_unit", "later_units"):
        if len(getattr(schedule, name)) != stages:
            raise ValueError(f"schedule.{name} has {len(getattr(schedule, name))} entries, need {stages}")
    if num_units < 1:
        raise ValueError(f"num_units must be >= 1, got {num_units}")
    scheduler.stage_size(height, width, 0)  # validates divisibility

    noise = scheduler.initial_noise((batch, channels, num_units, height, width), generator, device=device, dtype=dtype)
    generated: list[torch.Tensor] = []
    if first_unit is not None:
        expected = (batch, channels, 1, height, width)
        if tuple(first_unit.shape) != expected:
            raise ValueError(f"first_unit must be {list(expected)}, got {list(first_unit.shape)}")
        generated.append(first_unit.to(noise))
    for unit in range(len(generated), num_units):
        x = noise[:, :, unit : unit + 1]
        steps, guidance = schedule.steps_for(unit), schedule.guidance_for(unit)
        for stage in range(stages):
            if stage > 0:
                x = scheduler.upsample_renoise(x, stage, generator)
            history = history_for(generated, stage, scheduler)
            sigmas = scheduler.local_sigmas(steps[stage], schedule.grid)
            timesteps = scheduler.timesteps(stage, steps[stage], schedule.grid).to(x.device)
            for i in range(steps[stage]):
                if progress is not None:
                    progress(unit, stage, i)
                v = velocity_fn([*history, x], timesteps[i].expand(batch), guidance)
                x = scheduler.euler_step(x, v, sigmas[i], sigmas[i + 1])
        generated.append(x)
    return torch.cat(generated, dim=2)
