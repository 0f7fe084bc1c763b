"""Content hashes for the cache: full-length SHA-256 over canonical JSON and tensor bytes.

Why full content: a cache key that hashes only names or a truncated digest would let a changed input reuse a
stale output. Weights are hashed byte for byte (meta tensors, which have no bytes, hash by shape and dtype).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def hash_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def hash_module(module: nn.Module, h: hashlib._Hash | None = None) -> str:
    """Hash every state-dict entry (name, dtype, shape and bytes) in key order."""
    h = h or hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.device.type != "meta":
            h.update(t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def hash_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_tree(root: Path) -> str:
    """Hash a directory's files (relative names and contents) in sorted order."""
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0" + hash_file(p).encode())
    return h.hexdigest()


def hash_path(path: Path) -> str:
    """A file's or a directory's content hash (a directory by `hash_tree`)."""
    return hash_tree(path) if path.is_dir() else hash_file(path)
