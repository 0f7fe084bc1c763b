"""The miniature's pretrained DistilT5 (`builtin:tiny-distilt5`, the stand-in for the public DistilT5): pretraining
brings a student towards T5 on text it never saw, the shipped one was pretrained against `builtin:tiny`'s own T5
and still agrees with it as recorded, and encoder_substitution starting from it in replace mode (only the
ContextAdapter trains, as in Neodragon) beats the same run from a random DistilT5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neocompress.core.errors import UserInputError
from neocompress.core.hashing import hash_module
from neocompress.data.prompts import read_prompt_source, world_captions
from neocompress.distill.text_pretrain import PretrainData, pretrain_distil_t5
from neocompress.distill.text_run import path_agreement
from neocompress.distill.text_student import StudentPath
from neocompress.distill.text_targets import TextTargets, t5_tokens
from neocompress.models.family import get_family
from neocompress.models.pyramid_flow.distil_t5 import (
    BUILTIN_TINY_DISTIL_T5,
    DistilT5,
    distil_t5_base_config,
    distil_t5_folder,
    load_distil_t5,
)
from neocompress.train.stage import StageConfig

FAMILY = get_family("pyramid-flow")
SMALL = {"d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def tiny():
    return FAMILY.load("builtin:tiny")


def _student(t5) -> DistilT5:
    config = {**distil_t5_base_config(int(t5.config["vocab_size"])), **SMALL}
    torch.manual_seed(0)
    return DistilT5(config, int(t5.config["d_model"]))


def test_pretraining_brings_the_student_towards_t5_on_text_it_never_saw(tiny, tmp_path) -> None:
    t5 = tiny["t5"]
    general = read_prompt_source("builtin:vbench")
    data = PretrainData(general[:200], general[-16:], {"world": world_captions()[:32]})
    report = pretrain_distil_t5(t5.module, t5.extras["tokenizer"], 32, _student(t5), data,
                                StageConfig(steps=150, batch_size=32, lr=2e-3, warmup_steps=10), tmp_path)  # fmt: skip
    assert report["prompts"] == {"train": 200, "heldout": 16, "world": 32}
    for name in ("heldout", "world"):
        a = report["agreement"][name]
        assert a["after"]["cosine"] > a["before"]["cosine"] + 0.2, (name, a)
        assert a["after"]["relative_error"] < a["before"]["relative_error"], (name, a)
    assert report["train"]["loss_last"] < 0.8 * report["train"]["loss_first"]


def test_the_shipped_distil_t5_was_pretrained_on_builtin_tiny_t5_and_agrees_with_it(tiny, tmp_path) -> None:
    folder = distil_t5_folder(BUILTIN_TINY_DISTIL_T5)
    record = json.loads((folder / "training.json").read_text())
    t5 = tiny["t5"]
    assert record["teacher_hash"] == hash_module(t5.module), (
        "builtin:tiny's T5 changed since builtin:tiny-distilt5 was built: rerun tools/build_tiny_distilt5.py --force")
    student = load_distil_t5(BUILTIN_TINY_DISTIL_T5)
    general = read_prompt_source("builtin:vbench")
    prompts = general[-32:] + world_captions()[:256]  # the record's held-out text and its world probe
    targets = TextTargets(t5.module, None, t5.extras["tokenizer"], 32, prompts, tmp_path / "targets")
    ids, mask = t5_tokens(t5.extras["tokenizer"], prompts, 32)
    path = StudentPath(student, None)
    for name, idx in (("heldout", range(32)), ("world_captions", range(32, 288))):
        now = path_agreement(path, targets, ids, mask, list(idx))
        recorded = record["agreement"][name]["after"]
        assert now["cosine"] == pytest.approx(recorded["cosine"], abs=1e-4), name
        assert now["cosine"] > record["agreement"][name]["before"]["cosine"] + 0.5, name


def test_an_unknown_builtin_checkpoint_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="student.checkpoint.*builtin:tiny-distilt5"):
        distil_t5_folder("builtin:tiny-distilt6")
    assert distil_t5_folder("some/folder") == Path("some/folder")


def _substitute(tmp: Path, student: str, name: str) -> dict:
    from neocompress.core.apply_run import apply_recipe
    from neocompress.recipe import load_recipe

    recipe = tmp / f"{name}.yaml"
    recipe.write_text(
        "model: {source: builtin:tiny}\ndata:\n  prompts:\n    distillation: {source: builtin:world, count: 72}\n"
        "passes:\n  - name: encoder_substitution\n    mode: replace\n"
        f"    student: {student}\n    heldout: 8\n    teacher_batch: 16\n    probe_steps: [1, 1, 1]\n"
        "    train: {steps: 60, batch_size: 16, lr: 3.0e-3, warmup_steps: 5}\n"
        f"output: {tmp / name}\n"
    )
    outcome = apply_recipe(load_recipe(recipe), cache_dir=tmp / "cache")
    return json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]


def test_replace_mode_from_the_pretrained_distil_t5_beats_a_random_one(tmp_path) -> None:
    """Only the ContextAdapter trains in replace mode: what DistilT5 knows of T5 is what the text path gets."""
    pretrained = _substitute(tmp_path, "{checkpoint: builtin:tiny-distilt5}", "pretrained")
    random = _substitute(tmp_path, "{encoder: " + json.dumps(SMALL) + ", random_init: true}", "random")
    ours, theirs = pretrained["heldout_embeddings"]["after"], random["heldout_embeddings"]["after"]
    assert ours["relative_error"] < 0.9 * theirs["relative_error"], (ours, theirs)
    assert pretrained["denoiser_velocity"]["after"]["relative_error"] < random["denoiser_velocity"]["after"][
        "relative_error"]
    assert pretrained["trainable_params"] == random["trainable_params"]  # the same adapter, the same budget
