"""The training state a checkpoint holds, in safetensors and JSON only: nothing a resume reads is a pickle.

Why not `accelerator.save_state`: it writes the optimizer and LR scheduler with `torch.save` and each rank's RNG
states and registered objects as pickles, and `load_state` unpickles them, some with `weights_only=False`. A
work directory is something a user copies between machines, so reading one must not be able to run code. The
same state is written here as tensors (safetensors) plus plain values (JSON):

- `optimizer.safetensors` + `optimizer.json`: every per-parameter state tensor as `state.<index>.<name>`, the
  param groups and any non-tensor state entries as JSON;
- `scheduler.json`: the LR scheduler's state (plain numbers: the lambda itself is code and is rebuilt by the run);
- `scaler.json`: the fp16 gradient scaler's state, when there is one;
- `ema.safetensors` + `ema.json`: the EMA's shadow weights and its counters, when there is one;
- `rng-<rank>.safetensors` + `rng-<rank>.json`: each process's torch (CPU and CUDA), NumPy and Python RNG states.

The trainable weights themselves are `trained.safetensors` (`neocompress.train.checkpoint`). FSDP and DeepSpeed
shard the optimizer; those runs keep Accelerate's own format (untestable on the CPU machines this is built on).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from neocompress.core.atomic import atomic_write_text
from neocompress.core.errors import UserInputError

OPTIMIZER, SCHEDULER, SCALER, EMA_FILE = "optimizer", "scheduler.json", "scaler.json", "ema"


def save_state(folder: Path, *, optimizer: Any, scheduler: Any, scaler: Any, ema: Any, rank: int,
               main: bool) -> None:  # fmt: skip
    """Write this process's RNG states, and (main process) the optimizer, scheduler, scaler and EMA."""
    folder = Path(folder)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    save_rng(folder, rank, torch.get_rng_state(), cuda, np.random.get_state(), random.getstate())
    if not main:
        return
    save_states(folder, optimizer.state_dict(), scheduler.state_dict(),
                scaler.state_dict() if scaler is not None else None,
                ema.state_dict() if ema is not None else None)  # fmt: skip


def save_states(folder: Path, optimizer: dict[str, Any], scheduler: dict[str, Any], scaler: dict[str, Any] | None,
                ema: dict[str, Any] | None) -> None:  # fmt: skip
    """The shared state dicts in this module's files (also what tools/convert_training_checkpoint.py writes from
    an old Accelerate checkpoint's)."""
    _save_tensors_and_json(Path(folder) / OPTIMIZER, *_split_optimizer(optimizer))
    atomic_write_text(Path(folder) / SCHEDULER, json.dumps(scheduler))
    if scaler is not None:
        atomic_write_text(Path(folder) / SCALER, json.dumps(scaler))
    if ema is not None:
        state = dict(ema)
        shadow = state.pop("shadow")
        _save_tensors_and_json(Path(folder) / EMA_FILE, shadow, state)


def load_state(folder: Path, *, optimizer: Any, scheduler: Any, scaler: Any, ema: Any, rank: int) -> None:
    """Restore what `save_state` wrote (every process reads the shared files and its own RNG states)."""
    folder = Path(folder)
    refuse_pickle_checkpoint(folder)
    tensors, plain = _load_tensors_and_json(folder / OPTIMIZER)
    optimizer.load_state_dict(_join_optimizer(tensors, plain))
    scheduler.load_state_dict(json.loads((folder / SCHEDULER).read_text()))
    if scaler is not None and (folder / SCALER).is_file():
        scaler.load_state_dict(json.loads((folder / SCALER).read_text()))
    if ema is not None:
        shadow, state = _load_tensors_and_json(folder / EMA_FILE)
        ema.load_state_dict({**state, "shadow": shadow})
    _load_rng(folder, rank)


def is_weights_only(folder: Path) -> bool:
    """A checkpoint reduced to its weights and record (a finished stage kept small): no optimizer, no pickle."""
    return not (folder / f"{OPTIMIZER}.safetensors").is_file() and not any(folder.glob("*.pkl")) and not (
        folder / "optimizer.bin").is_file()


def refuse_pickle_checkpoint(folder: Path) -> None:
    """A checkpoint in Accelerate's pickle format (what neocompress wrote before this module) is not read."""
    if not (folder / f"{OPTIMIZER}.safetensors").is_file() and any(folder.glob("*.pkl")):
        raise UserInputError(
            f"training checkpoint '{folder}' is in Accelerate's pickle format, which neocompress no longer reads "
            "(unpickling can run code). If you wrote it yourself, convert it with `python "
            f"tools/convert_training_checkpoint.py {folder}`; or delete it to restart that stage"
        )


# -- the optimizer ------------------------------------------------------------------------------------------
def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain["state"].setdefault(str(index), {})[name] = value
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


# -- random states ------------------------------------------------------------------------------------------
def save_rng(folder: Path, rank: int, torch_state: torch.Tensor, cuda_states: list[torch.Tensor],
             numpy_state: tuple, python_state: tuple) -> None:  # fmt: skip
    """One process's RNG states (as torch, `np.random.get_state()` and `random.getstate()` give them)."""
    tensors = {"torch": torch_state, **{f"cuda.{i}": t for i, t in enumerate(cuda_states)}}
    kind, keys, pos, has_gauss, cached = numpy_state
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    version, internal, gauss_next = python_state
    plain = {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
             "python": [version, list(internal), gauss_next]}  # fmt: skip
    _save_tensors_and_json(Path(folder) / f"rng-{rank}", tensors, plain)


def _load_rng(folder: Path, rank: int) -> None:
    name = f"rng-{rank}" if (folder / f"rng-{rank}.json").is_file() else "rng-0"  # a resume on fewer ranks
    tensors, plain = _load_tensors_and_json(folder / name)
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = plain["python"]
    random.setstate((version, tuple(internal), gauss_next))


# -- files --------------------------------------------------------------------------------------------------
def _save_tensors_and_json(stem: Path, tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    tmp = stem.with_name(stem.name + ".safetensors.tmp")
    save_file(tensors, str(tmp))
    tmp.replace(stem.with_name(stem.name + ".safetensors"))
    atomic_write_text(stem.with_name(stem.name + ".json"), json.dumps(plain))


def _load_tensors_and_json(stem: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return load_file(str(stem.with_name(stem.name + ".safetensors"))), json.loads(
        stem.with_name(stem.name + ".json").read_text()
    )
