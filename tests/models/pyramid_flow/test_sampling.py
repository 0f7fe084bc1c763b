"""Temporal pyramid (history) and the autoregressive pyramidal sampling loop, driven by fake velocities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neocompress.models.pyramid_flow.history import corrupt_history, history_for, history_stages
from neocompress.models.pyramid_flow.sampling import pyramidal_sample
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler, StepSchedule, downsample

# Full latent 16x16 -> stage resolutions 4 (stage 0), 8 (stage 1), 16 (stage 2).
# EXPECTED[stage][unit] = spatial size of each history frame, oldest first (unit u has u earlier frames).
EXPECTED_HISTORY = {
    0: [[], [4], [4, 4], [4, 4, 4], [4, 4, 4, 4], [4, 4, 4, 4, 4], [4, 4, 4, 4, 4, 4]],
    1: [[], [8], [4, 8], [4, 4, 8], [4, 4, 4, 8], [4, 4, 4, 4, 8], [4, 4, 4, 4, 4, 8]],
    2: [[], [16], [8, 16], [4, 8, 16], [4, 4, 8, 16], [4, 4, 4, 8, 16], [4, 4, 4, 4, 8, 16]],
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _frames(n: int, b: int = 2, c: int = 3, size: int = 16) -> list[torch.Tensor]:
    g = _gen(100)
    return [torch.randn(b, c, 1, size, size, generator=g) for _ in range(n)]


# ---------------------------------------------------------------- history


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_history_resolutions_units_0_to_6(stage: int) -> None:
    s = PyramidFlowScheduler()
    for unit in range(7):
        hist = history_for(_frames(unit), stage, s)
        assert [h.shape[-1] for h in hist] == EXPECTED_HISTORY[stage][unit], (stage, unit)
        assert [h.shape[-2] for h in hist] == EXPECTED_HISTORY[stage][unit]
        assert all(h.shape[:3] == (2, 3, 1) for h in hist)


def test_history_stages_four_stage_pyramid() -> None:
    assert history_stages(6, 3) == [0, 0, 0, 1, 2, 3]
    assert history_stages(2, 3) == [2, 3]
    assert history_stages(0, 2) == []


def test_history_values_are_bilinear_block_means_without_rescale() -> None:
    s = PyramidFlowScheduler()
    frames = _frames(4)
    hist = history_for(frames, 2, s)
    assert torch.equal(hist[-1], frames[-1])  # most recent at full resolution, untouched
    assert torch.allclose(hist[-2][:, :, 0], F.avg_pool2d(frames[-2][:, :, 0], 2), atol=1e-6)
    for h, f in zip(hist[:2], frames[:2], strict=True):
        assert torch.allclose(h[:, :, 0], F.avg_pool2d(f[:, :, 0], 4), atol=1e-6)
    assert torch.allclose(history_for(frames, 0, s)[-1], downsample(frames[-1], 4))
    with pytest.raises(ValueError):
        history_for(frames, 3, s)


def test_corrupt_history_sigma_range_and_sharing() -> None:
    ones = [torch.ones(8, 2, 1, 32, 32) for _ in range(3)]
    out = corrupt_history(ones, _gen(1))
    # x = (1 - sigma) + sigma * noise -> per-sample mean 1 - sigma, std sigma
    stds = torch.stack([o.flatten(1).std(1) for o in out])  # [frames, batch]
    means = torch.stack([o.flatten(1).mean(1) for o in out])
    assert bool((stds > 0).all()) and bool((stds < 1 / 3 * 1.1).all())
    assert torch.allclose(1 - means, stds, atol=0.03)
    assert torch.allclose(stds, stds[0].expand_as(stds), rtol=0.1, atol=0.01)  # shared across frames
    per_frame = torch.stack([o.flatten(1).std(1) for o in corrupt_history(ones, _gen(2), per_frame=True)])
    assert (per_frame - per_frame[0]).abs().max().item() > 0.02
    assert torch.equal(corrupt_history(ones, _gen(3), max_sigma=0.0)[0], ones[0])
    assert corrupt_history([], _gen(4)) == []


# ---------------------------------------------------------------- sampling loop


class Recorder:
    """Fake velocity that records (history + current shapes, timestep, guidance) and returns zeros."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[int, ...]], torch.Tensor, float]] = []

    def __call__(self, sample: list[torch.Tensor], timestep: torch.Tensor, guidance: float) -> torch.Tensor:
        self.calls.append(([tuple(x.shape) for x in sample], timestep.clone(), guidance))
        return torch.zeros_like(sample[-1])


