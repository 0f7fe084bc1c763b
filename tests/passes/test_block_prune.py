"""block_prune through a recipe: importance measured and cached, the least important blocks removed, the choice
and the chart reported, the plan on the full-size skeleton, and every bad config caught before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neocompress.core.apply_run import apply_recipe
from neocompress.core.errors import RecipeError
from neocompress.models.family import get_family
from neocompress.recipe import load_recipe

FAMILY = get_family("pyramid-flow")
CALIBRATION = "calibration: {prompts: world, count: 2, batch: 2, first: [1, 1, 1], later: [1, 1, 1]}"


def _recipe(tmp_path: Path, select: str, name: str = "prune", extra: str = "") -> Path:
    f = tmp_path / f"{name}.yaml"
    f.write_text(
        "model:\n  source: builtin:tiny-random\n"
        "data:\n  prompts:\n    world: {source: builtin:world, count: 4}\n"
        f"passes:\n  - name: block_prune\n    {CALIBRATION}\n    {select}\n{extra}"
        f"output: {tmp_path / name}\n"
    )
    return f


def test_prunes_the_least_important_blocks_and_reports_why(tmp_path: Path) -> None:
    outcome = apply_recipe(load_recipe(_recipe(tmp_path, "remove: 2")), cache_dir=tmp_path / "cache")
    (record,) = outcome.run.records
    report = record.report
    scores = report["importance"]["scores"]["visual"]
    unprotected = sorted(range(1, 6), key=lambda i: (scores[i], -i))
    assert report["removed"] == sorted(unprotected[:2])
    assert report["selection"]["mode"] == "remove" and report["blocks_after"] == 4
    assert outcome.run.ir["denoiser"].module.num_blocks == 4
    assert outcome.run.ir["denoiser"].module.transformer_blocks[-1].context_pre_only
    why = {b["index"]: b["why"] for b in report["selection"]["blocks"]}
    assert why[0] == "protected" and all(why[i].startswith("removed") for i in report["removed"])
    assert (outcome.output / report["figures"]["importance"]).stat().st_size > 1000
    assert report["importance"]["cached"] is False
    assert report["importance"]["scores"]["text"][5] is None  # context_pre_only: no text output

    # Changing only the selection re-runs the pass but reads the scores from the importance cache.
    again = apply_recipe(load_recipe(_recipe(tmp_path, "keep: 5", name="keep5")), cache_dir=tmp_path / "cache")
    assert again.run.records[0].report["importance"]["cached"] is True
    assert again.run.records[0].report["importance"]["scores"] == report["importance"]["scores"]
    assert again.run.records[0].report["removed"] == [unprotected[0]]


def test_budget_by_params_and_flops(tmp_path: Path) -> None:
    ir = FAMILY.load("builtin:tiny-random")
    total = ir["denoiser"].num_params()
    block = sum(p.numel() for p in ir["denoiser"].module.transformer_blocks[1].parameters())
    fraction = (total - 2.5 * block) / total  # room for removing 3 full blocks, not 2
    out = apply_recipe(
        load_recipe(_recipe(tmp_path, f"budget: {{metric: params, fraction: {fraction:.6f}}}", name="p")),
        cache_dir=tmp_path / "cache",
    )
    assert len(out.run.records[0].report["removed"]) == 3
    assert out.run.ir["denoiser"].num_params() <= fraction * total
    costs, fixed = FAMILY.block_flops(ir, "denoiser")
    assert len(costs) == 6 and costs[-1] < costs[0] and fixed > 0
    flops = apply_recipe(
        load_recipe(_recipe(tmp_path, "budget: {metric: flops, fraction: 0.7}", name="f")),
        cache_dir=tmp_path / "cache",
    )
    after, after_fixed = FAMILY.block_flops(flops.run.ir, "denoiser")
    assert sum(after) + after_fixed <= 0.7 * (sum(costs) + fixed) * 1.0001


def test_plan_on_the_full_size_model(tmp_path: Path) -> None:
    f = tmp_path / "full.yaml"
    f.write_text(
        "model:\n  source: builtin:pyramid-flow-sd3\n"
        "data:\n  prompts:\n    calibration: {source: builtin:vbench, count: 100}\n"
        "passes:\n  - name: block_prune\n    keep: 18\n"
        f"output: {tmp_path / 'full'}\n"
    )
    recipe = load_recipe(f, observe=lambda _name, ir: (ir["denoiser"].module.num_blocks, ir["denoiser"].num_params()))
    assert recipe.planned[-1][1] == (18, 1_518_448_192)


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ("remove: 6", "cannot remove 6 of 6 blocks"),
        ("keep: 0", "greater than or equal to 1"),
        ("indices: [0, 3]", "protected"),
        ("indices: [7]", "out of range"),
        ("remove: 2\n    weights: {vision: 1.0}", "unknown stream"),
        ("remove: 2\n    keep: 3", "exactly one of remove, keep, budget, indices"),
        ("budget: {metric: params, fraction: 1.5}", "less than or equal to 1"),
        ("remove: 2\n    protect: [9]", "out of range"),
    ],
)
def test_bad_configs_fail_before_any_work(tmp_path: Path, select: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(_recipe(tmp_path, select))
    assert not (tmp_path / "prune").exists()


def test_missing_calibration_prompts_fail_at_load_with_the_line(tmp_path: Path) -> None:
    f = tmp_path / "nodata.yaml"
    f.write_text(
        "model:\n  source: builtin:tiny-random\npasses:\n  - name: block_prune\n    remove: 1\n"
        f"output: {tmp_path / 'o'}\n"
    )
    with pytest.raises(RecipeError, match=r"needs data.prompts.calibration, which the recipe does not define") as e:
        load_recipe(f)
    assert "passes[0]" in str(e.value)
    assert not (tmp_path / "o").exists()


def test_report_json_has_no_nan(tmp_path: Path) -> None:
    outcome = apply_recipe(load_recipe(_recipe(tmp_path, "remove: 1")))
    text = (outcome.output / "report.json").read_text()
    assert "NaN" not in text
    json.loads(text)


def test_chart_and_choice_land_in_the_output_and_survive_a_resume(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, "remove: 2", name="figs")
    first = apply_recipe(load_recipe(recipe), cache_dir=tmp_path / "cache")
    chart = first.output / "figures" / "00-block_prune-importance.png"
    assert chart.stat().st_size > 1000
    md = (first.output / "report.md").read_text()
    assert "![block_prune importance](figures/00-block_prune-importance.png)" in md
    assert "| 0 |" in md and "protected" in md
    report = json.loads((first.output / "report.json").read_text())
    assert report["passes"][0]["report"]["figures"] == {"importance": "figures/00-block_prune-importance.png"}
    first_bytes = chart.read_bytes()
    assert not (tmp_path / ".figs.work").exists()  # a finished run leaves no scratch; the cache keeps a copy
    second = apply_recipe(load_recipe(recipe), cache_dir=tmp_path / "cache", force=True)
    assert second.run.records[0].cached
    assert (second.output / "figures" / "00-block_prune-importance.png").read_bytes() == first_bytes


def test_the_neodragon_recipe_plans_24_to_18_blocks_then_quantizes() -> None:
    """In the paper's order: text encoder and decoder substitutions, block pruning with recovery, quantization."""
    def seen(name, ir) -> dict:  # validation plans in place: what each step looked like is taken as it passes
        den = ir["denoiser"].module
        return {"blocks": den.num_blocks, "last_pre_only": den.transformer_blocks[-1].context_pre_only,
                "t5": type(ir["t5"].module).__name__, "decoder": type(ir["vae_decoder"].module).__name__}

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "neodragon.yaml", observe=seen)
    names = [name for name, _ in recipe.planned]
    assert names == [None, "encoder_substitution", "decoder_swap", "block_prune", "step_distill", "quantize"]
    assert recipe.planned[3][1] == {"blocks": 18, "last_pre_only": True, "t5": "DistilT5", "decoder": "TAEHVDecoder"}
    assert recipe.planned[0][1]["blocks"] == 24
    prune = recipe.passes[2].config
    assert prune.recovery.stage1 is not None and prune.recovery.stage2 is not None
