"""The static per-stage denoiser graph: one graph per pyramid stage, sized for the longest history, equals the
dynamic denoiser on every call the sampler makes (shorter histories padded at the front contribute nothing),
traces through AIMET's model preparer unchanged, keeps a finite mask, and restores the backend it switched."""

from __future__ import annotations

import pytest
import torch

from neocompress.lowering.static_denoiser import NPU_MASKED_VALUE, StaticStageDenoiser, stage_slot_shapes
from neocompress.models.pyramid_flow.family import PyramidFlowFamily


@pytest.fixture(scope="module")
def sampled_calls():
    """Every sampler call of one short 17-frame run (3 latent frames: histories of 0, 1 and 2 clips)."""
    family = PyramidFlowFamily()
    ir = family.load("builtin:tiny-random")
    pipe = family.pipeline(ir)
    den = ir["denoiser"].module.eval()
    calls: list[tuple] = []

    def hook(module, args, kwargs, output):
        calls.append((args, output))

    handle = den.register_forward_hook(hook, with_kwargs=True)
    prompts = ["a red circle moving left", "a blue square"]  # different lengths: the text mask has padding
    pipe.generate(prompts, seed=0, frames=17, schedule=pipe.schedule_with(first=(1, 1, 1), later=(1, 1, 1)))
    handle.remove()
    return pipe, den, calls


def _stage_graph(pipe, den, stage: int, text_len: int, batch: int = 4) -> StaticStageDenoiser:
    shapes = stage_slot_shapes(pipe.scheduler, stage, 3, 16, 8, 8, batch)
    return StaticStageDenoiser(den, shapes, text_len).eval()


def test_one_padded_graph_per_stage_matches_every_call(sampled_calls) -> None:
    pipe, den, calls = sampled_calls
    assert len(calls) == 9  # 3 latent frames x 3 stages, one step each
    text_len = calls[0][0][1].shape[1]
    graphs = [_stage_graph(pipe, den, s, text_len) for s in range(3)]
    assert [len(g.clip_shapes) for g in graphs] == [3, 3, 3]  # the last frame's two history clips + the current
    histories = set()
    for args, output in calls:
        sample, tokens, text_mask, pooled, timestep = args
        assert not bool(text_mask.all())  # padding present: the mask input matters
        (graph,) = [g for g in graphs if g.stage_key == tuple(sample[-1].shape[1:])]
        histories.add(len(sample) - 1)
        with torch.no_grad():
            got = graph(*graph.pack(sample, tokens, text_mask, pooled, timestep))
        torch.testing.assert_close(got, output, rtol=1e-4, atol=2e-5)
    assert histories == {0, 1, 2}  # front padding of 2, 1 and 0 slots were all exercised
    graphs[0].restore_backend()


def test_a_history_that_does_not_fit_is_refused(sampled_calls) -> None:
    pipe, den, calls = sampled_calls
    args = next(a for a, _ in calls if len(a[0]) == 3 and a[0][-1].shape[-1] == 8)
    small = _stage_graph(pipe, den, 2, args[1].shape[1])
    short = StaticStageDenoiser(den, small.clip_shapes[1:], args[1].shape[1])  # one history slot only
    assert short.fits(args[0]) is not None
    with pytest.raises(ValueError, match="does not fit"):
        short.pack(*args)
    short.restore_backend()
    small.restore_backend()  # in reverse order: `small` saw the original backend


def test_aimet_prepare_model_traces_it_unchanged(sampled_calls) -> None:
    from aimet_torch.model_preparer import prepare_model

    pipe, den, calls = sampled_calls
    args, output = next(c for c in calls if len(c[0][0]) == 2 and c[0][0][-1].shape[-1] == 8)
    graph = _stage_graph(pipe, den, 2, args[1].shape[1])
    inputs = graph.pack(*args)
    prepared = prepare_model(graph)
    with torch.no_grad():
        torch.testing.assert_close(prepared(*inputs), output, rtol=1e-4, atol=2e-5)
    assert graph.input_names() == ["clip_0", "clip_1", "clip_2", "text_tokens", "attention_mask", "pooled",
                                   "timestep_proj", "rope_cos", "rope_sin"]  # fmt: skip
    graph.restore_backend()


def test_mask_is_finite_and_the_backend_is_restored(sampled_calls) -> None:
    pipe, den, calls = sampled_calls
    text_len = calls[0][0][1].shape[1]
    graph = _stage_graph(pipe, den, 1, text_len, batch=2)
    assert den.transformer_blocks[0].attn.backend == "matmul"
    text_mask = torch.ones(2, text_len, dtype=torch.long)
    text_mask[:, -2:] = 0
    mask = graph.example_inputs(text_mask, history=0)[graph.input_names().index("attention_mask")]
    assert mask.shape == (2, 1, graph.sequence_length, graph.sequence_length)
    assert torch.isfinite(mask).all() and float(mask.min()) == NPU_MASKED_VALUE
    real_start = graph.text_len + graph.history_tokens
    assert (mask[:, :, real_start:, text_len : real_start] == NPU_MASKED_VALUE).all()  # padding is never read
    graph.restore_backend()
    assert den.transformer_blocks[0].attn.backend == "sdpa" and den.masked_value is None
