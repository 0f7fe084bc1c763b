"""remove_blocks: dense renumbering, the context_pre_only last block, exact parameter accounting, provenance,
the end-to-end effect on a generated video, and every way a config can be wrong (caught before anything runs)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from neocompress.core.apply_run import apply_recipe
from neocompress.core.errors import RecipeError, VerificationError
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.models.family import get_family
from neocompress.models.pyramid_flow.embeddings import rope_angles
from neocompress.models.pyramid_flow.scheduler import StepSchedule
from neocompress.passes.remove_blocks import RemoveBlocks, RemoveBlocksConfig
from neocompress.recipe import load_recipe

FAMILY = get_family("pyramid-flow")
FAST = StepSchedule((1, 1, 1), (1, 1, 1), 1.0, 1.0)


def _tiny() -> PipelineIR:
    return FAMILY.load("builtin:tiny-random")


def _full() -> PipelineIR:
    return FAMILY.skeleton("builtin:pyramid-flow-sd3")  # weightless, 24 blocks at the real sizes


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _block_params(D: int, F: int, head_dim: int, pre_only: bool) -> int:
    """Parameters of one MMDiT block, written out from the architecture."""
    lin = lambda i, o: i * o + o  # noqa: E731
    attn = 6 * lin(D, D) + 4 * head_dim + lin(D, D)  # q,k,v of both streams, 4 RMSNorms, to_out
    ff = lin(D, F) + lin(F, D)
    if pre_only:
        return lin(D, 6 * D) + lin(D, 2 * D) + attn + ff
    return 2 * lin(D, 6 * D) + attn + lin(D, D) + 2 * ff  # + to_add_out, ff_context


def _conversion_drop(D: int, F: int) -> int:
    """What converting a full block to context_pre_only removes: to_add_out, ff_context, 4 of 6 adaLN chunks."""
    return (D * D + D) + (D * F + F + F * D + D) + (4 * D * D + 4 * D)


def _run(ir: PipelineIR, indices: list[int]):
    p = RemoveBlocks(RemoveBlocksConfig(indices=indices))
    assert p.check(ir) == []
    before = p.snapshot(ir)
    result = p.run(ir, None)
    p.ensures(before, result)  # the pass's own promise holds
    return result


def _block_ids(module: nn.Module) -> set[int]:
    return {int(k.split(".")[1]) for k in module.state_dict() if k.startswith("transformer_blocks.")}


CASES = {
    "tiny": (_tiny, 6, [1, 3], [5]),
    "full-size": (_full, 24, [3, 7, 11, 15, 19, 21], [20, 23]),
}


@pytest.mark.parametrize("case", CASES)
def test_removing_middle_blocks_keeps_the_last_block(case: str) -> None:
    make, n, middle, _ = CASES[case]
    ir = make()
    den = ir["denoiser"].module
    old = list(den.transformer_blocks)
    assert len(old) == n and old[-1].context_pre_only and not any(b.context_pre_only for b in old[:-1])
    cfg = den.config
    D, F, hd = cfg.inner_dim, cfg.ff_inner_dim, cfg.attention_head_dim
    assert _numel(old[0]) == _block_params(D, F, hd, pre_only=False)
    assert _numel(old[-1]) == _block_params(D, F, hd, pre_only=True)
    params_before = ir["denoiser"].num_params()

    result = _run(ir, middle)

    new = list(den.transformer_blocks)
    kept = [b for i, b in enumerate(old) if i not in middle]
    assert len(new) == n - len(middle)
    assert all(a is b for a, b in zip(new, kept, strict=True))  # the same modules, in order, untouched
    assert new[-1] is old[-1] and new[-1].context_pre_only
    assert not any(b.context_pre_only for b in new[:-1])
    assert _block_ids(den) == set(range(n - len(middle)))  # dense renumbering
    assert den.config.num_layers == n - len(middle) == ir["denoiser"].config["num_layers"]
    removed = len(middle) * _block_params(D, F, hd, pre_only=False)
    assert ir["denoiser"].num_params() == params_before - removed
    assert result.report == {
        "component": "denoiser",
        "removed": sorted(middle),
        "kept_original_indices": [i for i in range(n) if i not in middle],
        "blocks_before": n,
        "blocks_after": n - len(middle),
        "params_before": params_before,
        "params_after": params_before - removed,
        "last_block_converted": False,
    }
    (prov,) = ir["denoiser"].provenance
    assert (prov.pass_name, prov.action) == ("remove_blocks", "modified")
    assert "converted" not in prov.detail and f"removed blocks {sorted(middle)} of {n}" in prov.detail


@pytest.mark.parametrize("case", CASES)
def test_removing_the_last_block_converts_the_new_last_block(case: str) -> None:
    make, n, _, last = CASES[case]
    ir = make()
    den = ir["denoiser"].module
    cfg = den.config
    D, F, hd = cfg.inner_dim, cfg.ff_inner_dim, cfg.attention_head_dim
    new_last_old_index = max(i for i in range(n) if i not in last)
    params_before = ir["denoiser"].num_params()

    result = _run(ir, last)

    blocks = list(den.transformer_blocks)
    assert len(blocks) == n - len(last)
    assert blocks[-1].context_pre_only and blocks[-1].attn.context_pre_only
    assert not hasattr(blocks[-1], "ff_context") and not hasattr(blocks[-1].attn, "to_add_out")
    assert not any(b.context_pre_only for b in blocks[:-1])
    assert _block_ids(den) == set(range(n - len(last)))
    assert _numel(blocks[-1]) == _block_params(D, F, hd, pre_only=True)
    # removed: the old last block (pre-only), the other removed (full) blocks, and what the conversion drops
    removed = _block_params(D, F, hd, True) + (len(last) - 1) * _block_params(D, F, hd, False) + _conversion_drop(D, F)
    assert ir["denoiser"].num_params() == params_before - removed
    assert result.report["params_after"] == params_before - removed
    assert result.report["last_block_converted"] is True
    (prov,) = ir["denoiser"].provenance
    assert f"new last block (was {new_last_old_index}) converted to context_pre_only" in prov.detail


def _block_inputs(D: int, head_dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n_img, n_txt = 12, 5
    img, txt = torch.randn(2, n_img, D, generator=g), torch.randn(2, n_txt, D, generator=g)
    temb = torch.randn(2, D, generator=g)
    times = torch.cat([torch.zeros(n_txt), torch.arange(n_img) // 4]).float()
    cos, sin = rope_angles(times, head_dim)
    return img, txt, temb, None, (cos[None, None], sin[None, None])


def test_converted_block_and_pruned_model_keep_the_image_stream() -> None:
    ir = _tiny()
    den = ir["denoiser"].module
    with torch.no_grad():  # move the zero biases etc. off their defaults so every parameter matters
        g = torch.Generator().manual_seed(3)
        for p in den.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    reference = copy.deepcopy(den)
    old_block4 = copy.deepcopy(den.transformer_blocks[4])
    _run(ir, [5])

    new_block4 = den.transformer_blocks[4]
    args = _block_inputs(den.config.inner_dim, den.config.attention_head_dim)
    with torch.no_grad():
        old_txt, old_img = old_block4(*args)
        new_txt, new_img = new_block4(*args)
    assert old_txt is not None and new_txt is None
    torch.testing.assert_close(new_img, old_img, rtol=1e-5, atol=1e-6)
    assert not torch.equal(old_txt[..., :1], args[1][..., :1])  # the old text stream did change (so was dropped)

    # the whole pruned model = the original with block 5 skipped (block 4's text output was never read after it)
    reference.transformer_blocks = nn.ModuleList(list(reference.transformer_blocks)[:5])
    g = torch.Generator().manual_seed(1)
    call = (
        [torch.randn(1, 16, 1, s, s, generator=g) for s in (2, 4, 8)],
        torch.randn(1, 7, 64, generator=g),
        torch.tensor([[1, 1, 1, 1, 1, 0, 0]]),
        torch.randn(1, 64, generator=g),
        torch.tensor([700.0]),
    )
    with torch.no_grad():
        torch.testing.assert_close(den(*call), reference(*call), rtol=1e-5, atol=1e-6)


def test_end_to_end_pruned_output_differs_and_reloads_identically(tmp_path: Path) -> None:
    recipe_file = tmp_path / "prune.yaml"
    recipe_file.write_text(
        "model:\n  source: builtin:tiny-random\npasses:\n  - name: remove_blocks\n    indices: [2, 5]\n"
        f"output: {tmp_path / 'pruned'}\n"
    )
    outcome = apply_recipe(load_recipe(recipe_file))
    (record,) = outcome.run.records
    assert record.report["kept_original_indices"] == [0, 1, 3, 4] and record.report["last_block_converted"]

    def video(ir: PipelineIR) -> torch.Tensor:
        return FAMILY.pipeline(ir).generate(["a red circle"], frames=9, schedule=FAST, seed=5)

    base = video(_tiny())
    pruned = video(outcome.run.ir)
    reloaded_ir = FAMILY.load(str(outcome.output))
    reloaded = video(reloaded_ir)
    assert (pruned - base).abs().max() > 1e-3  # pruning changed the model
    # The saved weights are bit-identical, but memory-mapped safetensors tensors are not 64-byte aligned, so
    # CPU kernels may sum in another order: equal up to float rounding, and bit-identical from reload to reload.
    for c in outcome.run.ir:
        if c.module is not None:
            saved = reloaded_ir[c.name].module.state_dict()
            assert all(torch.equal(v, saved[k]) for k, v in c.module.state_dict().items()), c.name
    torch.testing.assert_close(reloaded, pruned, rtol=0, atol=1e-5)
    assert torch.equal(video(FAMILY.load(str(outcome.output))), reloaded)
    assert reloaded_ir["denoiser"].module.num_blocks == 4
    assert reloaded_ir["denoiser"].module.transformer_blocks[-1].context_pre_only

    manifest = json.loads((outcome.output / "neocompress.json").read_text())
    (prov,) = manifest["components"]["denoiser"]["provenance"]
    assert prov == {
        "pass": "remove_blocks",
        "action": "modified",
        "detail": "removed blocks [2, 5] of 6; kept [0, 1, 3, 4]; new last block (was 4) converted to context_pre_only",
    }
    assert manifest["components"]["denoiser"]["params"] == outcome.run.ir["denoiser"].num_params()
    assert manifest["pass_log"][0]["config"] == {"indices": [2, 5], "component": "denoiser"}


# --------------------------------------------------------------------------------------------------------------
# bad configs: every one is caught by load_recipe, with the YAML line, before anything runs
# --------------------------------------------------------------------------------------------------------------


def _load_bad(tmp_path: Path, passes: str) -> RecipeError:
    f = tmp_path / "bad.yaml"
    f.write_text(f"model:\n  source: builtin:tiny-random\npasses:\n{passes}output: {tmp_path / 'out'}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    assert not (tmp_path / "out").exists()
    return e.value


@pytest.mark.parametrize(
    ("passes", "path", "line", "message"),
    [
        (
            "  - name: remove_blocks\n    indices: [1, 6, 9]\n",
            "passes[0].indices",
            5,
            "remove_blocks: block indices [6, 9] out of range: 'denoiser' has 6 blocks (0..5)",
        ),
        (
            "  - name: remove_blocks\n    indices: [0, 1, 2, 3, 4, 5]\n",
            "passes[0].indices",
            5,
            "remove_blocks: cannot remove all 6 blocks of 'denoiser'",
        ),
        (
            "  - name: remove_blocks\n    indices: [1, 3, 1]\n",
            "passes[0].indices",
            5,
            "indices must be unique; repeated: [1]",
        ),
        (
            "  - name: remove_blocks\n    indices: [2, -1]\n",
            "passes[0].indices",
            5,
            "indices must be >= 0, got [-1]",
        ),
        (
            "  - name: remove_blocks\n    indices: []\n",
            "passes[0].indices",
            5,
            "at least 1 item",
        ),
        (
            "  - name: remove_blocks\n    indices: [1]\n    component: unet\n",
            "passes[0].component",
            6,
            "remove_blocks: the pipeline has no component 'unet'",
        ),
        (
            "  - name: remove_blocks\n    indices: [1]\n    component: clip_l\n",
            "passes[0].component",
            6,
            "remove_blocks: component 'clip_l' has no transformer blocks to remove",
        ),
        (  # the second pass names a block the first one removed: caught at validation, before anything runs
            "  - name: remove_blocks\n    indices: [5]\n  - name: remove_blocks\n    indices: [1, 5]\n",
            "passes[1].indices",
            7,
            "remove_blocks: block indices [5] out of range: 'denoiser' has 5 blocks (0..4)",
        ),
    ],
    ids=["out-of-range", "all", "duplicate", "negative", "empty", "unknown-component", "no-blocks", "second-pass"],
)
def test_bad_configs_are_reported_with_their_line(tmp_path: Path, passes, path, line, message) -> None:
    err = _load_bad(tmp_path, passes)
    (problem,) = err.problems
    assert (problem.path, problem.line) == (path, line)
    assert message in problem.message
    assert f"bad.yaml:{line} ({path})" in str(err)


def test_run_refuses_a_bad_config_on_its_own() -> None:
    """A pass used without recipe validation still checks its config before touching the model."""
    ir = _tiny()
    params = ir["denoiser"].num_params()
    with pytest.raises(VerificationError, match=r"out of range: 'denoiser' has 6 blocks"):
        RemoveBlocks(RemoveBlocksConfig(indices=[7])).run(ir, None)
    assert ir["denoiser"].num_params() == params and ir["denoiser"].module.num_blocks == 6
    with pytest.raises(ValueError, match="repeated"):
        RemoveBlocksConfig(indices=[2, 2])
