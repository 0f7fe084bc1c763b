"""`remove_blocks`: delete MMDiT blocks by index, renumber densely, keep the last block well-formed.

Why a pass of its own: it is the structural core that importance-driven pruning builds on, and it proves the
pass machinery on a transform whose result is exactly checkable. If the original last block is removed, the
new last block is converted to the context_pre_only form (the text stream's output is never read after the
last block), initialised so the image-stream output of that block is unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from neocompress.core.config_types import BlockIndex
from neocompress.core.errors import Problem, VerificationError
from neocompress.core.pass_base import Pass, PassConfig, PassResult
from neocompress.core.registry import register_pass
from neocompress.ir.component import Provenance
from neocompress.ir.pipeline_ir import PipelineIR


class RemoveBlocksConfig(PassConfig):
    indices: list[BlockIndex] = Field(..., min_length=1, description="0-based indices of the blocks to remove")
    component: str = Field("denoiser", description="the component whose blocks are removed")

    @field_validator("indices")
    @classmethod
    def _unique_non_negative(cls, v: list[int]) -> list[int]:
        if any(i < 0 for i in v):
            raise ValueError(f"indices must be >= 0, got {sorted(i for i in v if i < 0)}")
        dupes = sorted({i for i in v if v.count(i) > 1})
        if dupes:
            raise ValueError(f"indices must be unique; repeated: {dupes}")
        return v


@register_pass
class RemoveBlocks(Pass):
    name = "remove_blocks"
    version = 1
    Config = RemoveBlocksConfig
    summary = "Remove transformer blocks by index; renumber densely; fix up the last block."
    requires = ("denoiser",)
    structural = True

    config: RemoveBlocksConfig

    def check(self, ir: PipelineIR) -> list[Problem]:
        comp = self.config.component
        if comp not in ir:
            return [Problem(f"the pipeline has no component '{comp}'", path="component")]
        adapter = ir[comp].extras.get("block_adapter")
        if adapter is None:
            return [Problem(f"component '{comp}' has no transformer blocks to remove", path="component")]
        n = len(adapter.blocks(ir[comp].module))
        bad = sorted(i for i in self.config.indices if i >= n)
        if bad:
            return [Problem(f"block indices {bad} out of range: '{comp}' has {n} blocks (0..{n - 1})", path="indices")]
        if len(self.config.indices) >= n:
            return [Problem(f"cannot remove all {n} blocks of '{comp}'", path="indices")]
        return []

    def snapshot(self, ir: PipelineIR) -> dict[str, Any]:
        comp = ir[self.config.component]
        return {"blocks": len(comp.extras["block_adapter"].blocks(comp.module)), "params": comp.num_params()}

    def run(self, ir: PipelineIR, ctx: Any) -> PassResult:
        problems = self.check(ir)
        if problems:
            raise VerificationError("; ".join(p.message for p in problems))
        comp = ir[self.config.component]
        adapter = comp.extras["block_adapter"]
        old = list(adapter.blocks(comp.module))
        params_before = comp.num_params()
        drop = set(self.config.indices)
        kept = [b for i, b in enumerate(old) if i not in drop]
        converted = False
        if adapter.requires_context_pre_only_last(comp.module) and not adapter.is_context_pre_only(kept[-1]):
            adapter.make_context_pre_only(kept[-1])
            converted = True
        comp.config = adapter.set_blocks(comp.module, kept)
        kept_old_indices = [i for i in range(len(old)) if i not in drop]
        detail = f"removed blocks {sorted(drop)} of {len(old)}; kept {kept_old_indices}"
        if converted:
            detail += f"; new last block (was {kept_old_indices[-1]}) converted to context_pre_only"
        comp.provenance.append(Provenance(self.name, "modified", detail))
        report = {
            "component": comp.name,
            "removed": sorted(drop),
            "kept_original_indices": kept_old_indices,
            "blocks_before": len(old),
            "blocks_after": len(kept),
            "params_before": params_before,
            "params_after": comp.num_params(),
            "last_block_converted": converted,
        }
        return PassResult(ir, True, report)

    def ensures(self, before: dict[str, Any], result: PassResult) -> None:
        comp = result.ir[self.config.component]
        adapter = comp.extras["block_adapter"]
        blocks = adapter.blocks(comp.module)
        expected = before["blocks"] - len(self.config.indices)
        if len(blocks) != expected:
            raise VerificationError(f"remove_blocks: expected {expected} blocks, found {len(blocks)}")
        if adapter.requires_context_pre_only_last(comp.module) and not adapter.is_context_pre_only(blocks[-1]):
            raise VerificationError("remove_blocks: the last block is not in context_pre_only form")
        if any(adapter.is_context_pre_only(b) for b in list(blocks)[:-1]):
            raise VerificationError("remove_blocks: a block before the last is context_pre_only")
        if comp.num_params() >= before["params"]:
            raise VerificationError("remove_blocks: parameter count did not fall")
