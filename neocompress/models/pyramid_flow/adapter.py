"""The Pyramid-Flow denoiser's block adapter: where the blocks are and how the last one is formed."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from neocompress.models.adapter import BlockAdapter, StreamIO
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

    def stream_io(self, args: tuple, kwargs: dict, output: Any) -> dict[str, StreamIO | None]:
        """`block(hidden, context, temb, mask, rope) -> (new_context, hidden)`; the joint sequence is
        [text | image], so text token j of sample b is real iff it may attend to the first image token (the
        oldest frame, at time 0 like the text: temporal causality never hides it)."""
        hidden, context, _temb, mask = args[:4]
        new_context, new_hidden = output
        text = None
        if new_context is not None:
            text = (context, new_context, _valid_text(mask, context.shape[1]))
        return {"visual": (hidden, new_hidden, None), "text": text}

    def requires_context_pre_only_last(self, module: nn.Module) -> bool:
        return bool(module.config.context_pre_only_last)

    def never_quantize(self, module: nn.Module) -> list[str]:
        # Timestep/pooled embedders and the final modulation feed every block: errors there compound.
        return ["time_text_embed", "norm_out"]


def _valid_text(mask: Tensor, text_len: int) -> Tensor:
    """[B, L] 1 for real text tokens, 0 for padding, from the joint mask (bool, or additive with 0 = attend)."""
    row = mask[:, 0, :text_len, text_len]
    valid = row if row.dtype == torch.bool else row == 0
    return valid.expand(mask.shape[0], text_len).float()
