"""Block selection: every mode cuts the same ranking in its own place, protected blocks never go, NaN scores
rank as most important, and impossible requests say why."""

from __future__ import annotations

import math

import pytest

from neocompress.prune.selection import rank, resolve_protected, select_blocks

SCORES = [0.9, 0.1, 0.5, 0.05, 0.3, 0.2]  # least important: 3, 1, 5, 4, 2, 0


def test_rank_is_least_important_first_with_deeper_first_on_ties() -> None:
    assert rank(SCORES, set()) == [3, 1, 5, 4, 2, 0]
    assert rank([0.1, 0.1, 0.2], set()) == [1, 0, 2]
    assert rank([math.nan, 0.1, 0.2], set()) == [1, 2, 0]


def test_remove_and_keep_are_the_same_cut() -> None:
    by_count = select_blocks(SCORES, protected={0}, remove=2)
    by_depth = select_blocks(SCORES, protected={0}, keep=4)
    assert by_count.removed == by_depth.removed == (1, 3)
    assert by_count.kept == (0, 2, 4, 5)
    assert by_count.reasons[3].startswith("removed: rank 1") and by_count.reasons[0] == "protected"
    assert "more important than the cut" in by_count.reasons[5]


def test_protected_blocks_are_skipped_not_counted() -> None:
    sel = select_blocks(SCORES, protected={3, 5}, remove=2)
    assert sel.removed == (1, 4)


def test_budget_removes_until_the_fraction_holds() -> None:
    costs = [10.0] * 6
    # total 60 + 40 fixed = 100; keeping at most 75 means removing 3 blocks (70)
    sel = select_blocks(SCORES, protected={0}, budget=0.75, block_costs=costs, fixed_cost=40.0)
    assert sel.removed == (1, 3, 5) and sel.mode == "budget"
    assert select_blocks(SCORES, protected={0}, budget=1.0, block_costs=costs).removed == ()
    with pytest.raises(ValueError, match="cannot be met"):
        select_blocks(SCORES, protected={0, 1, 2, 3, 4}, budget=0.2, block_costs=costs)


def test_explicit_indices_with_reasons() -> None:
    sel = select_blocks(SCORES, protected={0}, indices=[2, 4])
    assert sel.removed == (2, 4) and sel.reasons[2] == "listed in indices" and sel.reasons[1] == "not listed"
    with pytest.raises(ValueError, match="protected"):
        select_blocks(SCORES, protected={0}, indices=[0])
    with pytest.raises(ValueError, match="out of range"):
        select_blocks(SCORES, protected=set(), indices=[6])


def test_impossible_requests() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        select_blocks(SCORES, protected=set(), remove=1, keep=2)
    with pytest.raises(ValueError, match="exactly one"):
        select_blocks(SCORES, protected=set())
    with pytest.raises(ValueError, match="removable"):
        select_blocks(SCORES, protected={0, 1}, remove=5)
    with pytest.raises(ValueError, match="all 6 blocks"):
        select_blocks(SCORES, protected=set(), remove=6)


def test_negative_protected_indices_count_from_the_end() -> None:
    assert resolve_protected([0, -1], 6) == {0, 5}
    with pytest.raises(ValueError, match="out of range"):
        resolve_protected([6], 6)


def test_report_carries_every_block() -> None:
    report = select_blocks(SCORES, protected={0}, remove=2).to_dict([*SCORES[:5], math.nan])
    assert [b["index"] for b in report["blocks"]] == list(range(6))
    assert report["blocks"][5]["score"] is None and report["removed"] == [1, 3]
