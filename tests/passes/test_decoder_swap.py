"""decoder_swap: the TAEHV replaces the VAE decoder with the encoder frozen, trains (on world renders, a video
folder, or the native decoder's outputs) and gets closer to its targets, decodes 1 + 8k frames, saves, reloads and
generates; a bad video folder or a wrong latent width fails before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neocompress.core.apply_run import apply_recipe
from neocompress.core.context import PassContext
from neocompress.core.errors import UserInputError, VerificationError
from neocompress.data.prompts import PromptSets
from neocompress.models.family import get_family
from neocompress.models.taehv_decoder import taehv_folder
from neocompress.passes.decoder_swap import DecoderSwap, DecoderSwapConfig
from neocompress.recipe import load_recipe
from neocompress.recipe.schema import PromptSet

FAMILY = get_family("pyramid-flow")
SMALL = ("    widths: [16, 16, 8, 8]\n    crop: 4\n    crop_margin: 0\n"  # small and cheap: the contract, not quality
         "    train: {steps: 150, batch_size: 4, lr: 5.0e-3, warmup_steps: 5}\n")


def _run(tmp: Path, body: str, name: str, data: str = "", steps: int = 150) -> dict:
    f = tmp / f"{name}.yaml"
    small = SMALL.replace("steps: 150", f"steps: {steps}")
    f.write_text(f"model:\n  source: builtin:tiny\n{data}passes:\n  - name: decoder_swap\n{small}{body}"
                 f"output: {tmp / name}\n")  # fmt: skip
    outcome = apply_recipe(load_recipe(f))
    report = json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]
    return {"report": report, "output": outcome.output}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("swap"), "    videos: builtin:world\n    count: 12\n    heldout: 2\n", "world")


def test_trains_towards_ground_truth_and_reports_psnr_and_grid(world) -> None:
    r = world["report"]
    assert r["data"]["target"] == "ground truth" and r["data"]["train_clips"] == 10
    assert r["psnr_db"]["after"]["vs_truth_db"] > r["psnr_db"]["before"]["vs_truth_db"] + 1.0
    assert r["psnr_db"]["after"]["vs_native_db"] > r["psnr_db"]["before"]["vs_native_db"]
    assert r["psnr_db"]["native_vs_truth_db"] > 10
    assert r["train"]["loss_last"] < r["train"]["loss_first"]
    assert r["params_after"]["vae_decoder"] < r["params_before"]["vae_decoder"]
    assert r["params_after"]["vae_encoder"] == r["params_before"]["vae_encoder"]  # frozen, untouched
    assert "perceptual" in r["perceptual"]  # says why no perceptual loss ran
    assert (world["output"] / "figures" / "00-decoder_swap-frames.png").is_file()


def test_saved_pipeline_reloads_decodes_1_plus_8k_frames_and_generates(world) -> None:
    ir = FAMILY.load(str(world["output"]))
    dec = ir["vae_decoder"].module
    assert type(dec).__name__ == "TAEHVDecoder" and (world["output"] / "taehv_decoder" / "config.json").is_file()
    ir.verify()
    pipe = FAMILY.pipeline(ir)
    for t in (1, 2, 3):
        video = pipe.decode(torch.randn(1, 16, t, 4, 4))
        assert tuple(video.shape) == (1, 3, 1 + 8 * (t - 1), 32, 32) and video.abs().max() <= 1.0
    streamed = torch.stack(list(dec.stream(torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0)))),
                           dim=2)  # fmt: skip
    whole = dec.decode(torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(streamed, whole, atol=1e-5)
    video = pipe.generate(["a red circle moving left slowly on a grey background"], seed=0)
    assert tuple(video.shape) == (1, 3, 9, 64, 64)


@pytest.mark.slow  # minutes on 2 cores: runs in `make bench`
def test_distils_from_the_native_decoder_without_videos(tmp_path) -> None:
    data = "data:\n  prompts:\n    calibration: {source: builtin:world, count: 4}\n"
    r = _run(tmp_path, "    count: 6\n    heldout: 2\n    first: [1, 1, 1]\n    later: [1, 1, 1]\n", "distil",
             data)["report"]  # fmt: skip
    assert r["data"]["target"] == "native decoder" and r["psnr_db"]["after"]["vs_truth_db"] is None
    assert r["psnr_db"]["after"]["vs_native_db"] > r["psnr_db"]["before"]["vs_native_db"]


def test_clips_and_the_teachers_samples_together_hold_out_clips(tmp_path) -> None:
    data = "data:\n  prompts:\n    calibration: {source: builtin:world, count: 4}\n"
    body = "    videos: builtin:world\n    count: 6\n    heldout: 2\n    samples: 3\n    first: [1, 1, 1]\n" \
           "    later: [1, 1, 1]\n"
    r = _run(tmp_path, body, "mix", data, steps=20)["report"]
    assert r["data"]["train_clips"] == 6 - 2 + 3 and r["data"]["heldout_clips"] == 2
    assert r["data"]["teacher_samples"] == 3 and "teacher samples" in r["data"]["source"]
    assert r["data"]["target"] == "ground truth" and r["psnr_db"]["after"]["vs_truth_db"] is not None  # clips held out
    with pytest.raises(ValueError, match="without videos"):
        DecoderSwapConfig(samples=3, count=6)


def _frames(n: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(n)
    return (rng.random((n, size, size + 16, 3)) * 255).astype(np.uint8)


def _video_folder(tmp: Path) -> Path:
    import imageio.v2 as imageio
    from PIL import Image

    folder = tmp / "videos"
    folder.mkdir()
    imageio.mimwrite(str(folder / "a.mp4"), list(_frames(10)), fps=8, macro_block_size=16)
    frames = [Image.fromarray(f) for f in _frames(9)]
    frames[0].save(folder / "b.gif", save_all=True, append_images=frames[1:])
    (folder / "c").mkdir()
    for i, f in enumerate(_frames(12)):
        Image.fromarray(f).save(folder / "c" / f"{i:03d}.png")
    return folder


def test_video_folder_of_mp4_gif_and_png_frames(tmp_path) -> None:
    from neocompress.data.videos import load_clip, scan_videos

    clips = scan_videos(_video_folder(tmp_path), 9)
    assert [c.path.name for c in clips] == ["a.mp4", "b.gif", "c"] and [c.frames for c in clips] == [10, 9, 12]
    video = load_clip(clips[0], 9, 64, 64)
    assert tuple(video.shape) == (3, 9, 64, 64) and video.min() >= -1 and video.max() <= 1


def _ctx(tmp: Path) -> PassContext:
    return PassContext(work_dir=tmp / "work", data=PromptSets({"calibration": PromptSet(source="builtin:world")}))


@pytest.mark.parametrize(("make", "words"), [
    (lambda f: (f / "broken.mp4").write_bytes(b"not a video"), "cannot read video"),
    (lambda f: (f / "notes.txt").write_text("x"), "not clips"),
    (lambda f: __import__("PIL.Image").Image.new("RGB", (8, 8)).save(f / "short.gif"), "has 1 frame"),
])  # fmt: skip
def test_bad_video_folder_fails_before_training(tmp_path, monkeypatch, make, words) -> None:
    folder = _video_folder(tmp_path)
    make(folder)
    monkeypatch.setattr("neocompress.distill.decoder_run.train", lambda *a, **k: pytest.fail("trained"))
    p = DecoderSwap(DecoderSwapConfig(videos=str(folder), count=3, heldout=1))
    with pytest.raises(UserInputError, match=words):
        p.run(FAMILY.load("builtin:tiny"), _ctx(tmp_path))


def test_missing_video_folder_fails(tmp_path) -> None:
    p = DecoderSwap(DecoderSwapConfig(videos=str(tmp_path / "nope"), count=3, heldout=1))
    with pytest.raises(UserInputError, match="does not exist"):
        p.run(FAMILY.load("builtin:tiny"), _ctx(tmp_path))


def test_wrong_latent_width_is_refused_before_training(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("neocompress.distill.decoder_run.train", lambda *a, **k: pytest.fail("trained"))
    ir = FAMILY.load("builtin:tiny")
    p = DecoderSwap(DecoderSwapConfig(videos="builtin:world", count=3, heldout=1, latent_channels=8,
                                      widths=[8, 8, 8, 8]))  # fmt: skip
    with pytest.raises(VerificationError, match="dim 1 is 16, expected 8"):
        p.run(ir, _ctx(tmp_path))
    assert type(ir["vae_decoder"].module).__name__ == "CausalVAEDecoder"


def test_plan_shows_the_full_size_decoder() -> None:
    """Full size: Pyramid-Flow's causal VAE decoder -> Neodragon's 9.9M-parameter TAEHV."""
    ir = FAMILY.skeleton("builtin:pyramid-flow-sd3")
    r = DecoderSwap(DecoderSwapConfig()).plan(ir, PassContext.for_planning()).report
    assert r["params_before"]["vae_decoder"] > 1e8 and 9.8e6 < r["params_after"]["vae_decoder"] < 1.0e7


@pytest.mark.slow
def test_swapped_pipeline_quantizes_lowers_and_runs_from_its_bundle(world, tmp_path) -> None:
    """The TAEHV goes through AIMET (its static graph) and the onnxruntime target like the native decoder."""
    from neocompress.targets.onnxruntime.runtime import BundleRuntime

    f = tmp_path / "q.yaml"
    f.write_text(f"model:\n  source: {world['output']}\n"
                 "data:\n  prompts:\n    calibration: {source: builtin:world, count: 3}\n"
                 "passes:\n  - name: quantize\n    components: {vae_decoder: w8a16}\n"
                 "    calibration: {count: 2, first: [1, 1, 1], later: [1, 1, 1], heldout: 1}\n"
                 f"targets:\n  - name: onnxruntime\noutput: {tmp_path / 'q'}\n")  # fmt: skip
    outcome = apply_recipe(load_recipe(f))
    report = json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]
    assert report["vae_decoder"]["heldout_sqnr_db"] > 20
    video = BundleRuntime(outcome.output / "bundles" / "onnxruntime").generate(["a red circle"], seed=0)
    assert tuple(video.shape[-3:]) == (9, 64, 64)


def test_crop_windows_carry_real_context_and_score_only_the_crop() -> None:
    """A crop is decoded with up to `margin` latent pixels of neighbours (clipped at the frame) and scored inside."""
    from neocompress.distill.decoder_run import crop_window

    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        decoded, scored = crop_window(8, 4, 2, g)
        start = decoded.start + scored.start
        assert decoded.start >= 0 and decoded.stop <= 8 and scored.stop - scored.start == 4
        assert decoded.start == max(start - 2, 0) and decoded.stop == min(start + 6, 8)
    assert crop_window(8, 8, 2, g) == (slice(0, 8), slice(0, 8))
    decoded, scored = crop_window(16, 4, 0, g)
    assert decoded.stop - decoded.start == 4 and scored == slice(0, 4)


@pytest.mark.slow  # minutes on 2 cores: runs in `make bench`
def test_starts_from_the_pretrained_tiny_taehv(tmp_path) -> None:
    """builtin:tiny-taehv (tools/build_tiny_taehv.py) decodes the miniature's latents near the native decoder
    before any fine-tuning; its config, not the pass's widths, sets the shape."""
    body = ("    checkpoint: builtin:tiny-taehv\n    videos: builtin:world\n    count: 8\n    heldout: 4\n"
            "    minibench: 8\n    train: {steps: 2, batch_size: 2, lr: 1.0e-5, warmup_steps: 0}\n")  # fmt: skip
    f = tmp_path / "ckpt.yaml"
    f.write_text(f"model:\n  source: builtin:tiny\npasses:\n  - name: decoder_swap\n{body}output: {tmp_path / 'o'}\n")
    outcome = apply_recipe(load_recipe(f))
    r = json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]
    shipped = json.loads((taehv_folder("builtin:tiny-taehv") / "config.json").read_text())
    assert r["initialised_from"] == "builtin:tiny-taehv" and r["decoder_config"]["widths"] == shipped["widths"]
    assert r["decoder_config"]["widths"] != [256, 128, 64, 64]  # the pass's default widths did not win
    psnr_db = r["psnr_db"]
    assert psnr_db["before"]["vs_truth_db"] > psnr_db["native_vs_truth_db"] - 3.0, psnr_db
    # Its naive baseline, the pretrained decoder untouched, is scored beside the fine-tuned one.
    assert list(r["baselines"]) == ["fine-tuned", "pretrained, untouched"]
    assert r["baselines"]["fine-tuned"]["minibench"] == r["minibench"]["after"]
    assert r["baselines"]["pretrained, untouched"]["minibench"]["prompts"] == 8
    text = (outcome.output / "report.md").read_text()
    assert "naive baselines (the same decoder before its 2 training steps)" in text


