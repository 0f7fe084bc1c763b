"""The shipped miniature's regression reference: one prompt, one seed, a few numbers of the video it makes."""

from __future__ import annotations

import torch

PROMPT = "a red circle moving left slowly on a grey background"
SEED = 0


def reference_stats(video: torch.Tensor) -> list[float]:
    """Mean, std and 16 evenly spaced values of one video: cheap to store, sensitive to any change."""
    return [float(video.mean()), float(video.std()), *[float(v) for v in video.flatten()[:: video.numel() // 16]]]
