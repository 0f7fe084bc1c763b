"""Recovery after block pruning, in Neodragon's two stages (reference section 5), on the shared training engine.

Stage 1 fine-tunes the pruned student with the pyramidal flow-matching objective (history corrupted with noise,
as in training). Stage 2 distils from the unpruned teacher: feature matching at mapped block outputs (MSE on
visual tokens, cosine distance on real text tokens), plus flow matching against the teacher's output and
against the ground-truth flow. Stage 2 is meant to follow stage 1; either may be left out.

Training latents are the user's (a safetensors file) or the teacher's own samples on the calibration prompts;
the report says which. A few latents are held out: fidelity to the teacher (output cosine and relative error on
fixed flow-matching inputs built from them) is measured before and after each stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from neocompress.core.config_types import TeacherBlock
from neocompress.core.errors import UserInputError
from neocompress.core.pass_base import PassConfig
from neocompress.models.adapter import BlockAdapter
from neocompress.models.pyramid_flow.objective import CaptionCache, FlowMatchingBatch, Indices
from neocompress.train import TrainResult, plot_losses, train
from neocompress.train.stage import StageConfig, stage_train_config

HELDOUT_SEED = 1234  # the fidelity inputs are the same before and after every stage


class DistillStageConfig(StageConfig):
    mapping: Literal["simple", "kept"] | list[TeacherBlock] = Field(
        "simple",
        description="teacher block matched to each student block: simple = same index (Neodragon), kept = the "
        "block it was before pruning, or an explicit list of teacher indices",
    )
    visual_weight: float = Field(1.0, ge=0, description="MSE between mapped visual-token outputs")
    text_weight: float = Field(1.0, ge=0, description="cosine distance between mapped text-token outputs")
    teacher_weight: float = Field(1.0, ge=0, description="MSE between student and teacher velocity")
    flow_weight: float = Field(1.0, ge=0, description="MSE between student velocity and the ground-truth flow")


class RecoveryDataConfig(PassConfig):
    latents: str | None = Field(
        None,
        description="safetensors file with tensor 'latents' [N, C, units, h, w] (normalised, as the denoiser "
        "sees them) and metadata 'captions' (a JSON list of N strings); default: the teacher's own samples",
    )
    samples: int = Field(16, ge=2, description="teacher samples to generate when no latents are given")
    real: int = Field(
        0,
        ge=0,
        le=100_000,
        description="real clips of builtin:world (the procedural world the miniature learnt) encoded by the "
        "pipeline's frozen VAE encoder and trained on besides the teacher's samples: ground truth the teacher's "
        "errors are not baked into (the held-out latents stay teacher samples)",
    )
    heldout: int = Field(2, ge=1, description="latents kept out of training to measure fidelity on")
    caption_dropout: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="fraction of training captions replaced by the empty prompt, so the unconditional branch that "
        "classifier-free guidance needs keeps training (Pyramid-Flow trains with the same dropout)",
    )


class RecoveryConfig(PassConfig):
    data: RecoveryDataConfig = Field(default_factory=RecoveryDataConfig, description="what the stages train on")
    stage1: StageConfig | None = Field(
        default_factory=StageConfig, description="flow-matching fine-tuning of the pruned model (null: skip)"
    )
    stage2: DistillStageConfig | None = Field(
        default_factory=DistillStageConfig, description="distillation from the unpruned teacher (null: skip)"
    )
    evaluate: int | None = Field(
        None, ge=1, description="MiniBench prompts scored after pruning and after each stage (null: no scoring)"
    )


@dataclass
class LatentData:
    latents: Tensor  # [N, C, units, h, w], normalised
    captions: list[str]
    source: str  # "teacher samples" or the file

    def split(self, heldout: int) -> tuple[LatentData, LatentData]:
        if len(self.captions) <= heldout:
            raise UserInputError(
                f"recovery needs more than {heldout} latents ({heldout} are held out), got {len(self.captions)}"
            )
        n = len(self.captions) - heldout
        return (
            LatentData(self.latents[:n], self.captions[:n], self.source),
            LatentData(self.latents[n:], self.captions[n:], self.source),
        )


def load_latent_file(path: str, dims: int = 5) -> LatentData:
    """A user's latents: tensor 'latents' and metadata 'captions' in one safetensors file; checked up front."""
    from safetensors import safe_open

    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"recovery.data.latents: file '{path}' not found")
    try:
        with safe_open(str(file), "pt") as f:
            meta = f.metadata() or {}
            if "latents" not in f.keys():  # noqa: SIM118
                raise UserInputError(f"recovery.data.latents: '{path}' has no tensor named 'latents'")
            latents = f.get_tensor("latents").float()
    except UserInputError:
        raise
    except Exception as e:
        raise UserInputError(f"recovery.data.latents: '{path}' is not a readable safetensors file ({e})") from None
    try:
        captions = json.loads(meta["captions"])
    except (KeyError, ValueError):
        raise UserInputError(f"recovery.data.latents: '{path}' needs metadata 'captions', a JSON list") from None
    if latents.dim() != dims or not isinstance(captions, list) or len(captions) != latents.shape[0]:
        layout = "[N, C, units, h, w]" if dims == 5 else "[N, C, h, w]"
        raise UserInputError(
            f"recovery.data.latents: '{path}' holds latents {tuple(latents.shape)} and {len(captions)} captions; "
            f"expected {layout} and N captions"
        )
    return LatentData(latents, [str(c) for c in captions], str(file))


