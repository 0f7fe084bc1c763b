"""The training run of `encoder_substitution`: teacher targets cached, the student path trained on the shared
engine, and the held-out measures before and after (embeddings, and the denoiser's velocity fed with them).

Why measure through the denoiser too: a cosine of 0.99 on embeddings says little about what the DiT does with
the 1% it misses. The held-out prompts are sampled by the teacher pipeline (no CFG, a few steps per stage) and
each denoiser call is replayed with the student's text tokens in place of T5's: the velocity's relative error
and cosine against the teacher's, per pyramid stage, are what the substitution costs the denoiser.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import torch
from torch import Tensor, nn

from neocompress.core.hashing import hash_json
from neocompress.distill.text_loss import distill_loss, embedding_agreement
from neocompress.distill.text_student import LORA_TARGETS, StudentPath, add_lora, trainable_parameters
from neocompress.distill.text_targets import TextTargets, t5_tokens
from neocompress.distill.text_velocity import FrozenDenoiser, VelocityCalls, velocity_term
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.models.pyramid_flow.objective import Indices
from neocompress.train import plot_losses, train
from neocompress.train.stage import stage_train_config

NAN = float("nan")
FIXED = 16  # training prompts the objective is measured on before and after (same prompts, same targets)


def distil_text(cfg: Any, ir: PipelineIR, sub: Any, new: Any, embedder: nn.Module, train_prompts: list[str],
                heldout: list[str], probe: Any, ctx: Any,
                calls: VelocityCalls | None = None) -> dict[str, Any]:  # fmt: skip
    student = new.module
    tokenizer = new.extras["tokenizer"]
    length = int(new.outputs["tokens"].shape[1])
    keeps_embedder = hasattr(ir["denoiser"].module, "context_embedder")
    prompts = train_prompts + heldout
    folder = (ctx.cache.root if ctx.cache is not None else ctx.pass_dir("encoder_substitution")) / "teacher-text"
    targets = TextTargets(sub.teacher.module, embedder, tokenizer, length, prompts, folder, chunk=cfg.teacher_batch,
                          dtype=cfg.cache_dtype)  # fmt: skip
    cache = {"precompute": targets.precompute(_progress("teacher targets"))}
    targets.release_teacher()  # T5 is not needed again: every target is on disk
    ids, mask = t5_tokens(tokenizer, prompts, length)
    n = len(train_prompts)
    held = list(range(n, len(prompts)))

    peft_model = None
    if cfg.mode == "lora":
        lora = cfg.lora
        peft_model = add_lora(student, lora.r, lora.alpha, lora.dropout, lora.target_modules or LORA_TARGETS)
    params = trainable_parameters(cfg.mode, student)
    path = StudentPath(student, embedder if keeps_embedder else None)
    w_mse, w_cos = cfg.loss.mse, cfg.loss.cos
    fixed = list(range(min(FIXED, n)))
    objective_before = _objective(path, targets, ids, mask, fixed, w_mse, w_cos)
    held_before = path_agreement(path, targets, ids, mask, held)
    negative = [prompts.index(cfg.negative_prompt)] if cfg.negative_prompt in train_prompts else []
    negative_before = path_agreement(path, targets, ids, mask, negative) if negative else None
    velocity_before = _velocity_difference(ir, student, ids[held], mask[held], probe)
    per_epoch_batch = cfg.train.batch_size * cfg.train.grad_accum

    den = ir["denoiser"].module

    def loss_fn(batch: Tensor, step: int):
        idx = batch.tolist()
        targets.epoch = (step * per_epoch_batch) // n
        target, m = targets.rows(idx)
        pred = path(ids[idx], mask[idx])
        loss, parts = distill_loss(pred, target, m, w_mse, w_cos)
        if calls is not None:  # the denoiser-output term, every `every`-th step
            parts["velocity"] = NAN
            if step % cfg.velocity.every == 0:
                g = torch.Generator().manual_seed(ctx.seed * 1_000_003 + step)
                term = velocity_term(den, path.student, ids, mask, calls, cfg.velocity.rows, g)
                loss = loss + cfg.loss.velocity * term
                parts["velocity"] = term.detach()
        return loss, parts

    key = hash_json({"config": cfg.model_dump(mode="json"), "teacher": targets.cache.teacher_key,
                     "prompts": prompts, "seed": ctx.seed})[:16]  # fmt: skip
    work = ctx.pass_dir("encoder_substitution") / f"train-{key}"
    with FrozenDenoiser(den) if calls is not None else contextlib.nullcontext():
        result = train(stage_train_config(cfg.train, ctx.seed), {"path": path}, loss_fn, Indices(n), work,
                       trainable=params, progress=sys.stderr.isatty())  # fmt: skip
    path.eval()
    if peft_model is not None:  # fold LoRA into DistilT5's weights: the output holds a plain DistilT5
        new.module = student = peft_model.merge_and_unload().eval()
        path = StudentPath(student, embedder if keeps_embedder else None)
    student.requires_grad_(False)
    curve = ctx.pass_dir("encoder_substitution") / "loss.png"
    plot_losses(result.history, curve, title=f"encoder_substitution ({cfg.mode}): distillation loss")
    cache["per_epoch"] = [{"epoch": e, **s} for e, s in sorted(targets.per_epoch.items())]
    notes = list(result.notes)
    if cfg.mode == "replace" and cfg.student.checkpoint is None:
        notes.append("mode replace trains the ContextAdapter only, and no student.checkpoint was given: DistilT5 "
                     "is its seeded initialisation, frozen. Give a DistilT5 trained on text, or use mode trainable")
    return {
        "mode": cfg.mode,
        "replacement": cfg.student.replacement,
        "keeps_embedder": keeps_embedder,
        "prompts": {"train": n, "heldout": len(held)},
        "trainable_params": sum(p.numel() for p in params),
        "teacher_cache": cache,
        "train": result.summary(),
        "objective": {"before": objective_before, "after": _objective(path, targets, ids, mask, fixed, w_mse, w_cos),
                      "prompts": len(fixed)},  # fmt: skip
        "heldout_embeddings": {"before": held_before, "after": path_agreement(path, targets, ids, mask, held)},
        "negative_prompt": None if not negative else {
            "prompt": cfg.negative_prompt, "copies": prompts[:n].count(cfg.negative_prompt),
            "before": negative_before, "after": path_agreement(path, targets, ids, mask, negative)},  # fmt: skip
        "denoiser_velocity": {"before": velocity_before,
                              "after": _velocity_difference(ir, student, ids[held], mask[held], probe)},  # fmt: skip
        "velocity_term": None if calls is None else {
            "weight": cfg.loss.velocity, "prompts": len({i for rows, _ in calls.records for i in rows}),
            "calls": len(calls), "rows_per_step": cfg.velocity.rows, "every": cfg.velocity.every},  # fmt: skip
        "history": [{k: round(float(v), 6) for k, v in r.items()} for r in result.history],
        "figures": {"loss": str(curve)},
        "notes": notes,
    }


def _progress(label: str):
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)

    def report(done: int, total: int) -> None:
        console.print(f"  {label}: chunk {done}/{total}", end="\r" if done < total else "\n")

    return report


@torch.no_grad()
def _objective(path: nn.Module, targets: TextTargets, ids: Tensor, mask: Tensor, idx: list[int], w_mse: float,
               w_cos: float) -> float:  # fmt: skip
    was = path.training
    path.eval()
    target, m = targets.rows(idx)
    loss, _ = distill_loss(path(ids[idx], mask[idx]), target, m, w_mse, w_cos)
    path.train(was)
    return float(loss)


@torch.no_grad()
def path_agreement(path: nn.Module, targets: TextTargets, ids: Tensor, mask: Tensor,
                   idx: list[int]) -> dict[str, float]:  # fmt: skip
    """Cosine and relative error of the student path's states against the cached targets of prompts `idx`."""
    was = path.training
    path.eval()
    target, m = targets.rows(idx)
    out = embedding_agreement(path(ids[idx], mask[idx]), target, m)
    path.train(was)
    return out


