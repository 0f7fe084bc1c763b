"""The seeded world: scenes and clips by index, train / held-out splits by caption, a torch Dataset.

Determinism: `World.sample(index, split)` draws from numpy Generators seeded with (seed, split, index) alone, one
for the scene and one for its rendering, so a sample never depends on what was sampled before, on worker order
or on any global random state. Same config, same data.

Splits: a caption is held out iff a SHA-256 of its canonical text (objects in colour order, see
`grammar.canonical`) falls below `heldout_fraction` of the hash range. The split is therefore independent of the
seed (changing the training seed never moves a caption between splits), identical on every machine and Python
run (unlike `hash()`), and holds for one- and two-object captions alike. The held-out split measures
generalisation to attribute combinations never seen in training; every single attribute value still appears in
training many times.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from neocompress.world.grammar import (
    BACKGROUNDS,
    SceneSpec,
    all_objects,
    canonical,
    caption,
    parse_caption,
    single_object_scenes,
)
from neocompress.world.render import Rendered, check_frames, check_size, render, to_tensor

Split = Literal["train", "heldout", "all"]
SPLITS: tuple[str, ...] = ("train", "heldout", "all")
# Mixed into every caption hash: bump it (and say so) if the grammar or the caption format ever changes.
CAPTION_HASH_SALT = "neocompress.world/v1"
# Rejection-sampling budget for a two-object scene of a split (expected draws: 1 / split fraction).
_TWO_OBJECT_ATTEMPTS = 10_000


def caption_hash(scene_or_caption: SceneSpec | str) -> float:
    """A stable number in [0, 1) for a caption: SHA-256 of the salted canonical caption text."""
    scene = parse_caption(scene_or_caption) if isinstance(scene_or_caption, str) else scene_or_caption
    text = f"{CAPTION_HASH_SALT}\n{caption(canonical(scene))}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") / 2.0**64


def split_of(scene_or_caption: SceneSpec | str, heldout_fraction: float) -> Literal["train", "heldout"]:
    """The split a caption (or scene) belongs to for a held-out fraction."""
    return "heldout" if caption_hash(scene_or_caption) < heldout_fraction else "train"


@dataclass(frozen=True)
class WorldConfig:
    """Everything that defines the world's data; validated on construction.

    size: frame side in pixels (multiple of 8, >= 32); frames: 1 + 8k, k >= 1; two_object_fraction: probability
    that a sample holds two objects; seed: the data seed; heldout_fraction: share of the caption hash range held out.
    """

    size: int = 64
    frames: int = 9
    two_object_fraction: float = 0.3
    seed: int = 0
    heldout_fraction: float = 0.15

    def __post_init__(self) -> None:
        check_size(self.size)
        check_frames(self.frames)
        if not 0.0 <= float(self.two_object_fraction) <= 1.0:
            raise ValueError(f"two_object_fraction must be in [0, 1], got {self.two_object_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 <= float(self.heldout_fraction) < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        """Build from `to_dict` output; unknown keys are an error (a typo must not silently become a default)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown WorldConfig keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**data)


class World:
    """Scenes and rendered clips of one `WorldConfig`, addressed by (split, index)."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config if config is not None else WorldConfig()
        self._objects = tuple(all_objects())
        scenes: dict[str, list[SceneSpec]] = {"train": [], "heldout": [], "all": []}
        for scene in single_object_scenes():
            scenes["all"].append(scene)
            scenes[self.split_of(scene)].append(scene)
        self._single = {name: tuple(values) for name, values in scenes.items()}

    def split_of(self, scene_or_caption: SceneSpec | str) -> Literal["train", "heldout"]:
        """The split of a caption or scene under this world's held-out fraction."""
        return split_of(scene_or_caption, self.config.heldout_fraction)

    def scenes(self, split: Split = "train") -> tuple[SceneSpec, ...]:
        """The one-object scenes of a split, in the grammar's stable order."""
        return self._single[_check_split(split)]

    def captions(self, split: Split = "train") -> list[str]:
        """The one-object caption space of a split, in the grammar's stable order."""
        return [caption(scene) for scene in self.scenes(split)]

    def _rngs(self, index: int, split: Split) -> tuple[np.random.Generator, np.random.Generator]:
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            raise ValueError(f"sample index must be a non-negative integer, got {index!r}")
        key = [self.config.seed, SPLITS.index(_check_split(split)), int(index)]
        return np.random.default_rng([*key, 0]), np.random.default_rng([*key, 1])

    def scene(self, index: int, split: Split = "all") -> SceneSpec:
        """The scene of sample `index` of a split (cheap: nothing is rendered)."""
        return self._draw_scene(self._rngs(index, split)[0], split)

    def sample(self, index: int, split: Split = "all") -> Rendered:
        """Sample `index` of a split, rendered; a pure function of (config, split, index)."""
        scene_rng, render_rng = self._rngs(index, split)
        scene = self._draw_scene(scene_rng, split)
        return render(scene, frames=self.config.frames, size=self.config.size, rng=render_rng)

    def _draw_scene(self, rng: np.random.Generator, split: Split) -> SceneSpec:
        singles = self._single[split]
        if not singles:
            raise ValueError(f"the {split!r} split is empty (heldout_fraction={self.config.heldout_fraction})")
        if rng.random() >= self.config.two_object_fraction:
            return singles[int(rng.integers(len(singles)))]
        for _ in range(_TWO_OBJECT_ATTEMPTS):
            first = self._objects[int(rng.integers(len(self._objects)))]
            others = [o for o in self._objects if o.colour != first.colour]
            second = others[int(rng.integers(len(others)))]
            background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
            scene = canonical(SceneSpec(objects=(first, second), background=background))
            if split == "all" or self.split_of(scene) == split:
                return scene
        raise RuntimeError(f"no two-object scene of the {split!r} split in {_TWO_OBJECT_ATTEMPTS} draws")


def _check_split(split: str) -> Split:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    return split  # type: ignore[return-value]


class WorldDataset(Dataset):
    """A fixed-length view of one split for training: item i is (video [3, F, H, W] in [-1, 1], caption).

    Item i is `world.sample(offset + i, split)`, rendered on access (cheap: ~1 ms), so any number of DataLoader
    workers see the same data in any order.
    """

    def __init__(self, world: World, split: Split = "train", length: int = 1024, offset: int = 0) -> None:
        if length < 0 or offset < 0:
            raise ValueError(f"length and offset must be non-negative, got {length} and {offset}")
        self.world = world
        self.split = _check_split(split)
        self.length = int(length)
        self.offset = int(offset)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a WorldDataset of length {self.length}")
        rendered = self.world.sample(self.offset + index % self.length, self.split)
        return to_tensor(rendered.video), rendered.caption
