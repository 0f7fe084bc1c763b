"""Tests of the Pyramid-Flow MMDiT denoiser: layout, maths of each piece, masks, causality, conversion."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from neocompress.core.errors import CheckpointError
from neocompress.models.pyramid_flow.attention import RMSNorm, additive_mask, build_attention_mask
from neocompress.models.pyramid_flow.blocks import (
    AdaLayerNormContinuous,
    AdaLayerNormZero,
    JointTransformerBlock,
    convert_to_context_pre_only,
)
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.embeddings import (
    PatchEmbed,
    apply_rope,
    crop_positions,
    rope_angles,
    sincos_2d_table,
    timestep_sinusoid,
)

LAYOUTS = Path(__file__).resolve().parents[2] / "data" / "checkpoint_layouts.json"
LAYOUT_KEY = "pyramid_flow_sd3/diffusion_transformer (24 blocks)"


def _perturb_all(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Move every parameter off its default (norm weights of 1, zero biases) so tests see all of them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def _tiny_model(seed: int = 0, **changes: object) -> PyramidFlowMMDiT:
    torch.manual_seed(seed)
    model = PyramidFlowMMDiT(DenoiserConfig.tiny().replace(**changes)).eval()
    _perturb_all(model, seed)
    return model


def _inputs(batch: int = 2, text_len: int = 5, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "encoder_hidden_states": torch.randn(batch, text_len, 64, generator=g),
        "encoder_attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]][:batch]),
        "pooled_projections": torch.randn(batch, 64, generator=g),
        "timestep": torch.tensor([500.0, 900.0][:batch]),
    }


def _clips(batch: int = 2, seed: int = 2) -> list[torch.Tensor]:
    """Two history frames at 1/4 and 1/2 resolution, then a 1-frame current clip at full (8x8) resolution."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 16, 1, s, s, generator=g) for s in (2, 4, 8)]


# ---------------------------------------------------------------------------------------------------------
# Layout and configuration
# ---------------------------------------------------------------------------------------------------------


def test_full_size_meta_model_matches_checkpoint_layout() -> None:
    layout = json.loads(LAYOUTS.read_text())[LAYOUT_KEY]
    start = time.perf_counter()
    with torch.device("meta"):
        model = PyramidFlowMMDiT(DenoiserConfig.pyramid_flow_sd3())
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"meta build took {elapsed:.2f} s"

    state = model.state_dict()
    expected = {e["key"]: tuple(e["shape"]) for e in layout}
    assert set(state) == set(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for entry in layout:
        assert (entry["key"] in params) == (entry["kind"] == "param"), entry["key"]
        assert (entry["key"] in buffers) == (entry["kind"] == "buffer"), entry["key"]
    n_params = sum(math.prod(e["shape"]) for e in layout if e["kind"] == "param")
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert model.num_blocks == 24 and model.blocks is model.transformer_blocks
    assert [b.context_pre_only for b in model.blocks] == [False] * 23 + [True]


def test_neodragon_variant_has_no_context_embedder_and_accepts_inner_width_text() -> None:
    cfg = DenoiserConfig.pyramid_flow_sd3().replace(num_layers=18, use_context_embedder=False)
    with torch.device("meta"):
        model = PyramidFlowMMDiT(cfg)
    keys = model.state_dict().keys()
    assert not any(k.startswith("context_embedder") for k in keys)
    assert "transformer_blocks.17.norm1_context.linear.weight" in keys
    assert model.state_dict()["transformer_blocks.17.norm1_context.linear.weight"].shape == (3072, 1536)
    assert not any(k.startswith("transformer_blocks.18.") for k in keys)

    tiny = _tiny_model(use_context_embedder=False)
    inputs = _inputs()
    inputs["encoder_hidden_states"] = torch.randn(2, 5, 32)
    assert tiny(_clips(), **inputs).shape == (2, 16, 1, 8, 8)
    inputs["encoder_hidden_states"] = torch.randn(2, 5, 64)
    with pytest.raises(ValueError, match="32 wide"):
        tiny(_clips(), **inputs)


def test_config_constructors_and_round_trip() -> None:
    full = DenoiserConfig.pyramid_flow_sd3()
    assert (full.inner_dim, full.ff_inner_dim, full.num_layers, full.pos_embed_max_size) == (
        1536,
        6144,
        24,
        192,
    )
    assert (full.qk_norm_eps, full.norm_eps, full.rope_theta) == (1e-5, 1e-6, 10000.0)
    tiny = DenoiserConfig.tiny()
    assert (tiny.inner_dim, tiny.num_layers, tiny.num_attention_heads, tiny.attention_head_dim) == (
        32,
        6,
        2,
        16,
    )
    assert (tiny.joint_attention_dim, tiny.pooled_projection_dim, tiny.pos_embed_max_size) == (64, 64, 32)
    assert (tiny.sample_size, tiny.in_channels, tiny.out_channels, tiny.patch_size) == (8, 16, 16, 2)
    for cfg in (full, tiny, full.replace(use_context_embedder=False, context_pre_only_last=False)):
        assert DenoiserConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="caption_projection_dim"):
        full.replace(caption_projection_dim=1152)


