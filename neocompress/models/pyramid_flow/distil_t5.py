"""Neodragon's small text path: DistilT5 (a T5-v1.1-base encoder with a projection head to T5-XXL's width) and
the ContextAdapter (a skip-MLP that maps the projected states to what the denoiser's text stream takes).

Why these shapes (reference section 3): DistilT5 keeps T5's vocabulary and tokenizer, so it is a drop-in for
T5-XXL at the pipeline's input; its `final_projection` (768 -> 4096 -> 4096, no biases, ReLU and dropout between)
restores the 4096-wide token states T5-XXL gave. The ContextAdapter is then trained so that
CA(DistilT5(prompt)) matches the frozen denoiser's `context_embedder(T5XXL(prompt))`: in the shipped "replace"
mode it takes the context embedder's place. Both are built with transformers / torch modules; DistilT5's layout
(`encoder.*` as a `T5EncoderModel`, `final_projection.{0,3}`) follows the public "Scaling Down Text Encoders"
code the DistilT5 checkpoints come from, so such a checkpoint loads by name. Full size: DistilT5 129.6M
parameters (109.6M encoder + 19.9M head), ContextAdapter 130.0M, against T5-XXL's 4.76B.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from transformers import T5Config, T5EncoderModel
from transformers.modeling_outputs import BaseModelOutput

from neocompress.models.pyramid_flow.text_config import _t5_xxl_sd3


def distil_t5_base_config(vocab_size: int = 32128, pad_token_id: int = 0, eos_token_id: int = 1) -> dict[str, Any]:
    """The T5-v1.1-base encoder Neodragon distils into (d_model 768, 12 layers, 12 heads, d_ff 2048): T5-XXL's
    v1.1 config (gated-GELU, 32 relative-attention buckets, max distance 128) at base size, encoder only."""
    config = {
        **_t5_xxl_sd3(),
        "vocab_size": vocab_size,
        "d_model": 768,
        "d_ff": 2048,
        "num_layers": 12,
        "num_heads": 12,
        "is_encoder_decoder": False,
        "pad_token_id": pad_token_id,
        "eos_token_id": eos_token_id,
    }
    for decoder_key in ("num_decoder_layers", "decoder_start_token_id"):
        del config[decoder_key]
    return config


class DistilT5(nn.Module):
    """T5 encoder + `final_projection` to `out_dim`; called like `T5EncoderModel` (input_ids, attention_mask) and
    answering with `last_hidden_state` [B, L, out_dim], so the pipeline's text bundle takes it unchanged."""

    def __init__(self, t5_config: dict[str, Any], out_dim: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = T5EncoderModel(T5Config.from_dict(copy.deepcopy(t5_config)))
        width = int(t5_config["d_model"])
        self.final_projection = nn.Sequential(
            nn.Linear(width, out_dim, bias=False),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(out_dim, out_dim, bias=False),
        )
        self.out_dim = out_dim
        self.config = self.encoder.config

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> BaseModelOutput:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return BaseModelOutput(last_hidden_state=self.final_projection(states))


class ContextAdapter(nn.Module):
    """Skip-MLP: `layers` hidden Linear + GELU of width `hidden`; every layer after the first, and the output
    layer, reads concat(original input, previous hidden). Xavier-initialised, biases on (reference section 3)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None, layers: int = 4):
        super().__init__()
        if layers < 1:
            raise ValueError(f"a ContextAdapter needs at least one hidden layer, got {layers}")
        hidden = hidden or in_dim
        self.hidden = nn.ModuleList(
            nn.Linear(in_dim if i == 0 else in_dim + hidden, hidden) for i in range(layers)
        )
        self.out = nn.Linear(in_dim + hidden, out_dim)
        self.in_dim, self.out_dim = in_dim, out_dim
        for layer in (*self.hidden, self.out):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.gelu(self.hidden[0](x))
        for layer in self.hidden[1:]:
            h = nn.functional.gelu(layer(torch.cat([x, h], dim=-1)))
        return self.out(torch.cat([x, h], dim=-1))
