"""Atomic, non-overwriting output directories.

Why: an interrupted run must never leave a half-written output that looks complete, and an existing output is
someone's work: it is replaced only with `--force`, and then only after the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from neocompress.core.errors import OutputExistsError


def refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise OutputExistsError(f"output '{path}' already exists; pass --force to replace it (nothing was written)")


@contextlib.contextmanager
def atomic_directory(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it becomes `path` in one rename."""
    path = Path(path)
    refuse_existing(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write a file with `write(temporary_path)` so readers see the old or the new content, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so readers see the old or the new content, never a torn one."""
    atomic_write(path, lambda tmp: tmp.write_text(text))
