"""Block importance BI_i = 1 - E[cos(input_i, output_i)] per token, per stream and per pyramid stage.

Why forward hooks and running sums (Neodragon section 5, ShortGPT's block influence): a block whose output
points where its input pointed changes little and is the cheapest to remove. Hooks see every block's input and
output during ordinary teacher sampling, so no copy of the model is made and nothing of the activations is kept:
each hook adds the batch's sum of (1 - cos) and its token count to a [blocks, streams, stages] table in float64,
so memory stays O(blocks) whatever the number of prompts, samples and steps. Hooks are removed on exit, even
when sampling fails.

The stream split comes from the model's block adapter (`stream_io`): for an MMDiT, the visual (image-token)
stream and the text stream; a context_pre_only last block has no text output, so its text importance is
undefined (NaN) rather than zero. Padded text tokens are left out through the adapter's token weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neocompress.models.adapter import BlockAdapter


@dataclass
class BlockImportance:
    """Scores[block][stream][stage] = mean (1 - cos) over every token seen, NaN where a stream has no output."""

    streams: tuple[str, ...]
    stages: int
    sums: list[list[list[float]]]
    counts: list[list[list[int]]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_blocks(self) -> int:
        return len(self.sums)

    def per_stage(self, stream: str) -> list[list[float]]:
        """[block][stage] importance of one stream."""
        s = self._stream_index(stream)
        return [
            [_mean(self.sums[b][s][k], self.counts[b][s][k]) for k in range(self.stages)]
            for b in range(self.num_blocks)
        ]

    def score(self, stream: str) -> list[float]:
        """[block] importance of one stream, pooled over stages by token count."""
        s = self._stream_index(stream)
        return [_mean(sum(self.sums[b][s]), sum(self.counts[b][s])) for b in range(self.num_blocks)]

    def combined(self, weights: dict[str, float]) -> list[float]:
        """[block] weighted sum of the streams' scores, normalised by the weights of the streams that block has
        (so a context_pre_only block is judged by its visual stream alone rather than counted as unimportant)."""
        unknown = sorted(set(weights) - set(self.streams))
        if unknown:
            raise ValueError(f"unknown stream(s) {unknown}; this model's streams are {list(self.streams)}")
        per_stream = {name: self.score(name) for name in weights}
        out = []
        for b in range(self.num_blocks):
            pairs = [(w, per_stream[n][b]) for n, w in weights.items() if w and not math.isnan(per_stream[n][b])]
            total = sum(w for w, _ in pairs)
            out.append(sum(w * v for w, v in pairs) / total if total else math.nan)
        return out

    def _stream_index(self, stream: str) -> int:
        if stream not in self.streams:
            raise ValueError(f"unknown stream '{stream}'; this model's streams are {list(self.streams)}")
        return self.streams.index(stream)

    def to_dict(self) -> dict[str, Any]:
        return {
            "streams": list(self.streams),
            "stages": self.stages,
            "scores": {name: _nan_to_none(self.score(name)) for name in self.streams},
            "per_stage": {name: [_nan_to_none(row) for row in self.per_stage(name)] for name in self.streams},
            "sums": self.sums,
            "counts": self.counts,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockImportance:
        return cls(tuple(data["streams"]), int(data["stages"]), data["sums"], data["counts"], data.get("meta", {}))


def _nan_to_none(values: list[float]) -> list[float | None]:
    """JSON has no NaN: an unmeasured score is written as null."""
    return [None if math.isnan(v) else v for v in values]


def _mean(total: float, count: int) -> float:
    return total / count if count else math.nan


class ImportanceMeter:
    """Context manager: forward hooks on `blocks` that accumulate (1 - cos) per block, stream and stage.

    Set `stage` before each denoiser call (the sampler's progress callback does); the hook reads it.
    """

    def __init__(self, blocks: Sequence[nn.Module], adapter: BlockAdapter, stages: int) -> None:
        self.blocks, self.adapter, self.stages = list(blocks), adapter, stages
        self.streams = tuple(adapter.streams())
        shape = (len(self.blocks), len(self.streams), stages)
        self._sums = torch.zeros(shape, dtype=torch.float64)
        self._counts = torch.zeros(shape, dtype=torch.float64)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.stage = 0

    def __enter__(self) -> ImportanceMeter:
        for i, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_hook(self._hook(i), with_kwargs=True))
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def attached(self) -> int:
        return len(self._handles)

    def _hook(self, index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not 0 <= self.stage < self.stages:
                raise ValueError(f"stage {self.stage} outside 0..{self.stages - 1}")
            for s, name in enumerate(self.streams):
                io = self.adapter.stream_io(args, kwargs, output).get(name)
                if io is None:
                    continue
                x, y, weight = io
                distance = 1.0 - F.cosine_similarity(x.detach().float(), y.detach().float(), dim=-1, eps=1e-8)
                w = torch.ones_like(distance) if weight is None else weight.to(distance.dtype)
                self._sums[index, s, self.stage] += float((distance * w).sum())
                self._counts[index, s, self.stage] += float(w.sum())

        return hook

    def reduce(self) -> None:
        """Sum the tables over the processes of a launched run (each measured its share of the prompts)."""
        from neocompress.core.distributed import all_reduce_sum

        all_reduce_sum(self._sums)
        all_reduce_sum(self._counts)

    def result(self, **meta: Any) -> BlockImportance:
        return BlockImportance(
            self.streams,
            self.stages,
            self._sums.tolist(),
            [[[int(c) for c in row] for row in block] for block in self._counts.tolist()],
            dict(meta),
        )
