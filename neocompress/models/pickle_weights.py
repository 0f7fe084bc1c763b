"""Pickle weight files (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`): refused where weights are read, converted on request.

Why refuse: unpickling runs whatever the file says, and `weights_only=True` narrows that but is still an
unpickler over untrusted bytes. neocompress reads safetensors only; a folder that has only pickle weights is an
error that names the files and the command that converts them once, `neocompress convert-weights FOLDER`, which
the user runs knowingly on files they trust (torch.load with `weights_only=True`, then safetensors beside them).
"""

from __future__ import annotations

import json
from pathlib import Path

from neocompress.core.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def pickle_files(folder: Path) -> list[Path]:
    return sorted(f for f in Path(folder).iterdir() if f.is_file() and f.suffix in PICKLE_SUFFIXES)


def refuse_pickles(folder: Path, component: str, found: list[Path]) -> CheckpointError:
    names = ", ".join(f.name for f in found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    return CheckpointError(
        f"{component}: '{folder}' holds only pickle weight files ({names}); neocompress reads safetensors only, "
        f"because loading a pickle can run code. If you trust the files, convert them once with "
        f"`neocompress convert-weights {folder}`"
    )


def safetensors_name(name: str) -> str:
    """`pytorch_model-00001-of-00002.bin` -> `model-00001-of-00002.safetensors`, `x.pt` -> `x.safetensors`
    (the names transformers and diffusers give the same files in safetensors)."""
    stem = Path(name).stem
    if stem.startswith("pytorch_model"):
        stem = "model" + stem[len("pytorch_model") :]
    return stem + ".safetensors"


def convert_folder(folder: Path, force: bool = False) -> list[tuple[Path, Path]]:
    """Every pickle weight file of `folder` written as safetensors beside it (tied tensors stored as copies, so
    every name loads), and a `*.bin.index.json` as its `*.safetensors.index.json`. Returns (source, written)."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    found = pickle_files(folder)
    if not found:
        raise CheckpointError(f"'{folder}' has no pickle weight file ({', '.join(PICKLE_SUFFIXES)}) to convert")
    done = []
    for f in found:
        target = folder / safetensors_name(f.name)
        if target.exists() and not force:
            raise CheckpointError(f"'{target}' exists; pass --force to replace it")
        state = torch.load(f, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]  # a Lightning-style checkpoint
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"'{f}' does not hold a flat mapping of tensor names to tensors")
        tmp = target.with_name(target.name + ".tmp")
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(tmp))
        tmp.replace(target)
        done.append((f, target))
    for index in sorted(folder.glob("*.bin.index.json")):
        data = json.loads(index.read_text(encoding="utf-8"))
        data["weight_map"] = {k: safetensors_name(v) for k, v in data.get("weight_map", {}).items()}
        target = folder / (safetensors_name(index.name[: -len(".index.json")]) + ".index.json")
        target.write_text(json.dumps(data, indent=2) + "\n")
        done.append((index, target))
    return done
