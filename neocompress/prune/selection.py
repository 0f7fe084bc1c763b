"""Which blocks to remove, from importance scores: by count, by depth, by a parameter or FLOPs budget, or by list.

Why one function for every mode: the modes differ only in where the cut falls on the same ranking (least
important first, protected blocks never ranked), so the report can say for every block why it went or stayed
in the same terms. Ties break towards the deeper block, so a run is reproducible from its scores alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["remove", "keep", "budget", "indices"]


@dataclass(frozen=True)
class Selection:
    removed: tuple[int, ...]
    kept: tuple[int, ...]
    reasons: dict[int, str]
    mode: Mode

    def to_dict(self, scores: Sequence[float]) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "removed": list(self.removed),
            "kept": list(self.kept),
            "blocks": [
                {"index": i, "score": _json_float(scores[i]), "removed": i in self.removed, "why": self.reasons[i]}
                for i in range(len(scores))
            ],
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def resolve_protected(protect: Sequence[int], num_blocks: int) -> set[int]:
    """Protected indices with negatives counted from the end (-1 = the last block)."""
    out = set()
    for i in protect:
        j = i + num_blocks if i < 0 else i
        if not 0 <= j < num_blocks:
            raise ValueError(f"protected block {i} is out of range for {num_blocks} blocks")
        out.add(j)
    return out


def rank(scores: Sequence[float], protected: set[int]) -> list[int]:
    """Unprotected blocks, least important first; NaN scores (no measurement) rank as most important."""
    candidates = [i for i in range(len(scores)) if i not in protected]
    return sorted(candidates, key=lambda i: (math.inf if math.isnan(scores[i]) else scores[i], -i))


def select_blocks(
    scores: Sequence[float],
    *,
    protected: set[int],
    remove: int | None = None,
    keep: int | None = None,
    budget: float | None = None,
    block_costs: Sequence[float] | None = None,
    fixed_cost: float = 0.0,
    indices: Sequence[int] | None = None,
) -> Selection:
    """Exactly one of `remove` (count), `keep` (depth), `budget` (the fraction of the total cost —
    `fixed_cost` plus every block's `block_costs` — that may stay) or `indices` (explicit) picks the cut."""
    n = len(scores)
    given = {
        k: v for k, v in {"remove": remove, "keep": keep, "budget": budget, "indices": indices}.items() if v is not None
    }
    if len(given) != 1:
        raise ValueError(f"give exactly one of remove, keep, budget, indices; got {sorted(given) or 'none'}")
    mode: Mode = next(iter(given))  # type: ignore[assignment]
    order = rank(scores, protected)
    position = {b: r for r, b in enumerate(order)}
    reasons: dict[int, str] = {}

    if indices is not None:
        bad = sorted(i for i in indices if not 0 <= i < n)
        if bad:
            raise ValueError(f"block indices {bad} out of range: the model has {n} blocks (0..{n - 1})")
        clash = sorted(set(indices) & protected)
        if clash:
            raise ValueError(f"blocks {clash} are protected and cannot be removed")
        chosen = set(indices)
        for i in range(n):
            reasons[i] = "listed in indices" if i in chosen else ("protected" if i in protected else "not listed")
    else:
        if mode == "budget":
            if block_costs is None or len(block_costs) != n:
                raise ValueError("a budget needs one cost per block")
            if not 0 < budget <= 1:  # type: ignore[operator]
                raise ValueError(f"budget must be a fraction in (0, 1], got {budget}")
            total = fixed_cost + sum(block_costs)
            allowed = budget * total  # type: ignore[operator]
            count, cost = 0, total
            while cost > allowed + 1e-9 * total and count < len(order):
                cost -= block_costs[order[count]]
                count += 1
            if cost > allowed + 1e-9 * total:
                raise ValueError(
                    f"budget {budget} cannot be met: removing every unprotected block leaves {cost / total:.3f}"
                )
        else:
            count = remove if mode == "remove" else n - keep  # type: ignore[operator]
        if count < 0 or count > len(order):
            raise ValueError(f"cannot remove {count} of {n} blocks: {len(protected)} protected, {len(order)} removable")
        if count >= n:
            raise ValueError(f"cannot remove all {n} blocks")
        chosen = set(order[:count])
        cut = scores[order[count - 1]] if count else None
        for i in range(n):
            if i in protected:
                reasons[i] = "protected"
            elif i in chosen:
                reasons[i] = f"removed: rank {position[i] + 1} of {len(order)} least important"
            else:
                reasons[i] = (
                    "no importance measured"
                    if math.isnan(scores[i])
                    else f"kept: more important than the cut ({scores[i]:.4g} vs {cut:.4g})"
                    if cut is not None
                    else "kept: nothing to remove"
                )
    return Selection(tuple(sorted(chosen)), tuple(i for i in range(n) if i not in chosen), reasons, mode)
