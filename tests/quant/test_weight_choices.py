"""The quantize pass's weight options on the denoiser's stage graphs: layer patterns, layers kept float (the
adapter's declaration), Sequential MSE pooled over the stages for 4-bit weights (one encoding per weight, the
same in every stage, and closer to float than min/max ranges), and fp16 text encoders."""

from __future__ import annotations

import logging

import pytest
import torch

from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.quant.aimet_sim import matches, unmatched, weight_layers
from neocompress.quant.denoiser_sim import PREFIX, capture_calls, simulate_denoiser
from neocompress.quant.fp16 import Fp16Module, fp16_text_report
from neocompress.quant.precision import precision

PROMPTS = ["a red circle moving left", "a blue square moving up", "a green circle moving down"]


@pytest.fixture(scope="module")
def calls():
    logging.getLogger("aimet").setLevel(logging.WARNING)
    family = PyramidFlowFamily()
    ir = family.load("builtin:tiny")
    pipe = family.pipeline(ir)
    schedule = pipe.schedule_with(first=(2, 2, 2), later=(1, 1, 1))
    return ir, pipe, capture_calls(pipe, PROMPTS, samples=1, seed=0, schedule=schedule, frames=1)


def test_layer_patterns_match_names_parents_and_globs() -> None:
    assert matches("norm_out.linear", ["norm_out"]) and matches("norm_out", ["norm_out"])
    assert not matches("norm_outer.linear", ["norm_out"])
    assert matches("transformer_blocks.3.ff.net.2", ["transformer_blocks.*.ff.net.2"])
    assert unmatched(["norm_out", "nrom_out"], ["norm_out.linear", "proj_out"]) == ["nrom_out"]


@pytest.mark.slow  # minutes on 2 cores: runs in `make bench`
def test_the_adapters_float_layers_lose_their_weight_quantizer_in_every_stage(calls) -> None:
    ir, _, captured = calls
    declared = ir["denoiser"].extras["block_adapter"].never_quantize(ir["denoiser"].module)
    assert declared == ["time_text_embed", "norm_out"]
    graphs = simulate_denoiser(ir["denoiser"].module, captured, precision("w8a16"), "v79", max_calls=4,
                               float_layers=declared)  # fmt: skip
    for g in graphs:
        assert g.float_layers == [
            "time_text_embed.timestep_embedder.linear_1", "time_text_embed.timestep_embedder.linear_2",
            "time_text_embed.text_embedder.linear_1", "time_text_embed.text_embedder.linear_2", "norm_out.linear"]
        layers = weight_layers(g.sim, PREFIX)
        assert all(layers[n].param_quantizers["weight"] is None for n in g.float_layers)
        assert layers["proj_out"].param_quantizers["weight"] is not None
        assert g.sqnr_db > 35  # fmt: skip


class _Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = torch.nn.Linear(32, 96), torch.nn.Linear(96, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.up(x)))


def test_pooled_seq_mse_picks_one_encoding_for_graphs_of_different_token_counts() -> None:
    from neocompress.quant.aimet_sim import new_sim
    from neocompress.quant.precision import sqnr_db
    from neocompress.quant.seq_mse import pooled_seq_mse

    torch.manual_seed(0)
    mlp = _Mlp().eval()
    with torch.no_grad():
        mlp.up.weight[:, 0] *= 8  # an outlier column: min/max ranges waste most of the 16 levels on it
    inputs = [[(torch.randn(1, 8, 32),) for _ in range(3)], [(torch.randn(1, 24, 32),) for _ in range(3)]]

    def sims() -> list:
        return [new_sim(mlp, x[0], precision("w4a16"), "v79", "tf")[1] for x in inputs]

    def sqnr(stage_sims: list) -> float:
        for s, x in zip(stage_sims, inputs, strict=True):
            s.compute_encodings(lambda m, _, x=x: [m(*i) for i in x], None)
        with torch.no_grad():
            ref = torch.cat([mlp(*i).flatten() for x in inputs for i in x])
            got = torch.cat([s.model(*i).flatten() for s, x in zip(stage_sims, inputs, strict=True) for i in x])
        return sqnr_db(ref, got)

    plain, searched = sims(), sims()
    assert pooled_seq_mse(searched, inputs) == ["up", "down"]
    for name in ("up", "down"):
        a, b = (getattr(s.model, name).param_quantizers["weight"] for s in searched)
        torch.testing.assert_close(a.min, b.min, rtol=0, atol=0)
        assert not a.is_overwrite_allowed() and not b.is_overwrite_allowed()
    gain = sqnr(searched) - sqnr(plain)
    assert gain > 1, gain


@pytest.mark.slow
def test_seq_mse_chooses_one_encoding_per_weight_for_all_stages_and_beats_min_max(calls) -> None:
    ir, _, captured = calls
    den = ir["denoiser"].module
    plain = simulate_denoiser(den, captured, precision("w4a16"), "v79", max_calls=2)
    searched = simulate_denoiser(den, captured, precision("w4a16"), "v79", max_calls=2, seq_mse=True)
    layers = [weight_layers(g.sim, PREFIX) for g in searched]
    n = searched[0].seq_mse_layers
    assert n == sum(m.param_quantizers["weight"] is not None for m in layers[0].values()) > 50
    for name in ("transformer_blocks.0.attn.to_q", "proj_out"):
        qs = [by_name[name].param_quantizers["weight"] for by_name in layers]
        assert qs[0].bitwidth == 4
        for q in qs[1:]:  # the stages share their weights: one encoding, frozen in each stage's sim
            torch.testing.assert_close(q.min, qs[0].min, rtol=0, atol=0)
            torch.testing.assert_close(q.max, qs[0].max, rtol=0, atol=0)
            assert not q.is_overwrite_allowed()
    mean = sum(g.sqnr_db for g in searched) / 3
    baseline = sum(g.sqnr_db for g in plain) / 3
    assert mean > baseline, ([g.sqnr_db for g in searched], [g.sqnr_db for g in plain])  # measured 17.8 vs 16.1


def test_fp16_text_encoders_run_in_half_and_answer_in_float(calls) -> None:
    _, pipe, _ = calls
    t5 = pipe.text.t5
    half = Fp16Module(t5)
    assert next(half.half_module.parameters()).dtype == torch.float16
    assert next(t5.parameters()).dtype == torch.float32  # the component keeps its fp32 weights
    tokens = pipe.text.tokenize(PROMPTS[:1])
    with torch.no_grad():
        out = half(input_ids=tokens.t5_ids, attention_mask=tokens.t5_mask).last_hidden_state
    assert out.dtype == torch.float32
    halves = {"clip_l": Fp16Module(pipe.text.clip_l), "clip_g": Fp16Module(pipe.text.clip_g), "t5": half}
    sqnr = fp16_text_report(pipe.text, PROMPTS, halves)
    assert set(sqnr) == {"clip_l", "clip_g", "t5"} and all(45 < v < 100 for v in sqnr.values()), sqnr
