"""The `neocompress` command line through `main(argv)`: JSON schemas and numbers, exit codes 0/1/2 with messages
that name the file, YAML path and line, outputs that are never overwritten without --force, and generation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v2 as imageio
import pytest
import torch
from PIL import Image

from neocompress.cli.main import main
from neocompress.core.errors import VerificationError
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from tests.conftest import REPO, TINY_RECIPE

COMPONENTS = ["clip_l", "clip_g", "t5", "denoiser", "vae_encoder", "vae_decoder"]
SD3_DENOISER_PARAMS = 2_028_334_144


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def flat(text: str) -> str:
    """Rich wraps long lines at the console width; compare messages with whitespace runs collapsed."""
    return " ".join(text.split())


def _is_int(x: object) -> bool:
    return type(x) is int


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------- inspect


def test_inspect_full_size_json_schema_and_numbers(capsys: pytest.CaptureFixture) -> None:
    rc, out, err = run(capsys, "inspect", "builtin:pyramid-flow-sd3", "--json")
    assert (rc, err) == (0, "")
    info = json.loads(out)
    assert set(info) == {"family", "source", "components", "total_params", "scheduler"}
    assert (info["family"], info["source"]) == ("pyramid-flow", "builtin:pyramid-flow-sd3")
    comps = info["components"]
    assert list(comps) == COMPONENTS
    for name, c in comps.items():
        assert set(c) == {"class", "params", "buffers"}, name
        assert isinstance(c["class"], str) and _is_int(c["params"]) and _is_int(c["buffers"]) and c["params"] > 0
    assert comps["denoiser"] == {
        "class": "PyramidFlowMMDiT",
        "params": SD3_DENOISER_PARAMS,
        "buffers": 192 * 192 * 1536,
    }
    # The released text encoders: CLIP-L/14 and OpenCLIP bigG/14 text towers with projection, T5-v1.1-XXL encoder.
    assert [comps[n]["params"] for n in ("clip_l", "clip_g", "t5")] == [123_650_304, 694_659_840, 4_762_310_656]
    assert comps["t5"]["class"] == "T5EncoderModel" and comps["clip_l"]["class"] == "CLIPTextModelWithProjection"
    assert _is_int(info["total_params"]) and info["total_params"] == sum(c["params"] for c in comps.values())
    s = info["scheduler"]
    for key in ("sigma_start", "sigma_end"):
        assert len(s[key]) == 3 and all(type(x) is float for x in s[key])
    assert s["sigma_start"] == [1.0, 0.8, 0.5] and s["sigma_end"][-1] == 0.0
    assert s["steps"] == {
        "first_unit": [20, 20, 20],
        "later_units": [10, 10, 10],
        "guidance_first": 7.0,
        "guidance_later": 5.0,
    }
    assert _is_int(s["nfe"]) and s["nfe"] == 480  # 7 latent frames: (60 + 6 * 30) steps, each with CFG
    assert (s["num_units"], s["denoiser_calls"]) == (7, 240)


def test_inspect_table_and_a_public_layout_directory(
    capsys: pytest.CaptureFixture, public_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, _ = run(capsys, "inspect", "builtin:pyramid-flow-sd3")
    assert rc == 0 and "2,028,334,144" in out and "NFE 480 for 7 latent frames" in flat(out)
    rc, out, err = run(capsys, "inspect", public_checkpoint, "--json")
    assert (rc, err) == (0, "")
    info = json.loads(out)
    tiny = PyramidFlowFamily().skeleton("builtin:tiny-random")
    assert {n: c["params"] for n, c in info["components"].items()} == {n: tiny[n].num_params() for n in COMPONENTS}
    assert info["scheduler"]["nfe"] == 480  # no manifest: the release's 49-frame default video
    # A directory name with brackets is printed as it is, not read as Rich markup.
    monkeypatch.chdir(tmp_path)
    Path("ckpt[v2]").symlink_to(public_checkpoint, target_is_directory=True)
    rc, out, _ = run(capsys, "inspect", "ckpt[v2]")
    assert rc == 0 and "ckpt[v2] (pyramid-flow)" in out


# ----------------------------------------------------------------------------------------- plan


def test_plan_shows_the_precision_quantize_gives_each_component(capsys: pytest.CaptureFixture) -> None:
    rc, out, err = run(capsys, "plan", REPO / "recipes" / "neodragon.yaml", "--json")
    assert (rc, err) == (0, "")
    steps = json.loads(out)["steps"]
    assert [s["pass"] for s in steps] == [None, "encoder_substitution", "decoder_swap", "block_prune", "step_distill",
                                          "quantize"]  # fmt: skip
    assert {n: c["precision"] for n, c in steps[-1]["components"].items()} == {
        "clip_l": "fp16", "clip_g": "fp16", "t5": "fp16", "denoiser": "w8a16", "vae_encoder": "float",
        "vae_decoder": "w8a16"}  # fmt: skip
    assert all(c["precision"] == "float" for c in steps[1]["components"].values())


def test_plan_shows_the_substitutes_full_size_params_beside_the_originals(capsys: pytest.CaptureFixture) -> None:
    """T5-XXL 4.76B -> DistilT5 + ContextAdapter 260M; the causal VAE decoder 226M -> TAEHV 9.91M."""
    rc, out, _ = run(capsys, "plan", REPO / "recipes" / "neodragon.yaml", "--json")
    steps = json.loads(out)["steps"]
    params = [{n: c["params"] for n, c in s["components"].items()} for s in steps]
    assert params[0]["t5"] > 4.7e9 and 2.5e8 < params[1]["t5"] < 2.7e8
    assert params[1]["vae_decoder"] > 2.2e8 and 9.8e6 < params[2]["vae_decoder"] < 1.0e7
    assert params[1]["denoiser"] == params[0]["denoiser"] - (4096 * 1536 + 1536)  # context embedder dropped


def test_plan_gives_nfe_and_flops_per_video_after_every_pass(capsys: pytest.CaptureFixture) -> None:
    """49 frames = 7 units: 20-20-20 / 10-10-10 with CFG is 480 NFE until step_distill makes it 1-1-1 without
    CFG (21 NFE); the denoiser's FLOPs per video fall with the NFE (392T -> 18.3T), the text encoders' halve
    with CFG gone."""
    rc, out, _ = run(capsys, "plan", REPO / "recipes" / "neodragon.yaml", "--json")
    steps = json.loads(out)["steps"]
    assert [s["nfe"] for s in steps] == [480, 480, 480, 480, 21, 21]
    assert all(isinstance(s["nfe"], int) and isinstance(s["flops_per_video"], float) for s in steps)
    assert all(s["flops_per_video"] == s["total_flops"] for s in steps)
    before, after = (steps[3]["components"], steps[4]["components"])
    # not exactly 21/480: the base schedule gives the history-free first unit twice the steps of later units
    assert 0.04 < after["denoiser"]["flops"] / before["denoiser"]["flops"] < 0.05
    assert after["t5"]["flops"] == pytest.approx(before["t5"]["flops"] / 2)  # no negative prompt to encode
    assert steps[4]["schedule"]["first_unit"] == [1, 1, 1] and steps[4]["schedule"]["guidance_first"] == 1.0


@pytest.mark.parametrize(
    ("recipe", "removed"),
    [("pyramid-flow-prune6.yaml", [3, 7, 11, 15, 19, 21]), ("pyramid-flow-prune8.yaml", [3, 6, 9, 12, 15, 18, 21, 23])],
)
def test_plan_removes_exactly_the_blocks_params_and_flops(
    capsys: pytest.CaptureFixture, recipe: str, removed: list[int]
) -> None:
    rc, out, err = run(capsys, "plan", REPO / "recipes" / recipe, "--json")
    assert (rc, err) == (0, "")
    plan = json.loads(out)
    assert [s["pass"] for s in plan["steps"]] == [None, "remove_blocks"]
    for step in plan["steps"]:
        assert list(step["components"]) == COMPONENTS
        for c in step["components"].values():
            assert set(c) == {"params", "flops", "precision"} and _is_int(c["params"]) and _is_int(c["flops"])
            assert c["precision"] == "float"
        assert step["total_params"] == sum(c["params"] for c in step["components"].values())
        assert step["total_flops"] == sum(c["flops"] for c in step["components"].values())
    before, after = (s["components"] for s in plan["steps"])
    assert all(before[n] == after[n] for n in COMPONENTS if n != "denoiser")

    config = DenoiserConfig.pyramid_flow_sd3()
    with torch.device("meta"):
        model = PyramidFlowMMDiT(config)
    blocks = model.transformer_blocks
    full, last = _params(blocks[0]), _params(blocks[-1])  # the last block is context_pre_only: smaller
    assert last < full and not blocks[0].context_pre_only and blocks[-1].context_pre_only
    outside = _params(model) - 23 * full - last
    kept = 24 - len(removed)
    assert before["denoiser"]["params"] == SD3_DENOISER_PARAMS == outside + 23 * full + last
    # If block 23 goes, block 22 becomes the new context_pre_only last block: kept - 1 full blocks + 1 such block.
    assert after["denoiser"]["params"] == outside + (kept - 1) * full + last
    assert after["denoiser"]["params"] == before["denoiser"]["params"] - len(removed) * full
    # ... which is exactly a model built with `kept` layers, and so are its FLOPs.
    family = PyramidFlowFamily()
    skeleton = family.skeleton("builtin:pyramid-flow-sd3")
    with torch.device("meta"):
        skeleton["denoiser"].module = PyramidFlowMMDiT(config.replace(num_layers=kept))
    assert after["denoiser"]["params"] == skeleton["denoiser"].num_params()
    assert after["denoiser"]["flops"] == family.component_flops(skeleton, "denoiser", plan["video"])
    assert 0 < after["denoiser"]["flops"] < before["denoiser"]["flops"]


# ----------------------------------------------------------------------------------------- bad recipes


def _recipe(tmp_path: Path, text: str | bytes, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


BAD_RECIPES = {
    "unknown pass": (
        "model:\n  source: builtin:tiny-random\npasses:\n  - name: remove_blokcs\n    indices: [1]\noutput: out/x\n",
        [":4 (passes[0].name): unknown pass 'remove_blokcs'. Did you mean 'remove_blocks'?"],
    ),
    "wrong type": (
        "model:\n  source: builtin:tiny-random\npasses:\n  - name: remove_blocks\n    indices: two\noutput: out/x\n",
        [":5 (passes[0].indices): Input should be a valid list (got 'two')"],
    ),
    "unknown key": (
        "model:\n  source: builtin:tiny-random\n  colour: red\npasses: []\noutput: out/x\n",
        [":3 (model.colour): unknown key 'colour'"],
    ),
    "block index out of range": (
        "model:\n  source: builtin:pyramid-flow-sd3\npasses:\n  - name: remove_blocks\n    indices: [3, 30]\n"
        "output: out/x\n",
        [":5 (passes[0].indices): remove_blocks: block indices [30] out of range: 'denoiser' has 24 blocks (0..23)"],
    ),
    "several errors at once": (
        "model:\n  source: builtin:tiny-random\n  dtyp: float32\n  seed: -1\npasses:\n  - name: remove_blokcs\n"
        "  - name: remove_blocks\n    indices: [1, 1]\n    colour: red\noutput: out/x\n",
        [
            "recipe has 5 problem(s):",
            ":3 (model.dtyp): unknown key 'dtyp'",
            ":4 (model.seed): Input should be greater than or equal to 0 (got -1)",
            ":6 (passes[0].name): unknown pass 'remove_blokcs'",
            ":8 (passes[1].indices): Value error, indices must be unique; repeated: [1]",
            ":9 (passes[1].colour): unknown key 'colour'",
        ],
    ),
    "generate size the model cannot make, and a missing prompt file": (
        "model:\n  source: builtin:tiny-random\ndata:\n  prompts:\n    calib: {source: /nonexistent/prompts.txt}\n"
        "generate:\n  height: 100\noutput: out/x\n",
        [
            ":5 (data.prompts.calib.source): prompt file '/nonexistent/prompts.txt' not found",
            ":7 (generate.height): height must be a positive multiple of 64, got 100",
        ],
    ),
    "recipe that is not UTF-8": (b"model: \xff\xfe\n", ["recipe is not UTF-8 text"]),
}


@pytest.mark.parametrize("case", list(BAD_RECIPES))
def test_bad_recipe_exits_2_naming_file_yaml_path_and_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.chdir(tmp_path)
    text, expected = BAD_RECIPES[case]
    path = _recipe(tmp_path, text)
    rc, out, err = run(capsys, "validate", path)
    assert (rc, out) == (2, "")
    assert err.startswith("error: recipe has")
    for fragment in expected:
        assert (fragment if fragment.startswith("recipe") else f"{path}{fragment}") in err, err


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_plan_and_apply_reject_a_bad_recipe_before_any_work(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _recipe(tmp_path, BAD_RECIPES["unknown pass"][0])
    rc, out, err = run(capsys, command, path, *(["--cache-dir", tmp_path / "cache"] if command == "apply" else []))
    assert (rc, out) == (2, "")
    assert f"{path}:4 (passes[0].name): unknown pass 'remove_blokcs'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]  # no output, work dir or cache


def test_missing_recipe_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    rc, _, err = run(capsys, "validate", tmp_path / "nope.yaml")
    assert rc == 2 and f"{tmp_path / 'nope.yaml'}: recipe file not found" in err


# ----------------------------------------------------------------------------------------- bad sources / args


def test_unknown_builtin_source_suggests_the_nearest(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    for argv in (["inspect", "builtin:tiny-rand"], ["generate", "builtin:tiny-rand", "-o", tmp_path / "v"]):
        rc, out, err = run(capsys, *argv)
        assert (rc, out) == (2, "")
        assert "unknown builtin source 'builtin:tiny-rand'" in err and "Did you mean 'builtin:tiny-random'?" in err
    assert not (tmp_path / "v").exists()


def test_nonexistent_directory_source(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    for argv in (["inspect", missing], ["generate", missing, "-o", tmp_path / "v"]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and f"source '{missing}' is neither a builtin name nor an existing directory" in err


@pytest.mark.parametrize(
    ("option", "text", "message"),
    [
        ("--first-steps", "20,x,20", "steps must be comma-separated integers such as 20,20,20, got '20,x,20'"),
        ("--later-steps", "10,10", "steps need three positive integers (one per pyramid stage), got '10,10'"),
        ("--first-steps", "0,1,1", "steps need three positive integers"),
    ],
)
def test_bad_steps_text_exits_2_before_loading_the_model(
    capsys: pytest.CaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    text: str,
    message: str,
) -> None:
    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(PyramidFlowFamily, "load", no_load)
    rc, _, err = run(capsys, "generate", "builtin:tiny-random", "-o", tmp_path / "v", option, text)
    assert rc == 2 and message in err, err
    assert not (tmp_path / "v").exists()


def test_frames_must_be_one_plus_multiple_of_eight(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    rc, _, err = run(
        capsys, "generate", "builtin:tiny-random", "-o", tmp_path / "v", "--frames", "10", "--height", "60"
    )
    assert rc == 2
    assert "frames must be 1 + 8k (e.g. 9, 17, 49), got 10" in err and "height must be a positive multiple of 64" in err
    assert not (tmp_path / "v").exists()


def test_click_usage_errors_exit_2(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    rc, _, err = run(capsys, "generate", "builtin:tiny-random")
    assert rc == 2 and "Missing option '--output'" in err
    rc, _, err = run(capsys, "generate", "builtin:tiny-random", "-o", tmp_path / "v", "--frames", "nine")
    assert rc == 2 and "'nine' is not a valid integer" in err
    rc, _, err = run(capsys, "compress", "x")
    assert rc == 2 and "No such command 'compress'" in err


# ----------------------------------------------------------------------------------------- apply


def test_apply_refuses_an_existing_output_and_leaves_it_untouched(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, applied_tiny: dict
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("someone's work")
    rc, _, err = run(capsys, "apply", TINY_RECIPE, "-o", out, "--cache-dir", tmp_path / "cache", "--no-progress")
    assert rc == 2
    assert f"output '{out}' already exists; pass --force to replace it (nothing was written)" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "someone's work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no cache, no work dir

    # With --force it is replaced by a complete output; the pass comes from the session's cache.
    rc, _, err = run(
        capsys, "apply", TINY_RECIPE, "-o", out, "--cache-dir", applied_tiny["cache"], "--force", "--no-progress"
    )
    assert rc == 0 and f"wrote {out} (1 pass(es), 1 from cache)" in flat(err)
    assert not (out / "keep.txt").exists() and (out / "neocompress.json").is_file()
    saved = json.loads((out / "neocompress.json").read_text())
    assert saved["components"]["denoiser"]["params"] < 234_496 and saved["pass_log"][0]["name"] == "remove_blocks"


def test_apply_on_the_weightless_builtin_says_to_plan_or_give_a_checkpoint(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(
        capsys, "apply", REPO / "recipes" / "pyramid-flow-prune6.yaml", "--cache-dir", tmp_path / "c", "--no-progress"
    )
    assert (rc, out) == (2, "")
    assert "'builtin:pyramid-flow-sd3' has no weights here" in err
    assert "`plan`" in err and "give the checkpoint directory" in err
    assert not (tmp_path / "out" / "pruned").exists()


# ----------------------------------------------------------------------------------------- exit code 1


def test_an_unexpected_internal_error_exits_1_with_one_line(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("neocompress.cli.inspect.inspect_source", boom)
    rc, out, err = run(capsys, "inspect", "builtin:tiny-random")
    assert (rc, out) == (1, "")
    assert err == "error: unexpected RuntimeError: boom (run with --debug for the traceback)\n"
    rc, _, err = run(capsys, "--debug", "inspect", "builtin:tiny-random")
    assert rc == 1 and "Traceback (most recent call last)" in err and "RuntimeError: boom" in err


def test_other_neocompress_errors_and_interrupts_exit_1(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise VerificationError("interface of 'denoiser' changed")

    monkeypatch.setattr("neocompress.cli.inspect.inspect_source", broken)
    assert run(capsys, "inspect", "builtin:tiny-random") == (1, "", "error: interface of 'denoiser' changed\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("neocompress.cli.inspect.inspect_source", interrupted)
    rc, _, err = run(capsys, "inspect", "builtin:tiny-random")  # click turns it into Abort; the message must survive
    assert rc == 1 and err.strip() == "interrupted; completed passes are cached, re-run the same command to resume"


# ----------------------------------------------------------------------------------------- passes, validate


def test_passes_list_and_show(capsys: pytest.CaptureFixture) -> None:
    rc, out, _ = run(capsys, "passes", "list", "--json")
    assert rc == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["remove_blocks"]["version"] == 1 and "Remove transformer blocks" in rows["remove_blocks"]["summary"]
    rc, out, _ = run(capsys, "passes", "list")
    assert rc == 0 and "remove_blocks" in out

    rc, out, _ = run(capsys, "passes", "show", "remove_blocks")
    assert rc == 0
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
        for line in out.splitlines()
        if line.count("│") >= 4
    }
    assert rows["indices"] == ["list[int]", "(required)"]
    assert rows["component"] == ["str", "'denoiser'"]
    assert "requires: denoiser" in out

    rc, out, _ = run(capsys, "passes", "show", "remove_blocks", "--json")
    schema = json.loads(out)
    assert rc == 0 and schema["required"] == ["indices"] and schema["properties"]["component"]["default"] == "denoiser"
    rc, _, err = run(capsys, "passes", "show", "remove_blokcs")
    assert rc == 2 and "Did you mean 'remove_blocks'?" in err


def test_validate_prints_ok(capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(TINY_RECIPE, "tiny.yaml")
    rc, out, err = run(capsys, "validate", "tiny.yaml")
    assert (rc, out, err) == (0, "ok tiny.yaml: 1 pass(es) on builtin:tiny-random -> out/tiny\n", "")
    # Paths are printed as given, not read as Rich markup.
    Path("v2.yaml").write_text(Path("tiny.yaml").read_text().replace("output: out/tiny", "output: out/[v2]"))
    rc, out, _ = run(capsys, "validate", "v2.yaml")
    assert (rc, out) == (0, "ok v2.yaml: 1 pass(es) on builtin:tiny-random -> out/[v2]\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml", "v2.yaml"]


# ----------------------------------------------------------------------------------------- generate


def test_generate_writes_mp4_grid_and_json(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, applied_tiny: dict
) -> None:
    monkeypatch.chdir(tmp_path)
    src = applied_tiny["output"]
    rc, _, err = run(capsys, "generate", src, "-o", "video", "--first-steps", "2,2,2", "--later-steps", "1,1,1")
    assert rc == 0 and "wrote 1 video(s) to video in" in flat(err) and "(18 NFE per video)" in flat(err)
    out = tmp_path / "video"
    assert sorted(p.name for p in out.iterdir()) == ["frames_00.png", "generate.json", "video_00.mp4"]
    info = json.loads((out / "generate.json").read_text())
    assert (info["frames"], info["height"], info["width"], info["units"]) == (9, 64, 64, 2)
    # 2 latent frames: (2+2+2) + (1+1+1) steps, each doubled by CFG (guidance 7 and 5 from the recipe's schedule).
    assert (info["nfe_per_video"], info["calls_per_video"]) == (18, 9)
    assert info["schedule"]["first_unit"] == [2, 2, 2] and info["source"] == str(src)
    assert info["videos"] == [
        {
            "prompt": "a red circle moving left on a grey background",
            "video": "video_00.mp4",
            "grid": "frames_00.png",
            "seed": 0,
        }
    ]
    with imageio.get_reader(out / "video_00.mp4") as reader:
        frames = [frame for frame in reader]
    assert len(frames) == 9 and frames[0].shape == (64, 64, 3)
    grid = Image.open(out / "frames_00.png")
    assert grid.mode == "RGB" and grid.width > 9 * 64 and grid.height > 64

    rc, _, err = run(capsys, "generate", src, "-o", "video", "--first-steps", "1,1,1", "--later-steps", "1,1,1")
    assert rc == 2 and "already exists" in err
    assert json.loads((out / "generate.json").read_text()) == info


def test_generate_gif_for_several_prompts(capsys: pytest.CaptureFixture, tmp_path: Path, applied_tiny: dict) -> None:
    out = tmp_path / "nested" / "gifs"
    rc, _, _ = run(
        capsys,
        "generate",
        applied_tiny["output"],
        "-o",
        out,
        "--format",
        "gif",
        "-p",
        "a blue square",
        "-p",
        "a green dot",
        "--seed",
        "5",
        "--first-steps",
        "1,1,1",
        "--later-steps",
        "1,1,1",
        "--guidance-first",
        "1",
        "--guidance-later",
        "1",
    )
    assert rc == 0
    names = ["frames_00.png", "frames_01.png", "generate.json", "video_00.gif", "video_01.gif"]
    assert sorted(p.name for p in out.iterdir()) == names
    info = json.loads((out / "generate.json").read_text())
    assert info["nfe_per_video"] == 6  # guidance <= 1: no CFG, one evaluation per step
    assert [(v["prompt"], v["video"], v["seed"]) for v in info["videos"]] == [
        ("a blue square", "video_00.gif", 5),
        ("a green dot", "video_01.gif", 6),
    ]
    for i in range(2):
        gif = Image.open(out / f"video_0{i}.gif")
        assert (gif.n_frames, gif.size) == (9, (64, 64))


def test_generate_takes_its_defaults_from_the_recipes_generate_section(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    recipe = _recipe(
        tmp_path,
        f"""\
