"""Streaming pruning of a denoiser checkpoint folder: the result equals `remove_blocks` on the loaded model, loads
strictly, is sharded as asked, appears atomically, and bad requests fail before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neocompress.core.errors import CheckpointError, UserInputError
from neocompress.models.checkpoint import load_component, read_config, save_component
from neocompress.models.pyramid_flow.adapter import PyramidFlowBlockAdapter
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.prune.streaming import stream_prune_denoiser


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, PyramidFlowMMDiT]:
    torch.manual_seed(0)
    cfg = DenoiserConfig.tiny()
    model = PyramidFlowMMDiT(cfg).to(torch.bfloat16).eval()
    folder = tmp_path / "denoiser"
    save_component(model, folder, cfg.to_dict(), "diffusion_pytorch_model.safetensors")
    return folder, model


def _inputs(cfg: DenoiserConfig):
    gen = torch.Generator().manual_seed(1)
    x = [torch.randn(2, cfg.in_channels, 1, 8, 8, generator=gen).bfloat16()]
    tokens = torch.randn(2, 7, cfg.joint_attention_dim, generator=gen).bfloat16()
    return x, tokens, torch.ones(2, 7, dtype=torch.long), torch.randn(2, cfg.pooled_projection_dim).bfloat16()


def test_streamed_cut_equals_remove_blocks_on_the_loaded_model(tmp_path: Path, checkpoint) -> None:
    folder, model = checkpoint
    result = stream_prune_denoiser(folder, tmp_path / "out", [2, 5], shard_bytes=40_000)
    assert result.last_block_converted and result.kept_original_indices == [0, 1, 3, 4]
    assert result.shards > 1 and (tmp_path / "out" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    # the same edit on the loaded model
    adapter = PyramidFlowBlockAdapter()
    kept = [model.transformer_blocks[i] for i in (0, 1, 3, 4)]
    adapter.make_context_pre_only(kept[-1])
    adapter.set_blocks(model, kept)
    cfg = DenoiserConfig.from_dict(read_config(tmp_path / "out", "denoiser"))
    assert cfg.num_layers == 4
    loaded = load_component(lambda: PyramidFlowMMDiT(cfg), tmp_path / "out", "denoiser", dtype=torch.bfloat16).eval()
    assert result.params_after == sum(p.numel() for p in loaded.parameters()) < result.params_before
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    x, tokens, mask, pooled = _inputs(cfg)
    with torch.no_grad():
        t = torch.tensor([500.0, 100.0])
        torch.testing.assert_close(loaded(x, tokens, mask, pooled, t), model(x, tokens, mask, pooled, t))


def test_one_shard_when_it_fits_and_an_existing_output_is_kept(tmp_path: Path, checkpoint) -> None:
    folder, _ = checkpoint
    out = tmp_path / "out"
    result = stream_prune_denoiser(folder, out, [3])
    assert result.shards == 1 and not result.last_block_converted
    assert (out / "diffusion_pytorch_model.safetensors").is_file()
    with pytest.raises(UserInputError, match="exists"):
        stream_prune_denoiser(folder, out, [1])
    assert stream_prune_denoiser(folder, out, [1], force=True).removed == [1]


@pytest.mark.parametrize("remove", [[6], [0, 1, 2, 3, 4, 5], [2, 2]])
def test_bad_cuts_fail_before_writing(tmp_path: Path, checkpoint, remove: list[int]) -> None:
    folder, _ = checkpoint
    with pytest.raises(UserInputError, match="cannot remove"):
        stream_prune_denoiser(folder, tmp_path / "out", remove)
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_does_not_match_its_config_is_named(tmp_path: Path, checkpoint) -> None:
    folder, _ = checkpoint
    cfg = read_config(folder, "denoiser")
    (folder / "config.json").write_text(__import__("json").dumps({**cfg, "num_layers": 7}))
    with pytest.raises(CheckpointError, match="missing"):
        stream_prune_denoiser(folder, tmp_path / "out", [1])


def test_the_cli_prunes_and_reports(tmp_path: Path, checkpoint) -> None:
    import json

    from click.testing import CliRunner

    from neocompress.cli.main import cli

    folder, _ = checkpoint
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(cli, ["prune-checkpoint", str(folder), str(out), "--remove", "1,5", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["kept_original_indices"] == [0, 2, 3, 4]
    bad = CliRunner().invoke(cli, ["prune-checkpoint", str(folder), str(out), "--remove", "1,x"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output
