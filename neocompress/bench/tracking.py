"""Motion from tracked centroids: segment an object's colour in every frame, track its centroid, fit a velocity.

Why pixels and not a learned judge: the world's objects are flat colours from a fixed palette far apart in RGB
(every pair of object colours >= 140 apart, every background level >= 130 from every object colour), so a
colour tells the object, and its centroid's straight-line fit tells direction and speed, without any training
and without a network that could learn shortcuts.

Segmentation: every pixel is given the nearest colour of the world palette (the 6 object colours plus every
background level) and kept only if it is within `MAX_COLOUR_DISTANCE` of it. Nearest-colour assignment is what
makes this robust to blur and to a generator's colour drift: a blurred edge pixel goes to whichever side it is
closer to, and an object whose colour drifted a little is still nearer its own palette entry than any other.

Localisation per frame: the mask of the object's colour is box-filtered with the object's size and the densest
window is taken (so stray pixels elsewhere cannot drag the centroid), then the centroid of the mask inside a
window of 1.5 object sides around it, re-centred once. The object is *found* in a frame only if that window holds
at least `MIN_AREA_FRACTION` of an object's bounding box and at least `MIN_COMPACTNESS` of all the frame's pixels
of that colour: uniform noise has ~10% of its pixels near any colour, spread over the whole frame, and fails both.

Fit: least squares of x(t) and y(t) over the frames where the object was found (at least `MIN_FOUND_FRACTION` of
them, else the object is not found at all). Classification, against the world's speeds for this frame count and
size (`world.speed_px_per_frame`):

- the velocity component along its dominant axis gives the direction (left/right/up/down);
- its magnitude is *static* below half the slow speed (then neither direction nor speed is credited: a video in
  which nothing moves does not show "moving left slowly"), *slow* below the midpoint of the two speeds, else *fast*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neocompress.world import (
    BACKGROUND_STYLES,
    COLOUR_RGB,
    COLOURS,
    DIRECTION_VECTORS,
    ObjectSpec,
    object_size,
    speed_px_per_frame,
)

# A pixel farther than this (RGB, 0-255) from every palette colour belongs to nothing. Half the smallest distance
# between an object colour and any other palette colour is ~65; nearest assignment makes a larger radius safe.
MAX_COLOUR_DISTANCE = 80.0
# The window around the object must hold at least this fraction of an object's bounding box (the thinnest shape,
# the triangle, covers 0.5 of it)...
MIN_AREA_FRACTION = 0.2
# ...and at least this fraction of every pixel of that colour in the frame.
MIN_COMPACTNESS = 0.5
# The object must be found in at least this fraction of the frames (and in 3) for a velocity to be fitted.
MIN_FOUND_FRACTION = 0.6
# Window side around the densest location, in object sides.
WINDOW = 1.5


def _palette() -> tuple[torch.Tensor, list[str]]:
    """Object colours first (index = COLOURS index), then every distinct background level."""
    names = list(COLOURS)
    colours = [COLOUR_RGB[c] for c in COLOURS]
    for style in BACKGROUND_STYLES.values():
        for level in style.colours:
            if level not in colours:
                colours.append(level)
                names.append(f"background{level}")
    return torch.tensor(colours, dtype=torch.float32), names


PALETTE, PALETTE_NAMES = _palette()


def palette_labels(video: torch.Tensor) -> torch.Tensor:
    """Per-pixel palette index [F, H, W] of a video [3, F, H, W] in [-1, 1]; -1 where no palette colour is near."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected one video [3, F, H, W], got {tuple(video.shape)}")
    rgb = (video.detach().float().clamp(-1, 1) + 1.0) * 127.5  # [3, F, H, W]
    pixels = rgb.permute(1, 2, 3, 0)  # [F, H, W, 3]
    dist = torch.cdist(pixels.reshape(-1, 3), PALETTE).reshape(*pixels.shape[:3], len(PALETTE))
    best, label = dist.min(dim=-1)
    return torch.where(best <= MAX_COLOUR_DISTANCE, label, torch.full_like(label, -1))


@dataclass(frozen=True)
class Track:
    """An object's per-frame centroids (x, y in pixels, NaN where not found) and its fitted velocity (px/frame)."""

    colour: str
    centroids: np.ndarray  # [F, 2]
    found: np.ndarray  # bool [F]
    velocity: tuple[float, float]


