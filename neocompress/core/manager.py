"""The pass manager: run a validated list of passes in order, checked, cached and logged.

Why it owns these duties and passes do not: ordering, caching, provenance and verification must be the same
for every pass. A recipe runs exactly as written (nothing reordered or skipped) or fails and says why.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neocompress.core.cache import step_key
from neocompress.core.context import PassContext
from neocompress.core.errors import NeocompressError, PassError
from neocompress.core.figures import reported_figures
from neocompress.core.pass_base import Pass, PassResult
from neocompress.ir.component import Provenance
from neocompress.ir.pipeline_ir import PipelineIR


@dataclass
class RunRecord:
    """What happened to one pass in a run."""

    index: int
    name: str
    version: int
    config: dict[str, Any]
    key: str | None  # None when the run used no cache
    cached: bool
    seconds: float
    modified: bool
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunOutcome:
    ir: PipelineIR
    records: list[RunRecord] = field(default_factory=list)
    resumed_from: int = -1  # index of the last pass restored from the cache, -1 if none


def _provenance_of(ir: PipelineIR) -> dict[str, list[dict[str, str]]]:
    return {c.name: [p.to_dict() for p in c.provenance] for c in ir}


def _restore_provenance(ir: PipelineIR, saved: dict[str, list[dict[str, str]]]) -> None:
    """Give a pipeline restored from the cache the provenance it had when stored (a reload starts with none)."""
    for c in ir:
        if c.name in saved:
            c.provenance = [Provenance(d["pass"], d["action"], d.get("detail", "")) for d in saved[c.name]]


class PassManager:
    """Runs `passes` on an IR. `save`/`load_saved` let it store and restore pipelines in the cache."""

    def __init__(
        self,
        passes: list[Pass],
        ctx: PassContext,
        save: Callable[[PipelineIR, Path, dict[str, Any]], None] | None = None,
        load_saved: Callable[[Path], PipelineIR] | None = None,
    ):
        self.passes = passes
        self.ctx = ctx
        self._save = save
        self._load_saved = load_saved

    def keys(self, base_key: str) -> list[str]:
        context = {
            "target": self.ctx.target,
            "seed": self.ctx.seed,
            "data": self.ctx.data.fingerprint() if self.ctx.data is not None else None,
        }
        keys, prev = [], base_key
        for p in self.passes:
            prev = step_key(p.name, p.version, p.config.model_dump(mode="json"), prev, context, p.input_fingerprints())
            keys.append(prev)
        return keys

    def run(self, load_base: Callable[[], PipelineIR], base_key: str | None) -> RunOutcome:
        """Run every pass; with a cache (and `base_key`, the content hash of the base) resume from it."""
        cache = self.ctx.cache if (self._save and self._load_saved and base_key is not None) else None
        keys: list[str | None] = list(self.keys(base_key)) if cache is not None else [None] * len(self.passes)
        start, records, ir = 0, [], None
        if cache is not None:
            for i in range(len(keys) - 1, -1, -1):
                if not cache.has(keys[i]):
                    continue
                try:
                    ir = self._load_saved(cache.path(keys[i]))
                    entry = cache.entry(keys[i])
                except Exception as e:  # a damaged entry is a miss: drop it and look further back
                    warnings.warn(f"discarding damaged cache entry {cache.path(keys[i])}: {e}", stacklevel=2)
                    cache.discard(keys[i])
                    ir = None
                    continue
                _restore_provenance(ir, entry.get("provenance", {}))
                # The entry carries the log of every pass up to it, so earlier entries need not survive.
                records = [RunRecord(**{**r, "cached": True}) for r in entry["pass_log"]]
                for r in records:
                    for inst in self.ctx.instruments:
                        inst.after_pass(r.index, r.name, PassResult(ir, r.modified, r.report), 0.0, True)
                start = i + 1
                break
        if ir is None:
            ir = load_base()
        outcome = RunOutcome(ir, records, start - 1)
        for i in range(start, len(self.passes)):
            p = self.passes[i]
            for inst in self.ctx.instruments:
                inst.before_pass(i, p.name, outcome.ir)
            t0 = time.perf_counter()
            before = p.snapshot(outcome.ir)
            self.ctx.pass_index = i
            seed_pass(self.ctx.seed, i, p.name)
            try:
                result = p.run(outcome.ir, self.ctx)
            except NeocompressError:
                raise
            except Exception as e:  # name the pass; keep the cause chained for the traceback
                raise PassError(f"pass {i} '{p.name}' failed: {type(e).__name__}: {e}") from e
            p.ensures(before, result)
            seconds = time.perf_counter() - t0
            record = RunRecord(
                i,
                p.name,
                p.version,
                p.config.model_dump(mode="json"),
                keys[i],
                False,
                seconds,
                result.modified,
                result.report,
            )
            outcome.ir = result.ir
            outcome.records.append(record)
            outcome.ir.meta["pass_log"] = [r.to_dict() for r in outcome.records]
            for inst in self.ctx.instruments:
                inst.after_pass(i, p.name, result, seconds, False)
            if cache is not None:
                # Pictures the pass reported move into the entry (they outlive the run's scratch directory),
                # and the record points at those copies before it is written anywhere.
                figures = reported_figures(record)
                final = cache.path(keys[i]) / "figures"
                record.report["figures"] = {
                    **record.report.get("figures", {}),
                    **{n: str(final / f) for n, (_, f) in figures.items()},
                }
                outcome.ir.meta["pass_log"] = [r.to_dict() for r in outcome.records]
                manifest = {"pass_log": outcome.ir.meta["pass_log"]}
                # The log of every pass so far and the provenance: a resume restores both from this entry alone,
                # even if an earlier entry was evicted meanwhile (a reloaded pipeline carries neither).
                entry = {
                    "pass_log": outcome.ir.meta["pass_log"],
                    "provenance": _provenance_of(outcome.ir),
                }

                def write(d: Path, ir=outcome.ir, m=manifest, figures=figures) -> None:
                    self._save(ir, d, m)
                    for source, name in figures.values():
                        (d / "figures").mkdir(exist_ok=True)
                        shutil.copyfile(source, d / "figures" / name)

                cache.store(keys[i], entry, write)
        outcome.ir.meta["pass_log"] = [r.to_dict() for r in outcome.records]
        return outcome


def seed_pass(seed: int, index: int, name: str) -> None:
    """Seed torch, NumPy and Python's RNGs for pass `index` from the recipe's seed, its place and its name.

    Why every pass: torch draws its startup seed at random in each process, so anything a pass does not seed
    itself (a module's initialisation, dropout) would differ between two runs of the same recipe, and between an
    uninterrupted run and one resumed from the cache at this pass. Seeded here, pass k starts from the same
    state however the run got to it."""
    from accelerate.utils import set_seed

    from neocompress.core.hashing import hash_json

    set_seed(int(hash_json({"seed": seed, "pass": index, "name": name})[:8], 16))

