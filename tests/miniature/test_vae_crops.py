"""The VAE's crop phase sees windows that hold an object, the same ones for any order, and says when a crop
size cannot work."""

from __future__ import annotations

import pytest
import torch

from neocompress.miniature.configs import WORLD
from neocompress.miniature.vae_training import ObjectCrops
from neocompress.world import World


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
