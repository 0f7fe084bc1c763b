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
from pathlib import Path
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


# The T5 architecture keys a recipe may override (the vocabulary and special tokens are T5's own: DistilT5 shares
# its tokenizer), with the range each runs in.
ENCODER_OVERRIDES: dict[str, tuple[type, float, float]] = {
    "d_model": (int, 1, 65536), "d_kv": (int, 1, 65536), "d_ff": (int, 1, 262144), "num_layers": (int, 1, 256),
    "num_heads": (int, 1, 1024), "relative_attention_num_buckets": (int, 1, 4096),
    "relative_attention_max_distance": (int, 1, 65536), "dropout_rate": (float, 0.0, 0.999),
    "layer_norm_epsilon": (float, 1e-12, 1.0), "initializer_factor": (float, 1e-6, 100.0),
}  # fmt: skip
FEED_FORWARD = ("relu", "gated-gelu", "gated-relu")


def encoder_override_problems(options: dict[str, Any]) -> dict[str, str]:
    """{option path: why} for `encoder` overrides a T5 encoder cannot be built from."""
    import difflib

    out: dict[str, str] = {}
    for key, value in (options.get("encoder") or {}).items():
        where = f"encoder.{key}"
        if key == "feed_forward_proj":
            if value not in FEED_FORWARD:
                out[where] = f"must be one of {', '.join(FEED_FORWARD)}, got {value!r}"
            continue
        if key not in ENCODER_OVERRIDES:
            near = difflib.get_close_matches(str(key), [*ENCODER_OVERRIDES, "feed_forward_proj"], n=1)
            out[where] = "not a T5 setting DistilT5 takes" + (f"; did you mean '{near[0]}'?" if near else "")
            continue
        kind, low, high = ENCODER_OVERRIDES[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)):
            out[where] = f"must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        elif not low <= value <= high:
            out[where] = f"must be in [{low:g}, {high:g}], got {value!r}"
    return out


DISTIL_T5_CLASS = "DistilT5"  # the `neocompress_class` of a DistilT5 checkpoint's config.json


def is_distil_t5_config(config: dict[str, Any]) -> bool:
    return config.get("neocompress_class") == DISTIL_T5_CLASS


class DistilT5(nn.Module):
    """T5 encoder + `final_projection` to `out_dim` (+ an optional ContextAdapter after it); called like
    `T5EncoderModel` (input_ids, attention_mask) and answering with `last_hidden_state` [B, L, width], so the
    pipeline's text bundle takes it unchanged. `width` is the adapter's output width when there is one.

    Saved as one text-encoder folder (`config.json` = the T5 encoder's config plus `neocompress_class`,
    `projection_dim`, `context_adapter`, `output_dim`; weights `encoder.*`, `final_projection.*`,
    `context_adapter.*`), which `from_checkpoint_config` rebuilds.
    """

    def __init__(self, t5_config: dict[str, Any], out_dim: int, dropout: float = 0.1,
                 adapter: dict[str, int] | None = None):  # fmt: skip
        super().__init__()
        t5_config = {k: v for k, v in t5_config.items() if k not in _OWN_KEYS}
        self.encoder = T5EncoderModel(T5Config.from_dict(copy.deepcopy(t5_config)))
        width = int(t5_config["d_model"])
        self.final_projection = nn.Sequential(
            nn.Linear(width, out_dim, bias=False),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(out_dim, out_dim, bias=False),
        )
        self.out_dim = out_dim
        self.context_adapter: ContextAdapter | None = None
        if adapter is not None:
            self.add_adapter(int(adapter["out_dim"]), adapter.get("hidden"), int(adapter.get("layers", 4)))
        self.config = self.encoder.config
        self._dropout = dropout

    def tie_weights(self) -> None:
        """T5's input embedding is shared with `encoder.embed_tokens`; an empty-weight build re-creates it twice."""
        self.encoder.tie_weights()

    @property
    def width(self) -> int:
        return self.context_adapter.out_dim if self.context_adapter is not None else self.out_dim

    def add_adapter(self, out_dim: int, hidden: int | None = None, layers: int = 4) -> ContextAdapter:
        """Attach a freshly initialised ContextAdapter after the projection (the substitution pass trains it)."""
        self.context_adapter = ContextAdapter(self.out_dim, out_dim, hidden or self.out_dim, layers)
        return self.context_adapter

    def checkpoint_config(self) -> dict[str, Any]:
        a = self.context_adapter
        return {
            **{k: v for k, v in self.encoder.config.to_dict().items() if k not in _DROPPED},
            "neocompress_class": DISTIL_T5_CLASS,
            "projection_dim": self.out_dim,
            "projection_dropout": self._dropout,
            "context_adapter": None if a is None else {"out_dim": a.out_dim, "hidden": a.hidden_dim,
                                                       "layers": len(a.hidden)},  # fmt: skip
            "output_dim": self.width,
        }

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> DistilT5:
        if not is_distil_t5_config(config):
            raise ValueError("not a DistilT5 config (no neocompress_class: DistilT5)")
        return cls(config, int(config["projection_dim"]), float(config.get("projection_dropout", 0.1)),
                   config.get("context_adapter"))  # fmt: skip

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> BaseModelOutput:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        states = self.final_projection(states)
        if self.context_adapter is not None:
            states = self.context_adapter(states)
        return BaseModelOutput(last_hidden_state=states)


# A DistilT5 pretrained on the miniature's T5 over general text (tools/build_tiny_distilt5.py), so a recipe on
# `builtin:tiny` starts encoder_substitution from trained weights, as a real run starts from the public DistilT5.
BUILTIN_TINY_DISTIL_T5 = "builtin:tiny-distilt5"


def distil_t5_folder(source: str | Path) -> Path:
    """The folder of a DistilT5 checkpoint: a path, or `builtin:tiny-distilt5` (shipped in the package)."""
    source = str(source)
    if source == BUILTIN_TINY_DISTIL_T5:
        from importlib.resources import files

        return Path(str(files("neocompress.assets") / "miniature-distilt5"))
    if source.startswith("builtin:"):
        from neocompress.core.errors import UserInputError

        raise UserInputError(f"student.checkpoint: unknown DistilT5 checkpoint '{source}' (builtin: "
                             f"{BUILTIN_TINY_DISTIL_T5})")  # fmt: skip
    return Path(source)


def load_distil_t5(folder: str | Path) -> DistilT5:
    """A DistilT5 saved in its folder layout (config.json with `neocompress_class: DistilT5`, model.safetensors),
    or `builtin:tiny-distilt5`, loaded strictly: a key missing or left over is an error naming the folder."""
    from neocompress.core.errors import CheckpointError
    from neocompress.models.checkpoint import load_component, read_config

    root = distil_t5_folder(folder)
    config = read_config(root, "DistilT5")
    if not is_distil_t5_config(config):
        raise CheckpointError(f"DistilT5: '{root / 'config.json'}' is not a DistilT5 config (no neocompress_class)")
    return load_component(lambda: DistilT5.from_checkpoint_config(config), root, "DistilT5")


_OWN_KEYS = ("neocompress_class", "projection_dim", "projection_dropout", "context_adapter", "output_dim")
_DROPPED = ("transformers_version", "_name_or_path", "dtype", "torch_dtype", "architectures")


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
        self.in_dim, self.out_dim, self.hidden_dim = in_dim, out_dim, hidden
        for layer in (*self.hidden, self.out):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.gelu(self.hidden[0](x))
        for layer in self.hidden[1:]:
            h = nn.functional.gelu(layer(torch.cat([x, h], dim=-1)))
        return self.out(torch.cat([x, h], dim=-1))
