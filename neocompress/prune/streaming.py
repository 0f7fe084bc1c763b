"""Prune a denoiser checkpoint folder without loading it: tensors stream from the input files to output shards.

Why: a user's full-size checkpoint (Pyramid-Flow's 2B denoiser is 4 GB in bf16) must be cut on a laptop, and
`remove_blocks` on a loaded model needs the whole model in memory first. Here the model is built on the meta
device, `remove_blocks`' own module-level edit runs on it (so the result is exactly what the pass makes), and
only the one block that becomes the new context_pre_only last block is materialised, because its new
modulation weights are sliced from its old ones. The output is written as Hugging Face shards (at most
`shard_bytes` each, with `*.safetensors.index.json`), each shard's tensors read from the input when that shard
is written and the input files reopened per shard, so peak memory is about one shard, not one model. The folder
appears atomically; an existing one is kept unless `force`.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from neocompress.core.atomic import atomic_directory
from neocompress.core.errors import CheckpointError, UserInputError
from neocompress.models.checkpoint import read_config, weight_files

WEIGHTS_STEM = "diffusion_pytorch_model"


@dataclass
class StreamPruneResult:
    output: Path
    removed: list[int]
    kept_original_indices: list[int]
    last_block_converted: bool
    params_before: int
    params_after: int
    bytes_written: int
    shards: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def _key_index(folder: Path) -> dict[str, Path]:
    """Which input file holds each tensor."""
    where: dict[str, Path] = {}
    for file in weight_files(folder, "denoiser"):
        if file.suffix != ".safetensors":
            raise CheckpointError(f"denoiser: streaming pruning reads safetensors only, got '{file}'")
        with safe_open(str(file), "pt") as f:
            where.update({k: file for k in f.keys()})  # noqa: SIM118
    return where


ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _check_layout(model: nn.Module, where: dict[str, Path], folder: Path) -> dict[str, int]:
    """Every key of the config's model present with its shape; returns each stored tensor's bytes per element."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(where)), sorted(set(where) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"denoiser: '{folder}' does not match its config.json: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    by_file: dict[Path, list[str]] = {}
    for k, f in where.items():
        by_file.setdefault(f, []).append(k)
    itemsize: dict[str, int] = {}
    for file, keys in by_file.items():
        with safe_open(str(file), "pt") as f:
            for k in keys:
                view = f.get_slice(k)
                got = tuple(view.get_shape())
                if got != shapes[k]:
                    raise CheckpointError(f"denoiser: '{file}' key '{k}' has shape {got}, the config wants {shapes[k]}")
                itemsize[k] = ITEMSIZE.get(view.get_dtype(), 4)
    return itemsize


def _materialise(block: nn.Module, prefix: str, where: dict[str, Path]) -> None:
    """Give one meta-device block its real tensors from the checkpoint."""
    tensors = {}
    for name in block.state_dict():
        with safe_open(str(where[prefix + name]), "pt") as f:
            tensors[name] = f.get_tensor(prefix + name)
    block.load_state_dict(tensors, strict=True, assign=True)


def _shards(sizes: list[tuple[str, int]], limit: int) -> list[list[str]]:
    out: list[list[str]] = [[]]
    used = 0
    for key, size in sizes:
        if out[-1] and used + size > limit:
            out.append([])
            used = 0
        out[-1].append(key)
        used += size
    return out


def stream_prune_denoiser(
    source: Path | str,
    output: Path | str,
    remove: list[int],
    *,
    shard_bytes: int = 1 << 30,
    force: bool = False,
) -> StreamPruneResult:
    """Remove blocks `remove` from the Pyramid-Flow denoiser folder `source` (config.json + safetensors) into a new
    folder `output` that the family's loader (and `load_component`) read strictly."""
    from neocompress.models.pyramid_flow.adapter import PyramidFlowBlockAdapter
    from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
    from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig

    source, output = Path(source), Path(output)
    if shard_bytes < 1:
        raise UserInputError(f"shard_bytes must be >= 1, got {shard_bytes}")
    config = DenoiserConfig.from_dict(read_config(source, "denoiser"))
    with torch.device("meta"):
        model = PyramidFlowMMDiT(config)
    where = _key_index(source)
    itemsize = _check_layout(model, where, source)
    adapter = PyramidFlowBlockAdapter()
    blocks = list(adapter.blocks(model))
    n = len(blocks)
    bad = sorted(i for i in remove if not 0 <= i < n)
    if bad or len(set(remove)) != len(remove) or len(remove) >= n:
        raise UserInputError(f"cannot remove blocks {sorted(remove)} of {n} (indices 0..{n - 1}, unique, not all)")
    params_before = sum(p.numel() for p in model.parameters())
    kept_old = [i for i in range(n) if i not in set(remove)]
    kept = [blocks[i] for i in kept_old]
    converted = adapter.requires_context_pre_only_last(model) and not adapter.is_context_pre_only(kept[-1])
    if converted:
        _materialise(kept[-1], f"transformer_blocks.{kept_old[-1]}.", where)
        adapter.make_context_pre_only(kept[-1])
    new_config = adapter.set_blocks(model, kept)
    state = model.state_dict()
    real = {f"transformer_blocks.{len(kept) - 1}.{k}": v for k, v in kept[-1].state_dict().items()} if converted else {}

    def source_key(key: str) -> str:
        if key.startswith("transformer_blocks."):
            _, index, rest = key.split(".", 2)
            return f"transformer_blocks.{kept_old[int(index)]}.{rest}"
        return key

    # bytes as stored in the input (its dtype, not the meta model's float32)
    sizes = [(k, t.numel() * itemsize[source_key(k)]) for k, t in state.items()]
    plan = _shards(sizes, shard_bytes)
    total = len(plan)
    weight_map: dict[str, str] = {}
    written = 0
    with atomic_directory(output, force) as tmp:
        for s, keys in enumerate(plan):
            name = (
                f"{WEIGHTS_STEM}-{s + 1:05d}-of-{total:05d}.safetensors" if total > 1 else f"{WEIGHTS_STEM}.safetensors"
            )
            with ExitStack() as files:  # reopened per shard: mapped input pages are released with each shard
                handles: dict[Path, Any] = {}
                tensors = {}
                for key in keys:
                    if key in real:
                        tensors[key] = real[key].detach().contiguous()
                        continue
                    file = where[source_key(key)]
                    if file not in handles:
                        handles[file] = files.enter_context(safe_open(str(file), "pt"))
                    tensors[key] = handles[file].get_tensor(source_key(key))
                save_file(tensors, str(tmp / name), metadata={"format": "pt"})
                written += sum(t.numel() * t.element_size() for t in tensors.values())
                del tensors
            weight_map.update({k: name for k in keys})
        (tmp / "config.json").write_text(json.dumps(new_config, indent=2, sort_keys=True, default=str))
        if total > 1:
            index = {"metadata": {"total_size": written}, "weight_map": weight_map}
            (tmp / f"{WEIGHTS_STEM}.safetensors.index.json").write_text(json.dumps(index, indent=1))
    return StreamPruneResult(
        output=output,
        removed=sorted(remove),
        kept_original_indices=kept_old,
        last_block_converted=converted,
        params_before=params_before,
        params_after=sum(p.numel() for p in model.parameters()),
        bytes_written=written,
        shards=total,
    )
