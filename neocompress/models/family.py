"""A model family: how to load, skeleton, save and describe one kind of pipeline.

Why an adapter: passes stay model-agnostic. They ask the family's `ModelAdapter` where the blocks are, which
stream is which and what never to quantize (diffusers' `_repeated_blocks`, PEFT's target maps), and the pass
manager asks the family to load a source, to build a weightless skeleton for planning, and to save a result.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from neocompress.core.errors import SourceError
from neocompress.ir.pipeline_ir import PipelineIR


class ModelFamily(ABC):
    name: str

    @abstractmethod
    def builtin_sources(self) -> list[str]: ...

    @abstractmethod
    def load(
        self, source: str, *, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
    ) -> PipelineIR:
        """A runnable pipeline with weights from a builtin name or a directory."""

    @abstractmethod
    def skeleton(self, source: str) -> PipelineIR:
        """The same pipeline on the meta device: structure and shapes, no weights, no memory."""

    def has_weights(self, source: str) -> bool:
        """Whether passes can run on `source` here (a weightless builtin can only be inspected and planned)."""
        return True

    def check_weights(self, source: str) -> None:
        """Check every weight file of a checkpoint directory against the model from its headers alone (names,
        shapes, dtypes; no tensor read), so `validate` and `inspect` catch a truncated, zero-byte, mismatched or
        incomplete checkpoint in seconds. Raises CheckpointError naming the component, key and shapes. A
        builtin source ships its weights with the package: nothing to check."""
        from neocompress.models.checkpoint import headers_only

        if not str(source).startswith("builtin:"):
            with headers_only():
                self.load(source, device="meta")

    @abstractmethod
    def save(self, ir: PipelineIR, directory: Path, manifest: dict[str, Any]) -> None:
        """Write `ir` in the family's public checkpoint conventions plus a neocompress manifest."""

    @abstractmethod
    def source_key(self, source: str, *, dtype: torch.dtype, seed: int) -> str:
        """A full content hash of what `load(source, ...)` returns (cache root key)."""

    @abstractmethod
    def scheduler_summary(self, ir: PipelineIR) -> dict[str, Any]:
        """Sigmas, steps and NFE of the pipeline's sampler (for `inspect`)."""

    @abstractmethod
    def video_setting(self, ir: PipelineIR, generate: Any | None = None) -> dict[str, Any]:
        """The video and schedule that FLOPs per video are counted for (a recipe's `generate:` overrides)."""

    @abstractmethod
    def check_generate(self, ir: PipelineIR, generate: Any) -> dict[str, str]:
        """Problems of a recipe's `generate:` section against this model, by field name."""

    @abstractmethod
    def component_flops(self, ir: PipelineIR, name: str, video: dict[str, Any]) -> int:
        """FLOPs of one component for one video of `video_setting`."""

    @abstractmethod
    def pipeline(self, ir: PipelineIR) -> Any:
        """A runnable generation pipeline over `ir` (its `generate(prompts, ...)` returns videos)."""

    supports_minibench = True  # MiniBench judges videos of the procedural world
    decodes_videos = True  # the pipeline holds a decoder, so `generate` can write videos
    text_conditioning: str | None = None  # None: the model's own text encoders; else what stands in for them

    def minibench_refusal(self) -> str | None:
        """Why MiniBench cannot score this family's outputs, or None when it can (one message for every caller)."""
        if self.supports_minibench:
            return None
        return f"MiniBench scores videos of the procedural world; family '{self.name}' cannot run it"

    def sampler_problems(self, first: list[int] | None, later: list[int] | None) -> dict[str, str]:
        """Problems of per-stage step counts (a pass's `first:` / `later:`) for this family's sampler."""
        return {}

    def check_source(self, source: str) -> None:
        if source.startswith("builtin:"):
            known = self.builtin_sources()
            if source not in known:
                near = difflib.get_close_matches(source, known, n=1)
                hint = f" Did you mean '{near[0]}'?" if near else ""
                raise SourceError(
                    f"unknown builtin source '{source}' for family '{self.name}'.{hint} Known: {', '.join(known)}"
                )
        else:
            from neocompress.core.paths import shown_path, unusable_reason

            reason = unusable_reason(source)
            if reason:
                raise SourceError(f"source '{shown_path(source)}' is not a usable path: {reason}")
            if not Path(source).is_dir():
                raise SourceError(f"source '{source}' is neither a builtin name nor an existing directory")


_FAMILIES: dict[str, str] = {
    "pyramid-flow": "neocompress.models.pyramid_flow.family:PyramidFlowFamily",
    "diffusers-sd3": "neocompress.models.diffusers_mmdit.family:SD3Family",
    "diffusers-flux": "neocompress.models.diffusers_mmdit.family:FluxFamily",
}


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    import importlib

    if name not in _FAMILIES:
        near = difflib.get_close_matches(name, list(_FAMILIES), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise SourceError(f"unknown model family '{name}'.{hint} Known: {', '.join(family_names())}")
    module, cls = _FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


MANIFEST = "neocompress.json"
DEFAULT_FAMILY = "pyramid-flow"


def read_manifest(directory: Path | str) -> dict[str, Any]:
    """The manifest of a neocompress output ({} for a directory without one, e.g. a public checkpoint)."""
    import json

    from neocompress.core.errors import CheckpointError

    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"manifest '{path}' is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"manifest '{path}' must hold a JSON object")
    return data


def family_for_source(source: str, family_name: str | None = None) -> ModelFamily:
    """The family to read `source` with: the one named, else the one its manifest declares, else the default."""
    if family_name is None and not source.startswith("builtin:"):
        family_name = read_manifest(source).get("family")
    family = get_family(family_name or DEFAULT_FAMILY)
    family.check_source(source)
    return family
