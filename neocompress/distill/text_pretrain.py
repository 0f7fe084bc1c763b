"""Pretrain a DistilT5 on a T5 encoder's own outputs over general text: what a public DistilT5 checkpoint is.

Why this exists: Neodragon does not distil DistilT5 from scratch on the video prompts; it starts from the public
DistilT5 ("Scaling Down Text Encoders"), a T5-v1.1-base encoder with a projection head already trained to give
T5-XXL's token states on general text, and then trains the ContextAdapter around it on prompts only. A miniature
has no such public checkpoint for its tiny T5, so this makes the equivalent: a DistilT5 whose `final_projection`
outputs T5's width, trained with the prompt-only loss (MSE + cosine on real tokens) towards `T5(prompt)` (no
context embedder: the denoiser is not involved) on text that is not the world's captions. `encoder_substitution`
then starts from it (`student.checkpoint`), as a real run starts from the public weights.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from neocompress.distill.text_loss import distill_loss
from neocompress.distill.text_run import path_agreement
from neocompress.distill.text_student import StudentPath
from neocompress.distill.text_targets import TextTargets, t5_tokens
from neocompress.models.pyramid_flow.objective import Indices
from neocompress.train import train
from neocompress.train.stage import StageConfig, stage_train_config


@dataclass
class PretrainData:
    """The text the student learns T5 on, the held-out part of it, and prompts of another kind to measure on."""

    train: list[str]
    heldout: list[str]
    probes: dict[str, list[str]]


def pretrain_distil_t5(teacher: nn.Module, tokenizer: Any, length: int, student: nn.Module, data: PretrainData,
                       stage: StageConfig, work: Path, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Train every weight of `student` (a DistilT5 whose output width is T5's) so that student(p) ~ T5(p) on
    `data.train`; returns the report (agreement before/after on the held-out text and on each probe set)."""
    prompts = data.train + data.heldout + [p for ps in data.probes.values() for p in ps]
    targets = TextTargets(teacher, None, tokenizer, length, prompts, work / "teacher-text")
    targets.precompute()
    targets.release_teacher()
    ids, mask = t5_tokens(tokenizer, prompts, length)
    n = len(data.train)
    sets = {"heldout": list(range(n, n + len(data.heldout)))}
    start = n + len(data.heldout)
    for name, ps in data.probes.items():
        sets[name] = list(range(start, start + len(ps)))
        start += len(ps)
    path = StudentPath(student, None)
    before = {name: path_agreement(path, targets, ids, mask, idx) for name, idx in sets.items()}

    def loss_fn(batch: Tensor, step: int):
        idx = batch.tolist()
        target, m = targets.rows(idx)
        return distill_loss(path(ids[idx], mask[idx]), target, m, 1.0, 0.1)

    student.requires_grad_(True)
    result = train(stage_train_config(stage, seed), {"path": path}, loss_fn, Indices(n), work / "train",
                   progress=sys.stderr.isatty())  # fmt: skip
    path.eval()
    student.requires_grad_(False)
    return {
        "prompts": {"train": n, **{name: len(idx) for name, idx in sets.items()}},
        "agreement": {name: {"before": before[name], "after": path_agreement(path, targets, ids, mask, idx)}
                      for name, idx in sets.items()},  # fmt: skip
        "train": result.summary(),
    }
