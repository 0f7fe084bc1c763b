"""Component substitution: registered replacements are built from the pipeline's own spec, a replacement of the
wrong width, token count, latent size or kind is refused before anything trains, and a good one takes the node's
place with its provenance recorded and the old component held as the teacher until released."""

from __future__ import annotations

import pytest
import torch

from neocompress.core.errors import UserInputError, VerificationError
from neocompress.ir.substitution import get_replacement, register_replacement, substitute, substitution_problems
from neocompress.models.pyramid_flow.family import PyramidFlowFamily

SMALL_T5 = {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_heads": 2, "d_kv": 16}
SMALL_TAEHV = {"widths": [16, 8, 8, 8]}


@pytest.fixture
def ir():
    return PyramidFlowFamily().load("builtin:tiny-random")


def test_the_builtin_replacements_are_registered_and_unknown_ones_named() -> None:
    assert get_replacement("distil_t5").replaces == "t5" and get_replacement("taehv").replaces == "vae_decoder"
    with pytest.raises(UserInputError, match="unknown replacement 'tiny_t5'; registered: distil_t5, taehv"):
        get_replacement("tiny_t5")
    with pytest.raises(ValueError, match="already registered"):
        register_replacement("taehv", "vae_decoder")(lambda ir, options: None)


def test_a_good_replacement_takes_the_place_and_keeps_the_teacher(ir) -> None:
    teacher_module = ir["t5"].module
    new = get_replacement("distil_t5").build(ir, {"encoder": SMALL_T5})
    assert substitution_problems(ir, "t5", new) == []
    swap = substitute(ir, "t5", new, by_pass="encoder_substitution")
    ir.verify()
    assert ir["t5"] is new and swap.teacher.module is teacher_module and swap.student is new
    assert ir["t5"].provenance[-1].to_dict() == {"pass": "encoder_substitution", "action": "replaced",
                                                 "detail": "replaced T5EncoderModel"}  # fmt: skip
    assert new.extras["tokenizer"] is swap.teacher.extras["tokenizer"]  # DistilT5 shares T5's vocabulary
    tokens = new.extras["tokenizer"](["a red circle"], padding="max_length", max_length=32, return_tensors="pt")
    out = new.module(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
    assert out.shape == (1, 32, 64)  # the teacher's token count and width
    swap.release()
    assert swap.teacher is None


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("distil_t5", {"encoder": SMALL_T5, "width": 48}, "dim 2 is 48, expected 64"),
        ("distil_t5", {"encoder": SMALL_T5, "max_length": 16}, "dim 1 is 16, expected 32"),
        ("taehv", {**SMALL_TAEHV, "latent_channels": 8}, "dim 1 is 16, expected 8"),
    ],
)
def test_a_replacement_that_breaks_an_edge_is_refused_before_training(ir, name, options, problem) -> None:
    new = get_replacement(name).build(ir, options)
    target = get_replacement(name).replaces
    assert any(problem in p for p in substitution_problems(ir, target, new))
    before = ir[target]
    with pytest.raises(VerificationError, match=problem):
        substitute(ir, target, new, by_pass="p")
    assert ir[target] is before  # nothing changed


def test_a_replacement_of_another_kind_is_refused(ir) -> None:
    decoder = get_replacement("taehv").build(ir, SMALL_TAEHV)
    assert substitution_problems(ir, "taehv_missing", decoder) == ["the pipeline has no component 'taehv_missing'"]
    decoder.name = "t5"
    assert "'t5' is a text_encoder, the replacement a vae_decoder" in substitution_problems(ir, "t5", decoder)


def test_the_taehv_replacement_decodes_the_pipelines_latents(ir) -> None:
    new = get_replacement("taehv").build(ir, SMALL_TAEHV)
    substitute(ir, "vae_decoder", new, by_pass="decoder_swap")
    ir.verify()
    with torch.no_grad():
        video = ir["vae_decoder"].module.decode(torch.randn(1, 16, 2, 4, 4))
    assert video.shape == (1, 3, 9, 32, 32)
