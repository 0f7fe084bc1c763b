"""`step_distill`: Pyramidal DMD, from the teacher's many-step CFG schedule to a few steps without CFG.

Neodragon's fourth technique (reference sections 2 and 6). The teacher is the pipeline's denoiser as it comes
(frozen, run with classifier-free guidance); the student and the fake-score model start as copies of it. The
training data are the teacher's own samples at its full schedule (or a user's latents file); the run is
`neocompress.distill.step_run`. Afterwards the pipeline's scheduler node carries the target schedule, so the
saved pipeline samples with it, and the report records the NFE before and after.

The teacher's guidance in the DMD gradient (`guidance`) defaults to the pipeline's own later-unit scale, as the
paper runs Pyramid-Flow's. A model that samples best at a low scale can want more in the real score: on the
miniature (sampling at 2), from a pruned pipeline, 64 prompts, the student scored 0.458 at 2.0, 0.501 at 3.5 and
0.497 at 5.0 against its teacher's 0.524, the motion parts most (`runs/issue16-miniature/sd_levels_ab.sh`). The
student's background score falls as the scale rises (0.562, 0.516, 0.484; teacher 0.672): a one-step student loses
the textured backgrounds first. `guidance` may give one scale per pyramid stage, lowest resolution first: on the
same model [3.5, 3.5, 2.0] scored 0.515 and [3.5, 2.0, 2.0] 0.475 (`runs/issue16-miniature/sd_steps_ab.sh`), so
the middle stage wants the strong scale; the gain of the first over a uniform 3.5 is within the 64 prompts' noise.

What a few-step sampler loses first is texture. On the miniature's pruned model, one step in the last pyramid stage
loses every striped and checkered background (0 of 27 right, against 17 of 27 at the teacher's 20 steps; plain ones
stay right), one step in the first two costs almost nothing (1-20-20: 0.687 vs 0.699), and two or three steps in the
last stage of the undistilled model do not bring it back (`runs/issue16-miniature/stage_steps_probe.sh`,
`background_probe.py`): a texture's phase is random, a short flow draws its mean. Two terms aim at that.
`gan_weight` adds DMD2's GAN term (`dmd_gan`); on the same model (48 samples, 300 steps, 64 prompts;
`runs/issue16-miniature/sd_gan_ab.sh`) it bought nothing: student 0.613 without it, 0.629 at 0.5 with the critic at
chance throughout, 0.573 with a critic made to learn faster at low noise; no textured background right in any.
`paired_weight` adds DMD's own regression on the teacher's ODE pairs (`ode_pairs`): one student step from the exact
point where the teacher's last stage started, towards where the teacher ended, which can learn the phase the
flow-matching mix cannot. At weight 1.0 and 300 steps it bought nothing (0.597, no texture right); at 2.0 and 1200
steps it is the first thing that drew textures in one step: background 0.672 (7 of 27 textured right; checkered
6/14) against 0.562 (0/27) for plain DMD at the same 1200 steps, total 0.618 against 0.608; on 160 prompts, paired,
background +0.094 [+0.044, +0.150], total +0.014 [-0.003, +0.033], the motion parts unchanged. What brought the
textures back is a DMD student with two steps in the last stage (target 1-1-2, 8 NFE): with the paired term, 1200
steps, 0.667 (teacher 0.699), background 0.922, 23 of 27 textured right; in the quality chain (160 prompts)
step_distill then costs -0.044 instead of -0.090 and the chain keeps 90.9 % of the base; the recipes use it.
A target with several steps in a stage samples at the student's levels (the `uniform` grid: 1, 1/2 ...), which
`noise_levels` must contain.

Report: the loss curves (fake model's flow matching, the student's DMD term and Cauchy term); NFE; MiniBench
(optional) of the teacher at its full schedule, of the undistilled model at the target schedule and of the
student; and on held-out prompts and seeds, each few-step model's distance to the teacher's many-step samples
with the same seeds: latent MSE, and the Frechet distance between the MiniBench judge's features of the decoded
videos (why that statistic: DMD matches distributions, not samples, so a good student need not reproduce the
teacher's video for a seed, and per-seed MSE alone would punish it; the judge's features are the ones MiniBench's
own `distribution` part compares, FVD's statistic on a network trained on this world).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from neocompress.core.config_types import SamplingSteps
from neocompress.core.errors import Problem, UserInputError, VerificationError
from neocompress.core.pass_base import Pass, PassConfig, PassResult
from neocompress.core.registry import register_pass
from neocompress.ir.component import Provenance
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.train.stage import StageConfig

GuidanceScale = Annotated[float, Field(ge=0)]


class ScheduleConfig(PassConfig):
    first: list[SamplingSteps] | None = Field(None, min_length=1, description="steps per stage for the first unit")
    later: list[SamplingSteps] | None = Field(None, min_length=1, description="steps per stage for later units")
    guidance_first: float | None = Field(None, ge=0, description="CFG scale of the first unit (<= 1: off)")
    guidance_later: float | None = Field(None, ge=0, description="CFG scale of later units (<= 1: off)")
    grid: Literal["upstream", "uniform"] | None = Field(
        None, description="Euler grid inside a stage (unset: the teacher keeps the pipeline's; a target with a "
        "multi-step stage samples at the student's levels, uniform)",
    )


def _one_step() -> ScheduleConfig:
    return ScheduleConfig(first=[1, 1, 1], later=[1, 1, 1], guidance_first=1.0, guidance_later=1.0)


class StepDistillConfig(PassConfig):
    prompts: str = Field("calibration", description="recipe prompt set the teacher samples for training data")
    samples: int = Field(32, ge=2, description="teacher samples to train on (prompts cycled)")
    latents: str | None = Field(
        None, description="safetensors file with 'latents' [N, C, units, h, w] and metadata 'captions' instead"
    )
    heldout: int = Field(4, ge=1, description="prompts (the set's last) kept out for the distance to the teacher")
    heldout_seeds: int = Field(2, ge=1, description="seeds per held-out prompt")
    teacher: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="the teacher's schedule (unset fields: the pipeline's own)"
    )
    target: ScheduleConfig = Field(
        default_factory=_one_step, description="the schedule the student is distilled to and the pipeline keeps"
    )
    guidance: GuidanceScale | list[GuidanceScale] | None = Field(
        None,
        description="CFG scale of the teacher in the DMD gradient, one for every pyramid stage or a list with one "
        "per stage, lowest resolution first (default: its later-unit scale)",
    )
    update_ratio: int = Field(2, ge=1, description="fake-model updates per student update")
    noise_levels: int = Field(4, ge=1, description="the student's fixed local noise levels, evenly spaced")
    cauchy_weight: float = Field(0.5, ge=0, description="weight of the supervised Cauchy regression")
    paired_weight: float = Field(
        0.0, ge=0, le=100, description="weight of DMD's paired regression: the student's one step from the point "
        "the teacher's last pyramid stage started from, towards where the teacher ended (needs the teacher's own "
        "samples, not `latents`); 0: off",
    )
    gan_weight: float = Field(
        0.0, ge=0, le=100, description="weight of DMD2's GAN term: a critic on the fake model's trunk tells the "
        "training latents from the student's (0: off); what brings back textures a one-step student averages away",
    )
    train: StageConfig = Field(default_factory=StageConfig, description="the training run")
    minibench: int = Field(0, ge=0, description="MiniBench prompts for teacher / undistilled / student (0: off)")
    first_frame: str | None = Field(
        None, description="hybrid mode: a registered first-frame image generator (builtin:world, the tiny stand-in) "
        "makes unit 0, so the target schedule runs the denoiser for later units only",
    )

    @model_validator(mode="after")
    def _target_is_complete(self) -> StepDistillConfig:
        if self.target.first is None or self.target.later is None:
            raise ValueError("target: give both first and later (steps per stage), e.g. [1, 1, 1]")
        if self.paired_weight > 0 and self.latents is not None:
            raise ValueError("paired_weight needs the teacher's own samples (its start points): drop `latents`")
        return self


@register_pass
class StepDistill(Pass):
    name = "step_distill"
    version = 2  # 2: the schedule grid, the paired regression and the GAN term
    Config = StepDistillConfig
    summary = "Distil the sampler to a few steps without CFG with Pyramidal DMD; the pipeline keeps the new schedule."
    requires = ("denoiser", "scheduler")

    config: StepDistillConfig

    def check(self, ir: PipelineIR) -> list[Problem]:
        problems = super().check(ir)
        if problems:
            return problems
        stages = ir["scheduler"].extras["object"].stages
        for name in ("first", "later"):
            steps = getattr(self.config.target, name)
            if steps is not None and len(steps) != stages:
                problems.append(Problem(f"target.{name} has {len(steps)} entries; the pyramid has {stages} stages",
                                        path=f"target.{name}"))  # fmt: skip
        if self.config.first_frame is not None:
            from neocompress.models.pyramid_flow.first_frame import first_frame_names

            if self.config.first_frame not in first_frame_names():
                problems.append(Problem(f"unknown first-frame generator '{self.config.first_frame}'; registered: "
                                        f"{', '.join(first_frame_names())}", path="first_frame"))  # fmt: skip
        problems += self._grid_problems()
        guidance = self.config.guidance
        if isinstance(guidance, list) and len(guidance) != stages:
            problems.append(Problem(f"guidance has {len(guidance)} entries; the pyramid has {stages} stages (give "
                                    "one scale, or one per stage)", path="guidance"))  # fmt: skip
        if ir["denoiser"].extras.get("quantization"):
            problems.append(Problem("the denoiser is already quantized: distil the steps before quantize", path="name"))
        if self.config.minibench:
            from neocompress.passes.substitution_checks import minibench_problems

            problems += minibench_problems(ir, self.config.minibench)
        return problems

    def _target_steps(self) -> list[int]:
        """Every stage's step count in the target schedule, first unit and later units."""
        return [*(self.config.target.first or []), *(self.config.target.later or [])]

    def _grid_problems(self) -> list[Problem]:
        """A multi-step stage of the target samples at levels the student must have been trained at."""
        levels = self.config.noise_levels
        if self.config.target.grid == "upstream":
            return []
        steps = sorted({n for n in self._target_steps() if n > 1 and levels % n})
        return [Problem(f"target has a {n}-step stage, sampled at levels 1, {n - 1}/{n} ... on the uniform grid, but "
                        f"the student is trained at {levels} levels (1, {levels - 1}/{levels} ...): give noise_levels "
                        f"a multiple of {n}", path="noise_levels") for n in steps]  # fmt: skip

    def input_paths(self) -> dict[str, str | None]:
        return {"latents": self.config.latents}

    def data_needs(self) -> dict[str, str]:
        return {} if self.config.latents else {"prompts": self.config.prompts}

    # -- schedules ----------------------------------------------------------------------------------------------
    def schedules(self, ir: PipelineIR) -> tuple[Any, Any]:
        from neocompress.models.pyramid_flow.spec import override_schedule

        current = ir["scheduler"].extras["schedule"]

        def resolve(c: ScheduleConfig, hybrid: bool | None, grid: str | None) -> Any:
            return override_schedule(current, first=tuple(c.first) if c.first else None,
                                     later=tuple(c.later) if c.later else None, guidance_first=c.guidance_first,
                                     guidance_later=c.guidance_later, hybrid=hybrid, grid=grid)  # fmt: skip

        target = self.config.target
        # a student trained at levels 1, 1/2 ... samples there: upstream's grid would spend a second step at 0.001
        multi_step = any(n > 1 for n in self._target_steps())
        target_grid = target.grid or ("uniform" if multi_step else None)
        return (resolve(self.config.teacher, None, self.config.teacher.grid),
                resolve(target, self.config.first_frame is not None, target_grid))  # fmt: skip

    def _rewrite_schedule(self, ir: PipelineIR, schedule: Any) -> None:
        """The scheduler node now samples with `schedule`: what the pipeline, its save and its reload use."""
        ir["scheduler"].extras["schedule"] = schedule
        ir.meta["spec"] = replace(ir.meta["spec"], schedule=schedule)
        ir["scheduler"].provenance.append(
            Provenance(self.name, "modified", f"schedule {list(schedule.first_unit)} / {list(schedule.later_units)}, "
                                              f"CFG {schedule.guidance_first} / {schedule.guidance_later}")  # fmt: skip
        )

    def _nfe(self, ir: PipelineIR, before: Any, after: Any) -> dict[str, Any]:
        units = ir.meta["spec"].video.units
        return {"units": units, "before": before.nfe(units), "after": after.nfe(units),
                "denoiser_calls_before": before.calls(units), "denoiser_calls_after": after.calls(units),
                "schedule_before": before.to_dict(), "schedule_after": after.to_dict()}  # fmt: skip

    def _plug_first_frame(self, ir: PipelineIR) -> None:
        if self.config.first_frame is not None:
            from neocompress.models.pyramid_flow.first_frame import add_first_frame

            add_first_frame(ir, self.config.first_frame)

    def plan(self, ir: PipelineIR, ctx: Any) -> PassResult:
        teacher, target = self.schedules(ir)
        nfe = self._nfe(ir, ir["scheduler"].extras["schedule"], target)
        self._plug_first_frame(ir)
        self._rewrite_schedule(ir, target)
        return PassResult(ir, True, {"nfe": nfe, "planned": "schedule only: no training"})

    # -- running ------------------------------------------------------------------------------------------------
    def run(self, ir: PipelineIR, ctx: Any) -> PassResult:
        from neocompress.analysis.quality import minibench_of
        from neocompress.distill.step_eval import few_step_distance, teacher_reference
        from neocompress.distill.step_run import per_stage, run_dmd, settings_from
        from neocompress.models.family import get_family
        from neocompress.prune.recovery import CaptionCache, load_latent_file, teacher_latents
        from neocompress.train.engine import plot_losses

        problems = self.check(ir)
        if problems:
            raise VerificationError("; ".join(str(p) for p in problems))
        cfg = self.config
        family = get_family(ir.family)
        teacher_schedule, target = self.schedules(ir)
        original = ir["scheduler"].extras["schedule"]
        self._plug_first_frame(ir)  # the undistilled baseline at the target schedule needs it too
        pipe = family.pipeline(ir)
        prompts = self._prompts(ctx)
        train_prompts, held_prompts = prompts[: -cfg.heldout], prompts[-cfg.heldout :]
        starts = None
        if cfg.latents is not None:
            data = load_latent_file(cfg.latents, pipe.latent_dims)
        elif cfg.paired_weight > 0:
            from neocompress.distill.ode_pairs import teacher_samples_with_starts

            data, starts = teacher_samples_with_starts(pipe, train_prompts, cfg.samples, seed=ctx.seed,
                                                       schedule=teacher_schedule)  # fmt: skip
        else:
            data = teacher_latents(pipe, train_prompts, cfg.samples, seed=ctx.seed, schedule=teacher_schedule)
        quality: dict[str, Any] = {}
        if cfg.minibench:
            quality["teacher"] = minibench_of(ir, cfg.minibench, ctx.seed, teacher_schedule, ctx.scores)
            quality["undistilled_at_target"] = minibench_of(ir, cfg.minibench, ctx.seed, target, ctx.scores)
        seeds = [ctx.seed + 1000 + k for k in range(cfg.heldout_seeds)]
        reference = teacher_reference(pipe, held_prompts, seeds, teacher_schedule)
        distance = {"undistilled": few_step_distance(pipe, held_prompts, seeds, target, reference)}

        den = ir["denoiser"]
        student = den.module
        teacher = copy.deepcopy(student).eval().requires_grad_(False)
        fake = copy.deepcopy(student).train().requires_grad_(True)
        student.train().requires_grad_(True)
        cache = CaptionCache(pipe.text, [*data.captions, ""])
        guidance = cfg.guidance if cfg.guidance is not None else teacher_schedule.guidance_later

        uses_cfg = max(per_stage(guidance, pipe.scheduler.stages)) > 1.0

        def text_of(idx: list[int]) -> tuple[Any, Any]:
            cond = cache.get([data.captions[i] for i in idx])
            return cond, (cache.get([""] * len(idx)) if uses_cfg else None)

        settings = settings_from(cfg.update_ratio, cfg.noise_levels, cfg.cauchy_weight, guidance, target.hybrid,
                                 cfg.gan_weight, cfg.paired_weight)  # fmt: skip
        out_dir = ctx.pass_dir(self.name)
        key = self._run_key(ir, data, ctx.seed)
        result = run_dmd(student, fake, teacher, pipe.scheduler, data.latents, text_of, settings, cfg.train,
                         out_dir / f"train-{key}", ctx.seed, starts)  # fmt: skip
        student.eval().requires_grad_(False)
        del fake, teacher
        self._rewrite_schedule(ir, target)
        pipe = family.pipeline(ir)
        distance["student"] = few_step_distance(pipe, held_prompts, seeds, target, reference)
        if cfg.minibench:
            quality["student"] = minibench_of(ir, cfg.minibench, ctx.seed, target, ctx.scores)
            quality["student_minus_teacher"] = ctx.scores.difference(quality["teacher"], quality["student"])
            quality["student_minus_undistilled"] = ctx.scores.difference(
                quality["undistilled_at_target"], quality["student"]
            )
        curve = plot_losses(result.history, out_dir / "loss.png", "step_distill: Pyramidal DMD")
        den.provenance.append(Provenance(self.name, "modified", f"Pyramidal DMD, {cfg.train.steps} steps"))
        report: dict[str, Any] = {
            "nfe": self._nfe(ir, original, target),
            "teacher_schedule": teacher_schedule.to_dict(),
            "dmd": {"update_ratio": cfg.update_ratio, "noise_levels": settings.noise_levels,
                    "cauchy_weight": cfg.cauchy_weight, "paired_weight": cfg.paired_weight,
                    "gan_weight": cfg.gan_weight, "teacher_guidance": guidance},  # fmt: skip
            "data": {"source": data.source, "train_samples": len(data.captions), "heldout_prompts": held_prompts,
                     "heldout_seeds": seeds},  # fmt: skip
            "train": result.summary(),
            "losses": _loss_summary(result.history),
            "distance_to_teacher": distance,
            "history": [{k: round(float(v), 6) for k, v in r.items()} for r in result.history],
            "figures": {"loss": str(curve)},
            "notes": list(result.notes),
        }
        if quality:
            report["minibench"] = quality
        return PassResult(ir, True, report)

    def _prompts(self, ctx: Any) -> list[str]:
        cfg = self.config
        if ctx.data is None or cfg.prompts not in ctx.data.names():
            raise UserInputError(f"{self.name}: data.prompts.{cfg.prompts} is not defined in the recipe "
                                 f"(it supplies the training and held-out prompts)")  # fmt: skip
        prompts = list(ctx.data.get(cfg.prompts))
        if len(prompts) <= cfg.heldout:
            raise UserInputError(f"{self.name}: prompt set '{cfg.prompts}' has {len(prompts)} prompt(s); holding out "
                                 f"{cfg.heldout} needs at least {cfg.heldout + 1}")  # fmt: skip
        return prompts

    def _run_key(self, ir: PipelineIR, data: Any, seed: int) -> str:
        from neocompress.core.hashing import hash_json, hash_module

        weights = hash_module(ir["denoiser"].module)
        return hash_json({"config": self.config.model_dump(mode="json"), "seed": seed, "weights": weights,
                          "data": [data.source, data.captions, float(data.latents.double().sum())]})[:16]  # fmt: skip


def _loss_summary(history: list[dict[str, float]]) -> dict[str, Any]:
    """First and last values (means over the first and last tenth, NaN-free) of each loss part."""
    import math

    out: dict[str, Any] = {}
    for name in ("fake_flow", "dmd", "cauchy", "paired", "critic", "generator"):
        values = [r[name] for r in history if name in r and math.isfinite(r[name])]
        if values:
            k = max(len(values) // 10, 1)
            out[name] = {"first": sum(values[:k]) / k, "last": sum(values[-k:]) / k, "count": len(values)}
    return out

