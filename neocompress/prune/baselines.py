"""Naive baselines for `block_prune`: the same number of blocks cut at random or from the end, scored beside the
importance-chosen cut, so the report says what measuring importance buys.

Why cut-only: each baseline is scored right after its cut, with no recovery training, against the importance
cut at the same point (its "pruning, no recovery" score). Recovering every baseline would multiply the pass's
training time by the number of baselines; the cut is where the choice of blocks alone shows.

A baseline cut is tried on the live pipeline and undone (`trial_cut`): the denoiser is copied, cut, scored and
the original put back, so no second copy of the rest of the pipeline (text encoders, VAE) is made.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable, Iterator
from typing import Any, Literal

from neocompress.ir.pipeline_ir import PipelineIR

Baseline = Literal["random", "last"]
BASELINES: tuple[str, ...] = ("random", "last")


# Draws of the random baseline tried before settling for one that repeats another cut.
RANDOM_DRAWS = 32


def baseline_indices(kind: str, num_blocks: int, protected: set[int], count: int, seed: int,
                     avoid: list[list[int]] | None = None) -> list[int]:  # fmt: skip
    """`count` unprotected blocks: drawn with `seed` (random) or the deepest ones (last), sorted.

    A random draw that repeats a cut in `avoid` (the importance cut, the last blocks) says nothing the report
    does not already show, so the next seeds are tried (up to RANDOM_DRAWS) for a different one."""
    candidates = [i for i in range(num_blocks) if i not in protected]
    if count > len(candidates):
        raise ValueError(f"cannot choose {count} of {len(candidates)} unprotected blocks")
    if kind == "random":
        draws = [sorted(random.Random(seed + k).sample(candidates, count)) for k in range(RANDOM_DRAWS)]
        fresh = [d for d in draws if d not in (avoid or [])]
        return fresh[0] if fresh else draws[0]
    if kind == "last":
        return sorted(candidates[-count:]) if count else []
    raise ValueError(f"unknown baseline {kind!r}; expected one of: {', '.join(BASELINES)}")


@contextlib.contextmanager
def trial_cut(ir: PipelineIR, component: str, indices: list[int]) -> Iterator[PipelineIR]:
    """`ir` with a copy of `component` cut at `indices` for the duration of the block; restored afterwards."""
    from neocompress.passes.remove_blocks import RemoveBlocks, RemoveBlocksConfig

    comp = ir[component]
    saved = (comp.module, comp.config, list(comp.provenance))
    comp.module = copy.deepcopy(comp.module)
    try:
        RemoveBlocks(RemoveBlocksConfig(indices=indices, component=component)).run(ir, None)
        yield ir
    finally:
        comp.module, comp.config, comp.provenance = saved[0], saved[1], saved[2]


def score_baselines(
    ir: PipelineIR,
    component: str,
    kinds: list[str],
    chosen: list[int],
    protected: set[int],
    seed: int,
    score: Callable[[PipelineIR], dict[str, Any]],
) -> dict[str, Any]:
    """Each baseline's cut and its `score`, and the importance cut's, all of len(chosen) blocks."""
    num_blocks = len(ir[component].extras["block_adapter"].blocks(ir[component].module))
    out: dict[str, Any] = {}
    last = baseline_indices("last", num_blocks, protected, len(chosen), seed)
    fixed = {"importance": chosen, "last": last}
    for kind in ["importance", *kinds]:
        indices = fixed[kind] if kind in fixed else baseline_indices(kind, num_blocks, protected, len(chosen), seed,
                                                                     avoid=[sorted(chosen), last])  # fmt: skip
        with trial_cut(ir, component, indices) as cut:
            out[kind] = {"removed": indices, "minibench": score(cut)}
    return out
