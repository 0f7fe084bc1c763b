"""apply_recipe end to end: pass-output cache and resume, atomic outputs, provenance, instruments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml
from safetensors.torch import load_file

from neocompress.core.apply_run import apply_recipe
from neocompress.core.errors import OutputExistsError, PassError, VerificationError
from neocompress.core.instruments import DumpIRInstrument, TimingInstrument, VerifyInstrument
from neocompress.core.pass_base import Pass, PassConfig, PassResult
from neocompress.core.registry import register_pass
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.recipe import load_recipe

THREE_PASSES = ([1], [0], [2])  # on the 6-block tiny denoiser: 6 -> 5 -> 4 -> 3 blocks, last block kept throughout


def _recipe(tmp_path: Path, indices=THREE_PASSES, *, name: str = "r.yaml", dtype: str = "float32", extra: str = ""):
    passes = "".join(f"  - name: remove_blocks\n    indices: {list(ix)}\n" for ix in indices)
    text = f"model:\n  source: builtin:tiny-random\n  dtype: {dtype}\n  seed: 0\npasses:\n{passes}{extra}"
    text += f"output: {tmp_path / 'out'}\n"
    path = tmp_path / name
    path.write_text(text)
    return load_recipe(path)


def _cached(outcome) -> list[bool]:
    return [r.cached for r in outcome.run.records]


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(directory.rglob("*.safetensors")):
        for k, v in load_file(f).items():
            out[f"{f.relative_to(directory)}::{k}"] = v
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and len(wa) > 0
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and torch.equal(wa[k], wb[k]), k


def _block_indices(directory: Path) -> set[int]:
    sd = load_file(directory / "diffusion_transformer_384p" / "diffusion_pytorch_model.safetensors")
    return {int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")}


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith((path.name, f".{path.name}.tmp")))


# --------------------------------------------------------------------------------------------------------------
# cache and resume
# --------------------------------------------------------------------------------------------------------------


def test_cache_reuse_config_change_and_output_contents(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    recipe = _recipe(tmp_path)
    out1 = tmp_path / "out"

    first = apply_recipe(recipe, cache_dir=cache)
    assert first.output == out1
    assert _cached(first) == [False, False, False]
    assert first.run.resumed_from == -1
    assert [r.report["blocks_after"] for r in first.run.records] == [5, 4, 3]
    assert len(list(cache.iterdir())) == 3  # one entry per pass
    fresh_components = json.loads((out1 / "neocompress.json").read_text())["components"]

    # same recipe, new output directory: every pass comes from the cache, the weights are identical
    out2 = tmp_path / "out2"
    second = apply_recipe(recipe, cache_dir=cache, output=out2)
    assert _cached(second) == [True, True, True]
    assert second.run.resumed_from == 2
    assert [r.key for r in second.run.records] == [r.key for r in first.run.records]
    _assert_same_weights(out1, out2)

    # same recipe and output with force: replaced, again fully cached
    (out1 / "stale.txt").write_text("old")
    third = apply_recipe(recipe, cache_dir=cache, force=True)
    assert _cached(third) == [True, True, True]
    assert not (out1 / "stale.txt").exists()
    _assert_same_weights(out1, out2)

    # changing the SECOND pass's config re-runs passes 2 and 3 only
    changed = _recipe(tmp_path, ([1], [3], [2]), name="changed.yaml")
    out3 = tmp_path / "out3"
    fourth = apply_recipe(changed, cache_dir=cache, output=out3)
    assert _cached(fourth) == [True, False, False]
    assert fourth.run.resumed_from == 0
    assert fourth.run.records[0].key == first.run.records[0].key
    assert fourth.run.records[1].key != first.run.records[1].key
    assert fourth.run.records[2].key != first.run.records[2].key  # keys chain: a changed input changes the key
    assert fourth.run.records[1].report["kept_original_indices"] == [0, 1, 2, 4]
    assert len(list(cache.iterdir())) == 5
    assert _block_indices(out3) == {0, 1, 2}

    # -- what the output directory holds ------------------------------------------------------------------
    for name in ("recipe.resolved.yaml", "neocompress.json", "report.json", "report.md", "params.png"):
        assert (out2 / name).is_file(), name
    assert yaml.safe_load((out2 / "recipe.resolved.yaml").read_text()) == recipe.resolved()
    assert (out2 / "params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    manifest = json.loads((out2 / "neocompress.json").read_text())
    assert manifest["recipe"] == recipe.resolved()
    assert [(r["index"], r["name"], r["cached"]) for r in manifest["pass_log"]] == [
        (0, "remove_blocks", True),
        (1, "remove_blocks", True),
        (2, "remove_blocks", True),
    ]
    assert [r["config"]["indices"] for r in manifest["pass_log"]] == [[1], [0], [2]]
    assert manifest["resumed_from_pass"] == 2
    # provenance survives the cache: a restored pipeline still says which passes made it
    prov = manifest["components"]["denoiser"]["provenance"]
    assert [p["pass"] for p in prov] == ["remove_blocks"] * 3
    assert prov[0]["detail"] == "removed blocks [1] of 6; kept [0, 2, 3, 4, 5]"
    assert manifest["components"]["clip_l"]["provenance"] == []
    assert manifest["components"] == fresh_components  # params and provenance as the uncached run wrote them

    report = json.loads((out2 / "report.json").read_text())
    assert report["passes"] == manifest["pass_log"]
    assert report["resumed_from_pass"] == 2
    den_before, den_after = report["params_before"]["denoiser"], report["params_after"]["denoiser"]
    assert den_before > den_after == manifest["components"]["denoiser"]["params"]
    assert report["total_params_before"] - report["total_params_after"] == den_before - den_after
    md = (out2 / "report.md").read_text()
    assert md.count("| remove_blocks | yes |") == 3 and "params.png" in md
    assert "| remove_blocks | no |" in (out3 / "report.md").read_text()

    # the reloaded output has 3 blocks numbered densely, the last one context_pre_only
    assert _block_indices(out2) == {0, 1, 2}
    cfg = json.loads((out2 / "diffusion_transformer_384p" / "config.json").read_text())
    assert cfg["num_layers"] == 3


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_leaves_no_output_and_resumes(tmp_path: Path, monkeypatch, interrupt) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    recipe = _recipe(tmp_path)
    calls = []

    def boom(ir: PipelineIR, ctx: Any) -> PassResult:
        calls.append(1)
        raise interrupt("stopped at pass 3")

    monkeypatch.setattr(recipe.passes[2], "run", boom)
    expected = KeyboardInterrupt if interrupt is KeyboardInterrupt else PassError
    with pytest.raises(expected) as e:
        apply_recipe(recipe, cache_dir=cache)
    assert calls == [1]
    if expected is PassError:
        assert "pass 2 'remove_blocks' failed: RuntimeError: stopped at pass 3" in str(e.value)
    assert not out.exists()
    assert _siblings(out) == []  # no half-written temporary directory either
    assert len(list(cache.iterdir())) == 2  # passes 1 and 2 were stored before the interruption

    fresh = _recipe(tmp_path)  # the re-run: same recipe, nothing patched
    resumed = apply_recipe(fresh, cache_dir=cache)
    assert _cached(resumed) == [True, True, False]
    assert resumed.run.resumed_from == 1
    assert resumed.run.records[2].report["kept_original_indices"] == [0, 1, 3]
    assert _block_indices(out) == {0, 1, 2}

    if interrupt is KeyboardInterrupt:  # and it equals a clean, uncached run of the same recipe
        clean = apply_recipe(_recipe(tmp_path), output=tmp_path / "clean")
        assert _cached(clean) == [False, False, False]
        _assert_same_weights(out, tmp_path / "clean")


def test_resume_after_an_earlier_entry_was_evicted_keeps_the_whole_log(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    recipe = _recipe(tmp_path)
    first = apply_recipe(recipe, cache_dir=cache)
    for r in first.run.records[:2]:  # evict passes 1 and 2; pass 3's entry holds the result of all three
        shutil.rmtree(cache / r.key)
    again = apply_recipe(recipe, cache_dir=cache, output=tmp_path / "out2")
    assert _cached(again) == [True, True, True] and again.run.resumed_from == 2
    assert [(r.index, r.config["indices"]) for r in again.run.records] == [(0, [1]), (1, [0]), (2, [2])]
    assert [r.report for r in again.run.records] == [r.report for r in first.run.records]
    assert len(again.run.ir["denoiser"].provenance) == 3
    _assert_same_weights(first.output, again.output)


def test_resume_keeps_the_recipe_dtype(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    recipe = _recipe(tmp_path, ([1], [4]), dtype="bfloat16")
    first = apply_recipe(recipe, cache_dir=cache)
    second = apply_recipe(recipe, cache_dir=cache, output=tmp_path / "out2")
    assert _cached(second) == [True, True]
    assert {p.dtype for p in second.run.ir["denoiser"].module.parameters()} == {torch.bfloat16}
    _assert_same_weights(first.output, second.output)
    assert {v.dtype for v in _weights(second.output).values()} == {torch.bfloat16}


def test_existing_output_is_refused_before_any_pass_runs(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    recipe = _recipe(tmp_path)
    for p in recipe.passes:
        monkeypatch.setattr(p, "run", lambda ir, ctx: pytest.fail("a pass ran although the output exists"))
    timing = TimingInstrument()
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        apply_recipe(recipe, cache_dir=tmp_path / "cache", instruments=[timing])
    assert timing.seconds == []
    assert not (tmp_path / "cache").exists() and not (tmp_path / ".out.work").exists()
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep"


# --------------------------------------------------------------------------------------------------------------
# instruments
# --------------------------------------------------------------------------------------------------------------


def test_timing_and_dump_instruments(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    recipe = _recipe(tmp_path)
    timing, dumps = TimingInstrument(), DumpIRInstrument(tmp_path / "dumps")
    outcome = apply_recipe(recipe, cache_dir=cache, instruments=[timing, dumps, VerifyInstrument()])
    assert [(t["index"], t["pass"], t["cached"]) for t in timing.seconds] == [
        (0, "remove_blocks", False),
        (1, "remove_blocks", False),
        (2, "remove_blocks", False),
    ]
    assert all(t["seconds"] >= 0 for t in timing.seconds)
    assert outcome.manifest["instruments"]["timing"] == timing.seconds
    report = json.loads((outcome.output / "report.json").read_text())
    assert report["instruments"]["timing"] == timing.seconds

    names = sorted(p.name for p in (tmp_path / "dumps").iterdir())
    assert names == [f"{i:02d}-remove_blocks-{tag}.json" for i in range(3) for tag in ("after", "before")]
    params = {n: json.loads((tmp_path / "dumps" / n).read_text())["components"]["denoiser"]["params"] for n in names}
    for i in range(3):
        assert params[f"{i:02d}-remove_blocks-after.json"] < params[f"{i:02d}-remove_blocks-before.json"]
    for i in range(2):
        assert params[f"{i:02d}-remove_blocks-after.json"] == params[f"{i + 1:02d}-remove_blocks-before.json"]
    after = json.loads((tmp_path / "dumps" / "02-remove_blocks-after.json").read_text())
    assert len(after["components"]["denoiser"]["provenance"]) == 3

    # a fully cached run still reports one timing entry per pass, marked cached
    timing2 = TimingInstrument()
    apply_recipe(recipe, cache_dir=cache, output=tmp_path / "out2", instruments=[timing2])
    assert [(t["index"], t["cached"]) for t in timing2.seconds] == [(0, True), (1, True), (2, True)]


class _BreakConfig(PassConfig):
    victim: str = "clip_l"


@register_pass
class _BreakIR(Pass):
    """Test-only: deletes a component that feeds an edge, leaving a dangling producer."""

    name = "test_break_ir"
    Config = _BreakConfig
    structural = True
    requires: ClassVar[tuple[str, ...]] = ()

    def run(self, ir: PipelineIR, ctx: Any) -> PassResult:
        del ir.components[self.config.victim]
        return PassResult(ir, True, {"deleted": self.config.victim})


def test_verify_instrument_catches_a_pass_that_breaks_the_ir(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    recipe = _recipe(tmp_path, ([1],), extra="  - name: test_break_ir\n")
    assert [p.name for p in recipe.passes] == ["remove_blocks", "test_break_ir"]
    timing = TimingInstrument()
    with pytest.raises(VerificationError) as e:
        apply_recipe(recipe, cache_dir=cache, instruments=[timing, VerifyInstrument()])
    msg = str(e.value)
    assert "clip_l.pooled -> denoiser.pooled_clip_l: missing producer 'clip_l'" in msg
    assert "missing producer 'clip_l'" in msg
    assert not (tmp_path / "out").exists() and _siblings(tmp_path / "out") == []
    assert len(list(cache.iterdir())) == 1  # the broken IR was never cached; pass 1's output was
    assert [t["pass"] for t in timing.seconds] == ["remove_blocks", "test_break_ir"]
