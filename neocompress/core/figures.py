"""Pictures a pass reports (`report["figures"]`: name -> path) and the one file name each gets wherever it is
kept — a cache entry's `figures/` and an output's `figures/` — so both places name a picture the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reported_figures(record: Any) -> dict[str, tuple[Path, str]]:
    """name -> (source file, kept file name) for the pictures of a run record whose files exist."""
    out = {}
    for name, path in (record.report.get("figures") or {}).items():
        source = Path(path)
        if source.is_file():
            out[name] = (source, f"{record.index:02d}-{record.name}-{name}{source.suffix}")
    return out