model:
  source: builtin:tiny-random
passes:
  - name: remove_blocks
    indices: [1]
generate:
  prompts: ["a green star moving right"]
  frames: 17
  height: 64
  width: 128
  first_unit_steps: [2, 1, 1]
  later_unit_steps: [1, 1, 1]
  guidance_first: 1.0
  guidance_later: 1.0
output: {tmp_path / "out"}
""",
    )
    assert run(capsys, "apply", str(recipe), "--cache-dir", str(tmp_path / "c"), "--no-progress")[0] == 0
    rc, _, err = run(capsys, "generate", str(tmp_path / "out"), "-o", str(tmp_path / "v"))
    assert rc == 0, err
    info = json.loads((tmp_path / "v" / "generate.json").read_text())
    assert [v["prompt"] for v in info["videos"]] == ["a green star moving right"]
    assert (info["frames"], info["height"], info["width"], info["units"]) == (17, 64, 128, 3)
    assert info["schedule"]["first_unit"] == [2, 1, 1] and info["nfe_per_video"] == 4 + 3 + 3
    # Options still win over the recipe's defaults.
    rc, _, _ = run(
        capsys, "generate", str(tmp_path / "out"), "-o", str(tmp_path / "v2"), "--frames", "9", "--first-steps", "1,1,1"
    )
    info = json.loads((tmp_path / "v2" / "generate.json").read_text())
    assert rc == 0 and info["frames"] == 9 and info["nfe_per_video"] == 3 + 3


def test_plan_counts_the_recipes_generate_section_and_keeps_the_models_defaults_otherwise(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    base = (REPO / "recipes" / "pyramid-flow-prune6.yaml").read_text()
    only_prompts = _recipe(tmp_path, base + "generate:\n  prompts: [a cat]\n", "p.yaml")
    distilled = _recipe(
        tmp_path,
        base + "generate:\n  first_unit_steps: [1, 1, 1]\n  later_unit_steps: [1, 1, 1]\n"
        "  guidance_first: 1.0\n  guidance_later: 1.0\n",
        "d.yaml",
    )
    plans = {}
    for name, path in (
        ("default", REPO / "recipes" / "pyramid-flow-prune6.yaml"),
        ("p", only_prompts),
        ("d", distilled),
    ):
        rc, out, err = run(capsys, "plan", str(path), "--json")
        assert rc == 0, err
        plans[name] = json.loads(out)
    assert plans["p"]["video"] == plans["default"]["video"]  # a prompts-only section keeps 49 x 320 x 512
    assert (plans["d"]["video"]["frames"], plans["d"]["video"]["nfe"]) == (49, 21)
    den = [p["steps"][1]["components"]["denoiser"]["flops"] for p in (plans["default"], plans["d"])]
    assert den[1] < den[0] / 10  # 21 NFE instead of 480


def test_corrupt_weight_file_and_manifest_exit_2_naming_the_file(
    capsys: pytest.CaptureFixture, tmp_path: Path, applied_tiny: dict
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(applied_tiny["output"], broken)
    weights = broken / "diffusion_transformer_384p" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    rc, _, err = run(capsys, "generate", str(broken), "-o", str(tmp_path / "v"))
    assert rc == 2 and "denoiser: cannot read weight file" in flat(err) and str(weights) in flat(err)
    (broken / "neocompress.json").write_text("{bad")
    rc, _, err = run(capsys, "inspect", str(broken))
    assert rc == 2 and "neocompress.json' is not valid JSON" in flat(err)
