"""What every bundle holds besides its graphs: the tokenizers, the sampler's numbers (scheduler, schedule, latent
normalisation, video size) and a manifest naming each graph's file, inputs, outputs, batch and precision.

Why a manifest: a bundle must run with no model code of ours involved beyond the sampler arithmetic, so every
shape and constant the runtime needs is written down here, next to the tool versions that made the graphs.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from neocompress.core.versions import tool_versions

MANIFEST = "manifest.json"
TOKENIZERS = "tokenizers"
BUNDLE_FORMAT = "neocompress-bundle"


def pipeline_constants(pipeline: Any, video: dict[str, int]) -> dict[str, Any]:
    """The numbers the sampler needs, from the pipeline."""
    v = pipeline.resolve_video(video.get("frames"), video.get("height"), video.get("width"))
    return {
        "scheduler": pipeline.scheduler.config.to_dict(),
        "schedule": pipeline.schedule.to_dict(),
        "latent_norm": asdict(pipeline.latent_norm),
        "latent_channels": pipeline.spec.vae.latent_channels,
        "video": v,
        "text": {"clip_max_length": pipeline.text.config.clip_max_length,
                 "t5_max_length": pipeline.text.config.t5_max_length},
    }  # fmt: skip


def write_common(ir: Any, folder: Path, target: dict[str, Any], video: dict[str, int]) -> dict[str, Any]:
    """Tokenizers into `folder/tokenizers`; returns the manifest's pipeline part."""
    from neocompress.models.family import get_family

    pipeline = get_family(ir.family).pipeline(ir)
    pipeline.text.tokenizers.save(folder / TOKENIZERS)
    return {
        "format": BUNDLE_FORMAT,
        "format_version": 1,
        "family": ir.family,
        "target": target,
        "pipeline": pipeline_constants(pipeline, video),
        "versions": tool_versions(),
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))


def read_manifest(folder: Path, expected_target: str | None = None) -> dict[str, Any]:
    from neocompress.core.errors import UserInputError

    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserInputError(f"{folder} is not a neocompress bundle (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise UserInputError(f"{path}: not a neocompress bundle manifest (format {manifest.get('format')!r})")
    if expected_target and manifest["target"]["name"] != expected_target:
        raise UserInputError(f"{folder} is a {manifest['target']['name']} bundle, not {expected_target}")
    return manifest