def test_config_from_real_style_config_json() -> None:
    real = {
        "_class_name": "PyramidDiffusionMMDiT",
        "_diffusers_version": "0.30.3",
        "sample_size": 128,
        "patch_size": 2,
        "in_channels": 16,
        "num_layers": 24,
        "attention_head_dim": 64,
        "num_attention_heads": 24,
        "caption_projection_dim": 1536,
        "pooled_projection_dim": 2048,
        "pos_embed_max_size": 192,
        "max_num_frames": 200,
        "qk_norm": "rms_norm",
        "pos_embed_type": "sincos",
        "temp_pos_embed_type": "rope",
        "joint_attention_dim": 4096,
        "use_gradient_checkpointing": False,
        "use_flash_attn": False,
        "use_temporal_causal": True,
        "use_t5_mask": True,
        "add_temp_pos_embed": True,
        "interp_condition_pos": True,
        "gradient_checkpointing_ratio": 0.6,
    }
    assert DenoiserConfig.from_dict(real) == DenoiserConfig.pyramid_flow_sd3()
    with pytest.raises(CheckpointError, match="dual_attention_layers"):
        DenoiserConfig.from_dict({**real, "dual_attention_layers": [0, 1]})
    with pytest.raises(CheckpointError, match="pos_embed_type"):
        DenoiserConfig.from_dict({**real, "pos_embed_type": "rope"})
    with pytest.raises(CheckpointError, match="num_layers"):
        DenoiserConfig.from_dict({**real, "num_layers": "24"})
    with pytest.raises(CheckpointError, match="qk_norm"):
        DenoiserConfig.from_dict({**real, "qk_norm": "layer_norm"})


def test_norms_epsilons_and_qk_norm_presence() -> None:
    model = _tiny_model()
    for block in model.blocks:
        for name in ("norm_q", "norm_k", "norm_add_q", "norm_add_k"):
            norm = getattr(block.attn, name)
            assert isinstance(norm, RMSNorm) and norm.eps == 1e-5 and norm.weight.shape == (16,)
        assert isinstance(block.norm1, AdaLayerNormZero) and block.norm1.norm.eps == 1e-6
        assert block.norm1.norm.weight is None and block.norm2.weight is None and block.norm2.eps == 1e-6
        assert block.norm1.linear.out_features == 6 * 32
    assert isinstance(model.norm_out, AdaLayerNormContinuous) and model.norm_out.norm.eps == 1e-6

    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 16))
    x = torch.randn(3, 7, 16)
    expected = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (16,), norm.weight, eps=1e-5), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------------------