def teacher_latents(pipeline: Any, prompts: Sequence[str], count: int, *, seed: int, schedule: Any,
                    progress: Callable | None = None,
                    after_chunk: Callable[[int], None] | None = None) -> LatentData:  # fmt: skip
    """`count` samples of the teacher (prompts cycled, chunks of 4 with seed + i), in its own latent space.
    `progress` goes to the sampler; `after_chunk(n)` is called after each chunk of n samples (what watches the
    sampler's calls, as DMD's paired data does, collects per chunk there)."""
    captions = [prompts[i % len(prompts)] for i in range(count)]
    chunks = []
    for i in range(0, count, 4):
        batch = captions[i : i + 4]
        chunks.append(pipeline.sample_latents(batch, seed=seed + i, schedule=schedule, progress=progress))
        if after_chunk is not None:
            after_chunk(len(batch))
    return LatentData(torch.cat(chunks).float(), captions, "teacher samples")


def world_latents(pipeline: Any, count: int, *, seed: int) -> LatentData:
    """`count` real world clips at the pipeline's video size through its frozen VAE encoder, with captions."""
    from neocompress.world import World, WorldConfig, to_tensor

    video = pipeline.resolve_video(None, None, None)
    if video["height"] != video["width"]:
        raise UserInputError(f"recovery.data.real: the world renders square clips; this pipeline makes "
                             f"{video['height']}x{video['width']}")  # fmt: skip
    world = World(WorldConfig(size=video["height"], frames=video["frames"], seed=seed))
    samples = [world.sample(i, "train") for i in range(count)]
    chunks = [pipeline.encode(torch.stack([to_tensor(s.video) for s in samples[i : i + 8]]))
              for i in range(0, count, 8)]  # fmt: skip
    return LatentData(torch.cat(chunks).float(), [s.caption for s in samples], f"builtin:world ({count} real clips)")


def joined(first: LatentData, second: LatentData) -> LatentData:
    """Both sets, `first` before `second` (so `split` holds out the end of `second`)."""
    return LatentData(torch.cat([first.latents, second.latents]), first.captions + second.captions,
                      f"{first.source} + {second.source}")  # fmt: skip


def draw_batch(
    objective: Any,
    data: LatentData,
    cache: CaptionCache,
    idx: list[int],
    generator: torch.Generator | None = None,
    caption_dropout: float = 0.0,
) -> FlowMatchingBatch:
    """A flow-matching batch of the model's objective (for Pyramid-Flow: at a random unit and stage) for the
    latents `idx`, each caption replaced by the empty prompt with probability `caption_dropout`."""
    latents = data.latents[idx]
    pick = objective.pick(latents, generator)
    captions = [data.captions[i] for i in idx]
    if caption_dropout > 0:
        drop = torch.rand(len(idx), generator=generator) < caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]
    return objective.batch(latents, cache.get(captions), pick, generator)


