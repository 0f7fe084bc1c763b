"""What the cache key covers, and how the cache copes with damage and with being switched off."""

from __future__ import annotations

from pathlib import Path

import pytest

from neocompress.core.apply_run import apply_recipe
from neocompress.core.context import PassContext
from neocompress.core.manager import PassManager
from neocompress.core.pass_base import PassResult
from neocompress.data.prompts import PromptSets
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.recipe.load import parse_recipe
from neocompress.recipe.schema import PromptSet

RECIPE = """\
model:
  source: builtin:tiny-random
passes:
  - name: remove_blocks
    indices: [1]
output: {out}
"""


def _keys(seed: int = 0, data: dict | None = None, target: dict | None = None) -> list[str]:
    recipe = parse_recipe(RECIPE.format(out="x"))
    ctx = PassContext(work_dir=Path("/nonexistent"), seed=seed, target=target, data=PromptSets(data or {}))
    return PassManager(recipe.passes, ctx).keys("base")


def test_step_keys_cover_seed_data_and_target(tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n")
    base = _keys()
    assert _keys() == base
    assert _keys(seed=1) != base
    with_data = _keys(data={"calib": PromptSet(source=str(prompts))})
    assert with_data != base
    prompts.write_text("a blue square\n")  # same file name, new content: a new key
    assert _keys(data={"calib": PromptSet(source=str(prompts))}) != with_data
    assert _keys(target={"name": "hexagon"}) != base


def test_builtin_source_key_covers_more_than_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import torch

    from neocompress.models.pyramid_flow import spec as spec_module
    from neocompress.models.pyramid_flow.scheduler import StepSchedule

    def key() -> str:
        return PyramidFlowFamily().source_key("builtin:tiny-random", dtype=torch.float32, seed=0)

    base = key()
    assert key() == base
    assert PyramidFlowFamily().source_key("builtin:tiny-random", dtype=torch.float32, seed=1) != base
    # Same seeded weights, another default schedule: a different pipeline, so a different key.
    distilled = dataclasses.replace(spec_module.tiny_spec(), schedule=StepSchedule.distilled_1_1_1())
    monkeypatch.setitem(spec_module.BUILTIN_SPECS, "builtin:tiny-random", lambda: distilled)
    assert key() != base


def test_a_damaged_cache_entry_is_recomputed_not_fatal(tmp_path: Path) -> None:
    recipe = parse_recipe(RECIPE.format(out=tmp_path / "out"))
    first = apply_recipe(recipe, cache_dir=tmp_path / "cache")
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    weights = entry / "diffusion_transformer_384p" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"")  # truncated by a crash or a full disk
    with pytest.warns(UserWarning, match="discarding damaged cache entry"):
        again = apply_recipe(recipe, cache_dir=tmp_path / "cache", force=True)
    assert [r.cached for r in again.run.records] == [False]
    assert again.run.records[0].key == first.run.records[0].key
    assert weights.stat().st_size > 0  # the entry was written anew


def test_no_cache_never_hashes_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("source_key called without a cache")

    monkeypatch.setattr(PyramidFlowFamily, "source_key", boom)
    outcome = apply_recipe(parse_recipe(RECIPE.format(out=tmp_path / "out")), cache_dir=None)
    assert [r.key for r in outcome.run.records] == [None] and (tmp_path / "out" / "neocompress.json").is_file()


