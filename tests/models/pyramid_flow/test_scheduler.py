"""Numbers of the pyramidal flow-matching scheduler, checked against hand-computed values and statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neocompress.models.pyramid_flow.scheduler import (
    PyramidFlowScheduler,
    SchedulerConfig,
    StepSchedule,
    downsample,
    upsample_nearest,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _block_samples(n: torch.Tensor) -> torch.Tensor:
    """[..., H, W] -> [num_blocks, 4] with the 2x2 block's pixels in raster order."""
    *lead, h, w = n.shape
    b = n.reshape(-1, h // 2, 2, w // 2, 2).permute(0, 1, 3, 2, 4)
    return b.reshape(-1, 4)


def _cov(samples: torch.Tensor) -> torch.Tensor:
    centred = samples - samples.mean(0, keepdim=True)
    return centred.T @ centred / (samples.shape[0] - 1)


def _block_cov_expected(gamma: float) -> torch.Tensor:
    return (1 + gamma) * torch.eye(4) - gamma * torch.ones(4, 4)


# ---------------------------------------------------------------- config


def test_config_round_trip_and_validation() -> None:
    cfg = SchedulerConfig()
    d = cfg.to_dict()
    assert d == {
        "num_train_timesteps": 1000,
        "stages": 3,
        "gamma": 1 / 3,
        "stage_range": [0.0, 1 / 3, 2 / 3, 1.0],
    }
    assert SchedulerConfig.from_dict(d) == cfg
    with pytest.raises(ValueError):
        SchedulerConfig(stages=2)  # stage_range still has 4 entries
    with pytest.raises(ValueError):
        SchedulerConfig(gamma=0.0)
    with pytest.raises(ValueError):
        SchedulerConfig(stage_range=(0.0, 0.5, 0.4, 1.0))


# ---------------------------------------------------------------- sigma and timestep tables


def test_sigma_tables_gamma_one_third_match_hand_values() -> None:
    s = PyramidFlowScheduler()
    assert s.original_sigma_start == pytest.approx((1.0, 2 / 3, 1 / 3))
    assert s.sigma_end == pytest.approx((2 / 3, 1 / 3, 0.0))
    # corrected signal o / (2 - o): o = 1/3 -> 0.2, o = 2/3 -> 0.5
    assert s.sigma_start == pytest.approx((1.0, 0.8, 0.5))


def test_corrected_sigma_general_gamma() -> None:
    s = PyramidFlowScheduler(SchedulerConfig(gamma=0.25))
    o = 1 / 3  # stage 1: sqrt(1 + 1/gamma) = sqrt(5)
    assert s.sigma_start[1] == pytest.approx(1 - o / (math.sqrt(5) * (1 - o) + o))


def test_timestep_ranges_are_contiguous_shares_of_1000() -> None:
    s = PyramidFlowScheduler()
    # sigma lengths 1/3, 7/15, 1/2 (total 13/10) -> shares 10/39, 14/39, 15/39
    expected = ((1000.0, 29000 / 39), (29000 / 39, 15000 / 39), (15000 / 39, 0.0))
    for got, want in zip(s.timestep_ranges, expected, strict=True):
        assert got == pytest.approx(want)
    ranges = s.timestep_ranges
    assert ranges[0][0] == 1000.0 and ranges[-1][1] == 0.0
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))
    assert sum(a - b for a, b in ranges) == pytest.approx(1000.0)


def test_local_sigma_grid() -> None:
    s = PyramidFlowScheduler()
    assert s.local_sigmas(1).tolist() == [1.0, 0.0]
    assert torch.allclose(s.local_sigmas(3), torch.tensor([1.0, 0.5005, 0.001, 0.0]))
    g20 = s.local_sigmas(20)
    assert g20.shape == (21,) and g20[0] == 1.0 and g20[-2].item() == pytest.approx(0.001) and g20[-1] == 0.0
    assert bool((g20[1:] < g20[:-1]).all())
    with pytest.raises(ValueError):
        s.local_sigmas(0)


def test_timesteps_follow_local_grid_inside_stage_range() -> None:
    s = PyramidFlowScheduler()
    for stage, (t_max, t_min) in enumerate(s.timestep_ranges):
        assert s.timesteps(stage, 1).tolist() == pytest.approx([t_max])
        ts = s.timesteps(stage, 10)
        assert ts.shape == (10,) and ts[0].item() == pytest.approx(t_max)
        assert ts[-1].item() == pytest.approx(t_min + 0.001 * (t_max - t_min), abs=1e-3)
        assert bool((ts[1:] < ts[:-1]).all())
        grid = s.local_sigmas(10)[:-1].double()
        assert torch.allclose(ts.double(), t_min + grid * (t_max - t_min), atol=1e-3)
    # stage 0, 3 steps: 1000, 1000 - 0.4995 R, 1000 - 0.999 R with R = 10000/39
    r = 10000 / 39
    assert s.timesteps(0, 3).tolist() == pytest.approx([1000, 1000 - 0.4995 * r, 1000 - 0.999 * r], abs=1e-3)


