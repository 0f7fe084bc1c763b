"""`quantize` through a recipe: one simulated graph per pyramid stage (sized for the longest history) with its
SQNR, the sampled latents compared float vs quantized, the output reloads with its encodings and samples through
them, and bad configs fail at recipe validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neocompress.core.apply_run import apply_recipe
from neocompress.core.errors import RecipeError
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.recipe import load_recipe

PASS = "  - name: quantize\n    calibration: {prompts: cal, count: 2, first: [1, 1, 1], later: [1, 1, 1], heldout: 1}\n"


def _recipe(tmp_path: Path, passes: str = PASS, source: str = "model: {source: builtin:tiny-random}") -> Path:
    f = tmp_path / "quant.yaml"
    f.write_text(
        f"{source}\ndata:\n  prompts:\n    cal: {{source: builtin:world, count: 3}}\npasses:\n{passes}"
        f"output: {tmp_path / 'out'}\n"
    )
    return f


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quantize")
    outcome = apply_recipe(load_recipe(_recipe(tmp)))
    return outcome, json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]


def test_every_stage_gets_one_padded_graph_close_to_float(applied) -> None:
    _, report = applied
    assert report["precision"] == "w8a16" and report["htp"] == "v79"
    shapes = [(g["stage"], len(g["clips"])) for g in report["graphs"]]
    assert sorted(shapes) == [(0, 2), (1, 2), (2, 2)]  # the later frame's one history slot + the current clip
    assert set(report["sqnr_db_per_stage"]) == {"0", "1", "2"}
    assert all(v > 10 for v in report["sqnr_db_per_stage"].values()), report["sqnr_db_per_stage"]  # held out
    for g in report["graphs"]:  # on its own calibration calls a graph is closer than on prompts it never saw
        assert g["sqnr_db"] > 30 and g["heldout_calls"] > 0 and g["heldout_sqnr_db"] < g["sqnr_db"], g
    assert report["latents_sqnr_db"] > 10 and report["heldout_prompts"] == 1


def test_the_report_tables_every_graph(applied) -> None:
    outcome, report = applied
    md = (outcome.output / "report.md").read_text()
    assert "## Pass 0: quantize" in md
    assert "| calibration calls | SQNR dB on them | held-out calls | SQNR dB held out |" in md
    assert md.count("| 2 | 16x1x") == 1 and "held-out prompt(s), quantized vs float" in md


def test_the_output_reloads_with_its_encodings_and_samples_through_them(applied) -> None:
    outcome, report = applied
    assert (outcome.output / "quantization" / "denoiser" / "graphs.json").is_file()
    family = PyramidFlowFamily()
    ir = family.load(str(outcome.output))
    quantized = ir["denoiser"].extras["quantization"]
    assert len(quantized["graphs"]) == len(report["graphs"]) and quantized["settings"]["precision"] == "w8a16"
    pipe = family.pipeline(ir)
    assert type(pipe.denoiser).__name__ == "SimulatedDenoiser"
    schedule = pipe.schedule_with(first=(1, 1, 1), later=(1, 1, 1))
    quant = pipe.sample_latents(["a red circle"], seed=3, schedule=schedule)
    pipe.denoiser = ir["denoiser"].module
    floating = pipe.sample_latents(["a red circle"], seed=3, schedule=schedule)
    assert torch.isfinite(quant).all() and not torch.equal(quant, floating)


@pytest.mark.parametrize(
    ("passes", "source", "message"),
    [
        (PASS + "    precision: w3a3\n", "model: {source: builtin:tiny-random}", "precision"),
        (PASS + "    htp: v99\n", "model: {source: builtin:tiny-random}", "htp"),
        (PASS, "model: {family: diffusers-sd3, source: builtin:sd3-tiny}", "pyramid-flow family so far"),
        (PASS + PASS, "model: {source: builtin:tiny-random}", "already quantized"),
    ],
)
def test_bad_configs_fail_at_validation(tmp_path: Path, passes: str, source: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(_recipe(tmp_path, passes, source))


def test_the_quantize_only_recipe_validates() -> None:
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "tiny-quantize.yaml")
    assert [name for name, _ in recipe.planned] == [None, "quantize"]
