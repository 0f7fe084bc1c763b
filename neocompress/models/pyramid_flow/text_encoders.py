"""Pyramid-Flow's text stack: CLIP-L + CLIP-G pooled vectors and T5 token states, from config or checkpoint.

What reaches the DiT (reference section 3): `pooled` = concat(CLIP-L text_embeds, CLIP-G text_embeds)
([B, 2048] real) into `time_text_embed.text_embedder`, and the T5 encoder's states for `t5_max_length` padded
tokens plus their attention mask into `context_embedder` and the joint-attention mask. CLIP token sequences
are computed (the pooled vector is read at the end-of-text token) but never returned.

Encoding follows Pyramid-Flow's `SD3TextEncoderWithMask`: CLIP ids are padded/truncated to 77 and run
without an attention mask (CLIP is causal, so pads after end-of-text cannot change the pooled vector); T5 ids
are padded to `t5_max_length` and the mask is passed to the encoder. States at T5 pad positions are left as
the encoder computes them (not zeroed), as in the reference; the DiT's mask keeps them away from image tokens.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from neocompress.models.pyramid_flow.text_config import CLIP_MAX_LENGTH, T5_MAX_LENGTH, TextBundleConfig
from neocompress.models.pyramid_flow.tokenizers import TextTokenizers, load_tokenizers

# Checkpoint folder names (SD3 / Pyramid-Flow layout).
ENCODER_SUBFOLDERS: tuple[str, str, str] = ("text_encoder", "text_encoder_2", "text_encoder_3")
# Token lengths are not in any transformers config; save_pretrained records them here.
_LENGTHS_FILE = "text_bundle.json"
_DROPPED_CONFIG_KEYS = ("transformers_version", "_name_or_path", "dtype", "torch_dtype")


def build_clip_l(cfg: TextBundleConfig) -> CLIPTextModelWithProjection:
    """CLIP-L text tower with projection, randomly initialised (or shapes only under a meta device)."""
    return CLIPTextModelWithProjection(CLIPTextConfig.from_dict(copy.deepcopy(cfg.clip_l)))


def build_clip_g(cfg: TextBundleConfig) -> CLIPTextModelWithProjection:
    """CLIP-G text tower with projection, randomly initialised (or shapes only under a meta device)."""
    return CLIPTextModelWithProjection(CLIPTextConfig.from_dict(copy.deepcopy(cfg.clip_g)))


def build_t5(cfg: TextBundleConfig) -> nn.Module:
    """T5 encoder (no decoder), randomly initialised (or shapes only under a meta device); a DistilT5 when the
    config is one (a pipeline whose T5-XXL was substituted by `encoder_substitution`)."""
    from neocompress.models.pyramid_flow.distil_t5 import DistilT5, is_distil_t5_config

    if is_distil_t5_config(cfg.t5):
        return DistilT5.from_checkpoint_config(cfg.t5)
    return T5EncoderModel(T5Config.from_dict(copy.deepcopy(cfg.t5)))


@dataclass
class TextEmbeddings:
    """Text conditioning of one batch, the DiT's text inputs.

    pooled: [B, pooled_dim] float; tokens: [B, t5_max_length, d_model] float; mask: [B, t5_max_length] long,
    1 for real T5 tokens (including `</s>`), 0 for padding.
    """

    pooled: Tensor
    tokens: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        b = self.pooled.shape[0]
        if self.pooled.ndim != 2 or self.tokens.ndim != 3 or self.mask.ndim != 2:
            raise ValueError(
                f"want pooled [B,D], tokens [B,L,D], mask [B,L]; got {tuple(self.pooled.shape)}, "
                f"{tuple(self.tokens.shape)}, {tuple(self.mask.shape)}"
            )
        if self.tokens.shape[0] != b or tuple(self.mask.shape) != tuple(self.tokens.shape[:2]):
            raise ValueError("pooled, tokens and mask disagree on batch or length")

    @property
    def batch_size(self) -> int:
        return int(self.pooled.shape[0])

    @classmethod
    def cat(cls, parts: Sequence[TextEmbeddings]) -> TextEmbeddings:
        """Stack along the batch, e.g. `TextEmbeddings.cat([uncond, cond])` for classifier-free guidance."""
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls(
            pooled=torch.cat([p.pooled for p in parts]),
            tokens=torch.cat([p.tokens for p in parts]),
            mask=torch.cat([p.mask for p in parts]),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextEmbeddings:
        """Move to `device`; `dtype` applies to pooled and tokens only (the mask stays long)."""
        return TextEmbeddings(
            pooled=self.pooled.to(device=device, dtype=dtype),
            tokens=self.tokens.to(device=device, dtype=dtype),
            mask=self.mask.to(device=device),
        )


@dataclass
class TokenizedPrompts:
    """Token ids for the three encoders; exposed so callers (and tests) can edit ids before encoding."""

    clip_l_ids: Tensor  # [B, clip_max_length]
    clip_g_ids: Tensor  # [B, clip_max_length]
    t5_ids: Tensor  # [B, t5_max_length]
    t5_mask: Tensor  # [B, t5_max_length], long

    def to(self, device: torch.device | str) -> TokenizedPrompts:
        return TokenizedPrompts(*(t.to(device) for t in (self.clip_l_ids, self.clip_g_ids, self.t5_ids, self.t5_mask)))


class TextBundle(nn.Module):
    """The three frozen text encoders and their tokenizers; `encode(prompts)` gives the DiT's text inputs.

    Frozen (eval mode, no grads) like Pyramid-Flow's text encoder; call `requires_grad_(True)` to train.
    `forward(tokens)` is the tensor-only path for hooks, calibration and export.
    """

    def __init__(
        self,
        config: TextBundleConfig,
        clip_l: CLIPTextModelWithProjection,
        clip_g: CLIPTextModelWithProjection,
        t5: T5EncoderModel,
        tokenizers: TextTokenizers | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.clip_l = clip_l
        self.clip_g = clip_g
        self.t5 = t5
        self.tokenizers = tokenizers
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def build(
        cls, config: TextBundleConfig, tokenizers: TextTokenizers | None = None, seed: int | None = None
    ) -> TextBundle:
        """Randomly initialised bundle; a fixed `seed` gives identical weights without touching global RNG."""
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return cls(config, build_clip_l(config), build_clip_g(config), build_t5(config), tokenizers)

    @classmethod
    def tiny(cls, seed: int = 0) -> TextBundle:
        """Tiny bundle on the shipped tiny tokenizers (pooled 64, 32 T5 tokens of width 64)."""
        return cls.build(TextBundleConfig.tiny(), load_tokenizers(), seed=seed)

    @classmethod
    def from_pretrained(
        cls,
        root: str | Path,
        dtype: torch.dtype | None = None,
        t5_max_length: int | None = None,
    ) -> TextBundle:
        """Load a checkpoint folder with `text_encoder*/` and `tokenizer*/` (e.g. pyramid-flow-sd3), offline.

        `t5_max_length` defaults to the value saved by `save_pretrained`, else Pyramid-Flow's 128.
        """
        root = Path(root)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if dtype is not None:
            kwargs["dtype"] = dtype
        clip_l = CLIPTextModelWithProjection.from_pretrained(root / ENCODER_SUBFOLDERS[0], **kwargs)
        clip_g = CLIPTextModelWithProjection.from_pretrained(root / ENCODER_SUBFOLDERS[1], **kwargs)
        t5 = T5EncoderModel.from_pretrained(root / ENCODER_SUBFOLDERS[2], **kwargs)
        saved = _read_lengths(root)
        config = TextBundleConfig(
            clip_l=_config_dict(clip_l),
            clip_g=_config_dict(clip_g),
            t5=_config_dict(t5),
            clip_max_length=saved.get("clip_max_length", CLIP_MAX_LENGTH),
            t5_max_length=t5_max_length or saved.get("t5_max_length", T5_MAX_LENGTH),
        )
        return cls(config, clip_l, clip_g, t5, load_tokenizers(root))

    def save_pretrained(self, root: str | Path) -> Path:
        """Write the checkpoint layout (`text_encoder*/`, `tokenizer*/`) plus the token lengths."""
        root = Path(root)
        for name, model in zip(ENCODER_SUBFOLDERS, (self.clip_l, self.clip_g, self.t5), strict=True):
            model.save_pretrained(root / name)
        self._require_tokenizers().save(root)
        lengths = {"clip_max_length": self.config.clip_max_length, "t5_max_length": self.config.t5_max_length}
        (root / _LENGTHS_FILE).write_text(json.dumps(lengths, indent=2, sort_keys=True) + "\n")
        return root

    def _require_tokenizers(self) -> TextTokenizers:
        if self.tokenizers is None:
            raise RuntimeError("this TextBundle was built without tokenizers")
        return self.tokenizers

    @property
    def device(self) -> torch.device:
        return next(self.t5.parameters()).device

    def tokenize(self, prompts: Sequence[str]) -> TokenizedPrompts:
        """CLIP ids padded/truncated to `clip_max_length`; T5 ids and mask padded to `t5_max_length`."""
        return tokenize_prompts(
            self._require_tokenizers(), prompts, self.config.clip_max_length, self.config.t5_max_length
        )

    def forward(self, tokens: TokenizedPrompts) -> TextEmbeddings:
        """Run the three encoders on token ids (moved to the bundle's device)."""
        tokens = tokens.to(self.device)
        pooled_l = self.clip_l(input_ids=tokens.clip_l_ids).text_embeds
        pooled_g = self.clip_g(input_ids=tokens.clip_g_ids).text_embeds
        states = self.t5(input_ids=tokens.t5_ids, attention_mask=tokens.t5_mask).last_hidden_state
        return TextEmbeddings(pooled=torch.cat([pooled_l, pooled_g], dim=-1), tokens=states, mask=tokens.t5_mask)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEmbeddings:
        """Prompts to the DiT's text inputs (no autograd graph)."""
        return self(self.tokenize(prompts))


def tokenize_prompts(
    toks: TextTokenizers, prompts: Sequence[str], clip_max_length: int, t5_max_length: int
) -> TokenizedPrompts:
    """The three encoders' token ids for `prompts` (no model needed: a lowered bundle tokenizes with this)."""
    if isinstance(prompts, str):
        raise TypeError("pass a list of prompts, not a single string")
    prompts = list(prompts)

    def clip_ids(tok: Any) -> Tensor:
        out = tok(prompts, padding="max_length", max_length=clip_max_length, truncation=True, return_tensors="pt")
        return out["input_ids"]

    t5 = toks.t5(prompts, padding="max_length", max_length=t5_max_length, truncation=True, add_special_tokens=True,
                 return_tensors="pt")  # fmt: skip
    return TokenizedPrompts(
        clip_l_ids=clip_ids(toks.clip_l),
        clip_g_ids=clip_ids(toks.clip_g),
        t5_ids=t5["input_ids"],
        t5_mask=t5["attention_mask"].long(),
    )


def _read_lengths(root: Path) -> dict[str, int]:
    path = root / _LENGTHS_FILE
    from neocompress.core.errors import CheckpointError
    from neocompress.models.checkpoint import read_json_object

    lengths = read_json_object(path, "text encoders", default={})
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in lengths.values()):
        raise CheckpointError(f"text encoders: '{path}' must map names to positive token counts, got {lengths}")
    return lengths


def _config_dict(model: CLIPTextModelWithProjection | T5EncoderModel) -> dict[str, Any]:
    data = model.config.to_dict()
    for key in _DROPPED_CONFIG_KEYS:
        data.pop(key, None)
    return data