def test_sampler_makes_the_expected_calls() -> None:
    s = PyramidFlowScheduler()
    schedule = StepSchedule((2, 3, 1), (1, 2, 2), guidance_first=7.0, guidance_later=1.0)
    rec, ticks = Recorder(), []
    out = pyramidal_sample(
        rec,
        batch=2,
        channels=4,
        height=16,
        width=16,
        num_units=3,
        schedule=schedule,
        scheduler=s,
        generator=_gen(0),
        progress=lambda u, st, i: ticks.append((u, st, i)),
    )
    assert out.shape == (2, 4, 3, 16, 16)
    assert len(rec.calls) == schedule.calls(3) == 6 + 5 + 5

    expected = []
    for unit in range(3):
        steps = schedule.steps_for(unit)
        for stage in range(3):
            ts = s.timesteps(stage, steps[stage])
            size = 16 // s.resolution_divisor(stage)
            shapes = [(2, 4, 1, h, h) for h in EXPECTED_HISTORY[stage][unit]] + [(2, 4, 1, size, size)]
            for i in range(steps[stage]):
                expected.append((unit, stage, i, shapes, ts[i].item(), 7.0 if unit == 0 else 1.0))
    assert ticks == [e[:3] for e in expected]
    for (shapes, t, guidance), want in zip(rec.calls, expected, strict=True):
        _, _, _, want_shapes, want_t, want_g = want
        assert shapes == want_shapes
        assert t.shape == (2,) and torch.allclose(t, torch.full((2,), want_t))
        assert guidance == want_g
    # stage 0 of unit 0 starts at t = 1000; the last call of each unit is in the last stage's range
    assert rec.calls[0][1][0].item() == 1000.0
    assert rec.calls[-1][1][0].item() < s.timestep_ranges[2][0]


def test_default_and_distilled_schedules_call_counts() -> None:
    s = PyramidFlowScheduler()
    rec = Recorder()
    pyramidal_sample(
        rec,
        batch=1,
        channels=2,
        height=8,
        width=8,
        num_units=7,
        schedule=StepSchedule.distilled_1_1_1(),
        scheduler=s,
        generator=_gen(0),
    )
    assert len(rec.calls) == 21 and {g for _, _, g in rec.calls} == {1.0}
    assert [len(shapes) - 1 for shapes, _, _ in rec.calls[-3:]] == [6, 6, 6]


def _targets(num_units: int) -> torch.Tensor:
    return torch.randn(2, 3, num_units, 16, 16, generator=_gen(50))


def _target_at(target: torch.Tensor, sample: list[torch.Tensor]) -> torch.Tensor:
    """Full-resolution target of the current unit (= number of history frames), at the current stage size."""
    current = sample[-1]
    full = target[:, :, len(sample) - 1 : len(sample)]
    return downsample(full, full.shape[-1] // current.shape[-1])


def test_one_step_per_stage_analytic_velocity_reaches_target() -> None:
    """v = x - target: one Euler step (1 -> 0) lands on the target at every stage."""
    target = _targets(4)
    seen_history: list[list[torch.Tensor]] = []

    def velocity(sample: list[torch.Tensor], timestep: torch.Tensor, guidance: float) -> torch.Tensor:
        seen_history.append(sample[:-1])
        return sample[-1] - _target_at(target, sample)

    out = pyramidal_sample(
        velocity,
        batch=2,
        channels=3,
        height=16,
        width=16,
        num_units=4,
        schedule=StepSchedule.distilled_1_1_1(),
        scheduler=PyramidFlowScheduler(),
        generator=_gen(1),
    )
    assert torch.allclose(out, target, atol=1e-5)
    # history is built from the generated (= target) frames
    frames = [target[:, :, u : u + 1] for u in range(4)]
    want = history_for(frames[:3], 2, PyramidFlowScheduler())
    got = seen_history[-1]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want, strict=True))