def test_sincos_table_values() -> None:
    dim, grid, base = 32, 32, 4
    table = sincos_2d_table(dim, grid, base).reshape(grid, grid, dim)
    scale = grid / base  # 8 table cells per training-grid unit
    r, c = 5, 11
    # channel 0: sin of the column coordinate at the lowest frequency; channel dim/2: same for the row
    assert table[r, c, 0].item() == pytest.approx(math.sin(c / scale), abs=1e-6)
    assert table[r, c, dim // 4].item() == pytest.approx(math.cos(c / scale), abs=1e-6)
    assert table[r, c, dim // 2].item() == pytest.approx(math.sin(r / scale), abs=1e-6)
    omega1 = 10000 ** (-1 / (dim // 4))
    assert table[r, c, dim // 2 + 1].item() == pytest.approx(math.sin(r / scale * omega1), abs=1e-6)

    embeddings = pytest.importorskip("diffusers.models.embeddings")
    ref = embeddings.get_2d_sincos_pos_embed(dim, grid, base_size=base, interpolation_scale=1.0, output_type="pt")
    torch.testing.assert_close(table.reshape(grid * grid, dim), ref.float(), atol=1e-6, rtol=0)


def test_positions_are_centre_cropped_and_bilinear_for_history() -> None:
    torch.manual_seed(0)
    table = torch.randn(1, 32 * 32, 8)
    grid = table.reshape(32, 32, 8)
    # current clip 4 x 6 patches: crop rows 14..17, columns 13..18
    crop = crop_positions(table, 32, 4, 6, 4, 6).reshape(4, 6, 8)
    torch.testing.assert_close(crop, grid[14:18, 13:19], atol=0, rtol=0)
    # a half-resolution history frame (2 x 3): bilinear with align_corners=False at exactly 2x is the 2x2 mean
    half = crop_positions(table, 32, 4, 6, 2, 3).reshape(2, 3, 8)
    expected_half = crop.reshape(2, 2, 3, 2, 8).mean(dim=(1, 3))
    torch.testing.assert_close(half, expected_half, atol=1e-6, rtol=0)
    # 1 x 1 from a 4 x 4 crop samples the centre, (1.5, 1.5): mean of the central 2 x 2
    square = crop_positions(table, 32, 4, 4, 4, 4).reshape(4, 4, 8)
    one = crop_positions(table, 32, 4, 4, 1, 1).reshape(8)
    torch.testing.assert_close(one, square[1:3, 1:3].mean(dim=(0, 1)), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="larger than"):
        crop_positions(table, 32, 2, 2, 4, 4)

    # PatchEmbed adds exactly those positions to the per-frame Conv2d patches
    embed = PatchEmbed(16, 32, 2, 32, base_size=4)
    with torch.no_grad():
        embed.proj.weight.zero_()
        embed.proj.bias.zero_()
    tokens = embed(torch.randn(1, 16, 2, 4, 4), ref_hw=(4, 4))  # 2 frames at half of a 4 x 4 patch grid
    pos = crop_positions(embed.pos_embed, 32, 4, 4, 2, 2)
    torch.testing.assert_close(tokens, torch.cat([pos, pos], dim=1), atol=0, rtol=0)


def test_timestep_sinusoid_matches_sd3() -> None:
    t = torch.tensor([0.0, 1.5, 999.0])
    emb = timestep_sinusoid(t, 256)
    assert emb.shape == (3, 256)
    assert emb[2, 0].item() == pytest.approx(math.cos(999.0), abs=1e-5)  # flip_sin_to_cos: cos first
    # float32 angles near 930 rad carry ~5e-5 rounding, as in the reference
    assert emb[2, 128 + 1].item() == pytest.approx(math.sin(999.0 * math.exp(-math.log(10000) / 128)), abs=2e-4)
    embeddings = pytest.importorskip("diffusers.models.embeddings")
    ref = embeddings.get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(emb, ref, atol=1e-6, rtol=0)


def test_rope_matches_interleaved_reference_and_is_relative() -> None:
    torch.manual_seed(0)
    head_dim = 8
    times = torch.tensor([0.0, 0.0, 1.0, 3.0])
    cos, sin = rope_angles(times, head_dim)
    freqs = torch.tensor([10000 ** (-2 * i / head_dim) for i in range(head_dim // 2)])
    torch.testing.assert_close(cos, torch.cos(times[:, None] * freqs), atol=1e-6, rtol=0)

    x = torch.randn(2, 3, 4, head_dim)
    out = apply_rope(x, cos, sin)
    # the reference rotates pairs (2i, 2i+1) in place: [x0 c - x1 s, x0 s + x1 c]
    ref = torch.empty_like(x)
    ref[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    ref[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
    deinterleave = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    torch.testing.assert_close(out, ref[..., deinterleave], atol=1e-6, rtol=0)
    # q.k after rope depends only on the time difference: (t=1, t=3) == (t=0 + 5, t=2 + 5)
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(tq: float, tk: float) -> float:
        c, s = rope_angles(torch.tensor([tq, tk]), head_dim)
        qr = apply_rope(q.expand(1, 1, 1, head_dim), c[:1], s[:1])
        kr = apply_rope(k.expand(1, 1, 1, head_dim), c[1:], s[1:])
        return float((qr * kr).sum())

    assert score(1.0, 3.0) == pytest.approx(score(5.0, 7.0), abs=1e-5)
    assert score(1.0, 3.0) != pytest.approx(score(1.0, 4.0), abs=1e-3)


# ---------------------------------------------------------------------------------------------------------
# Attention mask and forward behaviour
# ---------------------------------------------------------------------------------------------------------


def test_attention_mask_hand_written() -> None:
    text_mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # sequence: text t0 t1 t2 | frame 0 (1 token, time 0) | frame 1 (2 tokens, time 1)
    mask = build_attention_mask(text_mask, [1, 2], [0, 1])
    expected = torch.tensor(
        [
            [  # sample 0: ids 1 1 0 | 1 | 1 1
                [1, 1, 0, 1, 0, 0],
                [1, 1, 0, 1, 0, 0],
                [0, 0, 1, 0, 0, 0],
                [1, 1, 0, 1, 0, 0],
                [1, 1, 0, 1, 1, 1],
                [1, 1, 0, 1, 1, 1],
            ],
            [  # sample 1: ids 2 0 0 | 2 | 2 2
                [1, 0, 0, 1, 0, 0],
                [0, 1, 1, 0, 0, 0],
                [0, 1, 1, 0, 0, 0],
                [1, 0, 0, 1, 0, 0],
                [1, 0, 0, 1, 1, 1],
                [1, 0, 0, 1, 1, 1],
            ],
        ],
        dtype=torch.bool,
    )
    assert mask.dtype == torch.bool and mask.shape == (2, 1, 6, 6)
    assert torch.equal(mask[:, 0], expected)
    additive = additive_mask(mask, -100.0)
    assert set(additive.unique().tolist()) == {0.0, -100.0}


def test_tiny_forward_with_mixed_resolution_history_returns_current_clip() -> None:
    model = _tiny_model()
    inputs = _inputs()
    clips = _clips()
    with torch.no_grad():
        out = model(clips, **inputs)
        assert out.shape == (2, 16, 1, 8, 8)
        assert torch.isfinite(out).all() and out.std().item() > 1e-2
        # the history is attended to: changing it changes the prediction
        changed = model([clips[0] + 1.0, clips[1], clips[2]], **inputs)
        assert (changed - out).abs().max().item() > 1e-3
        # a history-free call also works and differs
        alone = model(clips[-1:], **inputs)
        assert alone.shape == out.shape and (alone - out).abs().max().item() > 1e-3
        # explicit-matmul attention with -inf or a finite -100 mask gives the same numbers as SDPA
        model.set_attention_backend("matmul")
        torch.testing.assert_close(model(clips, **inputs), out, atol=1e-5, rtol=1e-4)
        model.set_attention_backend("matmul", masked_value=-100.0)
        torch.testing.assert_close(model(clips, **inputs), out, atol=1e-5, rtol=1e-4)
        model.set_attention_backend("sdpa")
        torch.testing.assert_close(model(clips, **inputs), out, atol=0, rtol=0)

    counts = PyramidFlowMMDiT.token_counts([c.shape for c in clips], text_len=5)
    assert (counts.text, counts.history, counts.current, counts.total) == (5, 1 + 4, 16, 26)
    assert counts.per_frame == (1, 4, 16)


def test_padded_text_tokens_do_not_change_the_output() -> None:
    model = _tiny_model()
    inputs = _inputs()
    clips = _clips()
    with torch.no_grad():
        out = model(clips, **inputs)
        noisy = dict(inputs)
        noisy["encoder_hidden_states"] = inputs["encoder_hidden_states"].clone()
        noisy["encoder_hidden_states"][0, 3:] += 10 * torch.randn(2, 64)  # sample 0's two pad tokens
        torch.testing.assert_close(model(clips, **noisy), out, atol=1e-6, rtol=0)
        # control: the same change on a valid token does change the output
        noisy["encoder_hidden_states"][0, 1] += 1.0
        assert (model(clips, **noisy) - out)[0].abs().max().item() > 1e-3


def test_temporal_causality_end_to_end() -> None:
    model = _tiny_model()
    inputs = _inputs()
    g = torch.Generator().manual_seed(3)
    history = torch.randn(2, 16, 1, 4, 4, generator=g)
    current = torch.randn(2, 16, 2, 8, 8, generator=g)  # frames at times 1 and 2
    with torch.no_grad():
        out = model([history, current], **inputs)
        later = current.clone()
        later[:, :, 1] += torch.randn(2, 16, 8, 8, generator=g)
        out_later = model([history, later], **inputs)
    assert out.shape == (2, 16, 2, 8, 8)
    torch.testing.assert_close(out_later[:, :, 0], out[:, :, 0], atol=1e-6, rtol=0)
    assert (out_later[:, :, 1] - out[:, :, 1]).abs().max().item() > 1e-3


# ---------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pre_only", [False, True])
def test_block_matches_diffusers_sd3_block_without_mask_and_rope(pre_only: bool) -> None:
    attention = pytest.importorskip("diffusers.models.attention")
    torch.manual_seed(0)
    ours = JointTransformerBlock(32, 2, 16, 128, context_pre_only=pre_only, qk_norm_eps=1e-6).eval()
    _perturb_all(ours)
    ref = attention.JointTransformerBlock(32, 2, 16, context_pre_only=pre_only, qk_norm="rms_norm").eval()
    renamed = {
        k.replace("norm_add_q", "norm_added_q").replace("norm_add_k", "norm_added_k"): v
        for k, v in ours.state_dict().items()
    }
    ref.load_state_dict(renamed, strict=True)
    x, c, temb = torch.randn(2, 12, 32), torch.randn(2, 5, 32), torch.randn(2, 32)
    with torch.no_grad():
        c_ours, x_ours = ours(x, c, temb)
        c_ref, x_ref = ref(x, c, temb)
    torch.testing.assert_close(x_ours, x_ref, atol=1e-5, rtol=1e-4)
    if pre_only:
        assert c_ours is None and c_ref is None
    else:
        torch.testing.assert_close(c_ours, c_ref, atol=1e-5, rtol=1e-4)


def test_convert_to_context_pre_only_keeps_the_image_output() -> None:
    torch.manual_seed(0)
    block = JointTransformerBlock(32, 2, 16, 128).eval()
    _perturb_all(block, std=0.2)
    converted = copy.deepcopy(block)
    convert_to_context_pre_only(converted)

    fresh = JointTransformerBlock(32, 2, 16, 128, context_pre_only=True)
    assert {k: v.shape for k, v in converted.state_dict().items()} == {
        k: v.shape for k, v in fresh.state_dict().items()
    }
    assert not hasattr(converted.attn, "to_add_out") and not hasattr(converted, "ff_context")

    text_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    mask = build_attention_mask(text_mask, [4, 4], [0, 1])
    times = torch.cat([torch.zeros(4), torch.zeros(4), torch.ones(4)])
    cos, sin = rope_angles(times, 16)
    x, c, temb = torch.randn(2, 8, 32), torch.randn(2, 4, 32), torch.randn(2, 32)
    with torch.no_grad():
        _, x_full = block(x, c, temb, mask, (cos, sin))
        c_conv, x_conv = converted(x, c, temb, mask, (cos, sin))
    assert c_conv is None
    torch.testing.assert_close(x_conv, x_full, atol=1e-6, rtol=0)

    convert_to_context_pre_only(converted)  # already converted: a no-op
    with torch.device("meta"):
        meta_block = JointTransformerBlock(1536, 24, 64, 6144)
    convert_to_context_pre_only(meta_block)
    assert meta_block.norm1_context.linear.weight.shape == (3072, 1536)
    assert meta_block.norm1_context.linear.weight.is_meta


def test_converting_the_last_block_of_a_model_keeps_its_output() -> None:
    model = _tiny_model(context_pre_only_last=False)
    assert not model.blocks[-1].context_pre_only
    inputs, clips = _inputs(), _clips()
    with torch.no_grad():
        out = model(clips, **inputs)
        convert_to_context_pre_only(model.blocks[-1])
        converted_out = model(clips, **inputs)
    torch.testing.assert_close(converted_out, out, atol=1e-6, rtol=0)
    assert set(model.state_dict()) == set(_tiny_model().state_dict())


def test_block_traces_with_torch_fx() -> None:
    torch.manual_seed(0)
    block = JointTransformerBlock(32, 2, 16, 128, attention_backend="matmul").eval()
    _perturb_all(block)
    traced = torch.fx.symbolic_trace(block)
    mask = additive_mask(build_attention_mask(torch.tensor([[1, 1, 0]]), [4], [0]), -100.0)
    cos, sin = rope_angles(torch.zeros(7), 16)
    x, c, temb = torch.randn(1, 4, 32), torch.randn(1, 3, 32), torch.randn(1, 32)
    with torch.no_grad():
        expected = block(x, c, temb, mask, (cos, sin))
        got = traced(x, c, temb, mask, (cos, sin))
    torch.testing.assert_close(got[1], expected[1], atol=0, rtol=0)
    torch.testing.assert_close(got[0], expected[0], atol=0, rtol=0)


def test_unpatchify_places_each_patch_channel() -> None:
    model = _tiny_model()
    b, t, h, w, p, c = 1, 2, 3, 4, 2, 16
    tokens = torch.arange(b * t * h * w * p * p * c, dtype=torch.float32).reshape(b, t * h * w, p * p * c)
    out = model.unpatchify(tokens, t, h, w)
    assert out.shape == (b, c, t, h * p, w * p)
    # token (frame 1, row 2, column 3), channel slot (p1=1, p2=0, c=5) lands at [c, t, 2p + p1, 3p + p2]
    token, slot = (1 * h + 2) * w + 3, (1 * p + 0) * c + 5
    assert out[0, 5, 1, 2 * p + 1, 3 * p + 0].item() == tokens[0, token, slot].item()
