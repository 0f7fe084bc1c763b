"""The static per-call denoiser graph: equal to the dynamic denoiser at every (stage, history) shape the sampler
uses, traceable by AIMET's model preparer without changing its output, and restoring the backend it switched."""

from __future__ import annotations

import pytest
import torch

from neocompress.lowering.static_denoiser import NPU_MASKED_VALUE, StaticStageDenoiser
from neocompress.models.pyramid_flow.family import PyramidFlowFamily


@pytest.fixture(scope="module")
def sampled_calls():
    """Every distinct clip-shape configuration of one short sampling run, with its inputs and output."""
    family = PyramidFlowFamily()
    ir = family.load("builtin:tiny-random")
    pipe = family.pipeline(ir)
    den = ir["denoiser"].module.eval()
    calls: dict[tuple, tuple] = {}

    def hook(module, args, kwargs, output):
        calls.setdefault(tuple(tuple(c.shape) for c in args[0]), (args, output))

    handle = den.register_forward_hook(hook, with_kwargs=True)
    prompts = ["a red circle moving left", "a blue square"]  # different lengths: the text mask has padding
    pipe.generate(prompts, seed=0, schedule=pipe.schedule_with(first=(1, 1, 1), later=(1, 1, 1)))
    handle.remove()
    return den, calls


def test_matches_the_dynamic_denoiser_at_every_sampled_shape(sampled_calls) -> None:
    den, calls = sampled_calls
    assert len(calls) == 6  # 3 stages x (first frame alone, later frame with history)
    assert any(len(key) > 1 for key in calls)
    for key, (args, output) in calls.items():
        sample, tokens, text_mask, pooled, timestep = args
        assert not bool(text_mask.all())  # padding present: the mask input matters
        graph = StaticStageDenoiser(den, key, tokens.shape[1]).eval()
        with torch.no_grad():
            got = graph(*sample, tokens, graph.attention_mask(text_mask), pooled, timestep)
        graph.restore_backend()
        torch.testing.assert_close(got, output, rtol=1e-4, atol=1e-5)


def test_aimet_prepare_model_traces_it_unchanged(sampled_calls) -> None:
    from aimet_torch.model_preparer import prepare_model

    den, calls = sampled_calls
    key = max(calls, key=len)  # a call with history: two clips
    args, output = calls[key]
    sample, tokens, text_mask, pooled, timestep = args
    graph = StaticStageDenoiser(den, key, tokens.shape[1]).eval()
    inputs = (*sample, tokens, graph.attention_mask(text_mask), pooled, timestep)
    prepared = prepare_model(graph)
    with torch.no_grad():
        torch.testing.assert_close(prepared(*inputs), output, rtol=1e-4, atol=1e-5)
    assert graph.input_names() == ["clip_0", "clip_1", "text_tokens", "attention_mask", "pooled", "timestep"]
    graph.restore_backend()


def test_mask_is_finite_and_the_backend_is_restored(sampled_calls) -> None:
    den, calls = sampled_calls
    key, (args, _) = next(iter(calls.items()))
    graph = StaticStageDenoiser(den, key, args[1].shape[1])
    assert den.transformer_blocks[0].attn.backend == "matmul"
    text_mask = torch.ones(key[0][0], args[1].shape[1], dtype=torch.long)
    text_mask[:, -2:] = 0  # padding: those keys are masked for every query
    mask = graph.example_inputs(text_mask)[-3]
    assert mask.shape == (key[0][0], 1, graph.sequence_length, graph.sequence_length)
    assert torch.isfinite(mask).all() and float(mask.min()) == NPU_MASKED_VALUE
    graph.restore_backend()
    assert den.transformer_blocks[0].attn.backend == "sdpa" and den.masked_value is None
