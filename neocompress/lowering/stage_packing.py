"""The host side of a static stage graph: one sampler call (history clips, current clip, text, timestep) -> the
graph's inputs (front-padded clips, additive mask, timestep embedding, RoPE tables).

Why apart from the module: the onnxruntime and Hexagon bundles run the graphs without any torch model, and must
build exactly the inputs the graph was exported and calibrated with. A `StagePacker` is plain data (it goes into
the bundle's manifest) plus tensor arithmetic; `StaticStageDenoiser.packer` builds one from the torch graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from neocompress.models.pyramid_flow.attention import additive_mask, token_times
from neocompress.models.pyramid_flow.embeddings import rope_angles, timestep_sinusoid


@dataclass
class StagePacker:
    slots: list[tuple[int, ...]]  # (C, T, H, W) per clip slot: history oldest first, the current clip last
    text_len: int
    per_frame: list[int]  # tokens of each frame over all slots
    frames_per_clip: list[int]
    head_dim: int
    rope_theta: float
    timestep_channels: int
    masked_value: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "slots": [list(s) for s in self.slots]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StagePacker:
        return cls(**{**d, "slots": [tuple(s) for s in d["slots"]]})

    @property
    def history_slots(self) -> int:
        return len(self.slots) - 1

    def fits(self, sample: Sequence[Tensor]) -> str | None:
        """None if the call's clips fit this graph's slots (a suffix of the history slots, then the current
        clip), else what does not fit."""
        if len(sample) - 1 > self.history_slots:
            return f"{len(sample) - 1} history clips, the graph has {self.history_slots} slots"
        slots = self.slots[len(self.slots) - len(sample) :]
        for clip, slot in zip(sample, slots, strict=True):
            if tuple(clip.shape[1:]) != tuple(slot):
                return f"clip {tuple(clip.shape[1:])} where the graph's slot is {tuple(slot)}"
        return None

    def pack(
        self, sample: Sequence[Tensor], tokens: Tensor, text_mask: Tensor, pooled: Tensor, timestep: Tensor
    ) -> tuple[Tensor, ...]:
        """The graph inputs of a sampler call: history padded at the front with zeros, the additive mask, the
        timestep embedding and the RoPE tables, for the call's batch."""
        problem = self.fits(sample)
        if problem is not None:
            raise ValueError(f"this call does not fit the stage graph: {problem}")
        batch = sample[-1].shape[0]
        pad = len(self.slots) - len(sample)
        zeros = [torch.zeros((batch, *s), dtype=sample[-1].dtype) for s in self.slots[:pad]]
        real = [False] * sum(self.frames_per_clip[:pad]) + [True] * sum(self.frames_per_clip[pad:])
        if timestep.dim() == 0:
            timestep = timestep.expand(batch)
        cos, sin = self._rope(real)
        t_proj = timestep_sinusoid(timestep, self.timestep_channels).to(pooled.dtype)
        mask = self._mask(text_mask, real)
        return (*zeros, *sample, tokens, mask, pooled, t_proj, cos, sin)

    def _frame_times(self, real: Sequence[bool]) -> list[int]:
        """Real frames keep the times they have without padding (0, 1, ...); padded frames sit at 0."""
        first = real.index(True)
        return [j - first if r else 0 for j, r in enumerate(real)]

    def _rope(self, real: Sequence[bool]) -> tuple[Tensor, Tensor]:
        times = token_times(self.text_len, self.per_frame, self._frame_times(real))
        cos, sin = rope_angles(times, self.head_dim, self.rope_theta)
        return cos[None, None], sin[None, None]

    def _mask(self, text_mask: Tensor, real: Sequence[bool]) -> Tensor:
        """Additive [B, 1, N, N]: a query sees keys of its own group at times <= its own; valid text and real
        frames form a sample's group, padded text and padded frames group 0 (every row keeps itself, so the
        softmax stays finite, and no real token reads padding)."""
        batch = text_mask.shape[0]
        sample_id = torch.arange(1, batch + 1)[:, None]
        text_ids = torch.where(text_mask != 0, sample_id, torch.zeros_like(sample_id))
        frame_ids = [sample_id.expand(batch, n) if r else torch.zeros(batch, n, dtype=torch.long)
                     for n, r in zip(self.per_frame, real, strict=True)]  # fmt: skip
        ids = torch.cat([text_ids, *frame_ids], dim=1)
        times = token_times(self.text_len, self.per_frame, self._frame_times(real))
        allowed = (ids[:, None, :, None] == ids[:, None, None, :]) & (times[:, None] >= times[None, :])[None, None]
        return additive_mask(allowed, self.masked_value)