def locate(mask: torch.Tensor, side: int) -> tuple[float, float, bool]:
    """(x, y, found) of one object's mask [H, W] (see the module docstring for the rule)."""
    h, w = mask.shape
    total = float(mask.sum())
    if total == 0:
        return math.nan, math.nan, False
    m = mask.float()[None, None]
    density = F.avg_pool2d(m, side, stride=1, padding=side // 2, count_include_pad=True)[0, 0]
    peak = int(density.argmax())
    cy, cx = (peak // density.shape[1]) + 0.5, (peak % density.shape[1]) + 0.5
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    half = WINDOW * side / 2
    count = 0.0
    for _ in range(2):  # centroid inside the window, then once more around that centroid
        window = m[0, 0] * ((ys - cy).abs() <= half) * ((xs - cx).abs() <= half)
        count = float(window.sum())
        if count == 0:
            return math.nan, math.nan, False
        cx, cy = float((window * xs).sum() / count), float((window * ys).sum() / count)
    found = count >= MIN_AREA_FRACTION * side * side and count >= MIN_COMPACTNESS * total
    return cx, cy, found


def track(video: torch.Tensor, colour: str, labels: torch.Tensor | None = None) -> Track | None:
    """Track the object of `colour` through a video [3, F, H, W] in [-1, 1]; None when it is not found.

    `labels` (from `palette_labels`) may be passed to share one segmentation among the objects of a video.
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; expected one of: {', '.join(COLOURS)}")
    labels = palette_labels(video) if labels is None else labels
    frames, size = labels.shape[0], labels.shape[-1]
    side = object_size(size)
    index = COLOURS.index(colour)
    centroids = np.full((frames, 2), np.nan)
    found = np.zeros(frames, dtype=bool)
    for f in range(frames):
        x, y, ok = locate(labels[f] == index, side)
        if ok:
            centroids[f], found[f] = (x, y), True
    if found.sum() < max(3, math.ceil(MIN_FOUND_FRACTION * frames)):
        return None
    t = np.nonzero(found)[0].astype(np.float64)
    slope = np.polyfit(t, centroids[found], 1)[0]  # [2]: (vx, vy) in px/frame
    return Track(colour=colour, centroids=centroids, found=found, velocity=(float(slope[0]), float(slope[1])))


def classify_motion(velocity: tuple[float, float], frames: int, size: int) -> tuple[str | None, str | None]:
    """(direction, speed) of a fitted velocity at this frame count and size; (None, None) for a static object."""
    vx, vy = velocity
    along = max(abs(vx), abs(vy))
    slow, fast = speed_px_per_frame("slow", frames, size), speed_px_per_frame("fast", frames, size)
    if along < slow / 2:
        return None, None
    direction = next(d for d, (ux, uy) in DIRECTION_VECTORS.items() if (ux * vx + uy * vy) == along)
    speed = "slow" if along < (slow + fast) / 2 else "fast"
    return direction, speed


@dataclass(frozen=True)
class MotionVerdict:
    """What the tracker makes of one object: what it measured and whether it matches the caption."""

    direction: str | None
    speed: str | None
    velocity: tuple[float, float] | None

    def direction_ok(self, obj: ObjectSpec) -> bool:
        return self.direction == obj.direction

    def speed_ok(self, obj: ObjectSpec) -> bool:
        return self.speed == obj.speed


def judge_motion(
    video: torch.Tensor, objects: tuple[ObjectSpec, ...] | list[ObjectSpec], labels: torch.Tensor | None = None
) -> list[MotionVerdict]:
    """A verdict per object of a caption for one video [3, F, H, W] in [-1, 1] (an object not found: all None)."""
    labels = palette_labels(video) if labels is None else labels
    frames, size = labels.shape[0], labels.shape[-1]
    out = []
    for obj in objects:
        found = track(video, obj.colour, labels)
        if found is None:
            out.append(MotionVerdict(None, None, None))
            continue
        direction, speed = classify_motion(found.velocity, frames, size)
        out.append(MotionVerdict(direction, speed, found.velocity))
    return out
