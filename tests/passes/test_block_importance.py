"""Block importance: blocks built to be near-identity rank least important, streams and stages are kept apart,
padding and the context_pre_only text output are left out, and the hooks are gone afterwards."""

from __future__ import annotations

import math

import pytest
import torch

from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.models.family import get_family
from neocompress.models.pyramid_flow.scheduler import StepSchedule
from neocompress.prune.calibrate import cached_importance, importance_key, measure_importance
from neocompress.prune.importance import BlockImportance, ImportanceMeter

FAMILY = get_family("pyramid-flow")
FAST = StepSchedule((2, 2, 2), (1, 1, 1), 4.0, 2.0)
PROMPTS = ["a red circle moving left slowly on a grey background", "a blue square moving up on a white background"]
IDENTITY_LIKE = (2, 4)


def _tiny_with_identity_blocks(scale: float = 1e-3) -> PipelineIR:
    """builtin:tiny-random with blocks 2 and 4 made near-identity: their adaLN-Zero gates are ~0, so both
    streams pass through almost unchanged (what a redundant block looks like)."""
    ir = FAMILY.load("builtin:tiny-random")
    blocks = ir["denoiser"].module.transformer_blocks
    with torch.no_grad():
        for i in IDENTITY_LIKE:
            for norm in (blocks[i].norm1, blocks[i].norm1_context):
                norm.linear.weight.mul_(scale)
                norm.linear.bias.mul_(scale)
    return ir


def _measure(ir: PipelineIR, samples: int = 1) -> BlockImportance:
    pipe = FAMILY.pipeline(ir)
    return measure_importance(
        ir, pipe, component="denoiser", prompts=PROMPTS, samples=samples, batch=2, seed=0, schedule=FAST
    )


@pytest.fixture(scope="module")
def measured() -> tuple[PipelineIR, BlockImportance]:
    ir = _tiny_with_identity_blocks()
    return ir, _measure(ir)


def test_near_identity_blocks_rank_least_important(measured) -> None:
    _, imp = measured
    visual = imp.score("visual")
    # as a set: the two near-identity blocks score ~1e-6 apart, and which of them is lower is float noise
    assert set(sorted(range(imp.num_blocks), key=visual.__getitem__)[:2]) == set(IDENTITY_LIKE)
    others = [v for i, v in enumerate(visual) if i not in IDENTITY_LIKE]
    assert max(visual[i] for i in IDENTITY_LIKE) < 0.01 * min(others)
    text = imp.score("text")
    ranked_text = sorted((i for i in range(imp.num_blocks) if not math.isnan(text[i])), key=text.__getitem__)
    assert set(ranked_text[:2]) == set(IDENTITY_LIKE)


def test_every_stage_and_stream_is_measured_and_context_pre_only_text_is_undefined(measured) -> None:
    ir, imp = measured
    assert imp.streams == ("visual", "text") and imp.stages == 3
    last = imp.num_blocks - 1
    assert ir["denoiser"].module.transformer_blocks[last].context_pre_only
    assert math.isnan(imp.score("text")[last]) and not math.isnan(imp.score("visual")[last])
    for b in range(imp.num_blocks):
        assert all(c > 0 for c in imp.counts[b][0]), "every stage must see visual tokens"
    # stage 0 runs at 1/4 resolution: fewer visual tokens per call than the last stage, with as many calls
    assert imp.counts[0][0][0] < imp.counts[0][0][2]
    # the combined ranking judges the context_pre_only block by the visual stream alone
    combined = imp.combined({"visual": 1.0, "text": 1.0})
    assert combined[last] == pytest.approx(imp.score("visual")[last])


def test_padded_text_tokens_do_not_count(measured) -> None:
    ir, imp = measured
    pipe = FAMILY.pipeline(ir)
    encoded = pipe.text.encode(PROMPTS)
    assert encoded.mask.shape[1] > int(encoded.mask.sum(1).max()), "the prompts must be padded for this test"
    units = pipe.resolve_video(None, None, None)["units"]
    calls = sum(sum(FAST.steps_for(u)) for u in range(units))  # both prompts go in one batch
    # CFG batches [uncond, cond]: the empty prompt contributes its own real tokens, padding none
    per_call = int(encoded.mask.sum()) + len(PROMPTS) * int(pipe.text.encode([""]).mask.sum())
    assert sum(imp.counts[0][1]) == calls * per_call


def test_hooks_are_removed_after_measuring_even_on_failure(measured) -> None:
    ir, _ = measured
    blocks = ir["denoiser"].module.transformer_blocks
    assert all(not b._forward_hooks for b in blocks)
    adapter = ir["denoiser"].extras["block_adapter"]
    with pytest.raises(RuntimeError, match="boom"), ImportanceMeter(blocks, adapter, 3) as meter:
        assert meter.attached == len(blocks)
        raise RuntimeError("boom")
    assert meter.attached == 0 and all(not b._forward_hooks for b in blocks)


def test_memory_does_not_grow_with_samples(measured) -> None:
    """Running sums: the result holds one number per (block, stream, stage) however much was sampled."""
    ir, one = measured
    two = _measure(ir, samples=2)
    assert len(two.sums) == len(one.sums) and len(two.sums[0][0]) == 3
    assert two.counts[0][0][2] == 2 * one.counts[0][0][2]


def test_importance_round_trips_and_caches(tmp_path, measured) -> None:
    ir, imp = measured
    again = BlockImportance.from_dict(imp.to_dict())
    assert again.score("visual") == imp.score("visual")
    key = importance_key(ir, "denoiser", {"prompts": PROMPTS})
    calls = []

    def compute() -> BlockImportance:
        calls.append(1)
        return imp

    first, hit1 = cached_importance(tmp_path, key, compute)
    second, hit2 = cached_importance(tmp_path, key, compute)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert second.score("visual") == first.score("visual")
    other = FAMILY.load("builtin:tiny-random")
    assert importance_key(other, "denoiser", {"prompts": PROMPTS}) != key, "other weights, other key"
    assert importance_key(ir, "denoiser", {"prompts": PROMPTS[:1]}) != key, "other prompts, other key"


def test_unknown_stream_in_weights_is_an_error(measured) -> None:
    _, imp = measured
    with pytest.raises(ValueError, match="unknown stream"):
        imp.combined({"vision": 1.0})
