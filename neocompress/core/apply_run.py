"""Apply a validated recipe: load, run the passes (resuming from the cache), write the output atomically.

This is what `neocompress apply` does, kept apart from the CLI so tests and benchmarks call it directly.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neocompress.analysis.quality import MiniBenchInstrument, minibench, pipeline_cost
from neocompress.analysis.report import write_report
from neocompress.analysis.score_cache import ScoreCache
from neocompress.core import distributed
from neocompress.core.atomic import atomic_directory, refuse_existing
from neocompress.core.cache import PassCache
from neocompress.core.context import PassContext
from neocompress.core.figures import reported_figures
from neocompress.core.instruments import Instrument
from neocompress.core.manager import PassManager, RunOutcome, seed_pass
from neocompress.core.versions import tool_versions
from neocompress.data.prompts import PromptSets
from neocompress.models.family import get_family
from neocompress.recipe.load import Recipe
from neocompress.targets.lower import bundle_video, lower_targets

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class ApplyOutcome:
    output: Path
    run: RunOutcome
    manifest: dict[str, Any]


def apply_recipe(
    recipe: Recipe,
    *,
    force: bool = False,
    cache_dir: Path | None = None,
    work_dir: Path | None = None,
    instruments: list[Instrument] | None = None,
    output: Path | None = None,
    lowering_progress: Any = None,
) -> ApplyOutcome:
    m = recipe.model
    out = Path(output or m.output)
    refuse_existing(out, force)  # before any work: nothing is lost, nothing is wasted
    distributed.ensure_process_group()  # under `accelerate launch`: every process runs the recipe, rank 0 writes
    device = distributed.local_device(m.model.device)
    family = get_family(m.model.family)
    family.check_source(m.model.source)
    dtype = DTYPES[m.model.dtype]
    work = Path(work_dir or out.parent / f".{out.name}.work")  # created by the first pass that asks for it
    ctx = PassContext(
        work_dir=work,
        seed=m.model.seed,
        # name and device only: lowering options (part size, simulation) do not change what a pass computes
        target=[{"name": t.name, "device": t.device} for t in m.all_targets()] or None,
        cache=PassCache(cache_dir) if cache_dir is not None else None,
        data=PromptSets(m.data.prompts),
        instruments=list(instruments or []),
        device=device,
        dtype=dtype,
        scores=ScoreCache(Path(cache_dir) / "minibench" if cache_dir is not None else None),
    )
    # Hashing the source reads every byte of a checkpoint: only worth it when there is a cache to look up.
    base_key = family.source_key(m.model.source, dtype=dtype, seed=m.model.seed) if ctx.cache is not None else None

    def load_base():
        return family.load(m.model.source, dtype=dtype, device=device, seed=m.model.seed)

    def load_saved(path: Path):
        # A step restored from the cache must come back in the recipe's dtype and on its device, exactly as a
        # fresh run would have left it (family.load's defaults are float32 on the CPU).
        return family.load(str(path), dtype=dtype, device=device, seed=m.model.seed)

    ev = m.evaluate
    if ev is not None and ev.per_pass:
        ctx.instruments.append(MiniBenchInstrument(family, prompts=ev.prompts, seed=ev.seed, cache=ctx.scores))
    manager = PassManager(recipe.passes, ctx, save=family.save, load_saved=load_saved)

    base_summary = recipe.planned[0][1] if recipe.planned else family.skeleton(m.model.source).summary()
    run = manager.run(load_base, base_key)
    distributed.barrier()
    if not distributed.is_main():  # the output is rank 0's to write; wait until it has
        distributed.barrier()
        return ApplyOutcome(out, run, {})
    quality = None
    if ev is not None:  # the paper's way: the benchmark before and after the recipe
        base = load_base()
        before = minibench(family, base, prompts=ev.prompts, seed=ev.seed, cache=ctx.scores)
        after = minibench(family, run.ir, prompts=ev.prompts, seed=ev.seed, cache=ctx.scores)
        quality = {"bench": ev.bench, "before": before, "after": after,
                   "difference": ctx.scores.difference(before, after),
                   "cost": {"before": pipeline_cost(family, base), "after": pipeline_cost(family, run.ir)}}  # fmt: skip
    figures = _collect_figures(run.records)
    manifest = {
        "format": "neocompress-pipeline",
        "format_version": 1,
        "family": m.model.family,
        "base_source": m.model.source,
        "recipe": recipe.resolved(),
        "versions": tool_versions(),
        "pass_log": [r.to_dict() for r in run.records],
        "resumed_from_pass": run.resumed_from,
        "instruments": {k: v for inst in ctx.instruments for k, v in inst.record().items()},
        "quality": quality,
    }
    with atomic_directory(out, force=force) as tmp:
        if m.all_targets():  # every bundle inside the output: it is complete, or there is no output at all
            seed_pass(m.model.seed, len(recipe.passes), "targets")  # the lowering draws the same inputs every run
            manifest["targets"] = lower_targets(run.ir, m.all_targets(), tmp, bundle_video(m.generate),
                                                m.model.seed, progress=lowering_progress)  # fmt: skip
        family.save(run.ir, tmp, manifest)
        (tmp / "recipe.resolved.yaml").write_text(recipe.resolved_yaml())
        for relative, source in figures.items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / relative)
        write_report(tmp, base_summary, run.ir.summary(), manifest)
    # The run is complete: its scratch (training checkpoints kept for resuming an interrupted stage, pictures
    # now copied into the output and the cache) has no further use. A failed run never gets here and keeps it.
    shutil.rmtree(work, ignore_errors=True)
    distributed.barrier()
    return ApplyOutcome(out, run, manifest)


def _collect_figures(records: list) -> dict[str, Path]:
    """Pictures the passes reported, as {path relative to the output: source file}; each record's report is
    pointed at its relative path, so the output's report.json and report.md link files inside the output. A
    picture whose file is gone (a resumed run whose scratch was cleaned) is dropped from the report."""
    out: dict[str, Path] = {}
    for r in records:
        if not r.report.get("figures"):
            continue
        kept = reported_figures(r)
        r.report["figures"] = {name: f"figures/{file}" for name, (_, file) in kept.items()}
        out.update({f"figures/{file}": source for source, file in kept.values()})
    return out
