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

    @abstractmethod
    def save(self, ir: PipelineIR, directory: Path, manifest: dict[str, Any]) -> None:
        """Write `ir` in the family's public checkpoint conventions plus a neocompress manifest."""

    @abstractmethod
    def source_key(self, source: str, *, dtype: torch.dtype, seed: int) -> str:
        """A full content hash of what `load(source, ...)` returns (cache root key)."""

    def check_source(self, source: str) -> None:
        if source.startswith("builtin:"):
            known = self.builtin_sources()
            if source not in known:
                near = difflib.get_close_matches(source, known, n=1)
                hint = f" Did you mean '{near[0]}'?" if near else ""
                raise SourceError(
                    f"unknown builtin source '{source}' for family '{self.name}'.{hint} Known: {', '.join(known)}"
                )
        elif not Path(source).is_dir():
            raise SourceError(f"source '{source}' is neither a builtin name nor an existing directory")


_FAMILIES: dict[str, str] = {
    "pyramid-flow": "neocompress.models.pyramid_flow.family:PyramidFlowFamily",
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


def family_of_directory(directory: Path) -> str | None:
    """The family a saved neocompress output declares in its manifest, if any."""
    import json

    manifest = Path(directory) / "neocompress.json"
    if manifest.is_file():
        return json.loads(manifest.read_text()).get("family")
    return None
