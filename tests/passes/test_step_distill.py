"""step_distill: Pyramidal DMD trains the student and the fake model with the configured update ratio and noise
levels, the pipeline's scheduler node carries the target schedule (also after save and reload), the report has
NFE, losses and the distance to the teacher for the student and the undistilled model, a resumed run gives the
same weights as an uninterrupted one, and bad configs fail before training."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from neocompress.core.apply_run import apply_recipe
from neocompress.core.errors import RecipeError, UserInputError
from neocompress.distill.step_run import draw_step, run_dmd, settings_from
from neocompress.models.family import get_family
from neocompress.recipe import load_recipe
from neocompress.train.stage import StageConfig

FAMILY = get_family("pyramid-flow")


def _recipe(tmp: Path, body: str, name: str = "sd", count: int = 12) -> Path:
    f = tmp / f"{name}.yaml"
    f.write_text("model:\n  source: builtin:tiny\ndata:\n  prompts:\n"
                 f"    calibration: {{source: builtin:world, count: {count}}}\n"
                 "passes:\n  - name: step_distill\n    samples: 8\n    heldout: 2\n    heldout_seeds: 1\n"
                 "    teacher: {first: [2, 2, 2], later: [1, 1, 1]}\n"
                 f"{body}output: {tmp / name}\n")  # fmt: skip
    return f


@pytest.fixture(scope="module")
def distilled(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("sd")
    body = "    update_ratio: 3\n    train: {steps: 12, batch_size: 4, lr: 1.0e-4, warmup_steps: 1}\n"
    outcome = apply_recipe(load_recipe(_recipe(tmp, body)))
    report = json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]
    return {"report": report, "output": outcome.output}


def test_report_has_nfe_losses_and_distances(distilled) -> None:
    r = distilled["report"]
    assert r["nfe"]["before"] == 180 and r["nfe"]["after"] == 6  # 2 units: 2 x 60 x 2 (CFG) -> 2 x 3
    assert r["nfe"]["schedule_after"] == {"first_unit": [1, 1, 1], "later_units": [1, 1, 1], "guidance_first": 1.0,
                                          "guidance_later": 1.0}  # fmt: skip
    for model in ("undistilled", "student"):
        d = r["distance_to_teacher"][model]
        assert d["samples"] == 2 and d["latent_mse"] > 0 and math.isfinite(d["frechet_judge_distance"])
    assert (distilled["output"] / r["figures"]["loss"]).is_file()


def test_update_ratio_as_configured(distilled) -> None:
    """Ratio 3: the fake model trains every step, the student on steps 3, 6, 9, 12."""
    history = distilled["report"]["history"]
    assert all(math.isfinite(h["fake_flow"]) for h in history)
    assert [h["step"] for h in history if math.isfinite(h["dmd"])] == [3, 6, 9, 12]
    assert distilled["report"]["losses"]["cauchy"]["count"] == 4


def test_the_saved_pipeline_samples_with_the_distilled_schedule(distilled) -> None:
    ir = FAMILY.load(str(distilled["output"]))
    pipe = FAMILY.pipeline(ir)
    assert pipe.schedule.first_unit == (1, 1, 1) and pipe.schedule.later_units == (1, 1, 1)
    assert not pipe.schedule.uses_cfg(pipe.schedule.guidance_first)
    calls = []
    pipe.denoiser.register_forward_hook(lambda *a: calls.append(1))
    video = pipe.generate(["a red circle moving left slowly on a grey background"], seed=0)
    assert tuple(video.shape) == (1, 3, 9, 64, 64) and len(calls) == 6  # 2 units x 3 stages x 1 step, no CFG


def test_student_noise_levels_are_the_configured_ones() -> None:
    ir = FAMILY.load("builtin:tiny-random")
    pipe = FAMILY.pipeline(ir)
    text = pipe.text.encode(["a red circle"] * 2)
    latents = torch.randn(2, 16, 2, 8, 8)
    for count in (4, 2):
        levels = settings_from(2, count, 0.5, 5.0).noise_levels
        seen = {draw_step(pipe.scheduler, latents, text, levels, torch.Generator().manual_seed(s)).s_loc
                for s in range(60)}  # fmt: skip
        assert seen == set(levels) == {1.0 - k / count for k in range(count)}


def test_resume_mid_training_gives_the_same_weights(tmp_path: Path) -> None:
    ir = FAMILY.load("builtin:tiny-random")
    pipe = FAMILY.pipeline(ir)
    latents = torch.randn(4, 16, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    captions = ["a red circle", "a blue square"] * 2

    def text_of(idx):
        return pipe.text.encode([captions[i] for i in idx]), pipe.text.encode([""] * len(idx))

    stage = StageConfig(steps=8, batch_size=2, lr=1e-3, warmup_steps=1)
    settings = settings_from(2, 4, 0.5, 3.0)

    def run(work: Path) -> dict:
        teacher = FAMILY.load("builtin:tiny-random")["denoiser"].module.eval().requires_grad_(False)
        student = FAMILY.load("builtin:tiny-random")["denoiser"].module
        fake = FAMILY.load("builtin:tiny-random")["denoiser"].module
        torch.manual_seed(0)
        run_dmd(student, fake, teacher, pipe.scheduler, latents, text_of, settings, stage, work, seed=0)
        return {**{f"s.{k}": v for k, v in student.state_dict().items()},
                **{f"f.{k}": v for k, v in fake.state_dict().items()}}  # fmt: skip

    whole = run(tmp_path / "whole")
    run(tmp_path / "split")
    ckpts = sorted((tmp_path / "split" / "checkpoints").iterdir(), key=lambda c: int(c.name.split("-")[1]))
    assert len(ckpts) >= 2 and int(ckpts[0].name.split("-")[1]) < 8, "need a mid-run checkpoint to resume from"
    for c in ckpts[1:]:
        shutil.rmtree(c)  # as if the run had died after the earliest checkpoint
    resumed = run(tmp_path / "split")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    untrained = FAMILY.load("builtin:tiny-random")["denoiser"].module.state_dict()
    assert any(not torch.equal(whole[f"s.{k}"], v) for k, v in untrained.items())  # the student did train


def test_bad_configs_fail_before_training(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(RecipeError, match="target"):
        load_recipe(_recipe(tmp_path, "    target: {first: [1, 1, 1]}\n", "a"))
    with pytest.raises(RecipeError, match="update_ratio"):
        load_recipe(_recipe(tmp_path, "    update_ratio: 0\n", "b"))
    with pytest.raises(RecipeError, match=r"c.yaml:\d+ \(passes\[0\].target.first\).*3 stages"):
        load_recipe(_recipe(tmp_path, "    target: {first: [1, 1], later: [1, 1]}\n", "c"))  # checked on the model
    with pytest.raises(RecipeError, match=r"e.yaml:\d+ \(passes\[0\].guidance\).*2 entries; the pyramid has 3"):
        load_recipe(_recipe(tmp_path, "    guidance: [3.5, 2.0]\n", "e"))
    with pytest.raises(RecipeError, match=r"passes\[0\].guidance.*\[1\]\): Input should be greater than or equal to 0"):
        load_recipe(_recipe(tmp_path, "    guidance: [3.5, -1.0, 2.0]\n", "f"))
    with pytest.raises(RecipeError, match=r"g.yaml:\d+ \(passes\[0\].noise_levels\).*3-step stage.*multiple of 3"):
        load_recipe(_recipe(tmp_path, "    noise_levels: 4\n    target: {first: [1, 1, 3], later: [1, 1, 1]}\n", "g"))
    monkeypatch.setattr("neocompress.distill.step_run.train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(UserInputError, match="holding out 2"):
        apply_recipe(load_recipe(_recipe(tmp_path, "", "d", count=2)))


def test_plan_rewrites_the_schedule_on_the_full_size_skeleton() -> None:
    """Full size: 49 frames = 7 units; 20-20-20 / 10-10-10 with CFG is 480 NFE, 1-1-1 without CFG is 21."""
    from neocompress.core.context import PassContext
    from neocompress.passes.step_distill import StepDistill, StepDistillConfig

    ir = FAMILY.skeleton("builtin:pyramid-flow-sd3")
    r = StepDistill(StepDistillConfig()).plan(ir, PassContext.for_planning()).report
    assert (r["nfe"]["before"], r["nfe"]["after"]) == (480, 21)
    assert ir["scheduler"].extras["schedule"].first_unit == (1, 1, 1)
    assert ir["scheduler"].extras["schedule"].grid == "upstream"  # one step per stage: both grids agree


def test_a_multi_step_target_samples_at_the_students_levels() -> None:
    """A 1-1-2 student is trained at levels 1 and 1/2 (noise_levels 2 or 4), so its pipeline samples the last
    stage at 1 -> 1/2 -> 0, not upstream's 1 -> 0.001 -> 0 (where the second step would do nothing)."""
    from neocompress.core.context import PassContext
    from neocompress.passes.step_distill import StepDistill, StepDistillConfig

    ir = FAMILY.skeleton("builtin:pyramid-flow-sd3")
    target = {"first": [1, 1, 2], "later": [1, 1, 2], "guidance_first": 1.0, "guidance_later": 1.0}
    r = StepDistill(StepDistillConfig(target=target)).plan(ir, PassContext.for_planning()).report
    schedule = ir["scheduler"].extras["schedule"]
    assert (schedule.later_units, schedule.grid) == ((1, 1, 2), "uniform")
    assert r["nfe"]["after"] == 28 and r["nfe"]["schedule_after"]["grid"] == "uniform"
    ir = FAMILY.skeleton("builtin:pyramid-flow-sd3")
    StepDistill(StepDistillConfig(target={**target, "grid": "upstream"})).plan(ir, PassContext.for_planning())
    assert ir["scheduler"].extras["schedule"].grid == "upstream"  # said outright, kept


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("hybrid")
    body = "    first_frame: builtin:world\n    train: {steps: 4, batch_size: 2, lr: 1.0e-5, warmup_steps: 0}\n"
    outcome = apply_recipe(load_recipe(_recipe(tmp, body, "hy")))
    report = json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]
    return {"report": report, "output": outcome.output}


