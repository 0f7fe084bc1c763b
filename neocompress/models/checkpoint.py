"""Checkpoint I/O for component folders (`config.json` + safetensors), strict and memory-mapped.

Why this way: a 2B-parameter denoiser must not need twice its size in RAM. The module is built with empty
(meta) parameters, safetensors maps the file lazily, and `load_state_dict(assign=True)` adopts the mapped
tensors without a copy. Loading is strict: every missing key, unexpected key and shape mismatch is collected
and reported together, naming the component, the folder, the key and both shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_model
from torch import nn

from neocompress.core.errors import CheckpointError

MAX_LISTED = 12


def weight_files(folder: Path, component: str) -> list[Path]:
    """The safetensors weight files of one component folder (sharded via their index); a folder with only pickle
    weights is refused (`neocompress.models.pickle_weights`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{component}: checkpoint folder '{folder}' does not exist")
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = read_json_object(indexes[0], component).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{component}: '{indexes[0]}' has no weight_map of tensor names to shard files")
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(f"{component}: '{indexes[0]}' lists shard(s) that are missing: {missing}")
        return [folder / s for s in shards]
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    from neocompress.models.pickle_weights import pickle_files, refuse_pickles

    pickles = pickle_files(folder)
    if pickles:
        raise refuse_pickles(folder, component, pickles)
    raise CheckpointError(f"{component}: no weight file (*.safetensors) in '{folder}'")


def read_config(folder: Path, component: str, name: str = "config.json") -> dict[str, Any]:
    path = Path(folder) / name
    if not path.is_file():
        raise CheckpointError(f"{component}: missing '{path}'")
    return read_json_object(path, component)


def read_json_object(path: Path, component: str, default: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON object file of a checkpoint (`default` when the file is absent and a default is given): a file
    that does not parse, is not UTF-8 or holds no object is bad input naming the component and the file."""
    path = Path(path)
    if default is not None and not path.is_file():
        return default
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{component}: '{path}' is not valid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{component}: '{path}' is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise CheckpointError(f"{component}: cannot read '{path}': {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{component}: '{path}' must hold a JSON object, got {type(data).__name__}")
    return data


_HEADERS_ONLY: ContextVar[bool] = ContextVar("headers_only", default=False)
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}  # fmt: skip


@contextmanager
def headers_only() -> Iterator[None]:
    """Inside, `read_state_dict` answers with meta tensors built from the files' headers (names, shapes, dtypes)
    and `load_component` checks them against the model without reading a tensor: what `validate` and `inspect`
    do to a checkpoint directory, in seconds even for a 2B model. Truncated or zero-byte files fail here too,
    since safetensors checks the header against the file's size."""
    token = _HEADERS_ONLY.set(True)
    try:
        yield
    finally:
        _HEADERS_ONLY.reset(token)


def _header_tensor(handle: Any, key: str) -> torch.Tensor:
    view = handle.get_slice(key)
    dtype = _SAFETENSORS_DTYPES.get(view.get_dtype())
    if dtype is None:
        raise ValueError(f"tensor '{key}' has dtype {view.get_dtype()}, which neocompress does not load")
    return torch.empty(view.get_shape(), dtype=dtype, device="meta")


def read_state_dict(folder: Path, component: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """All tensors of a folder (optionally only keys under `prefix`, stripped), memory-mapped; inside
    `headers_only()`, meta tensors of the same names, shapes and dtypes."""
    out: dict[str, torch.Tensor] = {}
    source: dict[str, Path] = {}
    tensor = _header_tensor if _HEADERS_ONLY.get() else (lambda handle, key: handle.get_tensor(key))
    for f in weight_files(folder, component):
        try:
            handle = safe_open(str(f), framework="pt")
            items = [(k, tensor(handle, k)) for k in handle.keys()]  # noqa: SIM118 - not a dict
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
        elif k in expected and t.is_floating_point() != expected[k].is_floating_point():
            problems.append(f"dtype mismatch for '{k}': checkpoint {t.dtype}, model {expected[k].dtype}")
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
    if _HEADERS_ONLY.get():
        return module  # names and shapes checked; every tensor is still a meta tensor
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
