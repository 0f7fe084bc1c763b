"""block_prune's naive baselines: the same number of blocks cut at random and from the end, each scored beside the
importance cut without recovery, the live pipeline left exactly as the importance cut made it, and the report
showing the comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neocompress.core.apply_run import apply_recipe
from neocompress.core.errors import RecipeError
from neocompress.models.family import get_family
from neocompress.prune.baselines import baseline_indices, trial_cut
from neocompress.recipe import load_recipe

CALIBRATION = "calibration: {prompts: world, count: 2, batch: 2, first: [1, 1, 1], later: [1, 1, 1]}"


def _recipe(tmp_path: Path, extra: str) -> Path:
    f = tmp_path / "b.yaml"
    f.write_text(
        "model:\n  source: builtin:tiny-random\n"
        "data:\n  prompts:\n    world: {source: builtin:world, count: 4}\n"
        f"passes:\n  - name: block_prune\n    {CALIBRATION}\n    remove: 2\n{extra}"
        f"output: {tmp_path / 'b'}\n"
    )
    return f


def test_baseline_indices_are_reproducible_and_skip_protected_blocks() -> None:
    assert baseline_indices("last", 6, {0}, 2, seed=0) == [4, 5]
    assert baseline_indices("last", 6, {0, 5}, 2, seed=0) == [3, 4]
    draws = [baseline_indices("random", 6, {0}, 2, seed=s) for s in range(20)]
    assert all(0 not in d and len(set(d)) == 2 for d in draws)
    assert draws[3] == baseline_indices("random", 6, {0}, 2, seed=3) and len({tuple(d) for d in draws}) > 3
    # a draw that repeats the importance cut or the last blocks is redrawn, when another cut exists
    assert baseline_indices("random", 6, {0}, 2, seed=0, avoid=[[4, 5], draws[0]]) not in ([4, 5], draws[0])
    assert baseline_indices("random", 3, {0}, 2, seed=0, avoid=[[1, 2]]) == [1, 2]  # no other cut exists
    with pytest.raises(ValueError, match="cannot choose 6 of 5"):
        baseline_indices("last", 6, {0}, 6, seed=0)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_indices("first", 6, {0}, 1, seed=0)


def test_a_trial_cut_is_undone() -> None:
    ir = get_family("pyramid-flow").load("builtin:tiny-random")
    comp = ir["denoiser"]
    module, config = comp.module, dict(comp.config)
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    with trial_cut(ir, "denoiser", [1, 2]) as cut:
        assert cut["denoiser"].module.num_blocks == 4 and cut["denoiser"].module is not module
    assert comp.module is module and comp.config == config and module.num_blocks == 6
    assert all(torch.equal(weights[k], v) for k, v in module.state_dict().items())


def test_baselines_are_scored_beside_the_importance_cut(tmp_path: Path) -> None:
    extra = "    baselines: [random, last]\n    baseline_prompts: 8\n"
    outcome = apply_recipe(load_recipe(_recipe(tmp_path, extra)), cache_dir=tmp_path / "cache")
    report = outcome.run.records[0].report
    baselines = report["baselines"]
    assert list(baselines) == ["importance", "random", "last"]
    assert baselines["importance"]["removed"] == report["removed"]
    assert baselines["last"]["removed"] == [4, 5]
    assert baselines["random"]["removed"] not in (baselines["importance"]["removed"], [4, 5])
    for entry in baselines.values():
        assert entry["minibench"]["prompts"] == 8 and 0.0 <= entry["minibench"]["total"] <= 1.0
    assert outcome.run.ir["denoiser"].module.num_blocks == 4  # the pipeline keeps the importance cut
    text = (outcome.output / "report.md").read_text()
    assert "naive baselines (2 blocks cut, no recovery)" in text
    assert "last [4, 5]" in text


def test_bad_baselines_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="baselines"):
        load_recipe(_recipe(tmp_path, "    baselines: [first]\n"))
    with pytest.raises(RecipeError, match="unique"):
        load_recipe(_recipe(tmp_path, "    baselines: [last, last]\n"))
    with pytest.raises(RecipeError, match="baseline_prompts"):
        load_recipe(_recipe(tmp_path, "    baselines: [last]\n    baseline_prompts: 0\n"))