def test_hybrid_mode_takes_frame_0_from_the_first_frame_component(hybrid) -> None:
    """Neodragon's hybrid mode with the tiny stand-in: the world renders frame 0, the VAE encodes it as unit 0, the
    DiT runs for unit 1 only (3 calls at 1-1-1); saved and reloaded with its first_frame component."""
    from neocompress.distill.decoder_run import psnr
    from neocompress.models.pyramid_flow.first_frame import WorldFirstFrame

    assert hybrid["report"]["nfe"]["after"] == 3 and hybrid["report"]["nfe"]["schedule_after"]["hybrid"] is True
    assert (hybrid["output"] / "first_frame" / "config.json").is_file()
    ir = FAMILY.load(str(hybrid["output"]))
    assert "first_frame" in ir and ir["scheduler"].extras["schedule"].hybrid
    ir.verify()  # prompt -> first_frame -> vae_encoder: every input fed
    pipe = FAMILY.pipeline(ir)
    calls = []
    pipe.denoiser.register_forward_hook(lambda *a: calls.append(1))
    prompt = "a red circle moving left slowly on a grey background"
    video = pipe.generate([prompt], seed=3)
    assert len(calls) == 3 and tuple(video.shape) == (1, 3, 9, 64, 64)
    rendered = WorldFirstFrame()([prompt], 3, 64, 64)
    assert psnr(video[:, :, 0], rendered) > 18  # frame 0 is the render, through the VAE encoder and decoder
    other = WorldFirstFrame()(["a blue square moving up quickly on a white background"], 3, 64, 64)
    assert psnr(video[:, :, 0], other) < 12


