"""Checkpoints of the training engine, and the EMA of the trained parameters.

Why this layout: a checkpoint holds only what changes. The model is `trained.safetensors`: the trainable
parameters plus all buffers (running statistics may move during training), never the frozen teachers and
encoders around them (gigabytes that never change). The optimizer, LR scheduler, fp16 grad scaler, EMA and every
process's RNG states are written by `neocompress.train.state_io` as safetensors and JSON, so a resume unpickles
nothing. Our own `trainer_state.json` adds the step, the data position, the loss history and the config, so a
resumed run can check it continues the same run. (Sharded FSDP / DeepSpeed runs keep Accelerate's format.)

A checkpoint is written into `checkpoints/.step-N.tmp` by all processes and renamed to `checkpoints/step-N` by
the main one only when complete: a directory named `step-N` is always whole, so an interruption at any moment
leaves either the previous checkpoints or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from neocompress.core.atomic import atomic_write_text

CHECKPOINTS = "checkpoints"
TRAINED_WEIGHTS = "trained.safetensors"
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class EMA:
    """Exponential moving average of named parameters, in fp32, on the parameters' device.

    Why a warm-up (`min(decay, (1 + n) / (10 + n))`, as diffusers' `use_ema_warmup`): with a fixed decay of
    0.999 the average of a 500-step run is still mostly the initialisation; the warm-up lets short runs (the
    miniature model, recovery fine-tunes) get an average of trained weights.
    """

    def __init__(self, params: Mapping[str, torch.nn.Parameter], decay: float, warmup: bool = True):
        self.decay, self.warmup = float(decay), warmup
        self.params = dict(params)
        self.shadow = {k: p.detach().float().clone() for k, p in self.params.items()}
        self.num_updates = 0

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current parameters in (call once per optimizer step)."""
        weight = 1.0 - self.current_decay()
        for k, p in self.params.items():
            self.shadow[k].lerp_(p.detach().float(), weight)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Write the averaged weights into the live parameters (their own dtype)."""
        for k, p in self.params.items():
            p.copy_(self.shadow[k].to(p.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: v.cpu() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError("EMA checkpoint holds other parameters than the ones being trained")
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
        self.num_updates = int(state["num_updates"])


def trained_state(module: torch.nn.Module, trainable: Iterable[str]) -> dict[str, torch.Tensor]:
    """The part of `module`'s state a checkpoint must hold: trainable parameters and all buffers, on CPU."""
    keep = set(trainable)
    out = {k: p.detach() for k, p in module.named_parameters() if k in keep}
    out.update({k: b.detach() for k, b in module.named_buffers()})
    return {k: v.to("cpu").contiguous() for k, v in out.items()}


def save_trained_weights(module: torch.nn.Module, trainable: Iterable[str], path: Path) -> None:
    save_file(trained_state(module, trainable), str(path), metadata={"format": "pt"})


@torch.no_grad()
def load_trained_weights(module: torch.nn.Module, trainable: Iterable[str], path: Path) -> None:
    """Copy a `trained.safetensors` back into `module`; the key set must match the run exactly."""
    state = load_file(str(path))
    expected = set(trained_state_keys(module, trainable))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(
            f"checkpoint {path} does not match the modules being trained: missing {missing[:5]}, unexpected "
            f"{extra[:5]} (a different model or a different set of trainable parameters?)"
        )
    live = dict(module.named_parameters())
    live.update(dict(module.named_buffers()))
    for k, v in state.items():
        live[k].copy_(v)


def trained_state_keys(module: torch.nn.Module, trainable: Iterable[str]) -> list[str]:
    keep = set(trainable)
    return [k for k, _ in module.named_parameters() if k in keep] + [k for k, _ in module.named_buffers()]


def checkpoint_dir(work_dir: Path, step: int) -> Path:
    return Path(work_dir) / CHECKPOINTS / f"step-{step}"


def list_checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (renamed into place) in step order."""
    root = Path(work_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and d.is_dir() and (d / STATE_FILE).is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def latest_checkpoint(work_dir: Path) -> Path | None:
    found = list_checkpoints(work_dir)
    return found[-1][1] if found else None


def remove_stale_temporaries(work_dir: Path) -> None:
    """Delete half-written checkpoints left by an interrupted save (main process only)."""
    root = Path(work_dir) / CHECKPOINTS
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith(".step-") and d.name.endswith((".tmp", ".old")):
                shutil.rmtree(d, ignore_errors=True)


def save_checkpoint(accelerator: Any, work_dir: Path, step: int, trainer_state: dict[str, Any], keep: int,
                    write: Callable[[Path], None] | None = None) -> Path:  # fmt: skip
    """Write checkpoint `step` atomically. Every process must call this (each writes its own RNG states):
    `write(folder)` writes the training state (`neocompress.train.state_io`); without it, Accelerate's
    `save_state` does (the sharded FSDP / DeepSpeed runs)."""
    root = Path(work_dir) / CHECKPOINTS
    tmp, final = root / f".step-{step}.tmp", checkpoint_dir(work_dir, step)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    if write is not None:
        write(tmp)
    else:
        accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank's files are in tmp before it becomes visible
    if accelerator.is_main_process:
        atomic_write_text(tmp / STATE_FILE, json.dumps(trainer_state))
        if final.exists():  # the same step saved again: move the old one aside so step-N is never missing
            old = root / f".step-{step}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        for _, old in list_checkpoints(work_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / STATE_FILE).read_text())
