"""block_prune recovery: both stages reduce their losses, stage 2 brings the student back towards the teacher,
the block mapping and the user's latents are checked, and an interrupted stage resumes to the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from neocompress.core.apply_run import apply_recipe
from neocompress.core.errors import RecipeError, UserInputError
from neocompress.models.family import get_family
from neocompress.prune.recovery import (
    CaptionCache,
    LatentData,
    StageConfig,
    block_mapping,
    load_latent_file,
    run_stage1,
)
from neocompress.recipe import load_recipe

FAMILY = get_family("pyramid-flow")


def _recipe(tmp_path: Path, recovery: str, name: str = "rec") -> Path:
    f = tmp_path / f"{name}.yaml"
    f.write_text(
        "model:\n  source: builtin:tiny-random\n"
        "data:\n  prompts:\n    calibration: {source: builtin:world, count: 4}\n"
        "passes:\n  - name: block_prune\n"
        "    calibration: {count: 2, first: [1, 1, 1], later: [1, 1, 1]}\n"
        "    remove: 2\n"
        f"    recovery:\n{recovery}"
        f"output: {tmp_path / name}\n"
    )
    return f


@pytest.fixture(scope="module")
def recovered(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("recovery")
    recipe = _recipe(
        tmp,
        "      data: {samples: 6, heldout: 2}\n"
        "      stage1: {steps: 24, batch_size: 4, lr: 3.0e-4, warmup_steps: 2}\n"
        "      stage2: {steps: 24, batch_size: 4, lr: 1.0e-3, warmup_steps: 2}\n",
    )
    outcome = apply_recipe(load_recipe(recipe))
    return json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"] | {"_out": outcome.output}


def test_both_stages_reduce_their_losses(recovered) -> None:
    """Measured on fixed (seeded) batches of the training latents before and after each stage."""
    for stage in ("stage1", "stage2"):
        record = recovered["recovery"]["stages"][stage]
        assert record["objective_after"] < 0.9 * record["objective_before"], stage
        assert len(record["history"]) == 24 and {"loss", "lr"} <= set(record["history"][0])
    assert {"visual_features", "text_features", "teacher_flow", "true_flow"} <= set(
        recovered["recovery"]["stages"]["stage2"]["history"][0]
    )


def test_stage2_moves_the_student_towards_the_teacher(recovered) -> None:
    stage2 = recovered["recovery"]["stages"]["stage2"]
    assert stage2["fidelity_after"]["relative_error"] < stage2["fidelity_before"]["relative_error"]
    assert stage2["mapping"] == [0, 1, 2, 3]  # "simple": student block k <-> teacher block k


def test_report_names_the_data_and_carries_the_curves(recovered) -> None:
    rec = recovered["recovery"]
    assert rec["data"] == {
        "source": "teacher samples",
        "train_latents": 4,
        "heldout_latents": 2,
        "text_conditioning": None,  # Pyramid-Flow conditions through its own text encoders
    }
    figures = recovered["figures"]
    assert set(figures) == {"importance", "stage1_loss", "stage2_loss"}
    assert all((recovered["_out"] / p).stat().st_size > 1000 for p in figures.values())
    assert "output_cosine" in rec["fidelity_after_cut"]
    md = (recovered["_out"] / "report.md").read_text()
    assert "Recovery on 4 latents (teacher samples), 2 held out" in md
    assert "| stage1 (24 steps) |" in md and "| stage2 (24 steps) |" in md
    assert "![block_prune stage2_loss](figures/00-block_prune-stage2_loss.png)" in md


def test_block_mapping_modes() -> None:
    assert block_mapping("simple", [0, 2, 3], 5) == [0, 1, 2]
    assert block_mapping("kept", [0, 2, 3], 5) == [0, 2, 3]
    assert block_mapping([0, 2, 4], [0, 2, 3], 5) == [0, 2, 4]
    with pytest.raises(UserInputError, match="3 student blocks"):
        block_mapping([0, 1], [0, 2, 3], 5)
    with pytest.raises(UserInputError, match="out of range"):
        block_mapping([0, 1, 9], [0, 2, 3], 5)


def test_user_latents_are_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "lat.safetensors"
    save_file({"latents": torch.randn(3, 16, 2, 8, 8)}, str(good), metadata={"captions": json.dumps(["a", "b", "c"])})
    data = load_latent_file(str(good))
    assert data.latents.shape == (3, 16, 2, 8, 8) and data.captions == ["a", "b", "c"]
    bad = tmp_path / "bad.safetensors"
    save_file({"latents": torch.randn(3, 16, 2, 8, 8)}, str(bad), metadata={"captions": json.dumps(["a"])})
    with pytest.raises(UserInputError, match="3, 16, 2, 8, 8"):
        load_latent_file(str(bad))
    with pytest.raises(UserInputError, match="not found"):
        load_latent_file(str(tmp_path / "missing.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserInputError, match="not a readable safetensors"):
        load_latent_file(str(tmp_path / "junk.safetensors"))
    train, held = data.split(2)
    assert (len(train.captions), len(held.captions)) == (1, 2)
    with pytest.raises(UserInputError, match="more than 3 latents"):
        data.split(3)


def test_interrupted_stage_resumes_to_the_same_weights(tmp_path: Path) -> None:
    ir = FAMILY.load("builtin:tiny-random")
    pipe = FAMILY.pipeline(ir)
    gen = torch.Generator().manual_seed(0)
    data = LatentData(torch.randn(6, 16, 2, 8, 8, generator=gen), ["a red circle"] * 3 + ["a blue square"] * 3, "t")
    cache = CaptionCache(pipe.text, data.captions)
    stage = StageConfig(steps=8, batch_size=2, lr=1e-3, warmup_steps=1)

    def run(work: Path, steps: int | None = None):
        student = FAMILY.load("builtin:tiny-random")["denoiser"].module
        torch.manual_seed(0)
        cfg = stage if steps is None else stage.model_copy(update={"steps": steps})
        run_stage1(student, pipe.objective, data, cache, cfg, work, seed=0)
        return student.state_dict()

    whole = run(tmp_path / "whole")
    # "interrupt": the engine keeps a checkpoint every 2 steps; a run that stopped at step 4 resumes from it
    run(tmp_path / "split", steps=8)
    import shutil

    ckpts = sorted((tmp_path / "split" / "checkpoints").iterdir(), key=lambda c: int(c.name.split("-")[1]))
    assert len(ckpts) >= 2 and int(ckpts[0].name.split("-")[1]) < 8, "need a mid-run checkpoint to resume from"
    for c in ckpts[1:]:
        shutil.rmtree(c)  # keep only the earliest checkpoint, as if the run had died after it
    resumed = run(tmp_path / "split")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_bad_recovery_configs_fail_at_load(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(_recipe(tmp_path, "      stage2: {mapping: nearest}\n"))
    with pytest.raises(RecipeError, match="steps"):
        load_recipe(_recipe(tmp_path, "      stage1: {steps: 0}\n"))


def test_caption_dropout_trains_the_unconditional_branch() -> None:
    """CFG needs the empty-prompt prediction: with dropout 1 every caption is the empty prompt, with 0 none."""
    from neocompress.prune.recovery import draw_batch

    ir = FAMILY.load("builtin:tiny-random")
    pipe = FAMILY.pipeline(ir)
    data = LatentData(torch.randn(4, 16, 2, 8, 8), ["a red circle"] * 4, "t")
    cache = CaptionCache(pipe.text, data.captions)
    empty, cond = cache.get([""]), cache.get(["a red circle"])
    gen = torch.Generator().manual_seed(0)
    dropped = draw_batch(pipe.objective, data, cache, [0, 1, 2, 3], gen, caption_dropout=0.999)
    kept = draw_batch(pipe.objective, data, cache, [0, 1, 2, 3], gen, caption_dropout=0.0)
    assert torch.equal(dropped.text.pooled, empty.pooled.expand(4, -1))
    assert torch.equal(kept.text.pooled, cond.pooled.expand(4, -1))


def test_real_world_clips_join_the_teacher_samples(tmp_path: Path) -> None:
    """recovery.data.real: real clips through the frozen VAE encoder, with their own captions, trained on before
    the teacher's samples; the held-out latents stay teacher samples, and the encoding is the pipeline's own
    (decoding it gives the clip back far better than chance)."""
    from neocompress.prune.recovery import joined, teacher_latents, world_latents
    from neocompress.world import World, WorldConfig, to_tensor

    ir = FAMILY.load("builtin:tiny")
    pipe = FAMILY.pipeline(ir)
    real = world_latents(pipe, 10, seed=0)
    assert real.latents.shape == (10, 16, 2, 8, 8) and real.source == "builtin:world (10 real clips)"
    world = World(WorldConfig(seed=0))
    assert real.captions == [world.sample(i, "train").caption for i in range(10)]
    clip = to_tensor(world.sample(0, "train").video)
    error = (pipe.decode(real.latents[:1])[0] - clip).abs().mean()
    assert error < 0.5 * (clip - clip.mean()).abs().mean() + 0.05, error
    teacher = teacher_latents(pipe, ["a red circle moving left slowly on a grey background"], 4, seed=0,
                              schedule=pipe.schedule_with(first=(1, 1, 1), later=(1, 1, 1)))  # fmt: skip
    train, held = joined(real, teacher).split(2)
    assert len(train.captions) == 12 and held.captions == teacher.captions[2:]
    assert torch.equal(held.latents, teacher.latents[2:])


def test_real_world_clips_in_a_recipe(tmp_path: Path) -> None:
    recipe = _recipe(
        tmp_path,
        "      data: {samples: 4, heldout: 2, real: 8}\n"
        "      stage1: {steps: 4, batch_size: 4, lr: 3.0e-4, warmup_steps: 1}\n"
        "      stage2: null\n",
        name="real",
    )
    report = apply_recipe(load_recipe(recipe)).run.records[0].report
    data = report["recovery"]["data"]
    assert data["source"] == "builtin:world (8 real clips) + teacher samples"
    assert (data["train_latents"], data["heldout_latents"]) == (10, 2)
