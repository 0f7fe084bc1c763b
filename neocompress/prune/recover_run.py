"""The recovery run inside `block_prune`: what happens before the cut (keep the teacher, draw its samples) and
after it (hold out, measure fidelity, stage 1, stage 2, MiniBench per stage), as one object with two calls.

Why split around the cut: the teacher must be copied and sampled while the pipeline still holds it, and the
student exists only after `remove_blocks`. Each stage trains in a work directory named by a hash of everything
that shapes it (the input weights, the cut, the data and the stage's config), so an interrupted `apply`
resumes the stage from its last checkpoint and a changed config never resumes a stale one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from neocompress.core.hashing import hash_json
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.prune.recovery import (
    CaptionCache,
    LatentData,
    RecoveryConfig,
    block_mapping,
    fidelity,
    heldout_batches,
    joined,
    load_latent_file,
    run_stage1,
    run_stage2,
    stage1_objective,
    stage2_objective,
    stage_record,
    teacher_latents,
    world_latents,
)


class Recovery:
    def __init__(self, config: RecoveryConfig, ir: PipelineIR, ctx: Any, prompts: list[str], component: str):
        self.config, self.ir, self.ctx, self.prompts, self.component = config, ir, ctx, prompts, component
        self.teacher = None
        self.data: LatentData | None = None
        self.quality: list[dict[str, Any]] = []

    def _family(self):
        from neocompress.models.family import get_family

        return get_family(self.ir.family)

    def _score(self, label: str) -> None:
        from neocompress.core.distributed import is_main

        if self.config.evaluate is None or not is_main():  # only rank 0's report is written
            return
        from neocompress.analysis.quality import minibench

        score = minibench(self._family(), self.ir, prompts=self.config.evaluate, seed=self.ctx.seed,
                          cache=self.ctx.scores)  # fmt: skip
        if self.quality:  # every later score beside the first (the teacher's), as a paired difference
            score = {**score, "difference": self.ctx.scores.difference(self.quality[0], score)}
        self.quality.append({"after": label, **score})

    def before_cut(self) -> None:
        comp = self.ir[self.component]
        self.teacher = copy.deepcopy(comp.module).eval().requires_grad_(False)
        cfg = self.config.data
        pipeline = self._family().pipeline(self.ir)
        if cfg.latents is not None:
            self.data = load_latent_file(cfg.latents, pipeline.latent_dims)
        else:
            self.data = teacher_latents(pipeline, self.prompts, cfg.samples, seed=self.ctx.seed, schedule=None)
        if cfg.real:  # real clips first: the held-out latents `split` takes from the end stay teacher samples
            self.data = joined(world_latents(pipeline, cfg.real, seed=self.ctx.seed), self.data)
        # The teacher's MiniBench is usually the previous pass's "after" (or the recipe's "before"): remembered, so
        # it costs nothing here, and every later score is reported as a difference from it.
        self._score("before")

    def after_cut(self, kept: list[int], out_dir: Path) -> dict[str, Any]:
        assert self.teacher is not None and self.data is not None, "before_cut must run first"
        comp = self.ir[self.component]
        adapter = comp.extras["block_adapter"]
        student = comp.module
        pipeline = self._family().pipeline(self.ir)
        train_data, held = self.data.split(self.config.data.heldout)
        cache = CaptionCache(pipeline.text, self.data.captions)
        objective = pipeline.objective
        batches = heldout_batches(objective, held, cache)
        fixed_train = heldout_batches(objective, train_data, cache)  # fixed draws to measure each objective on
        key = hash_json(
            {
                "kept": kept,
                "config": self.config.model_dump(mode="json"),
                "seed": self.ctx.seed,
                "data": [self.data.source, self.data.captions, float(self.data.latents.double().sum())],
            }
        )[:16]
        current = fidelity(student, self.teacher, batches)  # what each next stage starts from
        record: dict[str, Any] = {
            "data": {
                "source": self.data.source,
                "train_latents": len(train_data.captions),
                "heldout_latents": len(held.captions),
                "text_conditioning": self._family().text_conditioning,
            },
            "fidelity_after_cut": current,
            "stages": {},
        }
        figures: dict[str, str] = {}
        self._score("pruning, no recovery")
        if self.config.stage1 is not None:
            before = current
            objective_before = stage1_objective(student, fixed_train)
            result = run_stage1(
                student,
                objective,
                train_data,
                cache,
                self.config.stage1,
                out_dir / f"stage1-{key}",
                self.ctx.seed,
                caption_dropout=self.config.data.caption_dropout,
            )
            student.eval()
            curve = out_dir / "stage1-loss.png"
            measured = (objective_before, stage1_objective(student, fixed_train))
            after = current = fidelity(student, self.teacher, batches)
            record["stages"]["stage1"] = stage_record(result, before, after, measured, curve)
            figures["stage1_loss"] = str(curve)
            self._score("stage 1 (flow-matching fine-tune)")
        if self.config.stage2 is not None:
            stage = self.config.stage2
            mapping = block_mapping(stage.mapping, kept, len(adapter.blocks(self.teacher)))
            before = current
            objective_before = stage2_objective(student, self.teacher, adapter, mapping, stage, fixed_train)
            result = run_stage2(
                student,
                self.teacher,
                adapter,
                mapping,
                objective,
                train_data,
                cache,
                stage,
                out_dir / f"stage2-{key}",
                self.ctx.seed,
                caption_dropout=self.config.data.caption_dropout,
            )
            student.eval()
            curve = out_dir / "stage2-loss.png"
            measured = (
                objective_before,
                stage2_objective(student, self.teacher, adapter, mapping, stage, fixed_train),
            )
            after = fidelity(student, self.teacher, batches)
            record["stages"]["stage2"] = {
                **stage_record(result, before, after, measured, curve),
                "mapping": mapping,
            }
            figures["stage2_loss"] = str(curve)
            self._score("stage 2 (distillation)")
        if self.quality:
            record["minibench"] = self.quality
        record["figures"] = figures
        return record