def test_a_missing_checkpoint_fails_at_load(tmp_path) -> None:
    from neocompress.core.errors import RecipeError

    f = tmp_path / "bad.yaml"
    f.write_text(f"model:\n  source: builtin:tiny\npasses:\n  - name: decoder_swap\n    videos: builtin:world\n"
                 f"    checkpoint: {tmp_path / 'nowhere'}\noutput: {tmp_path / 'o'}\n")  # fmt: skip
    with pytest.raises(RecipeError, match=r"bad.yaml:\d+ \(passes\[0\].checkpoint\).*not a TAEHV folder"):
        load_recipe(f)


def test_the_report_says_how_much_of_the_latents_the_clamp_squashes(world) -> None:
    """The miniature's normalised latents reach past the public TAEHV's clamp at 3; the report says how far, and
    the pass warned on the terminal (the world fixture ran at the default clamp)."""
    reach = world["report"]["latent_range"]
    assert reach["clamp"] == 3.0 and reach["max_abs"] > 3.0 and 0.001 < reach["share_past_clamp"] < 0.2


def test_a_wide_clamp_reads_the_tails_and_a_checkpoint_keeps_its_own(tmp_path) -> None:
    from neocompress.core.errors import RecipeError

    with pytest.warns(UserWarning, match="past the decoder's soft clamp 3"):
        _run(tmp_path, "    videos: builtin:world\n    count: 6\n    heldout: 2\n", "narrow", steps=1)
    r = _run(tmp_path, "    videos: builtin:world\n    count: 6\n    heldout: 2\n    latent_clamp: 12\n", "wide",
             steps=1)["report"]
    assert r["decoder_config"]["latent_clamp"] == 12.0 and r["latent_range"]["share_past_clamp"] == 0.0
    f = tmp_path / "both.yaml"
    f.write_text(f"model:\n  source: builtin:tiny\npasses:\n  - name: decoder_swap\n    videos: builtin:world\n"
                 f"    checkpoint: builtin:tiny-taehv\n    latent_clamp: 12\noutput: {tmp_path / 'o'}\n")  # fmt: skip
    with pytest.raises(RecipeError, match=r"latent_clamp.*the checkpoint's"):
        load_recipe(f)
