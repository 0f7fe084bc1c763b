"""MiniBench: the shipped judges read real held-out videos, the tracker recovers motion, real videos score near the
maximum and noise near chance, the JSON is exact, runs are deterministic, and `neocompress eval` works."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from rich.console import Console

from neocompress.bench import judges as judges_module
from neocompress.bench.judges import STATED_ACCURACY, Judges, default_judges_dir, prepare
from neocompress.bench.minibench import (
    PARTS,
    frechet_distance,
    judge_accuracy_on_real,
    noise_generate_fn,
    render_captions,
    renderer_generate_fn,
    run_minibench,
    select_scenes,
    temporal_consistency,
)
from neocompress.bench.tracking import classify_motion, judge_motion, track
from neocompress.bench.train_judges import JudgeTrainingConfig, train_judges
from neocompress.cli.eval import command as eval_command
from neocompress.cli.main import main
from neocompress.world import COLOURS, World, WorldConfig, caption, to_tensor

JUDGED = ("colour", "shape", "background")
PROMPTS = 32  # per MiniBench run in these tests (the default is 320)


@pytest.fixture(scope="module")
def judges() -> Judges:
    return Judges.load()


@pytest.fixture(scope="module")
def real_result(judges: Judges):
    return run_minibench(renderer_generate_fn(), num_prompts=PROMPTS, seed=0, judges=judges)


@pytest.fixture(scope="module")
def noise_result(judges: Judges):
    return run_minibench(noise_generate_fn(), num_prompts=PROMPTS, seed=0, judges=judges)


def _down_up(videos: torch.Tensor, factor: int) -> torch.Tensor:
    """Blur like a decoder would: shrink by `factor` (area-averaged) and grow back (bilinear)."""
    b, c, f, h, w = videos.shape
    frames = videos.transpose(1, 2).reshape(b * f, c, h, w)
    small = F.interpolate(frames, size=(h // factor, w // factor), mode="bilinear", antialias=True)
    return F.interpolate(small, size=(h, w), mode="bilinear").reshape(b, f, c, h, w).transpose(1, 2)


# --- the shipped judges -----------------------------------------------------------------------------------------


def test_shipped_judges_are_small_and_recorded(judges: Judges):
    root = default_judges_dir()
    assert (root / judges_module.WEIGHTS_FILE).stat().st_size < 2_000_000
    info = judges.info
    for key in ("training", "seed", "train_wall_time_s", "judge_accuracy", "chance", "command", "architecture"):
        assert key in info, key
    assert set(info["judge_accuracy"]) == set(PARTS)
    assert set(info["chance"]) == {"temporal_consistency", "distribution"}
    assert info["train_wall_time_s"] > 0
    for part in (*JUDGED, "direction", "speed"):
        assert info["judge_accuracy"][part] >= STATED_ACCURACY, part


def test_shipped_judges_reach_their_stated_accuracy_on_real_heldout_videos(judges: Judges):
    accuracy = judge_accuracy_on_real(judges, num_videos=64, seed=11)
    for part in (*JUDGED, "direction", "speed"):
        assert accuracy[part] >= STATED_ACCURACY, (part, accuracy)


def test_judges_read_blurred_and_resized_videos(judges: Judges):
    world = World(WorldConfig(two_object_fraction=0.5, seed=4))
    samples = [world.sample(i, "heldout") for i in range(32)]
    videos = to_tensor(np.stack([s.video for s in samples]))
    scenes = [s.scene for s in samples]
    for variant in (_down_up(videos, 2), F.interpolate(videos, size=(9, 96, 96), mode="trilinear")):
        verdicts = judges.verdicts(variant, scenes)
        assert np.mean([v.background for v in verdicts]) >= 0.9
        assert np.mean([c for v in verdicts for c in v.colour]) >= 0.9
        assert np.mean([s for v in verdicts for s in v.shape]) >= 0.9
    assert prepare(torch.zeros(2, 3, 9, 32, 48)).shape == (2, 3, 9, 64, 64)
    with pytest.raises(ValueError, match=r"\[B, 3, F, H, W\]"):
        prepare(torch.zeros(3, 9, 64, 64))


def test_missing_judge_weights_say_how_to_train_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_judges"):
        Judges.load(tmp_path)


# --- tracking ---------------------------------------------------------------------------------------------------


def test_tracking_recovers_direction_and_speed_of_real_videos():
    world = World(WorldConfig(two_object_fraction=0.5, seed=2))
    hits: dict[str, list[bool]] = {"direction": [], "speed": [], "blurred": []}
    for index in range(120):
        sample = world.sample(index, "heldout")
        video = to_tensor(sample.video)
        blurred = _down_up(video[None], 4)[0]
        objects = sample.scene.objects
        for obj, sharp, soft in zip(objects, judge_motion(video, objects), judge_motion(blurred, objects), strict=True):
            hits["direction"].append(sharp.direction_ok(obj))
            hits["speed"].append(sharp.speed_ok(obj))
            hits["blurred"].append(soft.direction_ok(obj) and soft.speed_ok(obj))
    for name, values in hits.items():
        assert np.mean(values) >= 0.95, (name, np.mean(values))


def test_tracked_velocity_matches_the_ground_truth():
    sample = World(WorldConfig(two_object_fraction=0.0)).sample(3, "heldout")
    found = track(to_tensor(sample.video), sample.scene.objects[0].colour)
    assert found is not None and found.found.all()
    truth = np.polyfit(np.arange(sample.frames), sample.centroids[0], 1)[0]
    np.testing.assert_allclose(found.velocity, truth, atol=0.2)


def test_tracking_finds_nothing_in_noise_and_no_motion_in_a_still_video():
    noise = torch.rand(3, 9, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert all(track(noise, colour) is None for colour in COLOURS)
    sample = World().sample(0, "heldout")
    still = to_tensor(sample.video)[:, :1].expand(-1, 9, -1, -1)
    verdict = judge_motion(still, sample.scene.objects)[0]
    assert verdict.direction is None and verdict.speed is None and verdict.velocity is not None
    absent = next(c for c in COLOURS if c not in {o.colour for o in sample.scene.objects})
    assert track(to_tensor(sample.video), absent) is None


def test_classify_motion():
    assert classify_motion((-1.5, 0.1), 9, 64) == ("left", "slow")
    assert classify_motion((0.2, 3.4), 9, 64) == ("down", "fast")
    assert classify_motion((0.0, -2.6), 9, 64) == ("up", "fast")
    assert classify_motion((0.3, 0.2), 9, 64) == (None, None)
    assert classify_motion((1.6, 0.0), 17, 64) == ("right", "fast")  # 17 frames: slow is 0.75 px/frame


# --- MiniBench scores -------------------------------------------------------------------------------------------


def test_real_videos_score_near_the_maximum(real_result):
    assert real_result.total >= 0.9
    for name in PARTS:
        assert real_result.parts[name] >= 0.85, (name, real_result.parts)


def test_noise_scores_near_chance(real_result, noise_result):
    chance, parts = noise_result.chance, noise_result.parts
    for name in ("colour", "shape", "background", "temporal_consistency", "distribution"):
        assert abs(parts[name] - chance[name]) <= 0.1, (name, parts[name], chance[name])
    for name in ("direction", "speed"):  # noise holds no object: at or below chance, never above
        assert parts[name] <= chance[name] + 0.05, (name, parts[name])
    assert noise_result.total < 0.25 < 0.9 < real_result.total


def test_chance_levels(noise_result):
    chance = noise_result.chance
    assert chance["shape"] == 0.25 and chance["direction"] == 0.25 and chance["speed"] == 0.5
    assert chance["background"] == 0.2
    scenes = select_scenes(PROMPTS)
    ones = sum(len(s.objects) == 1 for s in scenes)
    twos = len(scenes) - ones
    assert math.isclose(chance["colour"], (ones / 6 + 2 * twos / 5) / (ones + 2 * twos))
    assert 0 <= chance["temporal_consistency"] < 0.1 and 0 <= chance["distribution"] < 0.1


def test_json_schema_is_exact(real_result, noise_result):
    for result in (real_result, noise_result):
        data = json.loads(json.dumps(result.to_json()))
        assert set(data) == {"total", "parts", "interval", "level", "chance", "judge_accuracy", "prompts", "valid",
                             "nonfinite_videos"}  # fmt: skip
        assert data["valid"] is True and data["nonfinite_videos"] == 0 and data["level"] == 0.95
        assert isinstance(data["total"], float) and 0.0 <= data["total"] <= 1.0
        assert list(data["interval"]) == ["total", *PARTS]
        for name, (lo, hi) in data["interval"].items():
            point = data["total"] if name == "total" else data["parts"][name]
            assert 0.0 <= lo <= point + 1e-9 and point - 1e-9 <= hi <= 1.0, (name, lo, point, hi)
        for key in ("parts", "chance", "judge_accuracy"):
            assert list(data[key]) == list(PARTS)
            assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in data[key].values()), (key, data[key])
        assert math.isclose(data["total"], float(np.mean(list(data["parts"].values()))))


def test_table_lists_every_part(real_result):
    console = Console(record=True, width=120)
    console.print(real_result.table())
    text = console.export_text()
    assert all(name in text for name in (*PARTS, "total", "chance"))


def test_same_seed_same_result(judges: Judges):
    fn = renderer_generate_fn()
    first = run_minibench(fn, num_prompts=12, seed=3, judges=judges, batch_size=5)
    second = run_minibench(fn, num_prompts=12, seed=3, judges=judges, batch_size=5)
    assert first.to_json() == second.to_json()
    noise = noise_generate_fn()
    a = run_minibench(noise, num_prompts=12, seed=3, judges=judges)
    b = run_minibench(noise, num_prompts=12, seed=3, judges=judges)
    c = run_minibench(noise, num_prompts=12, seed=4, judges=judges)
    assert a.to_json() == b.to_json()
    assert a.prompts == c.prompts  # the captions do not depend on the seed; the videos do
    assert a.scores.per_video != c.scores.per_video


def test_prompts_are_heldout_balanced_and_deterministic():
    world = World()
    scenes = select_scenes(64)
    assert scenes == select_scenes(64)
    assert all(world.split_of(s) == "heldout" for s in scenes)
    assert len({caption(s) for s in scenes}) == 64
    assert sum(len(s.objects) == 2 for s in scenes) == 16
    colours = Counter(o.colour for s in scenes for o in s.objects)
    assert max(colours.values()) - min(colours.values()) <= 2
    assert select_scenes(8) == select_scenes(8)
    with pytest.raises(ValueError, match="positive integer"):
        select_scenes(0)
    with pytest.raises(ValueError, match="no held-out captions"):
        select_scenes(4, WorldConfig(heldout_fraction=0.0))


def test_generate_fn_output_is_checked(judges: Judges):
    with pytest.raises(ValueError, match="generate_fn must return"):
        run_minibench(lambda p, s: torch.zeros(len(p), 3, 5, 64, 64), num_prompts=2, judges=judges)
    # NaN from a broken pipeline is scored (as grey), not a crash
    result = run_minibench(lambda p, s: torch.full((len(p), 3, 9, 64, 64), math.nan), num_prompts=2, judges=judges)
    assert all(0.0 <= v <= 1.0 for v in result.parts.values())


def test_frechet_distance_and_temporal_consistency():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    assert abs(frechet_distance(x, x)) < 1e-6
    shifted = frechet_distance(x, x + 2.0)
    assert math.isclose(shifted, 4 * 8, rel_tol=1e-6)
    assert frechet_distance(x, 3 * x) > frechet_distance(x, 1.1 * x) > 0
    real = render_captions(["a red circle moving left quickly on a grey background"], seed=0)
    still = real[:, :, :1].expand_as(real)
    assert temporal_consistency(real, real).item() == pytest.approx(1.0)
    assert temporal_consistency(still, real).item() < 0.1


# --- training and the CLI ---------------------------------------------------------------------------------------


def test_train_judges_smoke(tmp_path):
    config = JudgeTrainingConfig(steps=2, batch_size=4, warmup_steps=1, eval_videos=4, minibench_prompts=4)
    trained = train_judges(tmp_path / "judges", config, work_dir=tmp_path / "work")
    reloaded = Judges.load(tmp_path / "judges")
    assert set(reloaded.judge_accuracy) == set(PARTS)
    assert reloaded.info["training"]["steps"] == 2 and (tmp_path / "work" / "judges_loss.png").is_file()
    video = render_captions(["a red circle moving left quickly on a grey background"], seed=0)
    torch.testing.assert_close(reloaded(video)["features"], trained(video)["features"])


def test_cli_eval_on_builtin_tiny():
    runner = CliRunner()
    result = runner.invoke(eval_command, ["builtin:tiny", "--bench", "mini", "--prompts", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"total", "parts", "interval", "chance", "judge_accuracy", "valid"} <= set(data)
    assert 0.0 <= data["total"] <= 1.0 and data["valid"] and data["prompts"] == 3
    for key in ("parts", "chance", "judge_accuracy"):
        assert set(data[key]) == set(PARTS) and all(0.0 <= v <= 1.0 for v in data[key].values())


def test_cli_eval_against_reports_the_paired_difference(capsys):
    runner = CliRunner()
    args = ["builtin:tiny", "--prompts", "4", "--first-steps", "2,2,2", "--later-steps", "1,1,1"]
    result = runner.invoke(eval_command, [*args, "--against", "builtin:tiny", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["against"]["source"] == "builtin:tiny" and data["against"]["total"] == data["total"]
    assert set(data["difference"]) == {*PARTS, "total"}
    assert all(d["delta"] == 0.0 and d["interval"] == [0.0, 0.0] for d in data["difference"].values())
    table = runner.invoke(eval_command, [*args, "--against", "builtin:tiny"])
    assert table.exit_code == 0 and "builtin:tiny minus builtin:tiny" in table.stdout
    assert "no change shown" in table.stdout
    assert main(["eval", *args, "--against", "/nonexistent/pipeline"]) == 2  # before any model is loaded
    assert "/nonexistent/pipeline" in capsys.readouterr().err


def test_cli_eval_table_and_errors():
    runner = CliRunner()
    table = runner.invoke(
        eval_command, ["builtin:tiny", "--prompts", "1", "--first-steps", "2,2,2", "--later-steps", "1,1,1"]
    )
    assert table.exit_code == 0, table.output
    assert "temporal_consistency" in table.stdout and "total" in table.stdout
    bad = runner.invoke(eval_command, ["builtin:tiny", "--bench", "vbench"])
    assert bad.exit_code == 2 and "vbench" in bad.output
    steps = runner.invoke(eval_command, ["builtin:tiny", "--first-steps", "2,2"])
    assert steps.exit_code != 0
