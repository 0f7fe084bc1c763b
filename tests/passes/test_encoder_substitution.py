"""encoder_substitution: the interface check refuses a wrong width or token count before training, every mode
trains on a prompt file and its loss falls, the teacher's targets are cached (hits on the second epoch, nothing
recomputed on a re-run), the substituted pipeline saves, reloads and generates, and bad prompt files fail early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neocompress.core.apply_run import apply_recipe
from neocompress.core.context import PassContext
from neocompress.core.errors import UserInputError, VerificationError
from neocompress.data.prompts import PromptSets, world_captions
from neocompress.ir.substitution import register_replacement
from neocompress.models.family import get_family
from neocompress.passes.encoder_substitution import EncoderSubstitution, EncoderSubstitutionConfig
from neocompress.recipe import load_recipe
from neocompress.recipe.schema import PromptSet

FAMILY = get_family("pyramid-flow")
# random_init: a seeded, untrained DistilT5 is refused in the frozen modes unless asked for; fine for these checks
SMALL = "student: {encoder: {d_model: 32, d_kv: 16, d_ff: 64, num_layers: 2, num_heads: 2}, random_init: true}"


def _prompt_file(tmp: Path, n: int = 40) -> Path:
    f = tmp / "prompts.txt"
    f.write_text("\n".join(world_captions()[:n]) + "\n")
    return f


def _recipe(tmp: Path, prompts: Path, body: str, name: str) -> Path:
    f = tmp / f"{name}.yaml"
    f.write_text(
        "model:\n  source: builtin:tiny\n"
        f"data:\n  prompts:\n    distillation: {{source: {prompts}}}\n"
        "passes:\n  - name: encoder_substitution\n"
        f"    {SMALL}\n    heldout: 4\n    teacher_batch: 8\n"
        "    probe_steps: [1, 1, 1]\n"
        f"{body}"
        f"output: {tmp / name}\n"
    )
    return f


def _report(outcome) -> dict:
    return json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("encsub")
    prompts = _prompt_file(tmp)
    out = {}
    for mode, lr in (("replace", 3e-3), ("extend", 3e-3), ("lora", 3e-3), ("trainable", 3e-3)):
        train = f"    mode: {mode}\n    train: {{steps: 24, batch_size: 12, lr: {lr}, warmup_steps: 2}}\n"
        outcome = apply_recipe(load_recipe(_recipe(tmp, prompts, train, mode)), cache_dir=tmp / "cache")
        out[mode] = {"report": _report(outcome), "output": outcome.output}
    out["_tmp"], out["_prompts"] = tmp, prompts
    return out


@pytest.mark.parametrize("mode", ["replace", "extend", "lora", "trainable"])
def test_every_mode_trains_and_its_loss_falls(runs, mode) -> None:
    r = runs[mode]["report"]
    assert r["mode"] == mode
    assert r["objective"]["after"] < 0.8 * r["objective"]["before"], r["objective"]
    assert r["heldout_embeddings"]["after"]["cosine"] > r["heldout_embeddings"]["before"]["cosine"]
    assert r["params_after"]["t5"] < r["params_before"]["t5"]
    assert r["keeps_embedder"] == (mode in ("extend", "lora"))
    # the replace modes drop the denoiser's context embedder; the others keep it
    dropped = r["params_before"]["denoiser"] - r["params_after"]["denoiser"]
    assert (dropped > 0) == (mode in ("replace", "trainable"))
    assert set(r["denoiser_velocity"]["after"]) >= {"relative_error", "cosine", "relative_error_per_stage"}


@pytest.mark.slow  # minutes on 2 cores: runs in `make bench`
def test_the_undistilled_student_is_scored_beside_the_distilled_one(tmp_path) -> None:
    train = ("    mode: trainable\n    minibench: 8\n"
             "    train: {steps: 4, batch_size: 12, lr: 3.0e-3, warmup_steps: 1}\n")
    outcome = apply_recipe(load_recipe(_recipe(tmp_path, _prompt_file(tmp_path), train, "b")))
    r = _report(outcome)
    assert list(r["baselines"]) == ["distilled", "the same student, undistilled"]
    assert r["baselines"]["distilled"]["minibench"] == r["minibench"]["after"]
    assert r["baselines"]["the same student, undistilled"]["minibench"]["prompts"] == 8
    text = (outcome.output / "report.md").read_text()
    assert "naive baselines (trainable mode, before its 4 training steps)" in text


def test_baselines_off_scores_only_before_and_after(tmp_path) -> None:
    """`baselines: false` (the demo, for time) skips the undistilled student's MiniBench run."""
    train = ("    mode: trainable\n    minibench: 4\n    baselines: false\n"
             "    train: {steps: 1, batch_size: 12, lr: 3.0e-3, warmup_steps: 0}\n")
    outcome = apply_recipe(load_recipe(_recipe(tmp_path, _prompt_file(tmp_path), train, "c")))
    r = _report(outcome)
    assert "baselines" not in r and set(r["minibench"]) == {"before", "after", "difference"}
    assert "naive baselines" not in (outcome.output / "report.md").read_text()


