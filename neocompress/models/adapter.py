"""Model adapters: the small amount of model knowledge passes need, kept out of the passes.

Why (diffusers' `_repeated_blocks`, PEFT's target maps): `remove_blocks` and later importance pruning work on
any MMDiT whose adapter says where the blocks are and how to turn a block into the final "context_pre_only"
form; the Pyramid-Flow family and diffusers' SD3/Flux adapters each provide one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor, nn

# One stream's (block input, block output, per-token weight or None) as a block's forward hook sees them.
StreamIO = tuple[Tensor, Tensor, Tensor | None]


class BlockAdapter(ABC):
    """Where a denoiser's transformer blocks are and how to edit their sequence."""

    @abstractmethod
    def blocks(self, module: nn.Module) -> nn.ModuleList: ...

    @abstractmethod
    def set_blocks(self, module: nn.Module, blocks: list[nn.Module]) -> dict[str, Any]:
        """Install `blocks` densely renumbered; return the updated structural config of the module."""

    @abstractmethod
    def is_context_pre_only(self, block: nn.Module) -> bool: ...

    @abstractmethod
    def make_context_pre_only(self, block: nn.Module) -> None:
        """Convert a full block in place into the final-block form (text stream output dropped)."""

    def requires_context_pre_only_last(self, module: nn.Module) -> bool:
        """Whether the architecture's last block must be in context_pre_only form."""
        return True

    def streams(self) -> tuple[str, ...]:
        """Names of the token streams a block carries (an MMDiT: visual and text)."""
        return ("visual", "text")

    @abstractmethod
    def stream_io(self, args: tuple, kwargs: dict, output: Any) -> dict[str, StreamIO | None]:
        """From a block's forward hook (positional args, keyword args, output): each stream's input tokens
        [B, N, D], output tokens [B, N, D] and token weights [B, N] (0 for padding; None = all count), or None
        for a stream the block does not output (the text stream of a context_pre_only block)."""

    def never_quantize(self, module: nn.Module) -> list[str]:
        """Module names that must stay in higher precision (used by the quantize pass)."""
        return []