@torch.no_grad()
def _velocity_difference(ir: PipelineIR, student: nn.Module, ids: Tensor, mask: Tensor, probe: Any) -> dict[str, Any]:
    """The denoiser's velocity on the teacher's held-out calls, fed the student's tokens instead of T5's:
    relative error and cosine against what it gave with T5's, overall and per pyramid stage."""
    was = student.training
    student.eval()
    tokens = student(input_ids=ids, attention_mask=mask).last_hidden_state
    student.train(was)
    den = ir["denoiser"].module.eval()
    err, ref, cos_sum, count = 0.0, 0.0, 0.0, 0
    per_stage: dict[int, list[float]] = {}
    for key, calls in probe.calls.items():
        for sample, _tokens, call_mask, pooled, timestep, teacher_out in calls:
            got = den(sample, tokens.to(teacher_out.dtype), call_mask, pooled, timestep)
            e, r = float((got - teacher_out).norm() ** 2), float(teacher_out.norm() ** 2)
            err, ref = err + e, ref + r
            cos_sum += float(torch.nn.functional.cosine_similarity(got.flatten(1), teacher_out.flatten(1)).mean())
            count += 1
            per_stage.setdefault(probe.stage_of[key], []).append((e / max(r, 1e-12)) ** 0.5)
    return {
        "relative_error": (err / max(ref, 1e-12)) ** 0.5,
        "cosine": cos_sum / max(count, 1),
        "calls": count,
        "relative_error_per_stage": {str(s): sum(v) / len(v) for s, v in sorted(per_stage.items())},
    }