def test_resolution_divisor_and_stage_size() -> None:
    s = PyramidFlowScheduler()
    assert [s.resolution_divisor(i) for i in range(3)] == [4, 2, 1]
    assert s.stage_size(40, 64, 0) == (10, 16)
    with pytest.raises(ValueError):
        s.stage_size(42, 64, 0)


# ---------------------------------------------------------------- Euler


def test_one_euler_step_per_stage_is_x_minus_v() -> None:
    s = PyramidFlowScheduler()
    x, v = torch.randn(2, 4, 1, 8, 8, generator=_gen(1)), torch.randn(2, 4, 1, 8, 8, generator=_gen(2))
    sig = s.local_sigmas(1)
    assert torch.allclose(s.euler_step(x, v, sig[0], sig[1]), x - v)
    xb = x.bfloat16()
    out = s.euler_step(xb, v.bfloat16(), 1.0, 0.25)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), (xb.float() - 0.75 * v.bfloat16().float()).bfloat16().float())
    # per-sample sigmas
    out = s.euler_step(x, v, torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.25]))
    assert torch.allclose(out[0], x[0] - v[0]) and torch.allclose(out[1], x[1] - 0.25 * v[1])


def test_euler_over_full_grid_integrates_constant_velocity_exactly() -> None:
    s = PyramidFlowScheduler()
    x0, v = torch.randn(1, 2, 1, 4, 4, generator=_gen(3)), torch.randn(1, 2, 1, 4, 4, generator=_gen(4))
    sig = s.local_sigmas(7)
    x = x0
    for i in range(7):
        x = s.euler_step(x, v, sig[i], sig[i + 1])
    assert torch.allclose(x, x0 - v, atol=1e-5)


# ---------------------------------------------------------------- noise


def test_block_noise_gamma_one_third() -> None:
    s = PyramidFlowScheduler()
    n = s.block_noise((4, 8, 2, 32, 32), _gen(5))
    assert n.shape == (4, 8, 2, 32, 32) and n.dtype == torch.float32
    blocks = _block_samples(n)
    assert blocks.sum(1).abs().max().item() < 1e-5  # exactly zero block sums
    assert n.var().item() == pytest.approx(1.0, abs=0.03)
    cov = _cov(blocks)
    assert torch.allclose(cov, _block_cov_expected(1 / 3), atol=0.03)  # diag 1, off-diagonal -1/3
    # neighbouring blocks are independent
    left, right = n[..., 0::4], n[..., 2::4]
    assert (left * right).mean().item() == pytest.approx(0.0, abs=0.03)


def test_block_noise_general_gamma_and_validation() -> None:
    s = PyramidFlowScheduler(SchedulerConfig(gamma=0.2))
    blocks = _block_samples(s.block_noise((8, 8, 1, 32, 32), _gen(6)))
    assert torch.allclose(_cov(blocks), _block_cov_expected(0.2), atol=0.03)
    # block sum variance = 1^T C 1 = 4 (1 - 3 gamma)
    assert blocks.sum(1).var().item() == pytest.approx(4 * (1 - 3 * 0.2), rel=0.05)
    with pytest.raises(ValueError):
        PyramidFlowScheduler(SchedulerConfig(gamma=0.5)).block_noise((1, 1, 1, 4, 4))
    with pytest.raises(ValueError):
        s.block_noise((1, 1, 1, 3, 4))


def test_block_noise_is_reproducible() -> None:
    s = PyramidFlowScheduler()
    assert torch.equal(s.block_noise((1, 2, 1, 8, 8), _gen(7)), s.block_noise((1, 2, 1, 8, 8), _gen(7)))