def test_a_hybrid_schedule_without_first_frame_component_or_lowering_is_refused(hybrid, tmp_path) -> None:
    from neocompress.targets.lower import lower_targets

    ir = FAMILY.load(str(hybrid["output"]))
    with pytest.raises(UserInputError, match="lower it without"):
        lower_targets(ir, [object()], tmp_path, {}, 0)
    ir.components.pop("first_frame")
    with pytest.raises(UserInputError, match="no first_frame component"):
        FAMILY.pipeline(ir).generate(["a red circle moving left slowly on a grey background"], seed=0)
    with pytest.raises(RecipeError, match="unknown first-frame generator"):
        load_recipe(_recipe(tmp_path, "    first_frame: builtin:sdxl\n", "e"))


def test_in_hybrid_mode_the_student_never_trains_on_unit_0() -> None:
    pipe = FAMILY.pipeline(FAMILY.load("builtin:tiny-random"))
    text = pipe.text.encode(["a red circle"] * 2)
    latents = torch.randn(2, 16, 3, 8, 8)
    levels = settings_from(2, 4, 0.5, 5.0, hybrid=True).noise_levels
    histories = {len(draw_step(pipe.scheduler, latents, text, levels, torch.Generator().manual_seed(s), 1).sample)
                 for s in range(40)}  # fmt: skip
    assert histories == {2, 3}  # units 1 and 2 (history of 1 and 2 clips), never unit 0


