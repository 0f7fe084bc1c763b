"""The pass-output cache: each pass's output pipeline stored under a full content key.

Why (Olive's cache with a full-length key): a key is SHA-256 over (pass name, version, resolved config, the
input's key, target), chained from the base model's content hash. A re-run after an interruption finds the
latest cached step and resumes from it; changing one config value changes that pass's key and every key after
it, so exactly those passes re-run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neocompress.core.atomic import atomic_directory
from neocompress.core.hashing import hash_json

ENTRY_FILE = "cache-entry.json"


def step_key(
    pass_name: str,
    version: int,
    config: dict[str, Any],
    input_key: str,
    context: dict[str, Any],
    files: dict[str, str] | None = None,
) -> str:
    """`context` is what a pass may read from its PassContext (target, seed, the data's fingerprint); `files` the
    content hashes of the checkpoints and data folders its config names (left out of the key when there are
    none, so a pass that reads no files keeps the key it always had)."""
    parts = {"pass": pass_name, "version": version, "config": config, "input": input_key, "context": context}
    return hash_json({**parts, "files": files} if files else parts)


class PassCache:
    """A directory of completed pass outputs, one sub-directory per key."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / ENTRY_FILE).is_file()

    def entry(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / ENTRY_FILE).read_text())

    def store(self, key: str, entry: dict[str, Any], write: Callable[[Path], None]) -> Path:
        """Write an entry atomically: `write(dir)` fills it, the entry file marks it complete. In a launched run
        rank 0 writes and the others wait until it has."""
        from neocompress.core.distributed import barrier, is_main

        if is_main():
            self.root.mkdir(parents=True, exist_ok=True)
            with atomic_directory(self.path(key), force=True) as tmp:
                write(tmp)
                (tmp / ENTRY_FILE).write_text(json.dumps(entry, indent=2, default=str))
        barrier()
        return self.path(key)

    def discard(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
