"""Pyramidal DMD's formulas on numbers: the student's one-step parameterisation against the scheduler's Euler
update, the re-noising mixture, the DMD gradient's direction on a toy 2-D problem, the Cauchy term and the
student's noise levels."""

from __future__ import annotations

import pytest
import torch

from neocompress.distill.dmd import (
    cauchy_loss,
    clean_estimate,
    dmd_gradient,
    dmd_loss,
    one_step_end,
    renoise,
    student_levels,
)
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler, downsample, upsample_nearest

SCHED = PyramidFlowScheduler()


def _blocky(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A latent that is constant on 2x2 blocks, so Up(Down(z, 2), 2) == z."""
    g = torch.Generator().manual_seed(seed)
    b, c, t, h, w = shape
    return upsample_nearest(torch.randn(b, c, t, h // 2, w // 2, generator=g), 2)


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_clean_estimate_with_the_exact_flow_is_the_clean_latent(stage) -> None:
    clean = _blocky((3, 4, 1, 8, 8), stage)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(9))
    s = torch.tensor([1.0, 0.6, 0.25])
    lower = downsample(clean, 2) if stage else None
    x, v, _ = SCHED.training_sample(clean, lower, noise, stage, s)
    assert torch.allclose(clean_estimate(SCHED, stage, x, v, s), clean, atol=1e-5)  # the noise cancels exactly


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_one_step_end_is_the_schedulers_one_step_update(stage) -> None:
    g = torch.Generator().manual_seed(stage)
    x, v = torch.randn(2, 4, 1, 8, 8, generator=g), torch.randn(2, 4, 1, 8, 8, generator=g)
    sigmas = SCHED.local_sigmas(1)  # [1, 0]: one step per stage
    assert torch.allclose(one_step_end(x, v, 1.0), SCHED.euler_step(x, v, sigmas[0], sigmas[1]))
    if stage == SCHED.stages - 1:  # the last stage ends clean: the end point is the clean estimate
        assert torch.allclose(clean_estimate(SCHED, stage, x, v, 1.0), one_step_end(x, v, 1.0), atol=1e-6)


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_renoise_is_the_documented_mixture(stage) -> None:
    g = torch.Generator().manual_seed(3)
    z, n = torch.randn(2, 4, 1, 8, 8, generator=g), torch.randn(2, 4, 1, 8, 8, generator=g)
    s0, s1 = SCHED.sigma_start[stage], SCHED.sigma_end[stage]
    start = n if stage == 0 else s0 * n + (1 - s0) * upsample_nearest(downsample(z, 2), 2)
    end = z if stage == SCHED.stages - 1 else s1 * n + (1 - s1) * z
    for tau in (0.0, 0.3, 1.0):
        z_tau, flow, t = renoise(SCHED, stage, z, n, tau)
        assert torch.allclose(z_tau, tau * start + (1 - tau) * end, atol=1e-6)
        assert torch.allclose(flow, start - end, atol=1e-6)
        assert t == pytest.approx(SCHED.timestep_for(stage, tau))


def _gaussian_velocity(x: torch.Tensor, s: float, mean: torch.Tensor, std: float) -> torch.Tensor:
    """The exact flow-matching velocity E[noise - x0 | x_s] for data N(mean, std^2 I), x_s = s n + (1 - s) x0."""
    var = (1 - s) ** 2 * std**2 + s**2
    resid = x - (1 - s) * mean
    return s / var * resid - (mean + (1 - s) * std**2 / var * resid)


def test_dmd_gradient_moves_a_toy_student_towards_the_teacher_distribution() -> None:
    """2-D: the teacher's data is N(mu, 0.5^2); the student generates theta + 0.5 eps; the fake model is the
    exact velocity of the student's distribution. Descending dmd_loss moves theta to mu."""
    torch.manual_seed(0)
    mu, std = torch.tensor([2.0, -1.0]), 0.5
    theta = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=0.05)
    start = float((theta.detach() - mu).norm())
    for _ in range(200):
        z = theta + std * torch.randn(64, 2)  # the student's samples
        s = float(torch.rand(()) * 0.9 + 0.05)
        n = torch.randn(64, 2)
        z_tau = s * n + (1 - s) * z
        with torch.no_grad():
            v_real = _gaussian_velocity(z_tau, s, mu, std)
            v_fake = _gaussian_velocity(z_tau, s, theta.detach(), std)
            grad, weight = dmd_gradient(v_real, v_fake, (n - z).detach())
        assert weight.shape == (64,) and bool((weight > 0).all())
        opt.zero_grad()
        dmd_loss(z, grad).backward()
        opt.step()
    assert float((theta.detach() - mu).norm()) < 0.1 * start, (theta, mu)


def test_dmd_loss_gradient_is_the_given_gradient() -> None:
    z = torch.randn(3, 5, requires_grad=True)
    grad = torch.randn(3, 5)
    dmd_loss(z, grad).backward()
    assert torch.allclose(z.grad, grad / z.numel())  # mean reduction


def test_cauchy_loss_and_student_levels() -> None:
    a = torch.randn(4, 3, 2)
    assert float(cauchy_loss(a, a)) == 0.0
    b = a + 1.0
    assert float(cauchy_loss(a, b)) == pytest.approx(float(torch.log1p(torch.tensor(1.0))))
    assert student_levels(4) == [1.0, 0.75, 0.5, 0.25] and student_levels(1) == [1.0]
    with pytest.raises(ValueError, match="at least one"):
        student_levels(0)