@pytest.mark.slow  # minutes on 2 cores: runs in `make bench`
def test_the_student_is_closer_to_the_teacher_than_the_undistilled_model(tmp_path: Path) -> None:
    """What DMD is for: at the same 1-1-1 steps without CFG, the student's held-out videos are distributed like
    the teacher's (4-4-4 / 2-2-2 with CFG) far more than the undistilled model's are. Measured: judge-feature
    Frechet distance 247 (student, 120 steps) against 409 (undistilled) on 8 prompts x 2 seeds."""
    f = tmp_path / "close.yaml"
    f.write_text("model:\n  source: builtin:tiny\ndata:\n  prompts:\n    calibration: {source: builtin:world}\n"
                 "passes:\n  - name: step_distill\n    samples: 16\n    heldout: 8\n    heldout_seeds: 2\n"
                 "    teacher: {first: [4, 4, 4], later: [2, 2, 2]}\n"
                 "    train: {steps: 120, batch_size: 8, lr: 1.0e-4, warmup_steps: 5}\n"
                 f"output: {tmp_path / 'close'}\n")  # fmt: skip
    outcome = apply_recipe(load_recipe(f))
    report = json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]
    distance = {m: report["distance_to_teacher"][m]["frechet_judge_distance"] for m in ("student", "undistilled")}
    assert distance["student"] < 0.8 * distance["undistilled"], distance


def test_the_teachers_guidance_can_differ_per_pyramid_stage(monkeypatch) -> None:
    """`guidance: [g0, g1, g2]`: DMD's real score runs the teacher with the scale of the stage the step drew
    (strong guidance at the coarse stages for motion and colour, less at the last one that draws textures)."""
    from neocompress.distill import step_run

    pipe = FAMILY.pipeline(FAMILY.load("builtin:tiny-random"))
    den = pipe.denoiser
    seen: list[tuple[int, float]] = []
    stages: list[int] = []
    real_draw, real_guided = step_run.draw_step, step_run.guided

    def draw(*a, **k):
        d = real_draw(*a, **k)
        stages.append(d.stage)
        return d

    def guided(model, sample, text, uncond, t, scale):
        seen.append((stages[-1], scale))
        return real_guided(model, sample, text, uncond, t, scale)

    monkeypatch.setattr(step_run, "draw_step", draw)
    monkeypatch.setattr(step_run, "guided", guided)
    text = pipe.text.encode(["a red circle"] * 2)
    uncond = pipe.text.encode([""] * 2)
    scales = [4.0, 3.0, 1.5]
    settings = settings_from(1, 1, 0.5, scales)
    loss = step_run.dmd_loss_fn(den, den, den, pipe.scheduler, torch.randn(2, 16, 2, 8, 8),
                                lambda idx: (text, uncond), settings, seed=0)  # fmt: skip
    for step in range(12):
        loss(torch.tensor([0, 1]), step)
    assert len(seen) == 12 and {s for s, _ in seen} == {0, 1, 2}
    assert all(scale == scales[stage] for stage, scale in seen)
    assert step_run.per_stage(2.0, 3) == [2.0, 2.0, 2.0]

