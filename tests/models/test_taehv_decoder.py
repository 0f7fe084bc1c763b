"""The TAEHV-style decoder: Neodragon's full-size parameter count, 1 + 8(t - 1) frames at 8x the latent size, causal
(a later latent frame leaves earlier frames alone), and frame-by-frame streaming equal to whole-clip decoding."""

from __future__ import annotations

import pytest
import torch

from neocompress.models.taehv_decoder import TAEHVDecoder


def _tiny() -> TAEHVDecoder:
    torch.manual_seed(0)
    return TAEHVDecoder(latent_channels=16, widths=(16, 8, 8, 8)).eval()


def test_full_size_is_about_ten_million_parameters() -> None:
    with torch.device("meta"):
        decoder = TAEHVDecoder()
    n = sum(p.numel() for p in decoder.parameters())
    assert 9e6 < n < 12e6, n  # Neodragon: 226M -> ~10M
    keys = list(decoder.state_dict())
    assert keys[:2] == ["decoder.1.weight", "decoder.1.bias"] and "decoder.3.conv.0.weight" in keys
    assert "decoder.7.conv.weight" in keys and keys[-1] == "decoder.22.bias"  # the TGrow and the last conv


@pytest.mark.parametrize("t", [1, 2, 3])
def test_t_latent_frames_give_one_plus_eight_t_minus_one_frames(t: int) -> None:
    decoder = _tiny()
    with torch.no_grad():
        video = decoder(torch.randn(2, 16, t, 4, 5))
    assert video.shape == (2, 3, 1 + 8 * (t - 1), 32, 40) and decoder.frames_for(t) == 1 + 8 * (t - 1)
    assert video.abs().max() <= 1.0


def test_streaming_equals_whole_clip_decoding_and_is_causal() -> None:
    decoder = _tiny()
    z = torch.randn(1, 16, 4, 3, 3)
    with torch.no_grad():
        whole = decoder(z)
        streamed = torch.stack(list(decoder.stream(z)), dim=2)
        changed = z.clone()
        changed[:, :, 3] += 1.0
        later = decoder(changed)
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1e-5)
    assert streamed.shape[2] == 25
    first_affected = 1 + 8 * (3 - 1)  # latent frame 3 stands for frames 17 .. 24
    torch.testing.assert_close(later[:, :, :first_affected], whole[:, :, :first_affected], rtol=0, atol=0)
    assert not torch.allclose(later[:, :, first_affected:], whole[:, :, first_affected:])


def test_bad_latents_and_configs_are_named() -> None:
    with pytest.raises(ValueError, match=r"latents must be \[B, 16"):
        _tiny()(torch.randn(1, 8, 2, 4, 4))
    with pytest.raises(ValueError, match="4 widths and 3 stages"):
        TAEHVDecoder(widths=(8, 8, 8))


def test_static_graph_matches_decode_and_traces_with_fx() -> None:
    """What quantization and lowering use: the same numbers as `decode`, with every size a constant (AIMET's
    model preparer traces it with torch.fx, which cannot iterate tensor shapes)."""
    import torch.fx

    from neocompress.lowering.static_vae import static_decoder

    d = TAEHVDecoder(16, (16, 16, 8, 8)).eval()
    for t in (1, 2, 3):
        z = torch.randn(1, 16, t, 4, 4, generator=torch.Generator().manual_seed(t))
        graph = static_decoder(d, None, tuple(z.shape)).eval()
        with torch.no_grad():
            assert torch.equal(graph(z), d.decode(z))
        traced = torch.fx.symbolic_trace(graph)
        with torch.no_grad():
            assert torch.equal(traced(z), d.decode(z))


def test_the_latent_clamp_is_a_config_field_and_old_configs_mean_three() -> None:
    """The soft clamp's limit decides what the decoder can read: at 3 (the public TAEHV) latents of 4 and 8 come out
    0.36 apart, at 12 they stay 2.9 apart; a config saved before the field existed still loads, at 3."""
    wide = TAEHVDecoder(latent_channels=16, widths=(16, 8, 8, 8), latent_clamp=12.0)
    assert wide.checkpoint_config()["latent_clamp"] == 12.0
    assert TAEHVDecoder.from_checkpoint_config(wide.checkpoint_config()).decoder[0].limit == 12.0
    legacy = {k: v for k, v in _tiny().checkpoint_config().items() if k != "latent_clamp"}
    assert TAEHVDecoder.from_checkpoint_config(legacy).decoder[0].limit == 3.0
    x = torch.tensor([4.0, 8.0])
    assert float(_tiny().decoder[0](x).diff()) < 0.4 and float(wide.decoder[0](x).diff()) > 2.5
    with pytest.raises(ValueError, match="latent_clamp must be positive"):
        TAEHVDecoder(latent_clamp=0.0)
