"""FP16 as a quantize precision: the text encoders computed in half precision, as Neodragon ran CLIP-L, CLIP-G
and its T5 on the NPU.

Why real half arithmetic, not AIMET's float quantizers: torch computes these encoders in fp16 on the CPU, which
rounds every intermediate as the HTP's fp16 path does (the reference warns that T5's residual adds overflow
there); the SQNR against the fp32 encoder is then measured, not assumed. The fp32 weights stay the component's;
the half copy is the simulation, rebuilt on load from the precision recorded beside them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neocompress.quant.precision import sqnr_db

TEXT_ENCODERS = ("clip_l", "clip_g", "t5")


class Fp16Module(nn.Module):
    """A half-precision copy of a transformers encoder whose outputs come back as float32 (what the rest of
    the pipeline takes)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.half_module = copy.deepcopy(module).half().eval()
        self.config = module.config

    def forward(self, **kwargs: Any) -> Any:
        out = self.half_module(**kwargs)
        for key, value in list(out.items()):
            if isinstance(value, Tensor) and value.is_floating_point():
                out[key] = value.float()
        return out


def half_copy(component: Any) -> Fp16Module:
    """The fp16 simulation of a text encoder component marked fp16 by the quantize pass: made once (a copy of the
    whole encoder) and kept beside its quantization settings, so every pipeline built on it shares it."""
    quantization = component.extras["quantization"]
    if "half" not in quantization:
        quantization["half"] = Fp16Module(component.module)
    return quantization["half"]


@torch.no_grad()
def fp16_text_report(text: Any, prompts: Sequence[str], halves: Mapping[str, nn.Module]) -> dict[str, float]:
    """SQNR (dB) of each encoder's fp16 output (`halves[name]`) against its fp32 self on `prompts`: CLIP's pooled
    embeddings, T5's states at the real (unpadded) tokens; `text` is the pipeline's fp32 TextBundle."""
    tokens = text.tokenize(list(prompts))
    out = {}
    for name, ids in (("clip_l", tokens.clip_l_ids), ("clip_g", tokens.clip_g_ids)):
        ref = getattr(text, name)(input_ids=ids).text_embeds
        out[name] = sqnr_db(ref, halves[name](input_ids=ids).text_embeds)
    ref = text.t5(input_ids=tokens.t5_ids, attention_mask=tokens.t5_mask).last_hidden_state
    got = halves["t5"](input_ids=tokens.t5_ids, attention_mask=tokens.t5_mask).last_hidden_state
    valid = tokens.t5_mask.bool()
    out["t5"] = sqnr_db(ref[valid], got[valid])
    return out
