"""The prompt-only distillation loss and the held-out measures, on real tokens only (the T5 mask).

loss = w_mse * MSE + w_cos * (1 - cosine) between the student path's token states and the teacher path's
(reference section 3: 1.0 and 0.1). Padding positions are left out of both terms: T5 computes states there too,
but the denoiser's joint-attention mask keeps them from image tokens, so matching them would spend the student's
capacity on values nothing reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(pred.dtype).unsqueeze(-1)
    return ((pred - target) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1.0)


def masked_cosine(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean cosine similarity over real tokens."""
    cos = F.cosine_similarity(pred, target, dim=-1)
    m = mask.to(pred.dtype)
    return (cos * m).sum() / m.sum().clamp_min(1.0)


def distill_loss(pred: Tensor, target: Tensor, mask: Tensor, w_mse: float, w_cos: float) -> tuple[Tensor, dict]:
    mse = masked_mse(pred, target, mask)
    cos = 1.0 - masked_cosine(pred, target, mask)
    return w_mse * mse + w_cos * cos, {"mse": mse.detach(), "cos_distance": cos.detach()}


@torch.no_grad()
def embedding_agreement(pred: Tensor, target: Tensor, mask: Tensor) -> dict[str, float]:
    """Cosine and relative error (||pred - target|| / ||target|| over real tokens) of held-out embeddings."""
    m = mask.to(pred.dtype).unsqueeze(-1)
    rel = ((pred - target) * m).norm() / (target * m).norm().clamp_min(1e-12)
    return {"cosine": float(masked_cosine(pred, target, mask)), "relative_error": float(rel),
            "mse": float(masked_mse(pred, target, mask))}  # fmt: skip
