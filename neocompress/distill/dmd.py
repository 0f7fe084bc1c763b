"""Pyramidal Distribution Matching Distillation, as tensor functions (reference section 6; Neodragon eq. 6-10).

Why functions of tensors and a scheduler, not of models: each is a formula from the paper that a test can check
on numbers (the one-step parameterisation against the scheduler's Euler update, the re-noising mixture, the DMD
gradient's direction on a toy problem), and the pass only wires models into them.

Inside pyramid stage i the flow runs between a start point y_start (sigma_start noise mixed with the upsampled
lower stage) and an end point y_end (sigma_end noise mixed with the clean latent at the stage's resolution). A
velocity v at local sigma s (global sigma sigma(s) = s sigma_start + (1 - s) sigma_end) gives

- the student's clean estimate  z_theta = z_s - sigma(s) / (sigma_start - sigma_end) * v   (`clean_estimate`):
  with the exact velocity and an upsampled lower stage equal to the clean latent it is the clean latent itself;
- the one-step Euler update to the stage's end  z_s - s * v   (`one_step_end`), which is what the sampler does
  with one step per stage (x += (0 - s) v).

The student's estimate is re-noised to a random level tau of the same stage (`renoise`), and the DMD gradient is
the difference of the real (teacher, with CFG) and fake velocities there, normalised per sample by how far the
teacher's velocity is from the re-noised pair's own flow (`dmd_gradient`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler, downsample

_EPS = 1e-6


def _per_sample(values: Tensor | float, like: Tensor) -> Tensor:
    t = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return t.reshape(-1, *([1] * (like.dim() - 1))) if t.dim() else t


def clean_estimate(scheduler: PyramidFlowScheduler, stage: int, x: Tensor, v: Tensor, s_loc: Tensor | float) -> Tensor:
    """z_theta = x - sigma(s) / (sigma_start - sigma_end) * v: the clean latent at the stage's resolution that
    one Euler step to sigma = 0 along the stage's flow reaches (paper eq. 7)."""
    width = scheduler.sigma_start[stage] - scheduler.sigma_end[stage]
    sigma = scheduler.global_sigma(stage, torch.as_tensor(s_loc, dtype=torch.float32))
    return x - _per_sample(sigma / width, x) * v


def one_step_end(x: Tensor, v: Tensor, s_loc: Tensor | float) -> Tensor:
    """The stage's end point after one Euler step from local sigma s (the sampler's update with one step)."""
    return x - _per_sample(s_loc, x) * v


def renoise(scheduler: PyramidFlowScheduler, stage: int, z: Tensor, noise: Tensor,
            tau: Tensor | float) -> tuple[Tensor, Tensor, Tensor | float]:  # fmt: skip
    """Re-noise a clean estimate z (stage resolution) to local level tau of `stage`: the mixture
    tau * y_start + (1 - tau) * y_end with y_start = sigma_start noise + (1 - sigma_start) Up(Down(z, 2), 2)
    (noise alone at stage 0) and y_end = sigma_end noise + (1 - sigma_end) z (z at the last stage).
    Returns (z_tau, its flow y_start - y_end, the DiT timestep)."""
    lower = downsample(z, 2) if stage > 0 else None
    return scheduler.training_sample(z, lower, noise, stage, tau)


def dmd_gradient(v_real: Tensor, v_fake: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """(D_real - D_fake) weighted per sample by 1 / mean|D_real - flow| (paper eq. 9), and the weights.

    Gradient descent on `dmd_loss` moves the student's estimate by -gradient: towards where the teacher's
    velocity field is the fake model's, i.e. the teacher's distribution."""
    dims = tuple(range(1, v_real.dim()))
    weight = 1.0 / (v_real.float() - flow.float()).abs().mean(dims).clamp_min(_EPS)
    return (v_real.float() - v_fake.float()) * _per_sample(weight, v_real.float()), weight


def dmd_loss(z_theta: Tensor, gradient: Tensor) -> Tensor:
    """0.5 ||z_theta - sg(z_theta - gradient)||^2 (mean): its gradient with respect to z_theta is `gradient`."""
    return 0.5 * F.mse_loss(z_theta.float(), (z_theta.float() - gradient).detach())


def cauchy_loss(z_theta: Tensor, target: Tensor) -> Tensor:
    """Supervised regression towards the teacher's own sample, robust to outliers: mean of log(1 + MSE_i)."""
    dims = tuple(range(1, z_theta.dim()))
    return torch.log1p((z_theta.float() - target.float()).pow(2).mean(dims)).mean()


def student_levels(count: int) -> list[float]:
    """The student's fixed local noise levels: `count` evenly spaced in (0, 1], highest first (4: 1, .75, .5,
    .25), as DMD2's multi-step generator uses timesteps 999, 749, 499, 249."""
    if count < 1:
        raise ValueError(f"the student needs at least one noise level, got {count}")
    return [1.0 - k / count for k in range(count)]
