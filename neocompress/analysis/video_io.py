"""Write generated videos (mp4 or gif) and PNG frame grids.

imageio-ffmpeg's wheel carries its own ffmpeg, so mp4 works offline; GIF goes through Pillow. Frame grids are
what a person looks at first in a report.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] -> [F, H, W, 3] uint8."""
    if video.dim() != 4 or video.shape[0] != 3:
        raise ValueError(f"expected one video [3, F, H, W], got {list(video.shape)}")
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def write_video(frames: np.ndarray, path: Path, fps: int = 8) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    elif suffix == ".mp4":
        import imageio.v2 as imageio

        h, w = frames.shape[1:3]
        # H.264 wants even sizes and a 16-multiple macro block; ffmpeg rescales otherwise, so pad with edge pixels.
        ph, pw = (-h) % 16, (-w) % 16
        if ph or pw:
            frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=16) as writer:
            for f in frames:
                writer.append_data(f)
    else:
        raise ValueError(f"unsupported video format '{suffix}' (use .mp4 or .gif)")
    return path


def frame_grid(
    frames: np.ndarray, path: Path, columns: int | None = None, scale: int = 2, caption: str | None = None
) -> Path:
    """Tile frames [F, H, W, 3] into one PNG, upscaled with nearest neighbour so small videos are visible."""
    n, h, w = frames.shape[:3]
    cols = columns or min(n, 9)
    rows = math.ceil(n / cols)
    pad, top = 2, (14 if caption else 0)
    grid = Image.new("RGB", (cols * (w * scale + pad) + pad, rows * (h * scale + pad) + pad + top), "white")
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        img = Image.fromarray(f).resize((w * scale, h * scale), Image.NEAREST)
        grid.paste(img, (pad + c * (w * scale + pad), top + pad + r * (h * scale + pad)))
    if caption:
        ImageDraw.Draw(grid).text((pad, 1), caption[:120], fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
