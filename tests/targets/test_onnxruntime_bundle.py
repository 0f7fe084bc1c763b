"""The onnxruntime bundle: every float component equals its torch module, every QDQ denoiser stage equals the
AIMET simulation, and the whole pipeline generated from the bundle alone equals the torch pipeline for the same
seed (float exactly, quantized within the QDQ rounding); run-bundle writes the videos."""

from __future__ import annotations

import json
from pathlib import Path

from neocompress.cli.main import main
from neocompress.lowering.pipeline_graphs import lower_pipeline
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.quant.precision import sqnr_db
from neocompress.targets.onnxruntime.lower import lower_onnxruntime
from neocompress.targets.onnxruntime.runtime import BundleRuntime

PROMPTS = ["a red circle moving left slowly on a grey background", "a blue square"]


def test_every_component_matches_what_it_was_exported_from(lowered) -> None:
    out, manifest = lowered
    (ort,) = [t for t in manifest["targets"] if t["target"]["name"] == "onnxruntime"]
    comps = ort["components"]
    assert set(comps) == {"clip_l", "clip_g", "t5", "denoiser_stage0", "denoiser_stage1", "denoiser_stage2",
                          "vae_decoder"}  # fmt: skip
    for name, c in comps.items():
        assert (out / ort["folder"] / c["file"]).is_file()
        if c["precision"] == "fp32":
            assert c["check"]["against"] == "torch" and c["check"]["max_abs_error"] < 1e-4, (name, c["check"])
        else:  # the QDQ graph run unoptimised is the simulation, up to float rounding of the QDQ arithmetic
            assert c["check"]["against"] == "aimet simulation", name
            assert c["check"]["max_abs_error"] < 1e-2 * max(1.0, c["check"]["reference_max"]), (name, c["check"])
            assert c["check"]["sqnr_db_vs_float"] > 15, (name, c["check"])
    assert [comps[f"denoiser_stage{s}"]["batch"] for s in range(3)] == [2, 2, 2]  # CFG: [uncond, cond]


def test_the_quantized_bundle_generates_what_the_simulated_pipeline_does(lowered) -> None:
    out, _ = lowered
    family = PyramidFlowFamily()
    pipe = family.pipeline(family.load(str(out)))
    runtime = BundleRuntime(out / "bundles" / "onnxruntime")
    schedule = pipe.schedule_with(first=(2, 2, 2), later=(1, 1, 1))
    runtime.schedule = schedule
    torch_video = pipe.generate(PROMPTS, seed=5, schedule=schedule)
    bundle_video = runtime.generate(PROMPTS, seed=5)
    assert bundle_video.shape == torch_video.shape == (2, 3, 9, 64, 64)
    assert sqnr_db(torch_video, bundle_video) > 30  # QDQ in onnxruntime vs the AIMET simulation, through sampling
    assert runtime.calls["denoiser_stage2"] == 2 + 1  # one call per step (a CFG call holds both halves)


def test_a_float_bundle_generates_exactly_what_torch_does(tmp_path: Path) -> None:
    family = PyramidFlowFamily()
    ir = family.load("builtin:tiny-random")
    folder = tmp_path / "bundle"
    lower_onnxruntime(lower_pipeline(ir, {}), ir, folder, {"name": "onnxruntime"}, {})
    pipe, runtime = family.pipeline(ir), BundleRuntime(folder)
    schedule = pipe.schedule_with(first=(2, 2, 2), later=(2, 2, 2))
    runtime.schedule = schedule
    torch_video = pipe.generate(PROMPTS, seed=1, schedule=schedule)
    bundle_video = runtime.generate(PROMPTS, seed=1)
    assert float((torch_video - bundle_video).abs().max()) < 1e-3  # fp32 throughout: ~6e-5 measured


def test_run_bundle_writes_videos_from_the_bundle_alone(lowered, tmp_path: Path, capsys) -> None:
    out, _ = lowered
    bundle = str(out / "bundles" / "onnxruntime")
    steps = ["--first-steps", "1,1,1", "--later-steps", "1,1,1"]
    assert main(["run-bundle", bundle, "-p", "a red circle", *steps, "-o", str(tmp_path / "v")]) == 0
    info = json.loads((tmp_path / "v" / "run-bundle.json").read_text())
    assert (tmp_path / "v" / "video_00.mp4").stat().st_size > 0 and info["runs_on"] == "onnxruntime (CPU)"
    assert main(["run-bundle", bundle, "-o", str(tmp_path / "v")]) != 0
    assert "--force" in capsys.readouterr().err  # an existing output is never overwritten


def test_run_bundle_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path, capsys) -> None:
    assert main(["run-bundle", str(tmp_path), "-o", str(tmp_path / "v")]) != 0
    assert "not a neocompress bundle" in capsys.readouterr().err


def test_the_report_tables_both_targets(lowered) -> None:
    out, _ = lowered
    md = (out / "report.md").read_text()
    assert "## Target: onnxruntime" in md and "## Target: hexagon (snapdragon-8-elite)" in md
    assert "Compiled for snapdragon-x-elite" in md
    assert md.count("| denoiser_stage2_part_1_of_") == 3  # the part table, then a compile row per device
