"""The teacher's text targets, `embedder(T5(prompt))`, computed once per chunk of prompts and read from disk after.

Why chunks in file order: training draws prompts in a new order every epoch, so a cache keyed by the training
batch would never hit. The prompts are cut into fixed chunks; each chunk's targets are computed by the teacher
(in batches, under no_grad) and written through `TeacherCache`; a training step gathers its rows from the chunks
they live in. `precompute` runs the teacher over every chunk before training so the big encoder can be released
before the student trains; every read after that is a cache hit, counted per epoch for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from neocompress.core.hashing import hash_json, hash_module
from neocompress.data.teacher_cache import TeacherCache

CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def t5_tokens(tokenizer: object, prompts: Sequence[str], length: int) -> tuple[Tensor, Tensor]:
    """T5 ids and mask padded to `length`, as the pipeline's text bundle tokenizes them."""
    out = tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True,  # type: ignore[operator]
                    add_special_tokens=True, return_tensors="pt")  # fmt: skip
    return out["input_ids"], out["attention_mask"].long()


class TextTargets:
    """Rows of the teacher's targets for prompt indices; `hits`/`misses` per epoch say what the cache did."""

    def __init__(self, teacher: nn.Module, embedder: nn.Module | None, tokenizer: object, length: int,
                 prompts: Sequence[str], folder: Path, *, chunk: int = 16, dtype: str = "float32"):  # fmt: skip
        self.teacher, self.embedder, self.tokenizer, self.length = teacher, embedder, tokenizer, length
        self.prompts = list(prompts)
        self.chunk = chunk
        self.dtype = CACHE_DTYPES[dtype]
        key = hash_json({"t5": hash_module(teacher), "embedder": hash_module(embedder) if embedder else None,
                         "length": length, "dtype": dtype})  # fmt: skip
        self.cache = TeacherCache(folder, key, self._compute)
        self.epoch = 0
        self.per_epoch: dict[int, dict[str, int]] = {}

    @torch.no_grad()
    def _compute(self, prompts: list[str]) -> dict[str, Tensor]:
        if self.teacher is None:
            raise RuntimeError("the teacher was released: its targets must all be cached before training")
        ids, mask = t5_tokens(self.tokenizer, prompts, self.length)
        device = next(self.teacher.parameters()).device
        states = self.teacher(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        target = self.embedder(states) if self.embedder is not None else states
        return {"target": target.to(self.dtype).cpu(), "mask": mask}

    def chunks(self) -> list[list[str]]:
        return [self.prompts[i : i + self.chunk] for i in range(0, len(self.prompts), self.chunk)]

    def precompute(self, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Every chunk's targets into the cache (computed where missing); returns what it computed and read."""
        hits, misses = self.cache.hits, self.cache.misses
        chunks = self.chunks()
        for i, part in enumerate(chunks):
            self.cache.get(part)
            if progress is not None:
                progress(i + 1, len(chunks))
        return {"chunks": len(chunks), "computed": self.cache.misses - misses, "read": self.cache.hits - hits}

    def release_teacher(self) -> None:
        self.teacher = None  # type: ignore[assignment]

    def rows(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """(targets [N, L, D] float32, mask [N, L]) for prompts at `indices`, in that order."""
        stats = self.per_epoch.setdefault(self.epoch, {"hits": 0, "misses": 0})
        loaded: dict[int, dict[str, Tensor]] = {}
        targets, masks = [], []
        for i in indices:
            c = int(i) // self.chunk
            if c not in loaded:
                hits, misses = self.cache.hits, self.cache.misses
                loaded[c] = self.cache.get(self.prompts[c * self.chunk : (c + 1) * self.chunk])
                stats["hits"] += self.cache.hits - hits
                stats["misses"] += self.cache.misses - misses
            row = int(i) - c * self.chunk
            targets.append(loaded[c]["target"][row])
            masks.append(loaded[c]["mask"][row])
        return torch.stack(targets).float(), torch.stack(masks)
