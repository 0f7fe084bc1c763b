"""`block_prune`: measure MMDiT block importance with the teacher, choose the blocks to cut, remove them.

Neodragon's third technique (reference section 5): BI_i = 1 - E[cos(in_i, out_i)] per token, separately for the
visual and the text stream, over calibration prompts, noise samples and every pyramid stage's timesteps; the
least important blocks go. The choice is by count (`remove`), depth (`keep`), a parameter or FLOPs `budget`, or
an explicit list (`indices`, which still measures and reports importance so the list can be judged); the first
block is protected by default. Removal is `remove_blocks` (dense renumbering, the new last block converted to the
context_pre_only form). Scores are cached by content, so changing only the selection does not sample again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from neocompress.core.config_types import BlockIndex, Weight
from neocompress.core.errors import Problem, VerificationError
from neocompress.core.pass_base import Pass, PassConfig, PassResult
from neocompress.core.registry import register_pass
from neocompress.ir.component import Provenance
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.passes.calibration import CalibrationConfig
from neocompress.passes.remove_blocks import RemoveBlocks, RemoveBlocksConfig
from neocompress.prune.calibrate import cached_importance, importance_key, measure_importance
from neocompress.prune.importance import BlockImportance
from neocompress.prune.plots import plot_importance
from neocompress.prune.recovery import RecoveryConfig
from neocompress.prune.selection import Selection, resolve_protected, select_blocks


class BudgetConfig(PassConfig):
    metric: Literal["params", "flops"] = Field(
        "params", description="params: the component's parameters; flops: its FLOPs per default video"
    )
    fraction: float = Field(..., gt=0, le=1, description="the fraction of the metric that may stay")


class BlockPruneConfig(PassConfig):
    component: str = Field("denoiser", description="the component whose blocks are pruned")
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="the teacher sampling that importance is measured over"
    )
    weights: dict[str, Weight] = Field(
        default_factory=lambda: {"visual": 1.0, "text": 0.0},
        description="weight of each stream's importance in the ranking (Neodragon weighed the visual stream)",
    )
    protect: list[BlockIndex] = Field(default_factory=lambda: [0], description="blocks never removed (-1 = the last)")
    remove: int | None = Field(None, ge=1, description="remove this many blocks")
    keep: int | None = Field(None, ge=1, description="keep this many blocks")
    budget: BudgetConfig | None = Field(None, description="remove least-important blocks until the budget holds")
    indices: list[BlockIndex] | None = Field(None, min_length=1, description="remove exactly these blocks")
    recovery: RecoveryConfig | None = Field(
        None, description="two-stage recovery training after the cut (stage1 fine-tune, stage2 distil; null: none)"
    )
    baselines: list[Literal["random", "last"]] = Field(
        default_factory=list,
        description="also cut the same number of blocks at random / from the end and score each cut beside the "
        "importance-chosen one with MiniBench (no recovery): what measuring importance buys",
    )
    baseline_prompts: int = Field(320, ge=8, le=100_000, description="MiniBench prompts per baseline score")

    @model_validator(mode="after")
    def _one_selection(self) -> BlockPruneConfig:
        given = [k for k in ("remove", "keep", "budget", "indices") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of remove, keep, budget, indices (got {given or 'none'})")
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError(f"weights must be >= 0 and not all zero, got {self.weights}")
        if self.indices is not None and len(set(self.indices)) != len(self.indices):
            raise ValueError(f"indices must be unique, got {self.indices}")
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"baselines must be unique, got {self.baselines}")
        return self


@register_pass
class BlockPrune(Pass):
    name = "block_prune"
    version = 1
    Config = BlockPruneConfig
    summary = "Rank MMDiT blocks by importance (1 - cos, per stream and stage) and remove the least important."
    requires = ("denoiser",)

    config: BlockPruneConfig

    # -- checks -----------------------------------------------------------------------------------------------
    def check(self, ir: PipelineIR) -> list[Problem]:
        cfg = self.config
        if cfg.component not in ir:
            return [Problem(f"the pipeline has no component '{cfg.component}'", path="component")]
        comp = ir[cfg.component]
        adapter = comp.extras.get("block_adapter")
        if adapter is None:
            return [Problem(f"component '{cfg.component}' has no transformer blocks to prune", path="component")]
        n = len(adapter.blocks(comp.module))
        problems = self._family_problems(ir)
        unknown = sorted(set(cfg.weights) - set(adapter.streams()))
        if unknown:
            streams = ", ".join(adapter.streams())
            problems.append(Problem(f"unknown stream(s) {unknown}; '{cfg.component}' has {streams}", path="weights"))
        try:
            protected = resolve_protected(cfg.protect, n)
        except ValueError as e:
            return [*problems, Problem(str(e), path="protect")]
        removable = n - len(protected)
        if cfg.remove is not None and cfg.remove > min(removable, n - 1):
            problems.append(
                Problem(
                    f"cannot remove {cfg.remove} of {n} blocks ({len(protected)} protected, {removable} removable)",
                    path="remove",
                )
            )
        if cfg.keep is not None and not (max(len(protected), 1) <= cfg.keep <= n):
            problems.append(Problem(f"keep must be in {max(len(protected), 1)}..{n} for {n} blocks", path="keep"))
        if cfg.indices is not None:
            bad = sorted(i for i in cfg.indices if not 0 <= i < n)
            if bad:
                problems.append(
                    Problem(f"block indices {bad} out of range: '{cfg.component}' has {n} blocks", path="indices")
                )
            clash = sorted(set(cfg.indices) & protected)
            if clash:
                problems.append(Problem(f"blocks {clash} are protected (protect: {cfg.protect})", path="indices"))
            if len(cfg.indices) >= n:
                problems.append(Problem(f"cannot remove all {n} blocks", path="indices"))
        return problems

    def _family_problems(self, ir: PipelineIR) -> list[Problem]:
        from neocompress.models.family import get_family

        family = get_family(ir.family)
        cal = self.config.calibration
        problems = [
            Problem(m, path=f"calibration.{k}") for k, m in family.sampler_problems(cal.first, cal.later).items()
        ]
        refusal = family.minibench_refusal()
        if self.config.recovery is not None and self.config.recovery.evaluate and refusal:
            problems.append(Problem(f"{refusal} (set evaluate: null)", path="recovery.evaluate"))
        if self.config.recovery is not None and self.config.recovery.data.real and refusal:
            problems.append(Problem(f"{refusal}: no real world clips to train on (set real: 0)",
                                    path="recovery.data.real"))  # fmt: skip
        if self.config.baselines and refusal:
            problems.append(Problem(f"{refusal} (set baselines: [])", path="baselines"))
        return problems

    def data_needs(self) -> dict[str, str]:
        return {"calibration.prompts": self.config.calibration.prompts}

    def input_paths(self) -> dict[str, str | None]:
        recovery = self.config.recovery
        return {"recovery.data.latents": recovery.data.latents if recovery is not None else None}

    def snapshot(self, ir: PipelineIR) -> dict[str, Any]:
        comp = ir[self.config.component]
        return {"blocks": len(comp.extras["block_adapter"].blocks(comp.module)), "params": comp.num_params()}

    # -- running ----------------------------------------------------------------------------------------------
    def run(self, ir: PipelineIR, ctx: Any) -> PassResult:
        problems = self.check(ir)
        if problems:
            raise VerificationError("; ".join(str(p) for p in problems))
        from neocompress.models.family import get_family

        cfg = self.config
        importance, cached = self._importance(ir, ctx)
        ranking = importance.combined(cfg.weights)
        selection = self._select(ir, ranking)
        baselines = self._baselines(ir, ctx, list(selection.removed)) if selection.removed else None
        recovery = None
        if cfg.recovery is not None and selection.removed:
            from neocompress.prune.recover_run import Recovery

            recovery = Recovery(
                cfg.recovery, ir, ctx, self.config.calibration.chosen_prompts(ctx, self.name), cfg.component
            )
            recovery.before_cut()  # the teacher's copy and samples, while the pipeline still is the teacher
        if selection.removed:
            remover = RemoveBlocks(RemoveBlocksConfig(indices=list(selection.removed), component=cfg.component))
            result = remover.run(ir, ctx)
        else:  # a budget the unpruned model already meets
            result = PassResult(ir, False, {"component": cfg.component, "removed": []})
        out_dir = ctx.pass_dir(self.name)
        chart = plot_importance(importance, set(selection.removed), out_dir / "importance.png")
        figures = {"importance": str(chart)}
        recovered = None
        if recovery is not None:
            recovered = recovery.after_cut(result.report["kept_original_indices"], out_dir)
            figures.update(recovered.pop("figures"))
        report = {
            **result.report,
            "importance": {
                **importance.to_dict(),
                "cached": cached,
                "weights": cfg.weights,
                "text_conditioning": get_family(ir.family).text_conditioning,
            },
            "selection": selection.to_dict(ranking),
            "figures": figures,
        }
        if recovered is not None:
            report["recovery"] = recovered
        if baselines:
            report["baselines"] = baselines
            report["baselines_note"] = f"{len(selection.removed)} blocks cut, no recovery"
        if selection.removed:
            ir[cfg.component].provenance.append(
                Provenance(self.name, "modified", f"importance-ranked; removed {list(selection.removed)}")
            )
        return PassResult(result.ir, bool(selection.removed), report)

    def _baselines(self, ir: PipelineIR, ctx: Any, chosen: list[int]) -> dict[str, Any] | None:
        """The importance cut and each configured naive cut of as many blocks, scored cut-only (see
        `prune.baselines`); None when no baselines are configured."""
        from neocompress.core.distributed import is_main

        cfg = self.config
        if not cfg.baselines or not is_main():
            return None
        from neocompress.analysis.quality import minibench
        from neocompress.models.family import get_family
        from neocompress.prune.baselines import score_baselines

        family = get_family(ir.family)
        comp = ir[cfg.component]
        protected = resolve_protected(cfg.protect, len(comp.extras["block_adapter"].blocks(comp.module)))

        def score(cut: PipelineIR) -> dict[str, Any]:
            return minibench(family, cut, prompts=cfg.baseline_prompts, seed=ctx.seed, cache=ctx.scores)

        return score_baselines(ir, cfg.component, list(cfg.baselines), chosen, protected, ctx.seed, score)

    def _importance(self, ir: PipelineIR, ctx: Any) -> tuple[BlockImportance, bool]:
        from neocompress.models.family import get_family

        cal = self.config.calibration
        prompts = self.config.calibration.chosen_prompts(ctx, self.name)
        pipeline = get_family(ir.family).pipeline(ir)
        schedule = cal.schedule(pipeline)
        settings = {
            "prompts": prompts,
            "samples": cal.samples,
            "batch": cal.batch,
            "seed": ctx.seed,
            "schedule": schedule.to_dict(),
        }
        key = importance_key(ir, self.config.component, settings)
        cache_dir = ctx.cache.root if ctx.cache is not None else None
        return cached_importance(
            cache_dir,
            key,
            lambda: measure_importance(
                ir,
                pipeline,
                component=self.config.component,
                prompts=prompts,
                samples=cal.samples,
                batch=cal.batch,
                seed=ctx.seed,
                schedule=schedule,
            ),
        )

    def _select(self, ir: PipelineIR, scores: list[float]) -> Selection:
        """The configured cut on `scores` (one per block, higher = more important)."""
        cfg = self.config
        comp = ir[cfg.component]
        protected = resolve_protected(cfg.protect, len(comp.extras["block_adapter"].blocks(comp.module)))
        costs, fixed = (None, 0.0) if cfg.budget is None else self._costs(ir, cfg.budget.metric)
        try:
            return select_blocks(
                scores,
                protected=protected,
                remove=cfg.remove,
                keep=cfg.keep,
                budget=cfg.budget.fraction if cfg.budget else None,
                block_costs=costs,
                fixed_cost=fixed,
                indices=cfg.indices,
            )
        except ValueError as e:
            raise VerificationError(f"block_prune: {e}") from None

    def _costs(self, ir: PipelineIR, metric: str) -> tuple[list[float], float]:
        from neocompress.models.family import get_family

        comp = ir[self.config.component]
        blocks = list(comp.extras["block_adapter"].blocks(comp.module))
        if metric == "params":
            per_block = [float(sum(p.numel() for p in b.parameters())) for b in blocks]
            return per_block, float(comp.num_params()) - sum(per_block)
        return get_family(ir.family).block_flops(ir, self.config.component)

    def plan(self, ir: PipelineIR, ctx: Any) -> PassResult:
        """On a weightless skeleton no importance can be measured: plan the cut by count (deepest unprotected
        blocks first), which has the same structural effect as any importance ranking of that many blocks."""
        cfg = self.config
        comp = ir[cfg.component]
        n = len(comp.extras["block_adapter"].blocks(comp.module))
        depth_order = [float(n - i) for i in range(n)]  # deeper = less important: only the count matters here
        drop = list(self._select(ir, depth_order).removed)
        if not drop:
            return PassResult(ir, False, {"component": cfg.component, "removed": []})
        result = RemoveBlocks(RemoveBlocksConfig(indices=drop, component=cfg.component)).run(ir, ctx)
        return PassResult(result.ir, True, {**result.report, "planned": "blocks chosen by depth: no weights"})

    def ensures(self, before: dict[str, Any], result: PassResult) -> None:
        removed = result.report.get("removed", [])
        if not removed:
            if result.ir[self.config.component].num_params() != before["params"]:
                raise VerificationError("block_prune: nothing was removed, yet the parameter count changed")
            return
        RemoveBlocks(RemoveBlocksConfig(indices=removed, component=self.config.component)).ensures(before, result)
