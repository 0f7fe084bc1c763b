"""The denoiser's training data: world videos encoded once by the frozen miniature VAE, plus their captions.

Encoding once (not per step) is what makes DiT training cheap here: a latent clip is 16 x 2 x 8 x 8 numbers.
The encoded set is kept in the run's work directory (`cached_latent_set`), keyed by the encoder's weights, the
world and the count, so a run resumed in another sitting does not encode again (16,384 clips take ~21 min here).
The latent normalisation is fitted on these latents the way Pyramid-Flow's constants were: one shift/scale for
the first latent frame (an image) and one for the later frames (video).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from neocompress.core.atomic import atomic_write
from neocompress.models.pyramid_flow.vae import CausalVAEEncoder, LatentNorm, normalize_latents
from neocompress.world import World, WorldConfig, to_tensor


@dataclass
class LatentSet:
    latents: torch.Tensor  # [N, C, units, h, w], normalised
    captions: list[str]
    norm: LatentNorm


@torch.no_grad()
def encode_world(
    encoder: CausalVAEEncoder,
    world_config: WorldConfig,
    count: int,
    *,
    split: str = "train",
    batch_size: int = 32,
    progress=None,
) -> tuple[torch.Tensor, list[str]]:
    world = World(world_config)
    latents, captions = [], []
    for start in range(0, count, batch_size):
        samples = [world.sample(i, split) for i in range(start, min(start + batch_size, count))]
        video = torch.stack([to_tensor(s.video) for s in samples])
        latents.append(encoder.encode(video))
        captions += [s.caption for s in samples]
        if progress is not None:
            progress(len(captions), count)
    return torch.cat(latents), captions


def fit_latent_norm(z: torch.Tensor) -> LatentNorm:
    """Shift to zero mean and scale to unit std, separately for the first and the later latent frames."""
    first, rest = z[:, :, :1], z[:, :, 1:]
    return LatentNorm(
        image_shift=float(first.mean()),
        image_scale=float(1 / first.std()),
        video_shift=float(rest.mean()) if rest.numel() else 0.0,
        video_scale=float(1 / rest.std()) if rest.numel() else 1.0,
    )


def build_latent_set(encoder: CausalVAEEncoder, world_config: WorldConfig, count: int, **kw) -> LatentSet:
    z, captions = encode_world(encoder, world_config, count, **kw)
    norm = fit_latent_norm(z)
    return LatentSet(normalize_latents(z, norm), captions, norm)


def encoder_fingerprint(encoder: CausalVAEEncoder) -> str:
    """sha256 over the encoder's tensors (names, shapes, values): a cache made by other weights never matches."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_latent_set(
    encoder: CausalVAEEncoder, world_config: WorldConfig, count: int, cache: Path, **kw
) -> tuple[LatentSet, float, bool]:
    """The latent set from `cache` (a safetensors file) when it was made by these encoder weights from the same
    world and count, else encoded afresh and written there atomically. Returns (set, the seconds its encoding
    took, whether it came from the cache), so a resumed run's training record still says what encoding cost."""
    key = {"encoder": encoder_fingerprint(encoder), "world": world_config.to_dict(), "count": count}
    meta = _cache_metadata(cache)
    if meta is not None and json.loads(meta.get("key", "null")) == key:
        z = load_file(str(cache))["latents"]
        norm = LatentNorm(**json.loads(meta["norm"]))
        return LatentSet(z, json.loads(meta["captions"]), norm), float(meta.get("encode_s", 0.0)), True
    t0 = time.perf_counter()
    data = build_latent_set(encoder, world_config, count, **kw)
    seconds = time.perf_counter() - t0
    metadata = {
        "key": json.dumps(key),
        "norm": json.dumps(data.norm.__dict__),
        "captions": json.dumps(data.captions),
        "encode_s": repr(seconds),
    }
    atomic_write(cache, lambda tmp: save_file({"latents": data.latents.contiguous()}, str(tmp), metadata=metadata))
    return data, seconds, False


def _cache_metadata(cache: Path) -> dict | None:
    """The cache file's safetensors metadata, read from its header alone; None when there is no readable cache
    (missing, or not a safetensors file: a cache is rebuilt, never trusted)."""
    try:
        with open(cache, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if not 0 < header_len <= 100_000_000:
                return None
            meta = json.loads(handle.read(header_len)).get("__metadata__")
    except (OSError, ValueError, AttributeError):
        return None
    return meta if isinstance(meta, dict) else None
