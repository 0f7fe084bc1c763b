"""Measure block importance by sampling with the teacher, and cache the result by content.

Why sample with the real sampler (not random inputs): the paper's expectation runs over prompts, noise samples
and the denoising timesteps of every pyramid stage; the sampler visits exactly the (stage, timestep, history)
inputs the blocks see in use, and the progress callback tells the meter which stage each call belongs to.

The cache key covers the weights of every component that shapes the blocks' inputs (denoiser, text encoders),
the prompts, the sample count, the schedule and the seed: a second run with the same model and data reads the
scores back; anything else measures again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from neocompress.core.atomic import atomic_write_text
from neocompress.core.distributed import barrier, is_main
from neocompress.core.hashing import hash_json, hash_module
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.prune.importance import BlockImportance, ImportanceMeter

HASHED_COMPONENTS = ("clip_l", "clip_g", "t5", "denoiser")
ProgressFn = Callable[[int, int], None]


def importance_key(ir: PipelineIR, component: str, settings: dict[str, Any]) -> str:
    weights = {name: hash_module(ir[name].module) for name in (*HASHED_COMPONENTS, component) if name in ir}
    return hash_json({"weights": weights, "component": component, "settings": settings})


@torch.no_grad()
def measure_importance(
    ir: PipelineIR,
    pipeline: Any,
    *,
    component: str,
    prompts: Sequence[str],
    samples: int,
    batch: int,
    seed: int,
    schedule: Any = None,
    progress: ProgressFn | None = None,
) -> BlockImportance:
    """Run `pipeline.generate` over every (prompt, sample) with the meter attached to `component`'s blocks.

    Under a launcher each process samples every world-size-th chunk and the tables are summed, so N processes
    measure the same chunks with the same seeds as one does, N times faster."""
    from neocompress.core.distributed import rank, world_size

    comp = ir[component]
    adapter = comp.extras["block_adapter"]
    stages = pipeline.stages
    jobs = [(p, s) for s in range(samples) for p in prompts]
    meter = ImportanceMeter(adapter.blocks(comp.module), adapter, stages)

    def on_call(unit: int, stage: int, step: int) -> None:
        meter.stage = stage

    starts = list(range(0, len(jobs), batch))
    with meter:
        for start in starts[rank() :: world_size()]:
            chunk = jobs[start : start + batch]
            # one seed per chunk: a chunk of a later sample pass never repeats an earlier chunk's noise
            pipeline.generate([p for p, _ in chunk], seed=seed + start, schedule=schedule, progress=on_call)
            if progress is not None:
                progress(min(start + batch, len(jobs)), len(jobs))
    meter.reduce()
    return meter.result(prompts=len(prompts), samples=samples, videos=len(jobs), seed=seed)


def cached_importance(
    cache_dir: Path | None, key: str, compute: Callable[[], BlockImportance]
) -> tuple[BlockImportance, bool]:
    """(importance, whether it came from the cache); written atomically so a killed run leaves no half file."""
    path = None if cache_dir is None else Path(cache_dir) / "importance" / f"{key}.json"
    if path is not None and path.is_file():
        return BlockImportance.from_dict(json.loads(path.read_text())), True
    result = compute()
    if path is not None and is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result.to_dict(), indent=1))
    barrier()  # every process decides "cached or not" from the same files on the next run
    return result, False
