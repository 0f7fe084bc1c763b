"""Block adapters for diffusers' MMDiT transformers: SD3 (one list of joint blocks, the last context_pre_only) and
Flux (double-stream blocks, then single-stream blocks over the joined sequence).

Why these are all a pass needs: importance hooks read each block's (hidden_states, encoder_hidden_states) in and
(encoder_hidden_states, hidden_states) out, which is the calling convention of every diffusers MMDiT block;
`remove_blocks` edits the list and the structural config (`num_layers`, SD3.5's `dual_attention_layers`, Flux's
`num_single_layers`) so `save_pretrained` writes a config that `from_pretrained` rebuilds exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neocompress.models.adapter import BlockAdapter, StreamIO


def _stream_io(args: tuple, kwargs: dict, output: Any) -> dict[str, StreamIO | None]:
    """diffusers blocks take `hidden_states, encoder_hidden_states` (keywords from the model's forward, positions
    under gradient checkpointing) and return `(encoder_hidden_states, hidden_states)`; text tokens all count."""
    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    context = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[1]
    new_context, new_hidden = output
    text = None if new_context is None else (context, new_context, None)
    return {"visual": (hidden, new_hidden, None), "text": text}


class SD3BlockAdapter(BlockAdapter):
    """`SD3Transformer2DModel.transformer_blocks`: JointTransformerBlocks, the last in context_pre_only form."""

    def blocks(self, module: nn.Module) -> nn.ModuleList:
        return module.transformer_blocks

    def set_blocks(self, module: nn.Module, blocks: list[nn.Module]) -> dict[str, Any]:
        module.transformer_blocks = nn.ModuleList(blocks)
        dual = [i for i, b in enumerate(blocks) if getattr(b, "use_dual_attention", False)]
        module.register_to_config(num_layers=len(blocks), dual_attention_layers=tuple(dual))
        return dict(module.config)

    def is_context_pre_only(self, block: nn.Module) -> bool:
        return bool(block.context_pre_only)

    def make_context_pre_only(self, block: nn.Module) -> None:
        """In place, to exactly what `JointTransformerBlock(context_pre_only=True)` builds: the text stream's
        AdaLayerNormZero becomes an AdaLayerNormContinuous that applies the same (scale, shift) to the attention
        input, and the modules that only produced the text output (to_add_out, norm2_context, ff_context) go.
        The block's image output is unchanged: the text stream still feeds the joint attention identically."""
        from diffusers.models.normalization import AdaLayerNormContinuous

        if block.context_pre_only:
            return
        dim = block.norm2.normalized_shape[0]
        zero = block.norm1_context.linear  # [6 * dim, dim]: shift, scale, gate (msa), shift, scale, gate (mlp)
        cont = AdaLayerNormContinuous(dim, dim, elementwise_affine=False, eps=1e-6, bias=True, norm_type="layer_norm")
        cont = cont.to(device=zero.weight.device, dtype=zero.weight.dtype)
        with torch.no_grad():
            shift_w, scale_w = zero.weight[:dim], zero.weight[dim : 2 * dim]
            shift_b, scale_b = zero.bias[:dim], zero.bias[dim : 2 * dim]
            cont.linear.weight.copy_(torch.cat([scale_w, shift_w]))  # AdaLayerNormContinuous chunks (scale, shift)
            cont.linear.bias.copy_(torch.cat([scale_b, shift_b]))
        block.norm1_context = cont
        block.context_pre_only = True
        block.attn.context_pre_only = True
        block.attn.to_add_out = None
        block.norm2_context = None
        block.ff_context = None

    def stream_io(self, args: tuple, kwargs: dict, output: Any) -> dict[str, StreamIO | None]:
        return _stream_io(args, kwargs, output)

    def never_quantize(self, module: nn.Module) -> list[str]:
        return ["time_text_embed", "norm_out"]


class FluxBlockAdapter(BlockAdapter):
    """`FluxTransformer2DModel`: its double-stream `transformer_blocks` then its `single_transformer_blocks`, seen
    as one sequence (indices 0..num_layers-1 are double-stream). No block has a context_pre_only form: every
    block's text output feeds the next one."""

    def blocks(self, module: nn.Module) -> nn.ModuleList:
        return nn.ModuleList([*module.transformer_blocks, *module.single_transformer_blocks])

    def set_blocks(self, module: nn.Module, blocks: list[nn.Module]) -> dict[str, Any]:
        from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock

        single = [isinstance(b, FluxSingleTransformerBlock) for b in blocks]
        if any(s and not t for s, t in zip(single, single[1:], strict=False)):
            raise ValueError("Flux blocks must keep every double-stream block before every single-stream block")
        module.transformer_blocks = nn.ModuleList([b for b, s in zip(blocks, single, strict=True) if not s])
        module.single_transformer_blocks = nn.ModuleList([b for b, s in zip(blocks, single, strict=True) if s])
        module.register_to_config(
            num_layers=len(module.transformer_blocks), num_single_layers=len(module.single_transformer_blocks)
        )
        return dict(module.config)

    def requires_context_pre_only_last(self, module: nn.Module) -> bool:
        return False

    def is_context_pre_only(self, block: nn.Module) -> bool:
        return False

    def make_context_pre_only(self, block: nn.Module) -> None:
        raise NotImplementedError("Flux blocks have no context_pre_only form")

    def stream_io(self, args: tuple, kwargs: dict, output: Any) -> dict[str, StreamIO | None]:
        return _stream_io(args, kwargs, output)

    def never_quantize(self, module: nn.Module) -> list[str]:
        return ["time_text_embed", "norm_out"]
