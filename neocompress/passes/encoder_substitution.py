"""`encoder_substitution`: T5-XXL -> DistilT5 (+ ContextAdapter), distilled on prompts only.

Neodragon's first technique (reference section 3). The student is built from a registered replacement
(`distil_t5` by default; a user's own is one `register_replacement` away), put in T5's place by the substitution
mechanism (which refuses a wrong width or token count before anything trains), and trained so that what reaches
the denoiser's text stream matches `context_embedder(T5(prompt))`: loss = w_mse * MSE + w_cos * (1 - cos) on
real tokens. The teacher's targets are computed once per chunk of prompts and cached on disk (a second epoch, a
resumed run or a re-run reads them), and T5 is released before the student trains. Modes: see
`neocompress.distill.text_student`. The negative prompt that classifier-free guidance encodes at every guided step
(empty by default) is distilled beside the captions, about once per batch, and reported on its own: a student
that never saw it encodes it arbitrarily (relative error 0.7 on the miniature).

What it costs on the miniature (MiniBench, 64 held-out prompts, this pass alone): a 2-layer DistilT5 for 1000
steps -0.050; 4 layers, no dropout, 5000 steps -0.037 [-0.063, -0.013]. Swapping the teacher's embeddings back in
shows where: the held-out captions' embeddings carry the loss, the negative prompt's hardly any.

Optionally (`loss.velocity` > 0) the loss also reads the error where the denoiser does: the teacher samples training
prompts and each of its denoiser calls is replayed with the student's tokens (`neocompress.distill.text_velocity`).
Measured on the miniature at the demo's budget (64 prompts): -0.035 [-0.071, -0.003] with it against -0.045
[-0.077, -0.015] without, within the noise, at 2.8x the training time; off by default.

The report gives parameters before/after (the text path, and the denoiser which loses its context embedder in
replace mode), the loss curve and its parts, held-out embedding cosine and relative error, the denoiser's
velocity difference when fed student vs teacher embeddings on the teacher's own sampling calls, and optionally
MiniBench before and after.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from neocompress.analysis.quality import minibench_of
from neocompress.core.config_types import SamplingSteps
from neocompress.core.errors import Problem, UserInputError, VerificationError
from neocompress.core.pass_base import Pass, PassConfig, PassResult
from neocompress.core.registry import register_pass
from neocompress.ir.component import Provenance
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.train.stage import StageConfig

# Modes in which DistilT5's own weights stay as they start (only an adapter or LoRA trains): a student that is
# not pretrained on text cannot be repaired by them.
FROZEN_STUDENT_MODES = ("replace", "extend", "lora")


class StudentConfig(PassConfig):
    replacement: str = Field("distil_t5", description="the registered replacement component for T5")
    encoder: dict[str, Any] = Field(
        default_factory=dict, description="T5 config overrides of DistilT5's encoder (default: T5-v1.1-base)"
    )
    width: int | None = Field(None, ge=1, le=65536, description="DistilT5's projection width (default: T5's own width)")
    checkpoint: str | None = Field(
        None,
        description="a DistilT5 folder (config.json + model.safetensors) trained on text to start from, as the "
        "public DistilT5; builtin:tiny-distilt5 is the one pretrained for the miniature's T5",
    )
    random_init: bool = Field(
        False,
        description="accept a seeded random DistilT5 in the modes that freeze it (replace, extend, lora): only for "
        "tests and smoke runs, whose quality does not matter",
    )


class AdapterConfig(PassConfig):
    hidden: int | None = Field(None, ge=1, le=65536,
                               description="hidden width of the ContextAdapter (default: its input)")  # fmt: skip
    layers: int = Field(4, ge=1, le=64, description="hidden layers of the skip-MLP")


class LoraSettings(PassConfig):
    r: int = Field(16, ge=1, le=4096, description="LoRA rank")
    alpha: float = Field(32.0, gt=0, le=1e6, description="LoRA scale numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA branch")
    target_modules: list[str] = Field(
        default_factory=lambda: [], description="Linear layers to adapt (default: attention, FFN, projection head)"
    )


class LossWeights(PassConfig):
    mse: float = Field(1.0, ge=0, description="weight of the MSE term")
    cos: float = Field(0.1, ge=0, description="weight of the (1 - cosine) term")
    velocity: float = Field(
        0.0, ge=0, description="weight of the denoiser-output term: the frozen denoiser's velocity on the teacher's "
        "own sampling calls of training prompts, fed the student's text, against the teacher's (relative MSE; see "
        "`velocity`)",
    )  # fmt: skip


class VelocityTermConfig(PassConfig):
    prompts: int = Field(256, ge=1, description="training prompts the teacher samples for the denoiser-output term")
    steps: list[SamplingSteps] = Field(
        default_factory=lambda: [2, 2, 2], min_length=1,
        description="steps per stage of that sampling (no CFG); every call it makes is kept",
    )  # fmt: skip
    rows: int = Field(8, ge=1, le=4096, description="prompts of one kept call replayed per training step")
    every: int = Field(1, ge=1, description="compute the term every `every`-th step (it costs a denoiser pass)")


class EncoderSubstitutionConfig(PassConfig):
    mode: Literal["replace", "extend", "lora", "trainable"] = Field(
        "replace",
        description="replace: adapter in the context embedder's place (Neodragon); extend: adapter before the "
        "frozen embedder; lora: LoRA on DistilT5, no adapter; trainable: replace, DistilT5 trained too",
    )
    prompts: str = Field("distillation", description="name of the recipe's data.prompts set to distil on")
    count: int | None = Field(None, ge=1, description="train on the first `count` prompts (default: all but heldout)")
    heldout: int = Field(8, ge=1, description="prompts kept out of training to measure the embeddings on")
    negative_prompt: str | None = Field(
        "", description="the prompt classifier-free guidance's unconditional branch encodes (the pipeline's default: "
        "empty), distilled beside the captions about once per batch; null leaves it out",
    )  # fmt: skip
    student: StudentConfig = Field(default_factory=StudentConfig, description="the DistilT5 that replaces T5")
    adapter: AdapterConfig = Field(default_factory=AdapterConfig, description="the ContextAdapter (not in lora)")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (mode lora only)")
    loss: LossWeights = Field(default_factory=LossWeights, description="weights of the distillation loss")
    velocity: VelocityTermConfig = Field(
        default_factory=VelocityTermConfig, description="the denoiser-output term's data (when loss.velocity > 0)"
    )
    train: StageConfig = Field(default_factory=StageConfig, description="the training run")
    teacher_batch: int = Field(16, ge=1, description="prompts per teacher call and per cached chunk")
    cache_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="dtype of the cached teacher targets (float16 halves the disk a big run needs)"
    )
    probe_steps: list[SamplingSteps] = Field(
        default_factory=lambda: [2, 2, 2],
        min_length=1,
        description="steps per stage of the held-out teacher sampling whose denoiser calls are replayed",
    )
    minibench: int = Field(0, ge=0, description="MiniBench prompts scored before and after (0: off)")
    baselines: bool = Field(
        True, description="with minibench, also score the same student undistilled (what distilling buys; one more run)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> EncoderSubstitutionConfig:
        if self.loss.mse == 0 and self.loss.cos == 0 and self.loss.velocity == 0:
            raise ValueError("loss: mse, cos and velocity are all 0; nothing would train")
        if self.mode != "lora" and self.lora != LoraSettings():
            raise ValueError(f"lora: settings apply to mode lora, not {self.mode}")
        frozen = self.mode in FROZEN_STUDENT_MODES and self.student.replacement == "distil_t5"
        if frozen and self.student.checkpoint is None and not self.student.random_init:
            raise ValueError(
                f"mode {self.mode} trains only the {'LoRA' if self.mode == 'lora' else 'ContextAdapter'} around "
                "DistilT5, so a randomly initialised DistilT5 cannot give a good text path: set student.checkpoint "
                "to a DistilT5 folder trained on text (config.json + model.safetensors), or use mode: trainable"
            )
        return self


@register_pass
class EncoderSubstitution(Pass):
    name = "encoder_substitution"
    version = 2  # 2: the negative prompt distilled beside the captions
    Config = EncoderSubstitutionConfig
    summary = "Replace T5-XXL by DistilT5 (+ ContextAdapter), distilled on prompts towards the context embedder."
    requires = ("t5", "denoiser")

    config: EncoderSubstitutionConfig

    # -- checks -----------------------------------------------------------------------------------------------
    def check(self, ir: PipelineIR) -> list[Problem]:
        from neocompress.passes.substitution_checks import minibench_problems, replacement_problems

        problems = super().check(ir) or replacement_problems(self.name, ir, self.config.student.replacement, "t5",
                                                             "student.replacement")  # fmt: skip
        if problems:
            return problems
        from neocompress.ir.substitution import get_replacement

        options = {"encoder": dict(self.config.student.encoder), "width": self.config.student.width}
        found = get_replacement(self.config.student.replacement).option_problems(options)
        if found:
            return [Problem(why, path=f"student.{where}") for where, why in found.items()]
        if not ir["denoiser"].module.config.use_context_embedder:
            return [Problem("the denoiser has no context_embedder: T5 was already substituted", path="mode")]
        if "quantization" in ir["t5"].extras:
            problems.append(Problem("T5 is already quantized: substitute it before quantize", path="name"))
        return problems + minibench_problems(ir, self.config.minibench)

    def data_needs(self) -> dict[str, str]:
        return {"prompts": self.config.prompts}

    def input_paths(self) -> dict[str, str | None]:
        return {"student.checkpoint": self.config.student.checkpoint}

    def input_folder(self, where: str, value: str) -> Path | None:
        """`builtin:tiny-distilt5` is the shipped asset's folder (rebuilt by its pretraining tool)."""
        from neocompress.models.pyramid_flow.distil_t5 import BUILTIN_TINY_DISTIL_T5, distil_t5_folder

        return distil_t5_folder(value) if value == BUILTIN_TINY_DISTIL_T5 else super().input_folder(where, value)

    def snapshot(self, ir: PipelineIR) -> dict[str, Any]:
        return {"t5": ir["t5"].num_params(), "denoiser": ir["denoiser"].num_params()}

    # -- structure --------------------------------------------------------------------------------------------
    def _student(self, ir: PipelineIR, embedder: torch.nn.Linear) -> Any:
        from neocompress.distill.text_student import mode_plan
        from neocompress.ir.substitution import get_replacement

        cfg = self.config
        plan = mode_plan(cfg.mode, embedder)
        options: dict[str, Any] = {"encoder": dict(cfg.student.encoder), "width": cfg.student.width,
                                   "checkpoint": cfg.student.checkpoint}  # fmt: skip
        if plan.adapter_out is not None:
            options["adapter"] = {"out_dim": plan.adapter_out, "hidden": cfg.adapter.hidden,
                                  "layers": cfg.adapter.layers}  # fmt: skip
        return get_replacement(cfg.student.replacement).build(ir, options), plan

    def _swap(self, ir: PipelineIR) -> tuple[Any, Any, torch.nn.Module]:
        """The structural edit: T5 replaced by the student (checked), the denoiser without its context embedder in
        replace/trainable mode. Returns (substitution, student component, a frozen copy of the embedder)."""
        from neocompress.ir.substitution import substitute

        den = ir["denoiser"]
        embedder = den.module.context_embedder
        new, plan = self._student(ir, embedder)
        frozen = copy.deepcopy(embedder).eval().requires_grad_(False)
        if not plan.keeps_embedder:
            self._drop_embedder(ir)
        try:
            sub = substitute(ir, "t5", new, by_pass=self.name,
                             detail=f"T5 -> {new.class_name} ({self.config.mode} mode)")  # fmt: skip
        except VerificationError:
            if not plan.keeps_embedder:  # leave the pipeline as it came
                self._restore_embedder(ir, embedder)
            raise
        ir.meta["spec"] = replace(ir.meta["spec"], text=replace(ir.meta["spec"].text, t5=new.config))
        return sub, new, frozen

    def _drop_embedder(self, ir: PipelineIR) -> None:
        from neocompress.ir.pipeline_ir import spec

        den = ir["denoiser"]
        module = den.module
        del module.context_embedder
        module.config = replace(module.config, use_context_embedder=False)
        den.config = module.config.to_dict()
        tokens = den.inputs["text_tokens"]
        den.inputs["text_tokens"] = spec(tokens.shape[0], tokens.shape[1], module.config.inner_dim)
        den.provenance.append(Provenance(self.name, "modified", "context_embedder removed (the ContextAdapter "
                                         "in the text path replaces it)"))  # fmt: skip
        ir.meta["spec"] = replace(ir.meta["spec"], denoiser=module.config)

    def _restore_embedder(self, ir: PipelineIR, embedder: torch.nn.Module) -> None:
        from neocompress.ir.pipeline_ir import spec

        den = ir["denoiser"]
        den.module.context_embedder = embedder
        den.module.config = replace(den.module.config, use_context_embedder=True)
        den.config = den.module.config.to_dict()
        tokens = den.inputs["text_tokens"]
        den.inputs["text_tokens"] = spec(tokens.shape[0], tokens.shape[1], den.module.config.joint_attention_dim)
        den.provenance.pop()
        ir.meta["spec"] = replace(ir.meta["spec"], denoiser=den.module.config)

    def plan(self, ir: PipelineIR, ctx: Any) -> PassResult:
        before = self.snapshot(ir)
        with torch.device("meta"):
            sub, new, _ = self._swap(ir)
        sub.release()
        return PassResult(ir, True, {"mode": self.config.mode, "params_before": before,
                                     "params_after": self.snapshot(ir), "planned": "structure only: no weights"})

    # -- running ----------------------------------------------------------------------------------------------
    def run(self, ir: PipelineIR, ctx: Any) -> PassResult:
        from neocompress.distill.text_run import distil_text

        problems = self.check(ir)
        if problems:
            raise VerificationError("; ".join(p.message for p in problems))
        cfg = self.config
        train_prompts, heldout = self._prompts(ctx)
        before = self.snapshot(ir)
        quality: dict[str, Any] = {}
        if cfg.minibench:
            quality["before"] = minibench_of(ir, cfg.minibench, ctx.seed, cache=ctx.scores)
        probe = _probe_calls(ir, heldout, cfg.probe_steps, ctx.seed)  # the teacher pipeline's own calls
        calls = self._velocity_calls(ir, train_prompts, ctx.seed)  # on training prompts, while T5 is in place
        sub, new, embedder = self._swap(ir)  # refused here, before any training, if the interface breaks
        # The naive baseline: the same student in place before distillation (what distilling it buys).
        with_baseline = bool(cfg.minibench and cfg.baselines)
        untrained = minibench_of(ir, cfg.minibench, ctx.seed, cache=ctx.scores) if with_baseline else None
        report = distil_text(cfg, ir, sub, new, embedder, train_prompts, heldout, probe, ctx, calls)
        sub.release()
        if cfg.minibench:
            quality["after"] = minibench_of(ir, cfg.minibench, ctx.seed, cache=ctx.scores)
            quality["difference"] = ctx.scores.difference(quality["before"], quality["after"])
            report["minibench"] = quality
        if with_baseline:
            report["baselines"] = {"distilled": {"minibench": quality["after"]},
                                   "the same student, undistilled": {"minibench": untrained}}  # fmt: skip
            report["baselines_note"] = f"{cfg.mode} mode, before its {cfg.train.steps} training steps"
        report["params_before"], report["params_after"] = before, self.snapshot(ir)
        report["text_path_params"] = {
            "before": before["t5"] + (0 if report["keeps_embedder"] else sum(p.numel() for p in embedder.parameters())),
            "after": ir["t5"].num_params(),
        }
        return PassResult(ir, True, report)

    def _velocity_calls(self, ir: PipelineIR, train_prompts: list[str], seed: int) -> Any:
        """The teacher's sampling calls on the first `velocity.prompts` captions, for the denoiser-output term
        (None when its weight is 0)."""
        from neocompress.distill.text_velocity import capture_training_calls

        cfg = self.config
        if cfg.loss.velocity == 0:
            return None
        captions = [i for i, p in enumerate(train_prompts) if p != cfg.negative_prompt][: cfg.velocity.prompts]
        return capture_training_calls(ir, train_prompts, captions, cfg.velocity.steps, seed, chunk=32)

    def _prompts(self, ctx: Any) -> tuple[list[str], list[str]]:
        """(training prompts, held-out prompts): the first `count` (default: all but the last `heldout`) and the
        `heldout` after them; the training prompts end with copies of the negative prompt. Why: a student that
        never saw it encodes it arbitrarily (relative error 0.71 on the miniature against 0.17 on captions), and
        CFG's unconditional velocity then steers every guided step. A missing or empty prompt file fails here,
        before anything is built or trained."""
        cfg = self.config
        if ctx.data is None or cfg.prompts not in ctx.data.names():
            raise UserInputError(f"{self.name}: data.prompts.{cfg.prompts} is not set (the prompts to distil on)")
        prompts = list(ctx.data.get(cfg.prompts))  # UserInputError for a missing or empty file, naming it
        count = cfg.count if cfg.count is not None else len(prompts) - cfg.heldout
        if count < 1 or len(prompts) < count + cfg.heldout:
            raise UserInputError(
                f"{self.name}: data.prompts.{cfg.prompts} has {len(prompts)} prompts; training on "
                f"{max(count, 1)} and holding out {cfg.heldout} needs {max(count, 1) + cfg.heldout}"
            )
        train = prompts[:count]
        if cfg.negative_prompt is not None:  # about once per batch: every guided step reads its embedding
            train += [cfg.negative_prompt] * max(1, round(count / cfg.train.batch_size))
        return train, prompts[count : count + cfg.heldout]

    def ensures(self, before: dict[str, Any], result: PassResult) -> None:
        ir = result.ir
        t5 = ir["t5"]
        if not any(p.pass_name == self.name and p.action == "replaced" for p in t5.provenance):
            raise VerificationError("encoder_substitution: T5 was not replaced")
        if t5.num_params() >= before["t5"]:
            raise VerificationError(
                f"encoder_substitution: the new text encoder ({t5.num_params():,} parameters) is not smaller than "
                f"T5 ({before['t5']:,})"
            )
        problems = ir.problems()
        if problems:
            raise VerificationError("encoder_substitution left the pipeline inconsistent:\n  " + "\n  ".join(problems))



def _probe_calls(ir: PipelineIR, prompts: list[str], steps: list[int], seed: int) -> Any:
    """The teacher pipeline's denoiser calls sampling the held-out prompts without CFG (so each call's batch is
    the prompts, in order), at `steps` per stage: what the student's embeddings are replayed on."""
    from neocompress.distill.text_velocity import teacher_sampler
    from neocompress.quant.denoiser_sim import capture_calls

    pipeline, schedule = teacher_sampler(ir, steps)
    return capture_calls(pipeline, prompts, samples=1, seed=seed + 7, schedule=schedule, batch=len(prompts))
