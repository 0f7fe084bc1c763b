"""Configuration of Pyramid-Flow's text stack: CLIP-L, CLIP-G and T5 encoder configs plus token lengths.

The three sub-configs are plain transformers config dicts (what `config.json` in `text_encoder/`,
`text_encoder_2/`, `text_encoder_3/` holds), so the builders can hand them straight to transformers and a
saved bundle config is readable without neocompress. The real values are the ones the SD3-medium checkpoint
ships (Pyramid-Flow-sd3 reuses its text encoders); the legacy CLIP `eos_token_id: 2` is kept on purpose,
because it selects transformers' argmax-of-ids pooling that the real checkpoint relies on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 128  # Pyramid-Flow's max_sequence_length for T5 (the DiT's text stream length).
TINY_T5_MAX_LENGTH = 32


def _clip_l_sd3() -> dict[str, Any]:
    """OpenAI CLIP ViT-L/14 text tower with projection, as SD3's `text_encoder/config.json`."""
    return {
        "architectures": ["CLIPTextModelWithProjection"],
        "model_type": "clip_text_model",
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "projection_dim": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }


def _clip_g_sd3() -> dict[str, Any]:
    """OpenCLIP ViT-bigG/14 text tower with projection, as SD3's `text_encoder_2/config.json`."""
    return {
        **_clip_l_sd3(),
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "projection_dim": 1280,
        "num_hidden_layers": 32,
        "num_attention_heads": 20,
        "hidden_act": "gelu",
    }


def _t5_xxl_sd3() -> dict[str, Any]:
    """T5-v1.1-XXL encoder, as SD3's `text_encoder_3/config.json` (the decoder fields are never built)."""
    return {
        "architectures": ["T5EncoderModel"],
        "model_type": "t5",
        "vocab_size": 32128,
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_decoder_layers": 24,
        "num_heads": 64,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "tie_word_embeddings": False,
        "decoder_start_token_id": 0,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }


@dataclass(frozen=True)
class TextBundleConfig:
    """Sub-configs of the three text encoders and the token lengths Pyramid-Flow pads to.

    Only the pooled CLIP outputs (`projection_dim` each, concatenated) and the T5 token states
    (`t5_max_length` x `d_model`) reach the DiT; the CLIP token sequences never do.
    The dicts are not copied on access: treat them as read-only (`to_dict` returns copies).
    """

    clip_l: dict[str, Any] = field(hash=False)
    clip_g: dict[str, Any] = field(hash=False)
    t5: dict[str, Any] = field(hash=False)
    clip_max_length: int = CLIP_MAX_LENGTH
    t5_max_length: int = T5_MAX_LENGTH

    def __post_init__(self) -> None:
        for name in ("clip_l", "clip_g"):
            sub = getattr(self, name)
            if sub.get("model_type") != "clip_text_model":
                raise ValueError(f"{name} must be a clip_text_model config, got {sub.get('model_type')!r}")
            if sub["max_position_embeddings"] < self.clip_max_length:
                raise ValueError(f"{name} has {sub['max_position_embeddings']} positions < {self.clip_max_length}")
        if self.t5.get("model_type") != "t5":
            raise ValueError(f"t5 must be a t5 config, got {self.t5.get('model_type')!r}")
        if self.clip_max_length < 2 or self.t5_max_length < 1:
            raise ValueError("token lengths must leave room for the special tokens")

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled text vector the DiT's `time_text_embed.text_embedder` takes (2048 real)."""
        return int(self.clip_l["projection_dim"]) + int(self.clip_g["projection_dim"])

    @property
    def t5_dim(self) -> int:
        """Width of each T5 token state the DiT's `context_embedder` takes (4096 real)."""
        return int(self.t5.get("output_dim") or self.t5["d_model"])  # a DistilT5 records its output width

    @classmethod
    def pyramid_flow_sd3(cls) -> TextBundleConfig:
        """The released `rain1011/pyramid-flow-sd3` text stack: CLIP-L + CLIP-G (77 tokens), T5-XXL (128)."""
        return cls(clip_l=_clip_l_sd3(), clip_g=_clip_g_sd3(), t5=_t5_xxl_sd3())

    @classmethod
    def tiny(cls, tokenizer_root: str | Path | None = None) -> TextBundleConfig:
        """Tiny stack for tests: pooled 32 + 32 = 64, T5 d_model 64, 32 T5 tokens.

        Vocabulary sizes and special-token ids are read from the tokenizers in `tokenizer_root`
        (default: the shipped tiny ones) so embedding tables match the ids those tokenizers emit.
        """
        from neocompress.models.pyramid_flow.tokenizers import load_tokenizers

        toks = load_tokenizers(tokenizer_root)

        def clip(tok: Any, hidden: int, act: str) -> dict[str, Any]:
            if tok.eos_token_id == 2:
                raise ValueError("eos id 2 would select transformers' legacy argmax pooling")
            return {
                **_clip_l_sd3(),
                "vocab_size": len(tok),
                "hidden_size": hidden,
                "intermediate_size": 4 * hidden,
                "projection_dim": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "hidden_act": act,
                "bos_token_id": tok.bos_token_id,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            }

        t5 = {
            **_t5_xxl_sd3(),
            "vocab_size": len(toks.t5),
            "d_model": 64,
            "d_kv": 32,
            "d_ff": 128,
            "num_layers": 2,
            "num_decoder_layers": 2,
            "num_heads": 2,
            "pad_token_id": toks.t5.pad_token_id,
            "eos_token_id": toks.t5.eos_token_id,
        }
        return cls(
            clip_l=clip(toks.clip_l, 32, "quick_gelu"),
            clip_g=clip(toks.clip_g, 48, "gelu"),
            t5=t5,
            t5_max_length=TINY_T5_MAX_LENGTH,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready deep copy."""
        return {
            "clip_l": copy.deepcopy(self.clip_l),
            "clip_g": copy.deepcopy(self.clip_g),
            "t5": copy.deepcopy(self.t5),
            "clip_max_length": self.clip_max_length,
            "t5_max_length": self.t5_max_length,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextBundleConfig:
        """Inverse of `to_dict`; unknown top-level keys are an error (they would be silently lost)."""
        known = {"clip_l", "clip_g", "t5", "clip_max_length", "t5_max_length"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TextBundleConfig keys {sorted(unknown)}")
        return cls(
            clip_l=copy.deepcopy(data["clip_l"]),
            clip_g=copy.deepcopy(data["clip_g"]),
            t5=copy.deepcopy(data["t5"]),
            clip_max_length=int(data.get("clip_max_length", CLIP_MAX_LENGTH)),
            t5_max_length=int(data.get("t5_max_length", T5_MAX_LENGTH)),
        )