@pytest.mark.parametrize("stage", [1, 2])
def test_upsample_renoise_gives_iid_noise_at_corrected_sigma(stage: int) -> None:
    s = PyramidFlowScheduler()
    o = 1 - s.original_sigma_start[stage]
    alpha, beta = s.renoise_coefficients(stage)
    corr_sigma = s.sigma_start[stage]
    assert alpha * o == pytest.approx(1 - corr_sigma)  # signal coefficient = corrected signal
    # end of the previous stage: o * clean + (1 - o) * noise, clean and noise unit-variance
    shape = (2, 16, 1, 32, 32)
    clean, noise = torch.randn(shape, generator=_gen(10)), torch.randn(shape, generator=_gen(11))
    out = s.upsample_renoise(o * clean + (1 - o) * noise, stage, _gen(12))
    assert out.shape == (2, 16, 1, 64, 64)
    resid = out - alpha * o * upsample_nearest(clean)
    assert resid.var().item() == pytest.approx(corr_sigma**2, rel=0.03)
    # the block-correlated upsampled noise is cancelled: no correlation left inside 2x2 blocks
    corr = _cov(_block_samples(resid)) / corr_sigma**2
    assert torch.allclose(corr, torch.eye(4), atol=0.04)
    # total variance = corrected signal^2 + corrected sigma^2 (0.68 at stage 1, 0.5 at stage 2)
    assert out.var().item() == pytest.approx((1 - corr_sigma) ** 2 + corr_sigma**2, rel=0.03)


def test_renoise_coefficients_noise_budget() -> None:
    """Closed form of the statistical test above: the re-noised latent is still a rectified-flow point."""
    s = PyramidFlowScheduler()
    for stage in (1, 2):
        alpha, beta = s.renoise_coefficients(stage)
        o = 1 - s.original_sigma_start[stage]
        # per-element noise variance: alpha^2 (1-o)^2 from the upsampled noise + beta^2 from block noise
        assert alpha**2 * (1 - o) ** 2 + beta**2 == pytest.approx(s.sigma_start[stage] ** 2)
        # signal coefficient + noise std = 1
        assert alpha * o + s.sigma_start[stage] == pytest.approx(1.0)
    assert s.renoise_coefficients(1) == pytest.approx((0.6, 0.6 * (2 / 3) * math.sqrt(3)))
    with pytest.raises(ValueError):
        s.renoise_coefficients(0)


