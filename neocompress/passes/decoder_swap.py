"""`decoder_swap`: the causal VAE decoder -> a TAEHV-style decoder, with the encoder frozen.

Neodragon's second technique (reference section 4): an asymmetric VAE whose encoder (and so the denoiser's latent
space) is untouched and whose decoder is a ~10M-parameter causal 2-D conv net with one frame of memory per block.
The new decoder comes from a registered replacement (`taehv`), is put in place by the substitution mechanism
(wrong latent channels or output range are refused before training), and trains on one of:

- `videos: <folder>`: mp4 / gif / PNG-sequence clips, every file opened first (a bad one fails before training),
  encoded by the frozen encoder; the target is the clip itself (reconstruction);
- `videos: builtin:world`: renders of the procedural world the miniature was trained on, the same way;
- no videos: latents of the teacher pipeline's own samples on a prompt set, the target being the native
  decoder's output (distillation);
- videos and `samples: N`: both, the clips and N teacher samples; the held-out rows stay clips.

Why the teacher's samples: they are what the pipeline hands the decoder, and they lie off the clips' manifold. On
the miniature a TAEHV pretrained 6000 steps on 512 renders kept 0.876 MiniBench on real clips' latents (native
0.932) but 0.667 on the model's own samples (native 0.732): it turned a yellow cross orange and shrank it over the
clip where the native decoder does not. 300 steps on 128 teacher samples alone: 0.679 on samples and 0.866 on
clips; 300 steps on clips alone: 0.659 / 0.887 (64 prompts, `runs/issue16-miniature/taehv_probe.py`): within the
probe's noise. What closed most of the gap was pretraining longer on more renders (12000 steps on 2048: 0.927 /
0.706), not the fine-tune's data.

The loss is MSE (no perceptual loss is available offline here; the report says so). The report gives parameters
before/after, the loss curve, PSNR on held-out clips against ground truth and against the native decoder (before
and after training, and the native decoder's own PSNR against ground truth), a frame grid PNG (ground truth /
native / new, side by side), and optionally MiniBench before and after.

The TAEHV reads its latents through a soft clamp, c tanh(x / c), at c = 3 in the public code. A latent space
with heavier tails loses what lies past it: the report's `latent_range` says how much of the training latents
does (and the pass warns past 0.1 %), and `latent_clamp` widens it for a decoder trained here. On the miniature,
2.5 % of the normalised latents lie past 3 and reach 8; the native decoder fed them through the clamp at 3 falls
from 0.941 to 0.703 MiniBench on real clips' latents, at 12 it keeps 0.941. A TAEHV trained through the clamp at
3 learns to undo most of it (retrained at 12, the miniature's measured about the same: 0.843 against 0.851), so
the trap is sharpest for a decoder whose training never saw such latents.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, model_validator

from neocompress.analysis.quality import minibench_of
from neocompress.core.config_types import Channels, SamplingSteps
from neocompress.core.errors import Problem, UserInputError, VerificationError
from neocompress.core.pass_base import Pass, PassConfig, PassResult
from neocompress.core.registry import register_pass
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.train.stage import StageConfig

WORLD = "builtin:world"


class DecoderSwapConfig(PassConfig):
    replacement: str = Field("taehv", description="the registered replacement component for the VAE decoder")
    widths: list[Channels] = Field(
        default_factory=lambda: [256, 128, 64, 64], min_length=4, max_length=4,
        description="channel widths of the TAEHV stages (Neodragon: 256, 128, 64, 64)",
    )  # fmt: skip
    time_upscale: list[bool] = Field(
        default_factory=lambda: [True, True, True], min_length=3, max_length=3,
        description="2x temporal upscale per stage (all three: 8x, Pyramid-Flow's latent; 7 warm-up frames trimmed)",
    )  # fmt: skip
    checkpoint: str | None = Field(
        None, description="start from a trained TAEHV folder (config.json + model.safetensors) or builtin:tiny-taehv; "
        "its config sets the widths",
    )
    blocks_per_stage: int = Field(
        3, ge=1, le=16, description="MemBlocks per stage (TAEHV and Neodragon: 3; fewer train faster on a tiny model)"
    )
    latent_clamp: float | None = Field(
        None, gt=0, le=1000, description="the soft clamp limit x -> c tanh(x / c) on the latents it reads (default: "
        "3 as in the public TAEHV, or the checkpoint's); widen it when the latents' tails reach past it",
    )
    latent_channels: int | None = Field(None, ge=1, le=4096,
                                        description="latent channels it reads (default: the VAE's)")  # fmt: skip
    videos: str | None = Field(
        None, description="training clips: a folder (mp4, gif, PNG-frame folders), builtin:world, or null to "
        "distil from the native decoder on the teacher's own samples"
    )  # fmt: skip
    count: int = Field(64, ge=2, description="clips to train on (the folder's first, world renders or samples)")
    heldout: int = Field(4, ge=1, description="clips kept out of training for PSNR and the frame grid")
    prompts: str = Field("calibration", description="prompt set the teacher samples when no videos are given")
    first: list[SamplingSteps] | None = Field(None, min_length=1,
                                              description="teacher sampling steps per stage, first frame")  # fmt: skip
    later: list[SamplingSteps] | None = Field(None, min_length=1,
                                              description="teacher sampling steps per stage, later frames")  # fmt: skip
    train: StageConfig = Field(default_factory=StageConfig, description="the training run")
    crop: int | None = Field(
        None, ge=2, description="train on random latent windows of this side (the video's 8x window): cheaper steps"
    )
    crop_margin: int = Field(
        2, ge=0, description="latent pixels of real context decoded around each window (scored inside only)"
    )
    samples: int = Field(
        0, ge=0, le=1_000_000,
        description="with videos: also this many of the teacher's own samples of data.prompts.<prompts>, the native "
        "decoder's decode as their target (the latents the pipeline will hand the decoder, off the clips' manifold)",
    )  # fmt: skip
    grid_clips: int = Field(2, ge=1, description="held-out clips shown in the frame grid")
    minibench: int = Field(0, ge=0, description="MiniBench prompts scored before and after (0: off)")
    baselines: bool = Field(
        True, description="with minibench, also score the starting decoder untouched (what tuning buys; one more run)"
    )

    @model_validator(mode="after")
    def _fits(self) -> DecoderSwapConfig:
        if self.samples and self.videos is None:
            raise ValueError("samples adds teacher samples beside the clips of `videos`; without videos, `count` "
                             "already sets how many teacher samples the decoder trains on")  # fmt: skip
        if self.heldout >= self.count:
            raise ValueError(f"heldout ({self.heldout}) must leave clips to train on (count {self.count})")
        if any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive, got {self.widths}")
        return self


@register_pass
class DecoderSwap(Pass):
    name = "decoder_swap"
    version = 3  # 2: crop windows decoded with context (crop_margin); blocks_per_stage. 3: latent_clamp
    Config = DecoderSwapConfig
    summary = "Replace the causal VAE decoder by a TAEHV-style decoder trained against the frozen encoder."
    requires = ("vae_encoder", "vae_decoder")

    config: DecoderSwapConfig

    def check(self, ir: PipelineIR) -> list[Problem]:
        from neocompress.passes.substitution_checks import minibench_problems, replacement_problems

        problems = super().check(ir) or replacement_problems(self.name, ir, self.config.replacement, "vae_decoder",
                                                             "replacement")  # fmt: skip
        if problems:
            return problems
        if "quantization" in ir["vae_decoder"].extras:
            problems.append(Problem("the VAE decoder is already quantized: swap it before quantize", path="name"))
        if any(p.pass_name == self.name for p in ir["vae_decoder"].provenance):
            problems.append(Problem("the VAE decoder was already swapped", path="name"))
        s = ir.meta["spec"]
        if self.config.videos == WORLD and s.video.height != s.video.width:
            problems.append(Problem(f"builtin:world renders square clips; this model's video is "
                                    f"{s.video.height}x{s.video.width}", path="videos"))  # fmt: skip
        if self.config.checkpoint is not None:
            from neocompress.models.taehv_decoder import taehv_folder

            try:
                folder = taehv_folder(self.config.checkpoint)
            except ValueError as e:
                problems.append(Problem(str(e), path="checkpoint"))
            else:
                if not (folder / "config.json").is_file():
                    problems.append(Problem(f"'{folder}' is not a TAEHV folder (no config.json)", path="checkpoint"))
            if self.config.latent_clamp is not None:
                problems.append(Problem("latent_clamp is the checkpoint's (its config.json); a pretrained decoder "
                                        "read through another clamp is another function", path="latent_clamp"))
        return problems + minibench_problems(ir, self.config.minibench)

    def data_needs(self) -> dict[str, str]:
        return {} if self.config.videos is not None else {"prompts": self.config.prompts}

    def input_paths(self) -> dict[str, str | None]:
        return {"checkpoint": self.config.checkpoint, "videos": self.config.videos}

    def input_folder(self, where: str, value: str) -> Path | None:
        """`builtin:tiny-taehv` is the shipped asset's folder (rebuilt by tools/build_tiny_taehv.py)."""
        from neocompress.models.taehv_decoder import BUILTIN_TINY_TAEHV, taehv_folder

        return taehv_folder(value) if value == BUILTIN_TINY_TAEHV else super().input_folder(where, value)

    def snapshot(self, ir: PipelineIR) -> dict[str, Any]:
        return {"vae_decoder": ir["vae_decoder"].num_params(), "vae_encoder": ir["vae_encoder"].num_params()}

    def _new(self, ir: PipelineIR) -> Any:
        from neocompress.ir.substitution import get_replacement

        cfg = self.config
        return get_replacement(cfg.replacement).build(ir, {"widths": cfg.widths, "time_upscale": cfg.time_upscale,
                                                           "blocks_per_stage": cfg.blocks_per_stage,
                                                           "checkpoint": cfg.checkpoint,
                                                           "latent_clamp": cfg.latent_clamp,
                                                           "latent_channels": cfg.latent_channels})  # fmt: skip

    def _swap(self, ir: PipelineIR) -> Any:
        from neocompress.ir.substitution import substitute

        new = self._new(ir)
        sub = substitute(ir, "vae_decoder", new, by_pass=self.name,
                         detail=f"causal VAE decoder -> {new.class_name} (widths {self.config.widths})")  # fmt: skip
        ir.meta["spec"] = replace(ir.meta["spec"], decoder=new.module.checkpoint_config())
        return sub

    def plan(self, ir: PipelineIR, ctx: Any) -> PassResult:
        before = self.snapshot(ir)
        with torch.device("meta"):
            self._swap(ir).release()
        return PassResult(ir, True, {"params_before": before, "params_after": self.snapshot(ir),
                                     "planned": "structure only: no weights"})  # fmt: skip

    def run(self, ir: PipelineIR, ctx: Any) -> PassResult:
        from neocompress.distill.decoder_run import (
            PERCEPTUAL_NOTE,
            SQUASHED_SHARE,
            frame_grid,
            heldout_psnr,
            latent_range,
            loss_curve,
            native_decode,
            psnr,
            run_key,
            train_decoder,
        )

        problems = self.check(ir)
        if problems:
            raise VerificationError("; ".join(p.message for p in problems))
        cfg = self.config
        from neocompress.ir.substitution import substitution_problems

        wrong = substitution_problems(ir, "vae_decoder", self._new(ir))  # before any clip is read or sampled
        if wrong:
            listed = "\n  ".join(wrong)
            raise VerificationError(f"{self.name}: the new decoder cannot replace 'vae_decoder':\n  {listed}")
        before = self.snapshot(ir)
        clips = self._clip_files(ir)  # a bad video folder fails here, before anything is sampled or trained
        quality: dict[str, Any] = {}
        if cfg.minibench:
            quality["before"] = minibench_of(ir, cfg.minibench, ctx.seed, cache=ctx.scores)
        norm = ir["vae_decoder"].extras["latent_norm"]
        data = self._data(ir, ctx, clips, norm)
        sub = self._swap(ir)  # refused here, before any training, if the new decoder breaks the interface
        teacher, student = sub.teacher.module.eval(), sub.student.module
        train_data, held = data.split(cfg.heldout)
        reach = latent_range(train_data.latents, float(sub.student.config["latent_clamp"]))
        if reach["share_past_clamp"] > SQUASHED_SHARE:
            warnings.warn(f"{self.name}: {reach['share_past_clamp']:.1%} of the training latents lie past the "
                          f"decoder's soft clamp {reach['clamp']:g} (they reach {reach['max_abs']:g}) and are squashed "
                          "together; set latent_clamp above their reach (a fresh decoder) or expect lost detail",
                          stacklevel=2)  # fmt: skip
        native = native_decode(teacher, held.latents, norm)
        psnr_before = heldout_psnr(student, held, native, norm)
        # The naive baseline: the pretrained decoder dropped in untouched (what fine-tuning it buys).
        with_baseline = bool(cfg.minibench and cfg.baselines)
        untouched = minibench_of(ir, cfg.minibench, ctx.seed, cache=ctx.scores) if with_baseline else None
        out_dir = ctx.pass_dir(self.name)
        work = out_dir / f"train-{run_key(cfg.model_dump(mode='json'), data, ctx.seed)}"
        result = train_decoder(student, train_data, cfg.train, work, ctx.seed, norm, cfg.crop, cfg.crop_margin)
        student.eval().requires_grad_(False)
        psnr_after = heldout_psnr(student, held, native, norm)
        shown = min(cfg.grid_clips, held.latents.shape[0])
        new_video = native_decode(student, held.latents[:shown], norm)
        rows = []
        for i in range(shown):
            if held.truth is not None:
                rows.append((f"clip {i}: ground truth", held.truth[i]))
            rows += [(f"clip {i}: native VAE", native[i]), (f"clip {i}: {sub.student.class_name}", new_video[i])]
        grid = frame_grid(rows, out_dir / "frames.png", f"decoder_swap: held-out clips ({data.source})")
        curve = loss_curve(result.history, out_dir / "loss.png")
        sub.release()
        report: dict[str, Any] = {
            "replacement": cfg.replacement,
            "initialised_from": cfg.checkpoint or "random",
            "decoder_config": sub.student.config,
            "data": {"source": data.source, "train_clips": int(train_data.latents.shape[0]),
                     "heldout_clips": int(held.latents.shape[0]), "latent_shape": list(data.latents.shape[1:]),
                     "target": "ground truth" if data.truth is not None else "native decoder",
                     "teacher_samples": cfg.samples if cfg.videos is not None else cfg.count},  # fmt: skip
            "params_before": before,
            "params_after": self.snapshot(ir),
            "latent_range": reach,
            "loss": "mse",
            "perceptual": PERCEPTUAL_NOTE,
            "train": result.summary(),
            "psnr_db": {"before": psnr_before, "after": psnr_after,
                        "native_vs_truth_db": psnr(native, held.truth) if held.truth is not None else None},
            "history": [{k: round(float(v), 6) for k, v in r.items()} for r in result.history],
            "figures": {"frames": str(grid), "loss": str(curve)},
            "notes": list(result.notes),
        }  # fmt: skip
        if cfg.minibench:
            quality["after"] = minibench_of(ir, cfg.minibench, ctx.seed, cache=ctx.scores)
            quality["difference"] = ctx.scores.difference(quality["before"], quality["after"])
            report["minibench"] = quality
        if with_baseline:
            start = "pretrained, untouched" if cfg.checkpoint else "random init, untrained"
            report["baselines"] = {"fine-tuned": {"minibench": quality["after"]}, start: {"minibench": untouched}}
            report["baselines_note"] = f"the same decoder before its {cfg.train.steps} training steps"
        return PassResult(ir, True, report)

    def _clip_files(self, ir: PipelineIR) -> list[Any] | None:
        from neocompress.data.videos import scan_videos

        cfg = self.config
        if cfg.videos is None or cfg.videos == WORLD:
            return None
        files = scan_videos(cfg.videos, ir.meta["spec"].video.frames)
        if len(files) < cfg.heldout + 1:
            raise UserInputError(f"{self.name}: video folder '{cfg.videos}' has {len(files)} clip(s); holding out "
                                 f"{cfg.heldout} needs at least {cfg.heldout + 1}")  # fmt: skip
        return files[: cfg.count]

    def _data(self, ir: PipelineIR, ctx: Any, files: list[Any] | None, norm: Any) -> Any:
        from neocompress.data.videos import load_clip, world_clips
        from neocompress.distill.decoder_run import DecoderData, encode_clips

        cfg = self.config
        v = ir.meta["spec"].video
        encoder = ir["vae_encoder"].module
        if cfg.videos is not None:
            if files is None:
                clips = world_clips(cfg.count, v.frames, v.height, seed=ctx.seed)
                source = f"{WORLD} ({cfg.count} renders)"
            else:
                clips = [load_clip(f, v.frames, v.height, v.width) for f in files]
                source = f"{cfg.videos} ({len(clips)} clips)"
            truth = torch.stack(clips)
            real = DecoderData(encode_clips(encoder, clips, norm), truth, truth, source)
            return real if not cfg.samples else self._samples(ir, ctx, cfg.samples, norm).before(real)
        return self._samples(ir, ctx, cfg.count, norm)

    def _samples(self, ir: PipelineIR, ctx: Any, count: int, norm: Any) -> Any:
        """`count` teacher samples of data.prompts.<prompts> (prompts cycled), the native decoder's decode as target."""
        from neocompress.distill.decoder_run import DecoderData, native_decode
        from neocompress.models.family import get_family

        cfg = self.config
        if ctx.data is None or cfg.prompts not in ctx.data.names():
            raise UserInputError(f"{self.name}: the teacher samples data.prompts.{cfg.prompts} to distil on, and it is "
                                 "not set")  # fmt: skip
        prompts = list(ctx.data.get(cfg.prompts))
        jobs = [prompts[i % len(prompts)] for i in range(count)]
        pipeline = get_family(ir.family).pipeline(ir, simulated=False)
        schedule = pipeline.schedule_with(first=tuple(cfg.first) if cfg.first else None,
                                          later=tuple(cfg.later) if cfg.later else None)  # fmt: skip
        latents = torch.cat([pipeline.sample_latents(jobs[i : i + 8], seed=ctx.seed + i, schedule=schedule)
                             for i in range(0, len(jobs), 8)])  # fmt: skip
        return DecoderData(latents, native_decode(ir["vae_decoder"].module, latents, norm), None,
                           f"teacher samples of data.prompts.{cfg.prompts} ({count})")  # fmt: skip

    def ensures(self, before: dict[str, Any], result: PassResult) -> None:
        ir = result.ir
        dec = ir["vae_decoder"]
        if not any(p.pass_name == self.name and p.action == "replaced" for p in dec.provenance):
            raise VerificationError("decoder_swap: the VAE decoder was not replaced")
        if ir["vae_encoder"].num_params() != before["vae_encoder"]:
            raise VerificationError("decoder_swap: the frozen encoder changed")
        problems = ir.problems()
        if problems:
            raise VerificationError("decoder_swap left the pipeline inconsistent:\n  " + "\n  ".join(problems))