def test_multi_step_constant_velocity_reaches_target() -> None:
    """With the straight-line velocity x_stage_start - target, the whole 1 -> 0 grid lands on the target."""
    target = _targets(2)
    starts: dict[tuple[int, int], torch.Tensor] = {}

    def velocity(sample: list[torch.Tensor], timestep: torch.Tensor, guidance: float) -> torch.Tensor:
        key = (len(sample), sample[-1].shape[-1])
        starts.setdefault(key, sample[-1].clone())
        return starts[key] - _target_at(target, sample)

    out = pyramidal_sample(
        velocity,
        batch=2,
        channels=3,
        height=16,
        width=16,
        num_units=2,
        schedule=StepSchedule((3, 2, 4), (2, 3, 2), 7.0, 5.0),
        scheduler=PyramidFlowScheduler(),
        generator=_gen(2),
    )
    assert torch.allclose(out, target, atol=1e-5)


def test_sampler_is_seeded_and_validates() -> None:
    s = PyramidFlowScheduler()
    kw = dict(batch=1, channels=2, height=8, width=8, num_units=2, scheduler=s)
    one = StepSchedule.distilled_1_1_1()
    a = pyramidal_sample(Recorder(), schedule=one, generator=_gen(9), **kw)
    b = pyramidal_sample(Recorder(), schedule=one, generator=_gen(9), **kw)
    assert torch.equal(a, b) and a.abs().sum() > 0
    with pytest.raises(ValueError):
        pyramidal_sample(Recorder(), schedule=StepSchedule((1, 1), (1, 1)), generator=_gen(9), **kw)
    with pytest.raises(ValueError):
        pyramidal_sample(Recorder(), schedule=one, generator=_gen(9), **{**kw, "height": 10})


def test_a_given_first_unit_is_kept_and_the_denoiser_runs_for_later_units_only() -> None:
    """Hybrid mode: unit 0 comes from elsewhere (an image model's picture, VAE-encoded); the loop calls the
    velocity function only for units 1.., each of which sees unit 0 in its history."""
    s = PyramidFlowScheduler()
    first = torch.randn(1, 3, 1, 16, 16, generator=_gen(7))
    seen: list[int] = []

    def velocity(sample, t, guidance):
        seen.append(len(sample) - 1)  # history length of this call
        if len(sample) > 1 and sample[0].shape[-1] == 16:  # stage 2: unit 0 at full resolution
            assert torch.equal(sample[0], first)
        return torch.zeros_like(sample[-1])

    out = pyramidal_sample(velocity, batch=1, channels=3, height=16, width=16, num_units=3, first_unit=first,
                           schedule=StepSchedule((5, 5, 5), (1, 1, 1), 1.0, 1.0), scheduler=s,
                           generator=_gen(0))  # fmt: skip
    assert torch.equal(out[:, :, :1], first) and out.shape == (1, 3, 3, 16, 16)
    assert seen == [1, 1, 1, 2, 2, 2]  # units 1 and 2, one step per stage; unit 0's 5-5-5 never runs
    with pytest.raises(ValueError, match="first_unit must be"):
        pyramidal_sample(velocity, batch=1, channels=3, height=16, width=16, num_units=3,
                         first_unit=torch.zeros(1, 3, 1, 8, 8), schedule=StepSchedule(), scheduler=s,
                         generator=_gen(0))  # fmt: skip


def test_a_hybrid_schedule_counts_no_denoiser_work_for_unit_0() -> None:
    s = StepSchedule((1, 1, 1), (1, 1, 1), 1.0, 1.0, hybrid=True)
    assert (s.nfe(7), s.calls(7), list(s.denoised_units(3))) == (18, 18, [1, 2])
    assert StepSchedule.from_dict(s.to_dict()) == s and "hybrid" not in StepSchedule().to_dict()


def test_sampler_steps_on_the_schedules_grid() -> None:
    s = PyramidFlowScheduler()
    seen: dict[str, list[float]] = {}
    for grid in ("upstream", "uniform"):
        rec = Recorder()
        schedule = StepSchedule((1, 1, 2), (1, 1, 2), 1.0, 1.0, grid=grid)
        pyramidal_sample(rec, batch=1, channels=4, height=16, width=16, num_units=1, schedule=schedule, scheduler=s,
                         generator=_gen(0))  # fmt: skip
        seen[grid] = [t[0].item() for _, t, _ in rec.calls]
    t_max, t_min = s.timestep_ranges[2]
    assert seen["upstream"][-1] == pytest.approx(t_min + 0.001 * (t_max - t_min), abs=1e-3)
    assert seen["uniform"][-1] == pytest.approx((t_max + t_min) / 2, abs=1e-3)
    assert seen["upstream"][:-1] == seen["uniform"][:-1]  # one-step stages are the same on both grids