def test_the_negative_prompt_is_distilled_beside_the_captions(runs) -> None:
    """CFG's unconditional branch encodes the empty prompt at every guided step: it trains about once per batch,
    and the report says how close the student gets to it."""
    neg = runs["trainable"]["report"]["negative_prompt"]
    assert neg["prompt"] == "" and neg["copies"] == 3
    assert neg["after"]["relative_error"] < neg["before"]["relative_error"]


def test_trainable_params_by_mode(runs) -> None:
    t = {m: runs[m]["report"]["trainable_params"] for m in ("replace", "lora", "trainable")}
    assert t["lora"] < t["trainable"] and t["replace"] < t["trainable"]


def test_teacher_targets_are_cached_and_hit_on_the_second_epoch(runs) -> None:
    cache = runs["replace"]["report"]["teacher_cache"]
    # 36 captions + 3 copies of the negative prompt (one per batch of 12) + 4 held out, in chunks of 8
    assert cache["precompute"]["computed"] == cache["precompute"]["chunks"] == 6
    epochs = {e["epoch"]: e for e in cache["per_epoch"]}
    assert epochs[1]["hits"] > 0 and epochs[1]["misses"] == 0
    # a second recipe on the same teacher (another mode) computes nothing: every chunk is read from disk
    assert runs["extend"]["report"]["teacher_cache"]["precompute"]["computed"] == 0


def test_substituted_pipeline_saves_reloads_and_generates(runs) -> None:
    for mode in ("replace", "lora"):
        ir = FAMILY.load(str(runs[mode]["output"]))
        assert type(ir["t5"].module).__name__ == "DistilT5"
        assert hasattr(ir["denoiser"].module, "context_embedder") == (mode == "lora")
        assert not any("lora_" in k for k in ir["t5"].module.state_dict())  # merged into the weights
        ir.verify()
        video = FAMILY.pipeline(ir).generate(["a red circle moving left slowly on a grey background"], seed=0)
        assert tuple(video.shape) == (1, 3, 9, 64, 64)


def _ctx(tmp: Path, source: str) -> PassContext:
    return PassContext(work_dir=tmp / "work", data=PromptSets({"distillation": PromptSet(source=source)}))


def _bad_student(override: dict):
    """A user's replacement for T5 (registered by name): DistilT5 built with one option forced to a wrong value."""

    def build(ir, options):
        from neocompress.models.pyramid_flow.replacements import build_distil_t5

        return build_distil_t5(ir, {**options, **override})

    return build


register_replacement("test_short_t5", "t5")(_bad_student({"max_length": 7}))
register_replacement("test_narrow_t5", "t5")(_bad_student({"adapter": {"out_dim": 5}}))


