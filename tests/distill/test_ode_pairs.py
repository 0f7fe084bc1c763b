"""DMD's paired regression data: the teacher's samples come with the exact points its last pyramid stage started
from, so one step of the teacher itself from there lands on its own sample (the pairs are aligned), while the
samples are the very ones `teacher_latents` draws."""

from __future__ import annotations

import pytest
import torch

from neocompress.distill.ode_pairs import teacher_samples_with_starts
from neocompress.distill.step_run import paired_loss
from neocompress.models.family import get_family
from neocompress.models.pyramid_flow.scheduler import StepSchedule
from neocompress.prune.recovery import teacher_latents

FAMILY = get_family("pyramid-flow")
PROMPTS = ["a red circle moving left slowly on a grey background",
           "a blue square moving up quickly on a black background"]


def test_one_teacher_step_from_each_start_lands_on_the_teachers_sample() -> None:
    pipe = FAMILY.pipeline(FAMILY.load("builtin:tiny-random"))
    schedule = StepSchedule((2, 2, 1), (2, 1, 1), 1.0, 1.0)  # one step in the last stage, no CFG: exact
    data, starts = teacher_samples_with_starts(pipe, PROMPTS, 5, seed=3, schedule=schedule)
    assert starts.shape == data.latents.shape and data.captions == [*PROMPTS, *PROMPTS, PROMPTS[0]]
    assert torch.equal(data.latents, teacher_latents(pipe, PROMPTS, 5, seed=3, schedule=schedule).latents)
    text = pipe.text.encode(data.captions)
    with torch.no_grad():
        for seed in range(3):  # every unit: the draw is random
            g = torch.Generator().manual_seed(seed)
            loss = paired_loss(pipe.denoiser, pipe.scheduler, data.latents, starts, text, g)
            assert loss.item() < 1e-8
        shuffled = paired_loss(pipe.denoiser, pipe.scheduler, data.latents, starts.flip(0), text,
                               torch.Generator().manual_seed(0))  # fmt: skip
    assert shuffled.item() > 1e-3  # a start of another sample is not its pair


def test_paired_regression_needs_the_teachers_own_samples(tmp_path) -> None:
    from neocompress.passes.step_distill import StepDistillConfig

    with pytest.raises(ValueError, match="paired_weight needs the teacher's own samples"):
        StepDistillConfig(paired_weight=1.0, latents=str(tmp_path / "z.safetensors"))


def test_the_dmd_loss_carries_the_paired_term_on_student_steps() -> None:
    from neocompress.distill import step_run

    pipe = FAMILY.pipeline(FAMILY.load("builtin:tiny-random"))
    schedule = StepSchedule((1, 1, 2), (1, 1, 2), 1.0, 1.0)
    data, starts = teacher_samples_with_starts(pipe, PROMPTS, 2, seed=0, schedule=schedule)
    text = pipe.text.encode(data.captions)
    settings = step_run.settings_from(2, 1, 0.5, 1.0, paired_weight=1.0)
    loss_fn = step_run.dmd_loss_fn(pipe.denoiser, pipe.denoiser, pipe.denoiser, pipe.scheduler, data.latents,
                                   lambda idx: (text, None), settings, 0, starts=starts)  # fmt: skip
    fake_step, student_step = loss_fn(torch.tensor([0, 1]), 0)[1], loss_fn(torch.tensor([0, 1]), 1)[1]
    assert fake_step.keys() == student_step.keys()  # the engine wants the same parts every step
    assert fake_step["paired"] != fake_step["paired"] and student_step["paired"] > 0  # NaN, then a value
