"""Pyramid-Flow causal video VAE: checkpoint layout, 8x8x8 shapes, causality, latent normalisation."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neocompress.models.pyramid_flow.vae import (
    NEODRAGON,
    PYRAMID_FLOW_SD3,
    CausalVAEConfig,
    CausalVAEDecoder,
    CausalVAEEncoder,
    LatentNorm,
    denormalize_latents,
    normalize_latents,
)
from neocompress.models.pyramid_flow.vae.blocks import SpatialUpsample2x, TemporalUpsample2x

LAYOUTS = Path(__file__).resolve().parents[2] / "data" / "checkpoint_layouts.json"

# The public rain1011/pyramid-flow-sd3 causal_video_vae/config.json, as published.
PUBLIC_CONFIG = {
    "_class_name": "CausalVideoVAE",
    "_diffusers_version": "0.29.2",
    "add_post_quant_conv": True,
    "decoder_act_fn": "silu",
    "decoder_block_dropout": [0.0, 0.0, 0.0, 0.0],
    "decoder_block_out_channels": [128, 256, 512, 512],
    "decoder_in_channels": 16,
    "decoder_layers_per_block": [3, 3, 3, 3],
    "decoder_norm_num_groups": 32,
    "decoder_out_channels": 3,
    "decoder_spatial_up_sample": [True, True, True, False],
    "decoder_temporal_up_sample": [True, True, True, False],
    "decoder_type": "causal_vae_conv",
    "decoder_up_block_types": ["UpDecoderBlockCausal3D"] * 4,
    "downsample_scale": 8,
    "encoder_act_fn": "silu",
    "encoder_block_dropout": [0.0, 0.0, 0.0, 0.0],
    "encoder_block_out_channels": [128, 256, 512, 512],
    "encoder_double_z": True,
    "encoder_down_block_types": ["DownEncoderBlockCausal3D"] * 4,
    "encoder_in_channels": 3,
    "encoder_layers_per_block": [2, 2, 2, 2],
    "encoder_norm_num_groups": 32,
    "encoder_out_channels": 16,
    "encoder_spatial_down_sample": [True, True, True, False],
    "encoder_temporal_down_sample": [True, True, True, False],
    "encoder_type": "causal_vae_conv",
    "interpolate": False,
    "sample_size": 256,
    "scaling_factor": 0.13025,
}


@pytest.fixture(scope="module")
def tiny() -> tuple[CausalVAEEncoder, CausalVAEDecoder]:
    torch.manual_seed(0)
    cfg = CausalVAEConfig.tiny()
    return CausalVAEEncoder(cfg).eval(), CausalVAEDecoder(cfg).eval()


def _video(frames: int, h: int = 16, w: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, h, w, generator=g) * 2 - 1


def _latents(frames: int, h: int = 2, w: int = 2, seed: int = 2) -> torch.Tensor:
    return torch.randn(1, 16, frames, h, w, generator=torch.Generator().manual_seed(seed))


# --- full size: the checkpoint layout -----------------------------------------------------------------------


def test_full_size_state_dicts_equal_checkpoint_layout() -> None:
    layout = json.loads(LAYOUTS.read_text())["pyramid_flow_sd3/causal_video_vae"]
    expected = [(e["key"], tuple(e["shape"])) for e in layout]
    start = time.perf_counter()
    with torch.device("meta"):
        enc, dec = CausalVAEEncoder(), CausalVAEDecoder()
    assert time.perf_counter() - start < 5.0

    enc_keys = [(k, tuple(v.shape)) for k, v in enc.state_dict().items()]
    dec_keys = [(k, tuple(v.shape)) for k, v in dec.state_dict().items()]
    # Each component owns exactly its prefixes, in the checkpoint's order.
    assert enc_keys == [e for e in expected if e[0].startswith(("encoder.", "quant_conv."))]
    assert dec_keys == [e for e in expected if e[0].startswith(("decoder.", "post_quant_conv."))]
    assert sorted(enc_keys + dec_keys) == sorted(expected)
    assert len(expected) == 260

    total = sum(math.prod(shape) for _, shape in expected)
    n_params = sum(p.numel() for p in (*enc.parameters(), *dec.parameters()))
    assert n_params == total == 335_402_067
    assert not list(enc.buffers()) and not list(dec.buffers())


def test_full_size_geometry() -> None:
    cfg = CausalVAEConfig.pyramid_flow_sd3()
    assert (cfg.spatial_compression, cfg.temporal_compression, cfg.latent_channels) == (8, 8, 16)
    with torch.device("meta"):
        z = CausalVAEEncoder(cfg).encode(torch.empty(1, 3, 17, 64, 96))
        video = CausalVAEDecoder(cfg).decode(z)
    assert tuple(z.shape) == (1, 16, 3, 8, 12)
    assert tuple(video.shape) == (1, 3, 17, 64, 96)


# --- config -------------------------------------------------------------------------------------------------


def test_config_reads_public_config_json() -> None:
    assert CausalVAEConfig.from_dict(PUBLIC_CONFIG) == CausalVAEConfig.pyramid_flow_sd3()


def test_config_round_trip_and_tiny_geometry() -> None:
    for cfg in (CausalVAEConfig.pyramid_flow_sd3(), CausalVAEConfig.tiny()):
        assert CausalVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    tiny_cfg = CausalVAEConfig.tiny()
    assert tiny_cfg.block_out_channels == (16, 32, 64, 64)
    assert tiny_cfg.encoder_layers_per_block == (1, 1, 1, 1)
    assert tiny_cfg.decoder_layers_per_block == (1, 1, 1, 1)
    assert tiny_cfg.spatial_compression == tiny_cfg.temporal_compression == 8
    assert tiny_cfg.latent_channels == 16


def test_config_rejects_unknown_and_unsupported_settings() -> None:
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        CausalVAEConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="interpolate"):
        CausalVAEConfig.from_dict({**PUBLIC_CONFIG, "interpolate": True})
    with pytest.raises(ValueError, match="norm_num_groups"):
        CausalVAEConfig.from_dict({**PUBLIC_CONFIG, "decoder_norm_num_groups": 16})
    with pytest.raises(ValueError, match="not divisible"):
        CausalVAEConfig(block_out_channels=(16, 32, 64, 60), norm_num_groups=8)
    with pytest.raises(ValueError, match="upsampling does not undo"):
        CausalVAEConfig(temporal_upsample=(True, True, False, False))


# --- encoder ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "h", "w", "latent_shape"),
    [(1, 16, 16, (1, 16, 1, 2, 2)), (9, 16, 24, (1, 16, 2, 2, 3)), (17, 8, 16, (1, 16, 3, 1, 2))],
)
def test_encode_shapes(tiny, frames: int, h: int, w: int, latent_shape: tuple[int, ...]) -> None:
    enc, _ = tiny
    with torch.no_grad():
        assert tuple(enc.encode(_video(frames, h, w)).shape) == latent_shape


def test_encoder_is_causal(tiny) -> None:
    enc, _ = tiny
    video = _video(17)
    with torch.no_grad():
        base = enc.encode(video)
        for frame, first_changed in ((1, 1), (8, 1), (9, 2), (16, 2)):
            moved = video.clone()
            moved[:, :, frame] = -moved[:, :, frame]
            z = enc.encode(moved)
            torch.testing.assert_close(z[:, :, :first_changed], base[:, :, :first_changed], rtol=0, atol=1e-6)
            # float noise is ~1e-7; a real dependency moves the latent by far more
            assert (z[:, :, first_changed] - base[:, :, first_changed]).abs().max() > 1e-5


def test_first_frame_is_encoded_alone(tiny) -> None:
    enc, _ = tiny
    video = _video(17)
    with torch.no_grad():
        full = enc.encode(video)
        torch.testing.assert_close(enc.encode(video[:, :, :1]), full[:, :, :1], rtol=0, atol=1e-5)
        torch.testing.assert_close(enc.encode(video[:, :, :9]), full[:, :, :2], rtol=0, atol=1e-5)


def test_sampling_uses_posterior_std(tiny) -> None:
    enc, _ = tiny
    video = _video(9)
    with torch.no_grad():
        mean, logvar = enc.encode_moments(video).chunk(2, dim=1)
        torch.testing.assert_close(enc.encode(video), mean, rtol=0, atol=0)
        a = enc.encode(video, sample=True, generator=torch.Generator().manual_seed(7))
        b = enc.encode(video, sample=True, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, mean + torch.exp(0.5 * logvar) * eps)
    assert (a - mean).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 8, 16, 16), r"8 frames; the causal VAE needs 1 \+ 8k frames \(e.g. 1 or 9\)"),
        ((1, 3, 10, 16, 16), r"needs 1 \+ 8k frames \(e.g. 9 or 17\)"),
        ((1, 3, 9, 12, 16), "multiples of 8"),
        ((1, 3, 9, 16, 20), "multiples of 8"),
        ((1, 4, 9, 16, 16), r"video must be \[B, 3, T, H, W\]"),
        ((3, 9, 16, 16), r"video must be \[B, 3, T, H, W\]"),
    ],
)
def test_encoder_rejects_bad_shapes(tiny, shape: tuple[int, ...], message: str) -> None:
    enc, _ = tiny
    with pytest.raises(ValueError, match=message):
        enc.encode(torch.zeros(shape))


# --- decoder ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("t", "frames"), [(1, 1), (2, 9), (3, 17)])
def test_decode_shapes(tiny, t: int, frames: int) -> None:
    _, dec = tiny
    with torch.no_grad():
        assert tuple(dec.decode(_latents(t, 2, 3)).shape) == (1, 3, frames, 16, 24)


def test_decoder_is_causal(tiny) -> None:
    _, dec = tiny
    z = _latents(3)
    with torch.no_grad():
        base = dec.decode(z, clamp=False)
        for j, first_frame in ((1, 1), (2, 9)):
            moved = z.clone()
            moved[:, :, j] += 1.0
            video = dec.decode(moved, clamp=False)
            torch.testing.assert_close(video[:, :, :first_frame], base[:, :, :first_frame], rtol=0, atol=1e-6)
            # every one of the 8 frames latent j stands for moves
            for f in range(first_frame, first_frame + 8):
                assert (video[:, :, f] - base[:, :, f]).abs().max() > 1e-4
        torch.testing.assert_close(dec.decode(z[:, :, :1], clamp=False), base[:, :, :1], rtol=0, atol=1e-5)
        torch.testing.assert_close(dec.decode(z[:, :, :2], clamp=False), base[:, :, :9], rtol=0, atol=1e-5)


def test_decode_clamps_to_unit_range(tiny) -> None:
    _, dec = tiny
    z = 3 * _latents(2)
    with torch.no_grad():
        raw = dec.decode(z, clamp=False)
        clamped = dec.decode(z)
    assert raw.abs().max() > 1.0  # random weights overshoot, so the clamp is exercised
    torch.testing.assert_close(clamped, raw.clamp(-1, 1), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 8, 2, 2, 2), (1, 16, 0, 2, 2), (16, 2, 2, 2)])
def test_decoder_rejects_bad_latents(tiny, shape: tuple[int, ...]) -> None:
    _, dec = tiny
    with pytest.raises(ValueError, match=r"latents must be \[B, 16, t>=1, h, w\]"):
        dec.decode(torch.zeros(shape))


def test_spatial_upsampler_is_a_2x2_pixel_shuffle() -> None:
    up = SpatialUpsample2x(3)
    up.conv = nn.Identity()  # isolate the reshape
    x = torch.arange(2 * 12 * 2 * 3 * 4, dtype=torch.float32).reshape(2, 12, 2, 3, 4)
    y = up(x)
    assert tuple(y.shape) == (2, 3, 2, 6, 8)
    per_frame = F.pixel_shuffle(x.transpose(1, 2).reshape(4, 12, 3, 4), 2).reshape(2, 2, 3, 6, 8)
    torch.testing.assert_close(y, per_frame.transpose(1, 2), rtol=0, atol=0)
    assert y[0, 1, 0, 1, 0] == x[0, 1 * 4 + 2 * 1 + 0, 0, 0, 0]


def test_temporal_upsampler_shuffles_then_drops_first_frame() -> None:
    up = TemporalUpsample2x(2)
    up.conv = nn.Identity()
    x = torch.arange(1 * 4 * 3, dtype=torch.float32).reshape(1, 4, 3, 1, 1)  # channel c*2+p, frame i
    y = up(x)
    assert tuple(y.shape) == (1, 2, 5, 1, 1)  # t -> 2t - 1
    for c in range(2):
        # output frame 2i + p - 1 comes from input frame i, channel 2c + p
        expected = [x[0, 2 * c + p, i, 0, 0] for i in range(3) for p in range(2)][1:]
        assert y[0, c, :, 0, 0].tolist() == [v.item() for v in expected]


# --- latent normalisation -----------------------------------------------------------------------------------


def test_latent_norm_constants() -> None:
    assert LatentNorm.pyramid_flow_sd3() == PYRAMID_FLOW_SD3
    assert PYRAMID_FLOW_SD3.image_shift == 0.1490
    assert PYRAMID_FLOW_SD3.image_scale == pytest.approx(0.54304, abs=5e-6)
    assert PYRAMID_FLOW_SD3.video_shift == -0.2343
    assert PYRAMID_FLOW_SD3.video_scale == pytest.approx(0.32273, abs=5e-6)
    assert NEODRAGON.video_scale == 0.3031
    assert (NEODRAGON.image_shift, NEODRAGON.image_scale, NEODRAGON.video_shift) == (
        PYRAMID_FLOW_SD3.image_shift,
        PYRAMID_FLOW_SD3.image_scale,
        PYRAMID_FLOW_SD3.video_shift,
    )


def test_normalize_values_and_round_trip() -> None:
    z = torch.ones(1, 16, 3, 2, 2)
    n = normalize_latents(z)
    first = torch.full((1, 16, 2, 2), (1 - 0.1490) * 0.54304)
    rest = torch.full((1, 16, 2, 2, 2), (1 + 0.2343) * 0.32273)
    torch.testing.assert_close(n[:, :, 0], first, atol=1e-5, rtol=0)
    torch.testing.assert_close(n[:, :, 1:], rest, atol=1e-5, rtol=0)
    n_neo = normalize_latents(z, NEODRAGON)
    torch.testing.assert_close(n_neo[:, :, 1:], torch.full((1, 16, 2, 2, 2), (1 + 0.2343) * 0.3031))
    assert torch.equal(z, torch.ones_like(z))  # input untouched

    z = _latents(3)
    for norm in (PYRAMID_FLOW_SD3, NEODRAGON):
        torch.testing.assert_close(denormalize_latents(normalize_latents(z, norm), norm), z)
    single = _latents(1)
    torch.testing.assert_close(normalize_latents(single), (single - 0.1490) * (1 / 1.8415))
    with pytest.raises(ValueError, match="latents must be"):
        normalize_latents(torch.zeros(16, 2, 2))


@pytest.mark.parametrize(("kernel", "stride"), [(3, (1, 1, 1)), (3, (1, 2, 2)), (3, (2, 1, 1)), (1, (1, 1, 1))])
def test_single_frame_conv_is_the_padded_3d_conv(kernel: int, stride: tuple[int, int, int]) -> None:
    """The 1-frame fast path gives the padded Conv3d's output and the same weight gradients (zero on the taps
    that only ever read front padding), so image training trains exactly what video training would."""
    from neocompress.models.pyramid_flow.vae.causal_conv import CausalConv3d

    torch.manual_seed(0)
    conv = CausalConv3d(5, 7, kernel, stride=stride)
    x = torch.randn(2, 5, 1, 16, 16)
    reference = conv.conv(F.pad(x, conv.padding))
    fast = conv(x)
    assert fast.shape == reference.shape
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)
    (grad_ref,) = torch.autograd.grad(reference.square().sum(), conv.conv.weight)
    (grad_fast,) = torch.autograd.grad(conv(x).square().sum(), conv.conv.weight)
    torch.testing.assert_close(grad_fast, grad_ref, rtol=1e-5, atol=1e-4)
    assert not grad_fast[:, :, :-1].any()
