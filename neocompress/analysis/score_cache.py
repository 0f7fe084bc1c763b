"""MiniBench results remembered by what was scored, so a pass's "before" is the previous pass's "after".

Why: a recipe scores the pipeline after pass N and again before pass N+1, and MiniBench at a count that resolves
a 3 % loss takes minutes on a CPU. Keyed by the pipeline's content (every component's weights, structure and
config) and the run's settings (prompts, seed, schedule, float or simulated), the second request is answered
from the first: in memory within a run, and from disk (JSON + the per-video evidence as safetensors) when a
resumed run or a later recipe asks again. A pipeline whose quantization simulation is attached is not
remembered when scored simulated: the simulation's state is not all in the weights the key hashes.

The evidence is kept because a difference between two results needs it: `difference(before, after)` gives
the paired bootstrap interval of after minus before (`neocompress.bench.confidence`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from neocompress.core.atomic import atomic_write, atomic_write_text
from neocompress.core.hashing import canonical_json, hash_module
from neocompress.ir.pipeline_ir import PipelineIR

SCORE_KEY = "score_key"
# The component extra in which the quantize pass attaches a simulation (see `remembers`).
QUANTIZATION_EXTRA = "quantization"
_PRIMITIVE = (str, int, float, bool, type(None))


def plain_value(value: Any) -> Any:
    """A JSON-able stand-in for an extra: primitives and containers as they are, dataclasses by their fields,
    anything else by its type only (a tokenizer's or a scheduler's state is in its component's config)."""
    if isinstance(value, _PRIMITIVE):
        return value
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_value(dataclasses.asdict(value))
    return type(value).__name__


def pipeline_fingerprint(ir: PipelineIR, ignore: tuple[str, ...] = ()) -> str:
    """SHA-256 over every component's name, kind, class, config, plain extras (but `ignore`d ones) and weights,
    in graph order."""
    h = hashlib.sha256(ir.family.encode())
    for component in ir:
        extras = {k: v for k, v in component.extras.items() if k not in ignore}
        h.update(canonical_json([component.name, component.kind, component.class_name, component.config,
                                 plain_value(extras)]).encode())  # fmt: skip
        if component.module is not None:
            h.update(hash_module(component.module).encode())
    return h.hexdigest()


def remembers(ir: PipelineIR, simulated: bool) -> bool:
    """Whether a score of `ir` may be remembered: not a simulated score of a quantized pipeline."""
    return not (simulated and any(QUANTIZATION_EXTRA in c.extras for c in ir))


class ScoreCache:
    """MiniBench JSON and evidence by key; in memory always, on disk under `root` when given."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self._memory: dict[str, tuple[dict[str, Any], Any]] = {}

    @staticmethod
    def key(ir: PipelineIR, settings: dict[str, Any]) -> str:
        """The pipeline's fingerprint and the settings; a float score (`simulated: False`) of a quantized
        pipeline ignores the attached simulation, so it is the float pipeline's score before quantization."""
        ignore = () if settings.get("simulated", True) else (QUANTIZATION_EXTRA,)
        return hashlib.sha256(canonical_json([pipeline_fingerprint(ir, ignore), settings]).encode()).hexdigest()

    def score(
        self, ir: PipelineIR, settings: dict[str, Any], run: Callable[[], tuple[dict[str, Any], Any]],
        remember: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        """The JSON of `run()` (which returns the JSON and its evidence) for `ir` under `settings`, computed
        once per key; the JSON carries its key so `difference` can find the evidence again."""
        if not remember:  # kept for `difference` within this run under a key of its own, never looked up
            data, evidence = run()
            key = f"unremembered-{uuid.uuid4().hex}"
            self._memory[key] = (data, evidence)
            return {**data, SCORE_KEY: key}
        key = self.key(ir, settings)
        found = self._lookup(key)
        if found is not None:
            return {**found[0], SCORE_KEY: key, "reused": True}
        data, evidence = run()
        self._memory[key] = (data, evidence)
        self._store(key, data, evidence)
        return {**data, SCORE_KEY: key}

    def evidence(self, data: dict[str, Any]) -> Any:
        """The per-video evidence behind a JSON this cache returned (None if it is not known here)."""
        found = self._lookup(str(data.get(SCORE_KEY, "")))
        return None if found is None else found[1]

    def difference(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
        """after minus before per part with paired intervals, or None where it cannot be computed (a run
        invalid, other prompts, or evidence unknown), with the reason."""
        from neocompress.bench.confidence import paired_difference

        if not (before.get("valid", True) and after.get("valid", True)):
            return {"unavailable": "a run made NaN or infinite videos"}
        a, b = self.evidence(before), self.evidence(after)
        if a is None or b is None:
            return None
        if before.get("prompts") != after.get("prompts") or a.videos != b.videos:
            return {"unavailable": "the two runs scored different prompts"}
        return paired_difference(a, b)

    def _lookup(self, key: str) -> tuple[dict[str, Any], Any] | None:
        if key in self._memory:
            return self._memory[key]
        if self.root is None or not (self.root / f"{key}.json").is_file():
            return None
        from neocompress.bench.confidence import Evidence

        data = json.loads((self.root / f"{key}.json").read_text())
        evidence = Evidence.from_tensors(load_file(str(self.root / f"{key}.safetensors")))
        self._memory[key] = (data, evidence)
        return data, evidence

    def _store(self, key: str, data: dict[str, Any], evidence: Any) -> None:
        if self.root is None or evidence is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tensors = evidence.to_tensors()  # the evidence first: a JSON on disk always has its evidence
        atomic_write(self.root / f"{key}.safetensors", lambda path: save_file(tensors, str(path)))
        atomic_write_text(self.root / f"{key}.json", json.dumps(data))