def test_initial_noise_has_unit_variance_at_every_stage() -> None:
    for stages, rng in ((3, (0.0, 1 / 3, 2 / 3, 1.0)), (2, (0.0, 0.5, 1.0))):
        s = PyramidFlowScheduler(SchedulerConfig(stages=stages, stage_range=rng))
        n = s.initial_noise((4, 16, 2, 64, 64), _gen(20))
        d = 2 ** (stages - 1)
        assert n.shape == (4, 16, 2, 64 // d, 64 // d)
        assert n.var().item() == pytest.approx(1.0, abs=0.05)
        assert (n[..., :-1] * n[..., 1:]).mean().item() == pytest.approx(0.0, abs=0.05)
    s = PyramidFlowScheduler()
    pyramid = s.noise_pyramid(torch.randn(4, 16, 1, 64, 64, generator=_gen(21)))
    assert [p.shape[-1] for p in pyramid] == [16, 32, 64]
    for p in pyramid:
        assert p.var().item() == pytest.approx(1.0, abs=0.05)


def test_downsample_is_chained_block_mean() -> None:
    x = torch.randn(2, 3, 2, 16, 16, generator=_gen(30))
    frames = x.permute(0, 2, 1, 3, 4).reshape(4, 3, 16, 16)
    for factor in (2, 4):
        k = 16 // factor
        want = F.avg_pool2d(frames, factor).reshape(2, 2, 3, k, k).permute(0, 2, 1, 3, 4)
        assert torch.allclose(downsample(x, factor), want, atol=1e-6)
    assert torch.equal(downsample(x, 1), x)
    assert torch.equal(upsample_nearest(x)[..., ::2, ::2], x)
    with pytest.raises(ValueError):
        downsample(x, 3)


# ---------------------------------------------------------------- training targets


def test_training_sample_formulas() -> None:
    s = PyramidFlowScheduler()
    shape = (2, 4, 1, 8, 8)
    clean, noise = torch.randn(shape, generator=_gen(40)), torch.randn(shape, generator=_gen(41))
    low = torch.randn(2, 4, 1, 4, 4, generator=_gen(42))

    x, v, t = s.training_sample(clean, None, noise, 0, 1.0)
    end0 = (2 / 3) * noise + (1 / 3) * clean
    assert torch.allclose(x, noise) and torch.allclose(v, noise - end0) and t == pytest.approx(1000.0)

    start1 = 0.8 * noise + 0.2 * upsample_nearest(low)
    end1 = (1 / 3) * noise + (2 / 3) * clean
    x, v, t = s.training_sample(clean, low, noise, 1, 0.25)
    assert torch.allclose(x, 0.25 * start1 + 0.75 * end1, atol=1e-6)
    assert torch.allclose(v, start1 - end1, atol=1e-6)
    t_max, t_min = s.timestep_ranges[1]
    assert t == pytest.approx(t_min + 0.25 * (t_max - t_min))

    # last stage ends at the clean latent; per-sample local sigmas
    s_loc = torch.tensor([0.0, 0.5])
    x, v, t = s.training_sample(clean, low, noise, 2, s_loc)
    start2 = 0.5 * noise + 0.5 * upsample_nearest(low)
    assert torch.allclose(x[0], clean[0]) and torch.allclose(x[1], 0.5 * start2[1] + 0.5 * clean[1])
    assert torch.allclose(v, start2 - clean, atol=1e-6)
    assert torch.allclose(t, torch.tensor([0.0, 0.5 * 15000 / 39]))
    with pytest.raises(ValueError):
        s.training_sample(clean, None, noise, 1, 0.5)


def test_training_sample_is_consistent_with_euler_and_timesteps() -> None:
    """Euler from x(s) with v_target lands on x(s'); inference timesteps are the training map of the grid."""
    s = PyramidFlowScheduler()
    shape = (1, 4, 1, 8, 8)
    clean, noise = torch.randn(shape, generator=_gen(43)), torch.randn(shape, generator=_gen(44))
    low = torch.randn(1, 4, 1, 4, 4, generator=_gen(45))
    grid = s.local_sigmas(5)
    for i in range(5):
        x, v, t = s.training_sample(clean, low, noise, 1, float(grid[i]))
        x_next, _, _ = s.training_sample(clean, low, noise, 1, float(grid[i + 1]))
        assert torch.allclose(s.euler_step(x, v, grid[i], grid[i + 1]), x_next, atol=1e-5)
        assert t == pytest.approx(s.timesteps(1, 5)[i].item(), abs=1e-3)
    assert s.global_sigma(1, 1.0) == pytest.approx(0.8) and s.global_sigma(1, 0.0) == pytest.approx(1 / 3)
    ts = s.timesteps(2, 4)
    assert torch.allclose(s.local_sigma_for(2, ts.double()).float(), s.local_sigmas(4)[:-1], atol=1e-6)


# ---------------------------------------------------------------- step schedules


def test_step_schedule_counts() -> None:
    default = StepSchedule.pyramid_flow()
    assert default == StepSchedule()
    assert default.nfe(7) == (60 + 6 * 30) * 2 == 480
    assert default.calls(7) == 240
    assert default.nfe(1) == 120
    distilled = StepSchedule.distilled_1_1_1()
    assert distilled.nfe(7) == 21 and distilled.calls(7) == 21
    mixed = StepSchedule((4, 4, 4), (1, 1, 1), guidance_first=7.0, guidance_later=1.0)
    assert mixed.nfe(3) == 24 + 6 and mixed.calls(3) == 12 + 6


def test_step_schedule_round_trip_and_validation() -> None:
    sched = StepSchedule((4, 4, 4), (2, 2, 2), 3.0, 1.0)
    d = sched.to_dict()
    assert d == {
        "first_unit": [4, 4, 4],
        "later_units": [2, 2, 2],
        "guidance_first": 3.0,
        "guidance_later": 1.0,
    }
    assert StepSchedule.from_dict(d) == sched
    assert StepSchedule.from_dict({}) == StepSchedule()
    with pytest.raises(ValueError):
        StepSchedule(first_unit=(1, 0, 1))


def test_uniform_grid_spreads_a_few_steps_evenly() -> None:
    s = PyramidFlowScheduler()
    # upstream's grid wastes a second step: 1 -> 0.001 -> 0 does all the work in the first
    assert s.local_sigmas(2).tolist() == pytest.approx([1.0, 0.001, 0.0])
    assert s.local_sigmas(2, "uniform").tolist() == [1.0, 0.5, 0.0]
    assert s.local_sigmas(4, "uniform").tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert s.local_sigmas(1, "uniform").tolist() == s.local_sigmas(1).tolist() == [1.0, 0.0]
    t_max, t_min = s.timestep_ranges[2]
    assert s.timesteps(2, 2, "uniform").tolist() == pytest.approx([t_max, (t_max + t_min) / 2], abs=1e-3)
    with pytest.raises(ValueError, match="unknown sigma grid 'even'"):
        s.local_sigmas(2, "even")


def test_step_schedule_keeps_its_grid_and_refuses_unknown_ones() -> None:
    sched = StepSchedule((1, 1, 2), (1, 1, 2), 1.0, 1.0, grid="uniform")
    assert sched.to_dict()["grid"] == "uniform"
    assert StepSchedule.from_dict(sched.to_dict()) == sched
    assert "grid" not in StepSchedule().to_dict()  # saved pipelines without a grid read back as upstream's
    with pytest.raises(ValueError, match="unknown sigma grid"):
        StepSchedule(grid="cosine")
