"""Training clips for a decoder: a folder of videos (mp4, gif, or a sub-folder of PNG frames per clip), or the
procedural world's renders (`builtin:world`), as tensors [3, frames, H, W] in [-1, 1] at the pipeline's size.

Why every file is opened before anything trains: a folder of a thousand clips with one broken file should fail
in the first second, naming that file, not after an hour of training. `scan_videos` reads each clip's frame
count and size (cheap) and refuses unreadable, empty or too-short ones with the path and the reason; `load_clip`
then reads the first `frames` frames, centre-crops to the target aspect and resizes (area) to the target size.
mp4 is read through imageio's ffmpeg plugin (imageio-ffmpeg carries the binary), GIF and PNG through Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neocompress.core.errors import UserInputError

VIDEO_SUFFIXES = (".mp4", ".gif")
FRAME_SUFFIX = ".png"


@dataclass(frozen=True)
class ClipFile:
    path: Path  # a video file, or a folder of PNG frames
    frames: int
    height: int
    width: int


def _png_frames(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == FRAME_SUFFIX)


def _read_frames(path: Path, limit: int | None = None) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 (at most `limit`)."""
    from PIL import Image, ImageSequence

    if path.is_dir():
        files = _png_frames(path)[:limit]
        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    if path.suffix.lower() == ".gif":
        with Image.open(path) as im:
            frames = []
            for frame in ImageSequence.Iterator(im):
                frames.append(np.asarray(frame.convert("RGB")))
                if limit is not None and len(frames) >= limit:
                    break
        return np.stack(frames)
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        frames = []
        for frame in reader:
            frames.append(np.asarray(frame)[..., :3])
            if limit is not None and len(frames) >= limit:
                break
    finally:
        reader.close()
    return np.stack(frames)


def _count(path: Path) -> tuple[int, int, int]:
    """(frames, height, width) without decoding the whole clip where the format allows."""
    from PIL import Image

    if path.is_dir():
        files = _png_frames(path)
        with Image.open(files[0]) as im:
            w, h = im.size
        return len(files), h, w
    if path.suffix.lower() == ".gif":
        with Image.open(path) as im:
            w, h = im.size
            return int(getattr(im, "n_frames", 1)), h, w
    frames = _read_frames(path)  # ffmpeg's frame count metadata is unreliable: decode (it is read once)
    return frames.shape[0], frames.shape[1], frames.shape[2]


def scan_videos(folder: str | Path, frames: int) -> list[ClipFile]:
    """Every clip in `folder` (sorted by name), each opened and checked; a clear error for the first bad one."""
    root = Path(folder)
    if not root.is_dir():
        raise UserInputError(f"video folder '{root}' does not exist or is not a directory")
    entries = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES or p.is_dir())
    others = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() not in VIDEO_SUFFIXES)
    if others:
        raise UserInputError(
            f"video folder '{root}' holds files that are not clips: {others[:5]} (give .mp4, .gif, or one folder "
            "of .png frames per clip)"
        )
    clips = []
    for path in entries:
        if path.is_dir() and not _png_frames(path):
            raise UserInputError(f"clip folder '{path}' holds no .png frames")
        try:
            n, h, w = _count(path)
        except Exception as e:  # noqa: BLE001 - any decoder failure is the file's fault, reported as such
            raise UserInputError(f"cannot read video '{path}': {type(e).__name__}: {e}") from None
        if n < frames:
            raise UserInputError(f"video '{path}' has {n} frame(s); the decoder trains on clips of {frames}")
        clips.append(ClipFile(path, n, h, w))
    if not clips:
        raise UserInputError(f"video folder '{root}' holds no clips (.mp4, .gif, or folders of .png frames)")
    return clips


def to_clip(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> [3, T, height, width] in [-1, 1]: centre crop to the aspect, area resize."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    _, _, h, w = video.shape
    target = height / width
    if h / w > target:  # too tall: crop rows
        keep = round(w * target)
        video = video[:, :, (h - keep) // 2 : (h - keep) // 2 + keep]
    elif h / w < target:
        keep = round(h / target)
        video = video[:, :, :, (w - keep) // 2 : (w - keep) // 2 + keep]
    if video.shape[-2:] != (height, width):
        video = F.interpolate(video, size=(height, width), mode="area")
    return video.permute(1, 0, 2, 3).clamp(-1.0, 1.0).contiguous()


def load_clip(clip: ClipFile, frames: int, height: int, width: int) -> torch.Tensor:
    return to_clip(_read_frames(clip.path, frames)[:frames], height, width)


def world_clips(count: int, frames: int, size: int, seed: int = 0, split: str = "train") -> list[torch.Tensor]:
    """`count` renders of the procedural world (what the miniature's VAE was trained on), [3, frames, size, size]."""
    from neocompress.world import World, WorldConfig, to_tensor

    world = World(WorldConfig(size=size, frames=frames, seed=seed))
    return [to_tensor(world.sample(i, split).video) for i in range(count)]
