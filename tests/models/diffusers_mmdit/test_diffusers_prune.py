"""block_prune on diffusers' SD3 and Flux transformers: importance through their block adapters, the cut (SD3's
new last block in context_pre_only form, Flux's double/single split), a short recovery whose objectives fall,
and the result written as a folder that diffusers' `from_pretrained` loads to the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neocompress.core.apply_run import apply_recipe
from neocompress.core.errors import RecipeError, SourceError
from neocompress.models.diffusers_mmdit.adapters import FluxBlockAdapter, SD3BlockAdapter
from neocompress.models.diffusers_mmdit.pipeline import call_transformer
from neocompress.models.family import get_family
from neocompress.prune.importance import ImportanceMeter
from neocompress.recipe import load_recipe

KINDS = ["sd3", "flux"]


def _recipe(tmp_path: Path, kind: str, select: str = "remove: 2", *, recovery: str = "", source: str = "") -> Path:
    f = tmp_path / f"{kind}.yaml"
    f.write_text(
        f"model: {{family: diffusers-{kind}, source: {source or f'builtin:{kind}-tiny'}}}\n"
        "data:\n  prompts:\n    calibration: {source: builtin:world, count: 4}\n"
        "passes:\n  - name: block_prune\n    calibration: {prompts: calibration, batch: 4, first: [3]}\n"
        f"    {select}\n{recovery}"
        f"output: {tmp_path / ('out-' + kind)}\n"
    )
    return f


def _inputs(kind: str, model: torch.nn.Module):
    family = get_family(f"diffusers-{kind}")
    pipe = family.pipeline(family._ir(model, family.builtins[f"builtin:{kind}-tiny"].defaults, "test"))
    x = torch.randn(2, pipe.channels, 8, 8, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([0.7, 0.3]), pipe.text.encode(["a red circle", "a blue square"])


@pytest.mark.parametrize("kind", KINDS)
def test_importance_has_both_streams_for_every_block_and_hooks_go(kind: str) -> None:
    family = get_family(f"diffusers-{kind}")
    ir = family.load(f"builtin:{kind}-tiny")
    module, adapter = ir["denoiser"].module, ir["denoiser"].extras["block_adapter"]
    blocks = adapter.blocks(module)
    x, sigma, text = _inputs(kind, module)
    with ImportanceMeter(blocks, adapter, 1) as meter, torch.no_grad():
        call_transformer(kind, module, x, sigma, text, 3.5)
    result = meter.result()
    assert result.num_blocks == len(blocks) == (6 if kind == "sd3" else 7)
    visual, text_scores = result.score("visual"), result.score("text")
    assert all(0 <= s <= 2 for s in visual)
    if kind == "sd3":  # the last joint block is context_pre_only: no text output, so no text importance
        assert all(s == s for s in text_scores[:-1]) and text_scores[-1] != text_scores[-1]
    else:
        assert all(s == s for s in text_scores)
    assert all(not b._forward_hooks for b in blocks)


def test_sd3_cut_of_the_last_block_converts_the_new_last_and_keeps_its_image_output() -> None:
    family = get_family("diffusers-sd3")
    module = family.load("builtin:sd3-tiny")["denoiser"].module
    adapter = SD3BlockAdapter()
    x, sigma, text = _inputs("sd3", module)
    seen: dict[str, torch.Tensor] = {}
    block = module.transformer_blocks[4]
    handle = block.register_forward_hook(lambda m, a, k, out: seen.__setitem__("before", out[1]), with_kwargs=True)
    with torch.no_grad():
        call_transformer("sd3", module, x, sigma, text, 1.0)
    handle.remove()
    kept = list(module.transformer_blocks)[:5]
    adapter.make_context_pre_only(kept[-1])
    config = adapter.set_blocks(module, kept)
    handle = block.register_forward_hook(lambda m, a, k, out: seen.__setitem__("after", out[1]), with_kwargs=True)
    with torch.no_grad():
        call_transformer("sd3", module, x, sigma, text, 1.0)
    handle.remove()
    assert config["num_layers"] == 5 and block.context_pre_only and block.ff_context is None
    torch.testing.assert_close(seen["after"], seen["before"], rtol=0, atol=0)
    rebuilt = type(module).from_config(module.config)
    assert set(rebuilt.state_dict()) == set(module.state_dict())  # exactly what from_pretrained will build


def test_sd3_dual_attention_layers_are_renumbered() -> None:
    module = get_family("diffusers-sd3").load("builtin:sd3-tiny")["denoiser"].module
    adapter = SD3BlockAdapter()
    kept = [module.transformer_blocks[i] for i in (1, 2, 3, 4, 5)]  # block 0 (dual) removed; 1 stays dual
    assert adapter.set_blocks(module, kept)["dual_attention_layers"] == (0,)


def test_flux_blocks_are_double_then_single_and_the_split_is_kept() -> None:
    module = get_family("diffusers-flux").load("builtin:flux-tiny")["denoiser"].module
    adapter = FluxBlockAdapter()
    blocks = list(adapter.blocks(module))
    config = adapter.set_blocks(module, [blocks[0], blocks[2], blocks[4], blocks[6]])
    assert (config["num_layers"], config["num_single_layers"]) == (2, 2)
    assert list(module.single_transformer_blocks) == [blocks[4], blocks[6]]
    with pytest.raises(ValueError, match="double-stream block before"):
        adapter.set_blocks(module, [blocks[4], blocks[0]])


@pytest.mark.parametrize("kind", KINDS)
def test_prune_and_recover_then_from_pretrained_loads_the_same_model(tmp_path: Path, kind: str) -> None:
    recovery = (
        "    recovery:\n      data: {samples: 12, heldout: 4}\n"
        "      stage1: {steps: 12, batch_size: 4, lr: 1.0e-3, warmup_steps: 2}\n"
        "      stage2: {steps: 12, batch_size: 4, lr: 1.0e-3, warmup_steps: 2}\n"
    )
    outcome = apply_recipe(load_recipe(_recipe(tmp_path, kind, recovery=recovery)), cache_dir=tmp_path / "cache")
    (record,) = outcome.run.records
    report = record.report
    assert report["blocks_after"] == report["blocks_before"] - 2
    assert report["params_after"] < report["params_before"]
    stages = report["recovery"]["stages"]
    for name in ("stage1", "stage2"):
        assert stages[name]["objective_after"] < stages[name]["objective_before"], name
    assert "seeded Gaussian" in report["recovery"]["data"]["text_conditioning"]
    pruned = outcome.run.ir["denoiser"].module
    cls = type(pruned)
    loaded = cls.from_pretrained(str(outcome.output)).eval()
    assert sum(p.numel() for p in loaded.parameters()) == report["params_after"]
    x, sigma, text = _inputs(kind, loaded)
    with torch.no_grad():
        torch.testing.assert_close(
            call_transformer(kind, loaded, x, sigma, text, 3.5), call_transformer(kind, pruned, x, sigma, text, 3.5)
        )
    manifest = json.loads((outcome.output / "neocompress.json").read_text())
    assert manifest["family"] == f"diffusers-{kind}"
    # the output is itself a source: a second recipe can start from it
    again = get_family(f"diffusers-{kind}").load(str(outcome.output))
    assert len(again["denoiser"].extras["block_adapter"].blocks(again["denoiser"].module)) == report["blocks_after"]


def test_a_transformer_folder_is_a_source_and_a_wrong_family_is_named(tmp_path: Path) -> None:
    sd3 = get_family("diffusers-sd3")
    folder = tmp_path / "pipeline" / "transformer"
    sd3.load("builtin:sd3-tiny")["denoiser"].module.save_pretrained(str(folder))
    assert len(sd3.load(str(tmp_path / "pipeline"))["denoiser"].module.transformer_blocks) == 6
    with pytest.raises(SourceError, match="use `family: diffusers-sd3`"):
        get_family("diffusers-flux").load(str(folder))
    with pytest.raises(SourceError, match="no weights here"):
        sd3.load("builtin:sd3-medium")


def test_full_size_plans_on_the_meta_device() -> None:
    sd3 = get_family("diffusers-sd3").skeleton("builtin:sd3-medium")
    flux = get_family("diffusers-flux").skeleton("builtin:flux-dev")
    assert round(sd3["denoiser"].num_params() / 1e9, 2) == 2.03  # SD3 medium: 2B
    assert round(flux["denoiser"].num_params() / 1e9, 1) == 11.9  # FLUX.1-dev: 12B
    costs, rest = get_family("diffusers-flux").block_flops(flux, "denoiser")
    assert len(costs) == 57 and min(costs) > 0 and rest > 0


@pytest.mark.parametrize(
    ("select", "recovery", "message"),
    [
        ("remove: 2\n    recovery: {evaluate: 4}", "", "cannot run it"),
        ("remove: 2\n    recovery: {data: {real: 4}}", "", "no real world clips"),
        ("remove: 2\n    baselines: [random]", "", "set baselines"),
        ("remove: 9", "", "cannot remove 9 of 6 blocks"),
        ("indices: [0]", "", "protected"),
        ("remove: 1\n    weights: {visual: 1.0, audio: 1.0}", "", "unknown stream"),
    ],
)
def test_bad_configs_fail_before_any_work(tmp_path: Path, select: str, recovery: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(_recipe(tmp_path, "sd3", select, recovery=recovery))


def test_image_models_take_one_stage_of_steps(tmp_path: Path) -> None:
    f = _recipe(tmp_path, "flux")
    f.write_text(f.read_text().replace("first: [3]", "first: [3, 3], later: [2]"))
    with pytest.raises(RecipeError, match="one stage"):
        load_recipe(f)


def test_the_cli_says_what_these_families_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from neocompress.cli.main import main

    folder = tmp_path / "sd3"
    family = get_family("diffusers-sd3")
    family.save(family.load("builtin:sd3-tiny"), folder, {"format": "neocompress-pipeline"})

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = main(list(argv))
        out, err = capsys.readouterr()
        return rc, " ".join((out + err).split())

    rc, text = run("generate", str(folder), "-o", str(tmp_path / "video"))
    assert rc == 2 and "without a VAE" in text and not (tmp_path / "video").exists()
    rc, text = run("eval", str(folder), "--bench", "mini")
    assert rc == 2 and "cannot run it" in text
    rc, text = run("inspect", "builtin:flux-dev", "--family", "diffusers-flux")
    assert rc == 0 and "FlowMatchEulerDiscreteScheduler" in text
