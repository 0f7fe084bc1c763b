"""What the VAE phases train on: single frames and object crops of world clips, the same for any order; crop
sizes that cannot work are refused; a fresh encoder starts with a narrow posterior."""

from __future__ import annotations

import pytest
import torch

from neocompress.miniature.configs import WORLD, vae_config
from neocompress.miniature.vae_training import (
    INITIAL_LOGVAR,
    ObjectCrops,
    SingleFrames,
    narrow_posterior,
    train_vae,
)
from neocompress.models.pyramid_flow.vae import CausalVAEEncoder
from neocompress.world import World, to_tensor


def test_crops_hold_an_object_and_are_deterministic() -> None:
    world = World(WORLD)
    crops = ObjectCrops(world, 32, length=40, seed=0)
    for i in range(40):
        video, caption = crops[i]
        assert video.shape == (3, WORLD.frames, 32, 32)
        assert caption == world.sample(i, "train").caption
        # an object's colour differs from every background colour by far more than textures do
        full = world.sample(i, "train")
        bg = torch.from_numpy(full.video).flatten(0, 2).float().median(dim=0).values
        mid = video[:, WORLD.frames // 2].permute(1, 2, 0).add(1).mul(127.5)
        assert (mid - bg).abs().amax(dim=-1).gt(60).sum() > 20, f"crop {i} holds no object"
    assert torch.equal(crops[7][0], ObjectCrops(world, 32, length=40, seed=0)[7][0])
    assert not torch.equal(crops[7][0], ObjectCrops(world, 32, length=40, seed=1)[7][0])


@pytest.mark.parametrize("crop", [0, 12, 72])
def test_bad_crop_sizes_are_refused(crop: int) -> None:
    with pytest.raises(ValueError, match="crop must be a multiple of 8"):
        ObjectCrops(World(WORLD), crop, length=4)


def test_single_frames_are_frames_of_the_clips_and_deterministic() -> None:
    world = World(WORLD)
    frames = SingleFrames(world, length=20, seed=0)
    picked = set()
    for i in range(20):
        image, caption = frames[i]
        clip = to_tensor(world.sample(i, "train").video)
        assert image.shape == (3, 1, WORLD.size, WORLD.size) and caption == world.sample(i, "train").caption
        matches = [f for f in range(WORLD.frames) if torch.equal(clip[:, f : f + 1], image)]
        assert matches, f"item {i} is not a frame of clip {i}"
        picked.add(matches[0])
    assert len(picked) > 3, "frames should be drawn across the clip, not always the first"
    assert torch.equal(frames[5][0], SingleFrames(world, length=20, seed=0)[5][0])


def test_fresh_encoder_starts_with_a_narrow_posterior() -> None:
    torch.manual_seed(0)
    encoder = narrow_posterior(CausalVAEEncoder(vae_config()))
    video = torch.rand(2, 3, 1, WORLD.size, WORLD.size) * 2 - 1
    with torch.no_grad():
        _, logvar = encoder.encode_moments(video).chunk(2, dim=1)
    # std e^-5 give or take what the random conv weights add: the mean is not drowned in unit noise
    assert abs(float(logvar.mean()) - INITIAL_LOGVAR) < 1.0


def test_a_phase_trains_on_images_or_crops_not_both(tmp_path) -> None:
    with pytest.raises(ValueError, match="images or on crops"):
        train_vae(tmp_path, steps=1, images=True, crop=32, progress=False)
