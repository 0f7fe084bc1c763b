"""AIMET simulation of the denoiser, one graph per call shape calibrated on its own captured calls: each graph is
close to float at W8A16 and further at W8A8, the float model is untouched, the simulated pipeline follows the
float one, encodings round-trip through files, and bad precisions or Hexagon versions are named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from neocompress.core.errors import UserInputError
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.quant.denoiser_sim import (
    CapturedCalls,
    SimulatedDenoiser,
    capture_calls,
    load_simulated,
    save_encodings,
    simulate_denoiser,
)
from neocompress.quant.precision import htp_config, precision, sqnr_db

PROMPTS = ["a red circle moving left", "a blue square moving up quickly on a white background"]


@pytest.fixture(scope="module")
def setup():
    logging.getLogger("aimet").setLevel(logging.WARNING)
    family = PyramidFlowFamily()
    ir = family.load("builtin:tiny-random")
    pipe = family.pipeline(ir)
    schedule = pipe.schedule_with(first=(2, 2, 2), later=(1, 1, 1))
    captured = capture_calls(pipe, PROMPTS, samples=1, seed=0, schedule=schedule, frames=1)
    den = ir["denoiser"].module.eval()
    probe = [torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(0))]
    text = pipe.text.encode(["probe"])
    with torch.no_grad():
        before = den(probe, text.tokens, text.mask, text.pooled, torch.tensor([300.0]))
    graphs = simulate_denoiser(den, captured, precision("w8a16"), "v79")
    with torch.no_grad():
        after = den(probe, text.tokens, text.mask, text.pooled, torch.tensor([300.0]))
    return pipe, schedule, captured, graphs, (before, after)


def test_one_graph_per_stage_each_close_to_float(setup) -> None:
    _, _, captured, graphs, _ = setup
    assert sorted(g.stage for g in graphs) == [0, 1, 2]  # one frame: no history, one shape per pyramid stage
    assert all(g.calls == len(captured.calls[g.key]) for g in graphs)
    for g in graphs:
        assert g.sqnr_db > 35, g.describe()  # measured ~47 dB on this model


def test_the_float_denoiser_is_untouched(setup) -> None:
    before, after = setup[4]
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_the_simulated_pipeline_follows_the_float_one(setup) -> None:
    pipe, schedule, _, graphs, _ = setup
    float_latents = pipe.sample_latents(PROMPTS[:1], seed=7, schedule=schedule, frames=1)
    float_den = pipe.denoiser
    pipe.denoiser = SimulatedDenoiser(float_den, graphs)
    try:
        quant_latents = pipe.sample_latents(PROMPTS[:1], seed=7, schedule=schedule, frames=1)
        with pytest.raises(UserInputError, match="calibrated for shorter histories"):
            pipe.sample_latents(PROMPTS[:1], seed=7, schedule=schedule, frames=9)  # a history never calibrated
    finally:
        pipe.denoiser = float_den
    assert 20 < sqnr_db(float_latents, quant_latents) < 80


def test_fewer_activation_bits_cost_sqnr(setup) -> None:
    _, _, captured, graphs, _ = setup
    den = setup[0].denoiser
    key = next(g.key for g in graphs if g.stage == 2)
    one = CapturedCalls({key: captured.calls[key]}, {key: 2})
    (w8a8,) = simulate_denoiser(den, one, precision("w8a8"), "v73")
    w8a16 = next(g for g in graphs if g.key == key)
    assert w8a8.sqnr_db < w8a16.sqnr_db - 10, (w8a8.sqnr_db, w8a16.sqnr_db)


def test_encodings_round_trip_through_files(setup, tmp_path: Path) -> None:
    pipe, _, _, graphs, _ = setup
    save_encodings(graphs[:1], tmp_path, {"precision": "w8a16", "htp": "v79", "scheme": "tf"})
    (loaded,), settings = load_simulated(pipe.denoiser, tmp_path)
    assert settings["htp"] == "v79" and loaded.key == graphs[0].key and loaded.sqnr_db == graphs[0].sqnr_db
    x = graphs[0].graph.example_inputs(seed=3)
    with torch.no_grad():
        original, again = graphs[0].sim.model(*x), loaded.sim.model(*x)
    torch.testing.assert_close(again, original, rtol=0, atol=0)  # the quantizer state itself: lossless


def test_bad_precisions_and_versions_are_named() -> None:
    with pytest.raises(UserInputError, match="unknown precision 'w3a3'"):
        precision("w3a3")
    with pytest.raises(UserInputError, match="unknown Hexagon version 'v99'"):
        htp_config("v99")
    assert htp_config("v73") == "htp_v73"
