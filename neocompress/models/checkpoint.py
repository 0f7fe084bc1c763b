"""Checkpoint I/O for component folders (`config.json` + safetensors), strict and memory-mapped.

Why this way: a 2B-parameter denoiser must not need twice its size in RAM. The module is built with empty
(meta) parameters, safetensors maps the file lazily, and `load_state_dict(assign=True)` adopts the mapped
tensors without a copy. Loading is strict: every missing key, unexpected key and shape mismatch is collected
and reported together, naming the component, the folder, the key and both shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_model
from torch import nn

from neocompress.core.errors import CheckpointError

MAX_LISTED = 12


def weight_files(folder: Path, component: str) -> list[Path]:
    """The weight files of one component folder (sharded safetensors via their index, or torch .bin)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{component}: checkpoint folder '{folder}' does not exist")
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        shards = sorted(set(json.loads(indexes[0].read_text())["weight_map"].values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(f"{component}: '{indexes[0]}' lists shard(s) that are missing: {missing}")
        return [folder / s for s in shards]
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    bins = sorted(folder.glob("*.bin"))
    if bins:
        return bins
    raise CheckpointError(f"{component}: no weight file (*.safetensors or *.bin) in '{folder}'")


def read_config(folder: Path, component: str, name: str = "config.json") -> dict[str, Any]:
    path = Path(folder) / name
    if not path.is_file():
        raise CheckpointError(f"{component}: missing '{path}'")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{component}: '{path}' is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{component}: '{path}' must hold a JSON object, got {type(data).__name__}")
    return data


def read_state_dict(folder: Path, component: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """All tensors of a folder (optionally only keys under `prefix`, stripped), memory-mapped."""
    out: dict[str, torch.Tensor] = {}
    source: dict[str, Path] = {}
    for f in weight_files(folder, component):
        try:
            if f.suffix == ".bin":
                items = list(torch.load(f, map_location="cpu", mmap=True, weights_only=True).items())
            else:
                handle = safe_open(str(f), framework="pt")
                items = [(k, handle.get_tensor(k)) for k in handle.keys()]  # noqa: SIM118 - not a dict
        except Exception as e:  # truncated, corrupt or not a weight file at all: bad input, named
            raise CheckpointError(f"{component}: cannot read weight file '{f}': {type(e).__name__}: {e}") from None
        for k, t in items:
            if k in source:  # two files (e.g. a stray fp16 copy beside the weights) must not silently override
                raise CheckpointError(f"{component}: key '{k}' is in two weight files, '{source[k]}' and '{f}'")
            source[k] = f
            if k.startswith(prefix):
                out[k[len(prefix) :]] = t
    return out


def _alias_groups(module: nn.Module) -> list[list[str]]:
    """State-dict keys grouped by the tensor they name (tied weights share one group)."""
    by_id: dict[int, list[str]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    groups = list(by_id.values())
    param_keys = {k for g in groups for k in g}
    groups += [[k] for k in module.state_dict() if k not in param_keys]
    return groups


def _listing(items: list[str]) -> str:
    shown = items[:MAX_LISTED]
    more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(shown) + more


def load_strict(
    module: nn.Module, state_dict: dict[str, torch.Tensor], component: str, where: str, dtype: torch.dtype | None = None
) -> None:
    """Load `state_dict` into `module` (whose params may be on meta) with strict key and shape checks."""
    expected = module.state_dict(keep_vars=True)
    groups = _alias_groups(module)
    problems: list[str] = []
    missing = [g[0] for g in groups if not any(k in state_dict for k in g)]
    known = {k for g in groups for k in g}
    unexpected = sorted(k for k in state_dict if k not in known)
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    for k, t in state_dict.items():
        if k in expected and tuple(t.shape) != tuple(expected[k].shape):
            problems.append(f"shape mismatch for '{k}': checkpoint {list(t.shape)}, model {list(expected[k].shape)}")
    if problems:
        raise CheckpointError(
            f"{component}: checkpoint '{where}' does not match the model:\n  " + "\n  ".join(problems)
        )
    full: dict[str, torch.Tensor] = {}
    for g in groups:
        src = next(state_dict[k] for k in g if k in state_dict)
        if dtype is not None and src.is_floating_point() and src.dtype != dtype:
            src = src.to(dtype)
        for k in g:
            full[k] = src
    module.load_state_dict(full, strict=True, assign=True)
    _retie(module, groups)


def _retie(module: nn.Module, groups: list[list[str]]) -> None:
    """After `assign=True`, tied parameters must again be one object (T5's shared embedding)."""
    for g in groups:
        if len(g) < 2:
            continue
        first = module.get_parameter(g[0])
        for k in g[1:]:
            owner, _, leaf = k.rpartition(".")
            setattr(module.get_submodule(owner) if owner else module, leaf, first)


def load_component(
    build: Callable[[], nn.Module],
    folder: Path,
    component: str,
    *,
    prefix: str = "",
    dtype: torch.dtype | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Build a module with empty parameters (buffers computed on CPU) and adopt the folder's weights."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        module = build()
    if hasattr(module, "tie_weights"):  # transformers models: empty init re-creates tied params separately
        module.tie_weights()
    sd = state_dict if state_dict is not None else read_state_dict(folder, component, prefix)
    load_strict(module, sd, component, str(folder), dtype)
    leftovers = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if leftovers:
        raise CheckpointError(f"{component}: tensors left without values after loading: {_listing(leftovers)}")
    return module.eval()


def save_component(
    module: nn.Module, folder: Path, config: dict[str, Any], weights_name: str, config_name: str = "config.json"
) -> None:
    """Write `config.json` and the weights (tied tensors stored once) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / config_name).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    save_model(module, str(folder / weights_name))


def save_modules(
    modules: dict[str, nn.Module],
    folder: Path,
    config: dict[str, Any],
    weights_name: str,
    config_name: str = "config.json",
) -> None:
    """Several modules into one file, keys prefixed by their names (the VAE's encoder + decoder folder)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / config_name).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    tensors = {f"{k}": v.detach().contiguous() for m in modules.values() for k, v in m.state_dict().items()}
    save_file(tensors, str(folder / weights_name))
