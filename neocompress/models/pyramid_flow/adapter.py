"""The Pyramid-Flow denoiser's block adapter: where the blocks are and how the last one is formed."""

from __future__ import annotations

from typing import Any

from torch import nn

from neocompress.models.adapter import BlockAdapter
from neocompress.models.pyramid_flow.blocks import convert_to_context_pre_only


class PyramidFlowBlockAdapter(BlockAdapter):
    def blocks(self, module: nn.Module) -> nn.ModuleList:
        return module.transformer_blocks

    def set_blocks(self, module: nn.Module, blocks: list[nn.Module]) -> dict[str, Any]:
        module.transformer_blocks = nn.ModuleList(blocks)
        module.config = module.config.replace(num_layers=len(blocks))
        return module.config.to_dict()

    def is_context_pre_only(self, block: nn.Module) -> bool:
        return bool(block.context_pre_only)

    def make_context_pre_only(self, block: nn.Module) -> None:
        convert_to_context_pre_only(block)

    def requires_context_pre_only_last(self, module: nn.Module) -> bool:
        return bool(module.config.context_pre_only_last)

    def never_quantize(self, module: nn.Module) -> list[str]:
        # Timestep/pooled embedders and the final modulation feed every block: errors there compound.
        return ["time_text_embed", "norm_out"]
