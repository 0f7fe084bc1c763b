"""The miniature's encoded latent set is kept in its work directory: a resumed run reuses it only when the same
encoder weights, world and count made it, and a damaged cache is rebuilt, never read."""

from __future__ import annotations

from pathlib import Path

import torch

from neocompress.miniature.configs import WORLD, vae_config
from neocompress.miniature.latents_data import build_latent_set, cached_latent_set
from neocompress.models.pyramid_flow.vae import CausalVAEEncoder


def _encoder(seed: int) -> CausalVAEEncoder:
    torch.manual_seed(seed)
    return CausalVAEEncoder(vae_config()).eval()


def test_a_second_call_reuses_the_encoded_set(tmp_path: Path) -> None:
    cache = tmp_path / "latents.safetensors"
    first, seconds, cached = cached_latent_set(_encoder(0), WORLD, 6, cache, batch_size=3)
    assert not cached and cache.is_file() and seconds > 0
    again, recorded, cached = cached_latent_set(_encoder(0), WORLD, 6, cache, batch_size=3)
    assert cached and recorded == seconds  # the record keeps what encoding cost, not the reload's time
    assert torch.equal(again.latents, first.latents)
    assert again.captions == first.captions and again.norm == first.norm
    fresh = build_latent_set(_encoder(0), WORLD, 6)
    assert torch.allclose(fresh.latents, first.latents, atol=1e-6)


def test_other_weights_or_count_encode_again(tmp_path: Path) -> None:
    cache = tmp_path / "latents.safetensors"
    first, _, _ = cached_latent_set(_encoder(0), WORLD, 4, cache)
    other, _, cached = cached_latent_set(_encoder(1), WORLD, 4, cache)
    assert not cached and not torch.allclose(other.latents, first.latents)
    more, _, cached = cached_latent_set(_encoder(1), WORLD, 5, cache)
    assert not cached and len(more.captions) == 5
    assert cached_latent_set(_encoder(1), WORLD, 5, cache)[2]


def test_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "latents.safetensors"
    cache.write_bytes(b"\xff" * 8 + b"not a header")
    data, _, cached = cached_latent_set(_encoder(0), WORLD, 3, cache)
    assert not cached and len(data.captions) == 3
    assert cached_latent_set(_encoder(0), WORLD, 3, cache)[2]