def heldout_batches(objective: Any, data: LatentData, cache: CaptionCache, repeats: int = 6) -> list[FlowMatchingBatch]:
    """Fixed inputs for fidelity: every held-out latent, at `repeats` seeded (unit, stage, sigma) draws."""
    gen = torch.Generator().manual_seed(HELDOUT_SEED)
    every = list(range(len(data.captions)))
    return [draw_batch(objective, data, cache, every, gen) for _ in range(repeats)]


@torch.no_grad()
def fidelity(student: nn.Module, teacher: nn.Module, batches: Sequence[FlowMatchingBatch]) -> dict[str, float]:
    """Output cosine (mean over tokens) and relative error ||s - t|| / ||t|| of the student against the teacher."""
    cos, err_sq, ref_sq = [], 0.0, 0.0
    for batch in batches:
        s, t = batch.call(student).float(), batch.call(teacher).float()
        cos.append(F.cosine_similarity(s.flatten(2), t.flatten(2), dim=1).mean())
        err_sq += float((s - t).pow(2).sum())
        ref_sq += float(t.pow(2).sum())
    return {"output_cosine": float(torch.stack(cos).mean()), "relative_error": (err_sq / max(ref_sq, 1e-30)) ** 0.5}


def block_mapping(mapping: str | list[int], kept: Sequence[int], teacher_blocks: int) -> list[int]:
    """Teacher block index for each student block."""
    student_blocks = len(kept)
    if mapping == "simple":
        return list(range(student_blocks))
    if mapping == "kept":
        return list(kept)
    out = list(mapping)
    if len(out) != student_blocks:
        raise UserInputError(
            f"recovery.stage2.mapping lists {len(out)} teacher blocks for {student_blocks} student blocks"
        )
    bad = [m for m in out if not 0 <= m < teacher_blocks]
    if bad:
        raise UserInputError(f"recovery.stage2.mapping: teacher blocks {bad} out of range 0..{teacher_blocks - 1}")
    return out


class BlockOutputs:
    """Forward hooks that keep each block's stream outputs of the current call (with their autograd graph)."""

    def __init__(self, blocks: Sequence[nn.Module], adapter: BlockAdapter):
        self.adapter = adapter
        self.outputs: list[dict[str, Any] | None] = [None] * len(blocks)
        self.handles = [b.register_forward_hook(self._hook(i), with_kwargs=True) for i, b in enumerate(blocks)]

    def _hook(self, index: int) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            self.outputs[index] = self.adapter.stream_io(args, kwargs, output)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def feature_losses(student: BlockOutputs, teacher: BlockOutputs, mapping: Sequence[int]) -> tuple[Tensor, Tensor]:
    """(visual MSE, text cosine distance) averaged over mapped block pairs; text pairs where either block has
    no text output (context_pre_only) are skipped."""
    visual, text = [], []
    for k, m in enumerate(mapping):
        s, t = student.outputs[k], teacher.outputs[m]
        assert s is not None and t is not None, "a block did not run"
        visual.append(F.mse_loss(s["visual"][1], t["visual"][1].detach()))
        if s.get("text") is not None and t.get("text") is not None:
            _, s_out, weight = s["text"]
            distance = 1 - F.cosine_similarity(s_out, t["text"][1].detach(), dim=-1, eps=1e-8)
            w = torch.ones_like(distance) if weight is None else weight
            text.append((distance * w).sum() / w.sum().clamp_min(1))
    zero = visual[0].new_zeros(())
    return torch.stack(visual).mean(), (torch.stack(text).mean() if text else zero)


def run_stage1(
    student: nn.Module,
    objective: Any,
    data: LatentData,
    cache: CaptionCache,
    stage: StageConfig,
    work: Path,
    seed: int,
    progress: bool = False,
    caption_dropout: float = 0.0,
) -> TrainResult:
    """Flow-matching fine-tuning of the student on `data`."""

    def loss_fn(batch: Tensor, step: int):
        fm = draw_batch(objective, data, cache, batch.tolist(), caption_dropout=caption_dropout)
        return F.mse_loss(fm.call(modules["student"]), fm.target), {}

    modules = {"student": student}
    return train(
        stage_train_config(stage, seed), modules, loss_fn, Indices(len(data.captions)), work, progress=progress
    )


