"""Which process this is when `neocompress apply` runs under `accelerate launch` / `torchrun`, and the few
collectives the pass machinery needs.

Why here and not in each pass: every process runs the same recipe (so each makes the same cache decisions and
enters the training passes' collectives together), but one copy of each output must be written. Rank 0 writes
the cache entries, the pictures and the output; the others wait at a barrier and then read what it wrote.
Outside a launcher (WORLD_SIZE unset or 1) every call here is a no-op and nothing of torch.distributed is used.
"""

from __future__ import annotations

import os

import torch


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def ensure_process_group() -> None:
    """Under a launcher, join the process group now (Accelerate's shared state, which the training engine's
    Accelerator reuses), so barriers work before the first training pass."""
    if launched_world_size() > 1 and not torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())


def _active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if _active() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if _active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if _active() and world_size() > 1:
        torch.distributed.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over the processes in place (returned for chaining); unchanged in a single process."""
    if _active() and world_size() > 1:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t


def local_device(requested: str) -> str:
    """`cuda` under a launcher means this process's own GPU."""
    if requested == "cuda" and launched_world_size() > 1:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return requested
