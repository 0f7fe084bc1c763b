"""Paths a user typed: whether the file system can be asked about them at all, and how to quote them back.

Why one place: a recipe or a command line may carry a name longer than the file system allows or a NUL byte,
and `Path.exists()` / `is_file()` then raise instead of answering. Every check of a user's path asks here first,
so each says the same thing, and a 100,000-character value is quoted by its start and its length.
"""

from __future__ import annotations

from pathlib import Path


def unusable_reason(value: str) -> str | None:
    """Why `value` cannot be looked up (a name too long for the file system, a NUL byte); None when it can."""
    try:
        Path(value).exists()
    except (OSError, ValueError) as e:
        return getattr(e, "strerror", None) or str(e)
    return None


def shown_path(value: str) -> str:
    """`value` as an error message quotes it: whole when short, else its start and its length."""
    return value if len(value) <= 80 else f"{value[:60]}... ({len(value):,} characters)"
