"""The fields of an output that describe the run rather than its result: how long each part took and what came
from a cache. Everything else an `apply` writes is the same bytes for the same recipe, whether the run went
through uninterrupted or was killed and resumed from its cache (issue 17).

Why name them: a user comparing two outputs, or a test proving a resume exact, must know which differences are
expected. They live only in the run's own record (`neocompress.json`, `report.json`, and the pass table of
`report.md`); weights, configs, tokenizers, encodings, bundles and figures hold none of them.
"""

from __future__ import annotations

from typing import Any

# JSON keys whose values are timings or cache use (their whole subtree, for `teacher_cache`).
RUN_RECORD_KEYS = frozenset({"seconds", "wall_time_s", "total_time_s", "time_s", "start_step", "cached",
                             "resumed_from_pass", "teacher_cache"})  # fmt: skip
# Columns of report.md's pass table that are the run's record.
RUN_RECORD_COLUMNS = ("cached", "seconds")


def without_run_record(value: Any) -> Any:
    """`value` (parsed JSON) with every RUN_RECORD_KEYS entry removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_run_record(v) for k, v in value.items() if k not in RUN_RECORD_KEYS}
    if isinstance(value, list):
        return [without_run_record(v) for v in value]
    return value
