"""PassContext: everything a pass may use besides the IR, passed explicitly.

Why explicit (TVM's PassContext, minus its thread-local): no module globals or environment variables steer a
pass, so the same recipe gives the same result wherever it runs, and tests can build a context by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from neocompress.analysis.score_cache import ScoreCache
    from neocompress.core.cache import PassCache
    from neocompress.core.instruments import Instrument
    from neocompress.data.prompts import PromptSets


@dataclass
class PassContext:
    """Work dir, seed, target, cache, data, accelerator and instruments for one run."""

    work_dir: Path
    seed: int = 0
    target: Any = None  # [{name, device}] of the recipe's targets, part of every cache key
    cache: PassCache | None = None
    data: PromptSets | None = None
    accelerator: Any | None = None  # an accelerate.Accelerator, created by training passes when needed
    instruments: list[Instrument] = field(default_factory=list)
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    pass_index: int = 0  # the running pass's position in the recipe (set by the manager; names its scratch)
    # Remembered MiniBench results: a pass's "before" is answered by the previous pass's "after".
    scores: ScoreCache = field(default_factory=lambda: _memory_scores())

    @classmethod
    def for_planning(cls, *, seed: int = 0, target: Any = None) -> PassContext:
        """A context for structural planning on weightless skeletons: nothing is written, no data is read."""
        return cls(work_dir=Path("/nonexistent"), seed=seed, target=target)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU generator seeded from the run's seed (offset keeps streams of one pass apart)."""
        return torch.Generator("cpu").manual_seed(self.seed + offset)

    def pass_dir(self, pass_name: str, index: int | None = None) -> Path:
        """A scratch directory owned by one pass of this run (by default the running pass's)."""
        d = self.work_dir / f"{self.pass_index if index is None else index:02d}-{pass_name}"
        d.mkdir(parents=True, exist_ok=True)
        return d


def _memory_scores() -> ScoreCache:
    """An in-memory score cache (imported late: the analysis layer sits above the core)."""
    from neocompress.analysis.score_cache import ScoreCache

    return ScoreCache()
