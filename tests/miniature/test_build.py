"""train-miniature end to end at toy step counts: it trains, saves fp16, reloads, and ships as builtin:tiny."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neocompress.cli.main import main
from neocompress.miniature import build
from neocompress.models.pyramid_flow import family as family_module
from neocompress.models.pyramid_flow.family import PyramidFlowFamily


@pytest.mark.slow  # minutes on 2 cores: runs in `make bench`
def test_train_miniature_trains_saves_and_ships(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "mini"
    shipped = tmp_path / "assets" / "miniature"
    monkeypatch.setattr(build, "SHIPPED_DIRS", {"builtin:tiny": shipped})
    monkeypatch.setattr(family_module, "SHIPPED_DIRS", {"builtin:tiny": shipped})
    args = [
        "train-miniature",
        "-o",
        str(out),
        "--vae-image-steps",
        "2",
        "--vae-image-batch",
        "2",
        "--vae-crop-steps",
        "2",
        "--vae-crop-batch",
        "2",
        "--vae-steps",
        "2",
        "--vae-batch",
        "2",
        "--vae-long-steps",
        "2",
        "--latents",
        "8",
        "--dit-steps",
        "3",
        "--dit-batch",
        "4",
        "--dit-motion-steps",
        "2",
        "--no-progress",
        "--ship",
    ]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((out / "training.json").read_text())
    assert (
        summary["vae_images"]["steps"] == 2
        and summary["vae_crops"]["steps"] == 2
        and summary["vae"]["steps"] == 2
        and summary["vae_long"]["steps"] == 2
        and summary["dit"]["steps"] == 3
        and summary["dit_motion"]["steps"] == 2
    )
    assert set(summary["timings_s"]) == {"vae_s", "latents_s", "dit_s"}
    assert len(summary["samples"]) == 4 and all((out / s["grid"]).is_file() for s in summary["samples"])
    assert (out / "vae_loss.png").is_file() and (out / "dit_loss.png").is_file()
    # Weights are stored in fp16 and load back as fp32 with the fitted latent normalisation.
    from safetensors import safe_open

    with safe_open(
        str(out / "pipeline" / "diffusion_transformer_384p" / "diffusion_pytorch_model.safetensors"), "pt"
    ) as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118
    fam = PyramidFlowFamily()
    ir = fam.load("builtin:tiny")  # now the shipped pipeline
    assert ir["denoiser"].module.config.inner_dim == 128
    assert next(ir["denoiser"].module.parameters()).dtype == torch.float32
    norm = ir["vae_decoder"].extras["latent_norm"]
    assert abs(norm.image_scale - summary["latent_norm"]["image_scale"]) < 1e-9
    # A second run resumes every stage from its checkpoints instead of training again.
    assert main(args[:-1]) == 0
    again = json.loads((out / "training.json").read_text())
    assert again["dit"]["start_step"] == 3 and again["vae"]["start_step"] == 2 and again["vae_long"]["start_step"] == 2
    assert again["dit_motion"]["start_step"] == 2
    # the record counts the training time of the first run, not the seconds the resuming call took
    # (total = the checkpointed segments' time + this call's: strictly more than this call's; never compare two
    # wall times here, the machines are noisy)
    this_call = again["dit"]["wall_time_s"] + again["dit_motion"]["wall_time_s"]
    assert again["timings_s"]["dit_s"] > this_call + 0.001
    assert again["vae_crops"]["start_step"] == 2 and again["vae_images"]["start_step"] == 2


def test_train_miniature_rejects_bad_crop(capsys) -> None:
    assert main(["train-miniature", "-o", "unused", "--vae-crop", "20"]) == 2
    assert "--vae-crop" in capsys.readouterr().err
