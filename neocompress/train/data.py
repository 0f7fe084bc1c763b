"""Seeded, resumable, layout-independent data order for the training engine.

Why not a shuffled `DataLoader` prepared by Accelerate: its sampler reshuffles per epoch from the global RNG and
shards each global batch by process, so the samples of an optimizer step depend on the number of processes,
the per-process batch and the accumulation; resuming needs `skip_first_batches`. Here the data order is one
infinite *sample stream* (epoch e is a permutation of the dataset drawn from `(seed, e)`, epochs concatenated),
and optimizer step s consumes stream positions `[s * G, (s + 1) * G)` with G = batch x processes x accumulation.
Micro-batch m of step s on rank r takes the slice `(s * A + m) * B * W + r * B` of length B. Consequences:

- the order is a function of the seed and the rank only (never of the global RNG, which the loss may use);
- 1 process x batch 2B, 2 processes x batch B and 1 process x batch B x accumulation 2 see the same samples in
  every optimizer step, so their results agree up to floating-point rounding;
- resuming at step s starts the stream at position s * G: the continuation is exactly the uninterrupted order,
  without reading and discarding the batches already used.

An iterable of ready batches cannot be shuffled; its items are dealt round-robin to the ranks (global micro-batch
g goes to rank g mod W) and a resumed run skips the items already consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

# Mixes the seed and the epoch into one generator seed; any fixed odd multiplier keeps nearby seeds apart.
_EPOCH_MIX = 1_000_003


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the dataset's `n` samples in `epoch`: a pure function of (seed, epoch)."""
    g = torch.Generator("cpu").manual_seed((seed * _EPOCH_MIX + epoch) % (2**63))
    return torch.randperm(n, generator=g)


class StreamBatchSampler(Sampler[list[int]]):
    """Index lists of one rank's micro-batches, from micro-step `start_micro` on, forever.

    Micro-step k (counted per rank, k = step * grad_accum + m) covers stream positions
    `k * batch_size * world_size + rank * batch_size + [0, batch_size)`.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, seed: int, start_micro: int = 0):
        if n <= 0:
            raise ValueError("the training dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.batch_size, self.world_size, self.rank = n, batch_size, world_size, rank
        self.seed, self.start_micro = seed, start_micro
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch != self._perm_epoch:  # positions only move forward: one permutation held at a time
            self._perm, self._perm_epoch = epoch_permutation(self.n, self.seed, epoch), epoch
        return int(self._perm[offset])

    def indices(self, micro: int) -> list[int]:
        """The dataset indices of micro-step `micro` on this rank."""
        base = micro * self.batch_size * self.world_size + self.rank * self.batch_size
        return [self._index(p) for p in range(base, base + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start_micro
        while True:
            yield self.indices(micro)
            micro += 1


def dataset_batches(
    dataset: Dataset,
    *,
    batch_size: int,
    world_size: int,
    rank: int,
    seed: int,
    start_micro: int,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> Iterator[Any]:
    """This rank's micro-batches of a map-style dataset, in stream order, from `start_micro` on.

    The DataLoader gets its own generator so creating its iterator does not draw from the global torch RNG
    (it otherwise takes a worker base seed from it, and a resumed run would then see different loss noise).
    """
    sampler = StreamBatchSampler(len(dataset), batch_size, world_size, rank, seed, start_micro)  # type: ignore[arg-type]
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=torch.Generator("cpu").manual_seed(seed + 7919 * rank),
        persistent_workers=False,
    )
    return iter(loader)


def iterable_batches(data: Iterable[Any], *, world_size: int, rank: int, start_micro: int) -> Iterator[Any]:
    """This rank's share of an iterable of ready micro-batches, from its micro-step `start_micro` on.

    Global item g goes to rank g mod world_size. A re-iterable source (a list, a generator *factory* wrapped in
    an iterable class) starts over when exhausted; a one-shot iterator that runs out is an error.
    """
    skip = start_micro * world_size + rank  # global index of this rank's first item
    g = 0
    while True:
        it = iter(data)
        one_shot = it is data
        produced = False
        for item in it:
            produced = True
            if g >= skip and (g - rank) % world_size == 0:
                yield item
            g += 1
        if one_shot or not produced:
            raise RuntimeError(
                f"the training data ran out after {g} batches; pass a Dataset or a re-iterable (e.g. a list)"
            )


def is_map_dataset(data: Any) -> bool:
    """A map-style dataset (indexable with a length) gets the seeded stream; anything else is batches."""
    return hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, list | tuple)
