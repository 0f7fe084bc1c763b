"""The analytic denoiser FLOPs formula against torch's FLOP counter, per call and per generated video."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from neocompress.analysis.flops import DenoiserShape, call_flops, unit_stage_tokens, video_flops
from neocompress.models.family import get_family
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.sampling import pyramidal_sample
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler, StepSchedule
from neocompress.passes.remove_blocks import RemoveBlocks, RemoveBlocksConfig

FAMILY = get_family("pyramid-flow")
TEXT = 32  # text tokens per call
HISTORIES = [  # latent (h, w) of every clip in the call, history oldest first, current clip last
    [(8, 8)],
    [(2, 2), (2, 2), (4, 4), (8, 8)],
    [(2, 4), (4, 8), (8, 16)],
]


def _denoiser(prune: list[int] | None = None, **changes) -> PyramidFlowMMDiT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        den = PyramidFlowMMDiT(DenoiserConfig.tiny().replace(**changes)).eval()
    if prune:
        ir = FAMILY.skeleton("builtin:tiny-random")
        ir["denoiser"].module = den
        RemoveBlocks(RemoveBlocksConfig(indices=prune)).run(ir, None)
    return den


def _call_args(den: PyramidFlowMMDiT, clips: list[tuple[int, int]], batch: int = 1):
    g = torch.Generator().manual_seed(0)
    cfg = den.config
    text_dim = cfg.joint_attention_dim if cfg.use_context_embedder else cfg.inner_dim
    return (
        [torch.randn(batch, 16, 1, h, w, generator=g) for h, w in clips],
        torch.randn(batch, TEXT, text_dim, generator=g),
        torch.ones(batch, TEXT, dtype=torch.long),
        torch.randn(batch, cfg.pooled_projection_dim, generator=g),
        torch.full((batch,), 500.0),
    )


def _measure(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def _tokens(clips: list[tuple[int, int]], patch: int = 2) -> tuple[int, int]:
    per = [(h // patch) * (w // patch) for h, w in clips]
    return sum(per), per[-1]


MODELS = {  # (denoiser, histories to count): the cheap variants are counted at one resolution
    "full": (dict(), HISTORIES),
    "pruned-converted": (dict(prune=[1, 5]), HISTORIES),  # block 4 becomes the context_pre_only last block
    "pruned-middle": (dict(prune=[0, 2, 3]), HISTORIES[1:2]),
    "no-context-embedder": (dict(use_context_embedder=False), HISTORIES[2:]),
}


@pytest.mark.parametrize("model", MODELS)
def test_call_flops_match_the_flop_counter(model: str) -> None:
    changes, histories = MODELS[model]
    den = _denoiser(**changes)
    shape = DenoiserShape.of(den)
    blocks = list(den.transformer_blocks)
    assert shape.full_blocks + shape.pre_only_blocks == len(blocks)
    assert shape.pre_only_blocks == 1 and blocks[-1].context_pre_only
    assert shape.joint_dim == (None if model == "no-context-embedder" else 64)
    # torch's counter does not see CPU SDPA kernels; the matmul backend runs the same maths as explicit bmm's
    den.set_attention_backend("matmul")
    for clips in histories:
        n, cur = _tokens(clips)
        measured = _measure(lambda clips=clips: den(*_call_args(den, clips)))
        assert call_flops(shape, n, cur, TEXT) == measured, clips  # exact: only matrix products are counted
    # and the attention term alone is what SDPA hides from the counter: 4 (N + L)^2 D per block
    den.set_attention_backend("sdpa")
    clips = histories[-1]
    n, cur = _tokens(clips)
    sdpa_measured = _measure(lambda: den(*_call_args(den, clips)))
    attention = len(blocks) * 4 * (n + TEXT) ** 2 * shape.width
    assert call_flops(shape, n, cur, TEXT) - sdpa_measured == attention


def test_pruning_removes_exactly_the_block_flops() -> None:
    full, pruned = DenoiserShape.of(_denoiser()), DenoiserShape.of(_denoiser(prune=[5]))
    assert (full.full_blocks, full.pre_only_blocks) == (5, 1)
    assert (pruned.full_blocks, pruned.pre_only_blocks) == (4, 1)
    n, cur, L, D, F = 84, 64, TEXT, 32, 128
    s = n + L
    full_block = 2 * 2 * D * 6 * D + 2 * s * D * 3 * D + 4 * s * s * D + 2 * s * D * D + 4 * s * D * F
    assert call_flops(full, n, cur, L) - call_flops(pruned, n, cur, L) == full_block


def _sample_flops(den: PyramidFlowMMDiT, schedule: StepSchedule, units: int, size: int) -> int:
    """FLOPs the denoiser really spends generating one video with the pyramidal sampler (CFG batches 2)."""
    args = _call_args(den, [(size, size)], batch=2)
    text, mask, pooled = args[1], args[2], args[3]

    def velocity(sample, timestep, guidance):
        if StepSchedule.uses_cfg(guidance):
            both = [torch.cat([x, x]) for x in sample]
            v_u, v_c = den(both, text, mask, pooled, torch.cat([timestep, timestep])).chunk(2)
            return v_u + guidance * (v_c - v_u)
        return den(sample, text[:1], mask[:1], pooled[:1], timestep)

    def run():
        pyramidal_sample(
            velocity,
            batch=1,
            channels=16,
            height=size,
            width=size,
            num_units=units,
            schedule=schedule,
            scheduler=PyramidFlowScheduler(),
            generator=torch.Generator().manual_seed(0),
        )

    return _measure(run)


def test_video_flops_one_step_per_stage_without_cfg() -> None:
    den = _denoiser(prune=[2, 5])
    den.set_attention_backend("matmul")
    shape = DenoiserShape.of(den)
    schedule = StepSchedule.distilled_1_1_1()
    # 8x8 latents: 1, 4 and 16 tokens per frame at stages 0, 1, 2. History (image tokens incl. current clip):
    # unit 0 none; unit 1 the previous frame at the current stage; unit 2 the older one a stage lower (min 0).
    expected_tokens = {0: [1, 4, 16], 1: [2, 8, 32], 2: [3, 9, 36]}
    for unit, per_stage in expected_tokens.items():
        for stage, n in enumerate(per_stage):
            assert unit_stage_tokens(unit, stage, 8, 8, 2) == (n, [1, 4, 16][stage])
    result = video_flops(shape, schedule, num_units=3, latent_h=8, latent_w=8, text_tokens=TEXT)
    per_stage = [
        sum(call_flops(shape, expected_tokens[u][st], [1, 4, 16][st], TEXT) for u in range(3)) for st in range(3)
    ]
    assert result.per_stage == per_stage
    assert result.total == sum(per_stage)
    assert (result.calls, result.nfe) == (9, 9)
    assert result.total == _sample_flops(den, schedule, units=3, size=8)


def test_video_flops_with_cfg_on_the_first_unit_only() -> None:
    den = _denoiser()
    den.set_attention_backend("matmul")
    schedule = StepSchedule((2, 1, 1), (1, 1, 1), guidance_first=4.0, guidance_later=1.0)
    result = video_flops(DenoiserShape.of(den), schedule, num_units=2, latent_h=8, latent_w=8, text_tokens=TEXT)
    assert (result.calls, result.nfe) == (7, 11)
    assert result.total == _sample_flops(den, schedule, units=2, size=8)


def test_default_schedule_for_seven_units() -> None:
    schedule = StepSchedule.pyramid_flow()
    assert schedule.calls(7) == 240 and schedule.nfe(7) == 480
    shape = DenoiserShape.of(FAMILY.skeleton("builtin:pyramid-flow-sd3")["denoiser"].module)
    assert (shape.width, shape.ff_width, shape.full_blocks, shape.pre_only_blocks) == (1536, 6144, 23, 1)
    result = video_flops(shape, schedule, num_units=7, latent_h=40, latent_w=64, text_tokens=128)
    assert (result.calls, result.nfe) == (240, 480)
    assert sum(result.per_stage) == result.total
    # unit 0: 20 steps per stage with CFG (x2); every later unit 10 steps per stage with CFG (x2)
    stage2 = 2 * 20 * call_flops(shape, 640, 640, 128) + sum(
        2 * 10 * call_flops(shape, *unit_stage_tokens(u, 2, 40, 64, 2), 128) for u in range(1, 7)
    )
    assert result.per_stage[2] == stage2


def test_component_flops_of_the_denoiser_use_the_formula() -> None:
    ir = FAMILY.load("builtin:tiny-random")
    video = FAMILY.video_setting(ir)
    spec = ir.meta["spec"]
    expected = video_flops(
        DenoiserShape.of(ir["denoiser"].module),
        ir["scheduler"].extras["schedule"],
        num_units=video["units"],
        latent_h=video["height"] // 8,
        latent_w=video["width"] // 8,
        text_tokens=spec.text.t5_max_length,
    ).total
    assert FAMILY.component_flops(ir, "denoiser", video) == expected
    before = expected
    RemoveBlocks(RemoveBlocksConfig(indices=[1, 5])).run(ir, None)
    assert 0 < FAMILY.component_flops(ir, "denoiser", video) < before
