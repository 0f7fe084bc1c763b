"""One training stage as a recipe states it (steps, batch, LR, warm-up, precision), and the engine config it
becomes: every training pass (block-pruning recovery, encoder substitution, decoder swap) takes the same keys and
trains with the same schedule (linear warm-up, cosine decay to a tenth, clipped gradients, four checkpoints)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neocompress.core.pass_base import PassConfig
from neocompress.train.engine import TrainConfig


class StageConfig(PassConfig):
    steps: int = Field(100, ge=1, le=10_000_000, description="optimizer steps")
    batch_size: int = Field(8, ge=1, le=65536, description="latent clips per micro-batch per process")
    grad_accum: int = Field(1, ge=1, le=65536, description="micro-batches per optimizer step")
    lr: float = Field(1e-4, gt=0, le=1.0, description="peak AdamW learning rate")
    warmup_steps: int = Field(10, ge=0, le=10_000_000, description="linear warm-up steps")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field("no", description="autocast dtype where the device has it")



def stage_train_config(stage: StageConfig, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=stage.steps,
        batch_size=stage.batch_size,
        grad_accum=stage.grad_accum,
        lr=stage.lr,
        warmup_steps=min(stage.warmup_steps, stage.steps),
        lr_schedule="cosine",
        min_lr_ratio=0.1,
        max_grad_norm=1.0,
        mixed_precision=stage.mixed_precision,
        seed=seed,
        log_every=max(stage.steps // 10, 1),
        checkpoint_every=max(stage.steps // 4, 1),
    )