def distill_loss(
    student: nn.Module,
    teacher: nn.Module,
    hooks: tuple[BlockOutputs, BlockOutputs],
    mapping: Sequence[int],
    stage: DistillStageConfig,
    fm: FlowMatchingBatch,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Stage 2's objective on one batch: feature matching at mapped blocks + teacher and ground-truth flow."""
    with torch.no_grad():
        v_teacher = fm.call(teacher)
    v_student = fm.call(student)
    visual, text = feature_losses(hooks[0], hooks[1], mapping)
    to_teacher = F.mse_loss(v_student, v_teacher)
    to_flow = F.mse_loss(v_student, fm.target)
    loss = (
        stage.visual_weight * visual
        + stage.text_weight * text
        + stage.teacher_weight * to_teacher
        + stage.flow_weight * to_flow
    )
    parts = {"visual_features": visual, "text_features": text, "teacher_flow": to_teacher, "true_flow": to_flow}
    return loss, {k: v.detach() for k, v in parts.items()}


class DistillHooks:
    """Student and teacher block-output hooks for the duration of a `with` block."""

    def __init__(self, student: nn.Module, teacher: nn.Module, adapter: BlockAdapter):
        self.student, self.teacher, self.adapter = student, teacher, adapter

    def __enter__(self) -> tuple[BlockOutputs, BlockOutputs]:
        self.hooks = (
            BlockOutputs(self.adapter.blocks(self.student), self.adapter),
            BlockOutputs(self.adapter.blocks(self.teacher), self.adapter),
        )
        return self.hooks

    def __exit__(self, *exc: object) -> None:
        for h in self.hooks:
            h.remove()


@torch.no_grad()
def stage1_objective(student: nn.Module, batches: Sequence[FlowMatchingBatch]) -> float:
    """Stage 1's loss on fixed batches: a noise-free before/after measurement (per-step losses are dominated by
    which (unit, stage, sigma) each step drew)."""
    return float(torch.stack([F.mse_loss(b.call(student), b.target) for b in batches]).mean())


@torch.no_grad()
def stage2_objective(
    student: nn.Module,
    teacher: nn.Module,
    adapter: BlockAdapter,
    mapping: Sequence[int],
    stage: DistillStageConfig,
    batches: Sequence[FlowMatchingBatch],
) -> float:
    with DistillHooks(student, teacher, adapter) as hooks:
        losses = [distill_loss(student, teacher, hooks, mapping, stage, b)[0] for b in batches]
    return float(torch.stack(losses).mean())


def run_stage2(
    student: nn.Module,
    teacher: nn.Module,
    adapter: BlockAdapter,
    mapping: Sequence[int],
    objective: Any,
    data: LatentData,
    cache: CaptionCache,
    stage: DistillStageConfig,
    work: Path,
    seed: int,
    progress: bool = False,
    caption_dropout: float = 0.0,
) -> TrainResult:
    """Distillation from the frozen teacher: feature matching plus teacher and ground-truth flow matching."""
    teacher.eval().requires_grad_(False)
    with DistillHooks(student, teacher, adapter) as hooks:

        def loss_fn(batch: Tensor, step: int):
            fm = draw_batch(objective, data, cache, batch.tolist(), caption_dropout=caption_dropout)
            return distill_loss(modules["student"], teacher, hooks, mapping, stage, fm)

        modules = {"student": student}
        config = stage_train_config(stage, seed)
        return train(config, modules, loss_fn, Indices(len(data.captions)), work, progress=progress)


def stage_record(
    result: TrainResult,
    before: dict[str, float],
    after: dict[str, float],
    objective: tuple[float, float],
    curve: Path,
) -> dict[str, Any]:
    plot_losses(result.history, curve, title=curve.stem.replace("-", " "))
    return {
        "train": result.summary(),
        "objective_before": objective[0],
        "objective_after": objective[1],
        "fidelity_before": before,
        "fidelity_after": after,
        "history": [{k: round(float(v), 6) for k, v in r.items()} for r in result.history],
        "curve": str(curve),
    }
