"""encoder_substitution's denoiser-output term: the teacher's calls are replayed row for row (T5 itself scores 0,
anything else more), gradients reach the student and not the frozen denoiser, and the pass trains with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from neocompress.core.apply_run import apply_recipe
from neocompress.data.prompts import world_captions
from neocompress.distill.text_targets import t5_tokens
from neocompress.distill.text_velocity import FrozenDenoiser, capture_training_calls, velocity_term
from neocompress.models.family import get_family
from neocompress.passes.encoder_substitution import EncoderSubstitutionConfig
from neocompress.recipe import load_recipe


class Nudged(nn.Module):
    """T5 with a learnable offset on its states: zero offset is T5 itself."""

    def __init__(self, t5: nn.Module, width: int):
        super().__init__()
        self.t5 = t5
        self.offset = nn.Parameter(torch.zeros(width))

    def forward(self, input_ids, attention_mask):
        out = self.t5(input_ids=input_ids, attention_mask=attention_mask)
        out.last_hidden_state = out.last_hidden_state + self.offset
        return out


@pytest.fixture(scope="module")
def setting():
    ir = get_family("pyramid-flow").load("builtin:tiny", seed=0)
    prompts = world_captions()[:12]
    t5 = ir["t5"]
    ids, mask = t5_tokens(t5.extras["tokenizer"], prompts, int(t5.outputs["tokens"].shape[1]))
    calls = capture_training_calls(ir, prompts, list(range(2, 12)), [1, 1, 1], seed=0, chunk=4)
    return ir, ids, mask, calls, Nudged(t5.module, int(t5.outputs["tokens"].shape[-1]))


def test_calls_cover_the_chosen_prompts_in_chunks(setting) -> None:
    _, _, _, calls, _ = setting
    rows = {tuple(r) for r, _ in calls.records}
    assert rows == {(2, 3, 4, 5), (6, 7, 8, 9), (10, 11)}
    # 1 step per stage, 3 stages, 2 units (9 frames): 6 calls per chunk
    assert len(calls) == 6 * 3


def test_t5_itself_scores_zero_and_an_offset_does_not(setting) -> None:
    ir, ids, mask, calls, student = setting
    den = ir["denoiser"].module
    with torch.no_grad():
        for seed in range(6):  # calls of every stage, rows in shuffled order
            g = torch.Generator().manual_seed(seed)
            assert float(velocity_term(den, student, ids, mask, calls, rows=3, g=g)) < 1e-8
        student.offset.fill_(0.3)
        g = torch.Generator().manual_seed(0)
        assert float(velocity_term(den, student, ids, mask, calls, rows=3, g=g)) > 1e-3
        student.offset.zero_()


def test_the_gradient_reaches_the_student_and_not_the_frozen_denoiser(setting) -> None:
    ir, ids, mask, calls, student = setting
    den = ir["denoiser"].module
    flags = [p.requires_grad for p in den.parameters()]
    with torch.no_grad():
        student.offset.fill_(0.2)
    with FrozenDenoiser(den):
        term = velocity_term(den, student, ids, mask, calls, rows=4, g=torch.Generator().manual_seed(1))
        term.backward()
    assert student.offset.grad is not None and float(student.offset.grad.abs().sum()) > 0
    assert all(p.grad is None for p in den.parameters())
    assert [p.requires_grad for p in den.parameters()] == flags  # restored
    with torch.no_grad():
        student.offset.zero_()


def test_the_pass_trains_with_the_term_and_reports_it(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(world_captions()[:40]) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model:\n  source: builtin:tiny\n"
        f"data:\n  prompts:\n    distillation: {{source: {prompts}}}\n"
        "passes:\n  - name: encoder_substitution\n    mode: trainable\n"
        "    student: {encoder: {d_model: 32, d_kv: 16, d_ff: 64, num_layers: 2, num_heads: 2}}\n"
        "    heldout: 4\n    teacher_batch: 8\n    probe_steps: [1, 1, 1]\n"
        "    train: {steps: 12, batch_size: 12, lr: 3.0e-3, warmup_steps: 2}\n"
        "    loss: {velocity: 1.0}\n    velocity: {prompts: 8, steps: [1, 1, 1], rows: 4, every: 2}\n"
        f"output: {tmp_path / 'out'}\n"
    )
    outcome = apply_recipe(load_recipe(recipe), cache_dir=tmp_path / "cache")
    report = json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]
    assert report["velocity_term"] == {"weight": 1.0, "prompts": 8, "calls": 6, "rows_per_step": 4, "every": 2}
    measured = [h["velocity"] for h in report["history"] if h["velocity"] == h["velocity"]]  # NaN: not computed
    assert measured and all(v > 0 for v in measured)


def test_a_loss_with_every_weight_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="mse, cos and velocity are all 0"):
        EncoderSubstitutionConfig(mode="trainable", loss={"mse": 0, "cos": 0})
    EncoderSubstitutionConfig(mode="trainable", loss={"mse": 0, "cos": 0, "velocity": 1.0})  # the term alone