@pytest.mark.parametrize(("name", "words"), [("test_short_t5", "dim 1 is 7"), ("test_narrow_t5", "dim 2 is 5")])
def test_interface_check_refuses_wrong_width_or_token_count_before_training(tmp_path, monkeypatch, name,
                                                                             words) -> None:  # fmt: skip
    ir = FAMILY.load("builtin:tiny")
    monkeypatch.setattr("neocompress.distill.text_run.train", lambda *a, **k: pytest.fail("trained"))
    p = EncoderSubstitution(EncoderSubstitutionConfig(heldout=2, probe_steps=[1, 1, 1], student={"replacement": name}))
    with pytest.raises(VerificationError, match=words):
        p.run(ir, _ctx(tmp_path, str(_prompt_file(tmp_path, 12))))
    assert hasattr(ir["denoiser"].module, "context_embedder")  # the pipeline is left as it came
    assert type(ir["t5"].module).__name__ == "T5EncoderModel"


@pytest.mark.parametrize("content", [None, "", "# only a comment\n\n"])
def test_missing_or_empty_prompt_file_fails_before_training(tmp_path, monkeypatch, content) -> None:
    path = tmp_path / "prompts.txt"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr("neocompress.distill.text_run.train", lambda *a, **k: pytest.fail("trained"))
    p = EncoderSubstitution(EncoderSubstitutionConfig(mode="trainable"))
    with pytest.raises(UserInputError, match="prompt"):
        p.run(FAMILY.load("builtin:tiny"), _ctx(tmp_path, str(path)))


def test_too_few_prompts_for_the_heldout_is_refused(tmp_path) -> None:
    p = EncoderSubstitution(EncoderSubstitutionConfig(mode="trainable", heldout=8))
    with pytest.raises(UserInputError, match="holding out 8"):
        p.run(FAMILY.load("builtin:tiny"), _ctx(tmp_path, str(_prompt_file(tmp_path, 5))))


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="all 0"):
        EncoderSubstitutionConfig(loss={"mse": 0, "cos": 0})
    with pytest.raises(ValueError, match="mode lora"):
        EncoderSubstitutionConfig(mode="replace", lora={"r": 4}, student={"random_init": True})


@pytest.mark.parametrize("mode", ["replace", "extend", "lora"])
def test_a_frozen_random_distil_t5_is_refused_naming_student_checkpoint(mode) -> None:
    """Only the adapter (or LoRA) trains in these modes: from a random DistilT5 the text path cannot be good."""
    with pytest.raises(ValueError, match="student.checkpoint"):
        EncoderSubstitutionConfig(mode=mode)
    EncoderSubstitutionConfig(mode=mode, student={"checkpoint": "somewhere/distil-t5"})  # accepted
    EncoderSubstitutionConfig(mode="trainable")  # DistilT5 trains too: nothing to refuse


def test_the_refusal_reaches_the_user_at_recipe_load_with_its_line(tmp_path, capsys) -> None:
    from neocompress.cli.main import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {family: pyramid-flow, source: builtin:tiny}\ndata:\n  prompts:\n"
                      "    distillation: {source: builtin:world, count: 20}\npasses:\n"
                      "  - name: encoder_substitution\n    mode: replace\noutput: out\n")  # fmt: skip
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "student.checkpoint" in err and "r.yaml:6 (passes[0])" in err, err


def test_plan_shows_the_full_size_text_path() -> None:
    """On the full-size skeleton: T5-XXL (4.76B) -> DistilT5 + ContextAdapter (~260M), context embedder gone."""
    from neocompress.core.context import PassContext as Ctx

    ir = FAMILY.skeleton("builtin:pyramid-flow-sd3")
    config = EncoderSubstitutionConfig(student={"checkpoint": "not/there/yet"})  # a plan needs no weights
    result = EncoderSubstitution(config).plan(ir, Ctx.for_planning())
    before, after = result.report["params_before"], result.report["params_after"]
    assert before["t5"] > 4.7e9 and 2.5e8 < after["t5"] < 2.7e8
    assert before["denoiser"] - after["denoiser"] == 4096 * 1536 + 1536