def test_evaluate_section_puts_minibench_before_and_after_in_the_report(tmp_path: Path) -> None:
    import json

    recipe = parse_recipe(RECIPE.format(out=tmp_path / "out") + "evaluate:\n  prompts: 4\n  per_pass: true\n")
    outcome = apply_recipe(recipe, cache_dir=tmp_path / "cache")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    quality = report["quality"]
    for side in ("before", "after"):
        score = quality[side]
        assert {"total", "parts", "interval", "chance", "judge_accuracy", "seconds", "valid", "score_key"} <= set(score)
        assert all(0.0 <= v <= 1.0 for v in score["parts"].values()) and 0.0 <= score["total"] <= 1.0
    per_pass = outcome.manifest["instruments"]["minibench_per_pass"]
    assert [r["pass"] for r in per_pass] == ["remove_blocks"] and "total" in per_pass[0]
    # The recipe's "after" is the pipeline the last pass left, already scored by the per-pass instrument: reused.
    assert quality["after"].get("reused") is True and "reused" not in per_pass[0]
    assert quality["after"]["total"] == per_pass[0]["total"]
    assert set(quality["difference"]) == {*quality["before"]["parts"], "total"}
    assert (tmp_path / "cache" / "minibench" / f"{quality['before']['score_key']}.safetensors").is_file()
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Quality (minibench" in md and "| colour |" in md and "After pass 0 (remove_blocks)" in md
    assert "after - before" in md and "bootstrap intervals" in md
    # A second run from the cache scores nothing again: both sides come from the remembered results.
    again = apply_recipe(recipe, cache_dir=tmp_path / "cache", force=True)
    assert again.manifest["quality"]["before"].get("reused") is True
    # The pass restored from the cache is scored with its own restored pipeline, read back, not left blank.
    (replayed,) = again.manifest["instruments"]["minibench_per_pass"]
    assert replayed["cached"] is True and replayed["reused"] is True and replayed["total"] == per_pass[0]["total"]
    assert replayed["cost"] == per_pass[0]["cost"]


def test_a_resumed_run_scores_only_the_pass_whose_pipeline_it_restored(tmp_path: Path) -> None:
    from neocompress.analysis.quality import MiniBenchInstrument

    calls: list[str] = []

    class Counting(MiniBenchInstrument):
        def _scored(self, ir):  # type: ignore[no-untyped-def]
            calls.append(ir.meta["tag"])
            return {"total": 0.5, "cost": {}}

    class IR:
        def __init__(self, tag: str) -> None:
            self.meta = {"tag": tag}

    inst = Counting(family=None, prompts=4, seed=0)
    restored, changed = IR("restored"), IR("changed")
    inst.after_pass(0, "a", PassResult(restored, True, {}), 0.0, True)  # type: ignore[arg-type]
    inst.after_pass(1, "b", PassResult(restored, True, {}), 0.0, True)  # type: ignore[arg-type]
    inst.before_pass(2, "c", restored)  # type: ignore[arg-type]
    inst.after_pass(2, "c", PassResult(changed, True, {}), 0.0, False)  # type: ignore[arg-type]
    per_pass = inst.record()["minibench_per_pass"]
    assert calls == ["restored", "changed"]
    assert ["total" in r for r in per_pass] == [False, True, True] and per_pass[1]["cached"] is True


DECODER_RECIPE = """\
model:
  source: builtin:tiny-random
passes:
  - name: decoder_swap
    checkpoint: {checkpoint}
output: x
"""


def _decoder_keys(checkpoint: str) -> list[str]:
    recipe = parse_recipe(DECODER_RECIPE.format(checkpoint=checkpoint))
    return PassManager(recipe.passes, PassContext(work_dir=Path("/nonexistent"), seed=0)).keys("base")


def test_a_checkpoint_retrained_in_place_gets_a_new_key(tmp_path: Path) -> None:
    folder = tmp_path / "taehv"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"first training")
    first = _decoder_keys(str(folder))
    assert _decoder_keys(str(folder)) == first
    (folder / "model.safetensors").write_bytes(b"second training")  # same folder name, new weights
    assert _decoder_keys(str(folder)) != first


def test_a_rebuilt_builtin_asset_gets_a_new_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neocompress.models import taehv_decoder

    asset = tmp_path / "miniature-taehv"
    asset.mkdir()
    (asset / "model.safetensors").write_bytes(b"shipped")
    monkeypatch.setattr(taehv_decoder, "taehv_folder", lambda source: asset)
    first = _decoder_keys("builtin:tiny-taehv")
    (asset / "model.safetensors").write_bytes(b"rebuilt")
    assert _decoder_keys("builtin:tiny-taehv") != first


def test_a_pass_that_reads_no_files_keeps_its_key() -> None:
    from neocompress.core.cache import step_key

    args = ("remove_blocks", 1, {"indices": [1]}, "base", {"seed": 0})
    assert step_key(*args, {}) == step_key(*args)  # cache entries made before file hashes stay valid
    assert step_key(*args, {"checkpoint": "abc"}) != step_key(*args)
