"""Confidence intervals for MiniBench: a bootstrap over prompts, for one result and for the difference of two.

Why a bootstrap over videos (prompts), not a normal approximation per part: the parts are means over different
units (colour, shape, direction and speed per object, a two-object video holding two; background and temporal
consistency per video) and `distribution` is a statistic of the whole set (a Frechet distance), which has no
simple standard error. Resampling whole videos with replacement and recomputing every part on the resample
keeps each video's objects together and treats all seven parts, and their mean, the same way.

The difference of two results on the same prompts and seeds is bootstrapped *paired*: both results are
recomputed on the same resampled videos, so what the prompts share (an easy caption is easy for both pipelines)
cancels and the interval is the difference's own, much narrower than the two separate intervals suggest.

Resampling is done with count weights (a [B, n] matrix of how often each video is drawn), which makes every
part a weighted mean and the distribution part a Frechet distance between weighted Gaussians, computed for all
resamples at once with batched eigendecompositions: exactly what recomputing on the resampled videos gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Bootstrap resamples and the interval's level; the default seed keeps a result's interval reproducible.
BOOTSTRAP_RESAMPLES = 1000
LEVEL = 0.95
BOOTSTRAP_SEED = 0
OBJECT_PARTS = ("colour", "shape", "direction", "speed")
VIDEO_PARTS = ("background", "temporal_consistency")
ALL_PARTS = (*OBJECT_PARTS, *VIDEO_PARTS, "distribution")  # MiniBench's seven parts; the total is their mean


@dataclass(frozen=True)
class Evidence:
    """Per-video evidence behind one MiniBench result: what a resample recomputes the parts from.

    `object_video[k]` is the video index of object k; `hits[part][k]` its verdict for the per-object parts;
    `per_video[part][i]` video i's score for the per-video parts; the three feature sets (generated, real
    reference, noise floor) feed the distribution part; `finite[i]` says whether video i was all finite.
    """

    object_video: np.ndarray  # int [K]
    hits: dict[str, np.ndarray]  # part -> float [K]
    per_video: dict[str, np.ndarray]  # part -> float [N]
    features: np.ndarray  # float [N, D], generated
    reference: np.ndarray  # float [N, D], real videos of the same captions
    noise: np.ndarray  # float [N, D], the noise floor
    finite: np.ndarray  # bool [N]

    @property
    def videos(self) -> int:
        return int(len(self.finite))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensors for a safetensors file (the score cache keeps the evidence beside the JSON)."""
        out = {"object_video": torch.from_numpy(self.object_video.astype(np.int64))}
        out |= {f"hits.{k}": torch.from_numpy(v.astype(np.float32)) for k, v in self.hits.items()}
        out |= {f"per_video.{k}": torch.from_numpy(v.astype(np.float32)) for k, v in self.per_video.items()}
        for name in ("features", "reference", "noise"):
            out[name] = torch.from_numpy(getattr(self, name).astype(np.float32))
        out["finite"] = torch.from_numpy(self.finite.astype(np.uint8))
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Evidence:
        def prefixed(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}

        return cls(
            object_video=tensors["object_video"].numpy(),
            hits=prefixed("hits."),
            per_video=prefixed("per_video."),
            features=tensors["features"].numpy(),
            reference=tensors["reference"].numpy(),
            noise=tensors["noise"].numpy(),
            finite=tensors["finite"].numpy().astype(bool),
        )


def resample_weights(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[resamples, n] counts: row b says how often each of n videos is drawn in resample b (rows sum to n)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    return np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64)


def _weighted_frechet(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Frechet distance between x [n, D] and y [n, D] for each weight row of w [B, n] (both resampled alike).

    Unbiased weighted covariances with integer counts equal `torch.cov` of the resampled rows, so row b is
    exactly `frechet_distance(x[idx_b], y[idx_b])`. The cross term tr((Sx^1/2 Sy Sx^1/2)^1/2) is computed in
    whichever space is smaller: with Sx = A'A and Sy = B'B (A, B the centred, count-weighted rows), it is the
    nuclear norm of the n x n matrix A B' when there are fewer videos than feature dimensions (MiniBench's usual
    16-64 videos in 128 dimensions: a thousand small SVDs instead of two thousand 128 x 128 eigendecompositions),
    and goes through the D x D eigendecompositions otherwise.
    """
    total = w.sum(1, keepdim=True)  # [B, 1] = n
    mx, my = (w @ x) / total, (w @ y) / total  # [B, D]
    sq_x, sq_y = x.pow(2).sum(1), y.pow(2).sum(1)  # [n]
    traces = ((w @ sq_x) - total[:, 0] * mx.pow(2).sum(1) + (w @ sq_y) - total[:, 0] * my.pow(2).sum(1)) / (
        total[:, 0] - 1
    )
    if x.shape[0] <= x.shape[1]:
        cross = _cross_term_gram(x, y, w, mx, my, total)
    else:
        cross = _cross_term_features(x, y, w, mx, my, total)
    return (mx - my).pow(2).sum(1) + traces - 2 * cross


def _cross_term_gram(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, mx: torch.Tensor, my: torch.Tensor,
                     total: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Nuclear norm of A B' [B, n, n], A = diag(sqrt w)(x - mx) / sqrt(n - 1), B likewise for y."""
    centred = x @ y.T - (y @ mx.T).T[:, None, :] - (x @ my.T).T[:, :, None] + (mx * my).sum(1)[:, None, None]
    root_w = w.sqrt()
    product = root_w[:, :, None] * centred * root_w[:, None, :] / (total[:, :, None] - 1)
    return torch.linalg.svdvals(product).sum(1)


def _cross_term_features(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, mx: torch.Tensor, my: torch.Tensor,
                         total: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """tr((Sx^1/2 Sy Sx^1/2)^1/2) through D x D eigendecompositions of the weighted covariances."""

    def cov(a: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        second = torch.einsum("bn,nd,ne->bde", w, a, a)
        return (second - total[:, :, None] * mean[:, :, None] * mean[:, None, :]) / (total[:, :, None] - 1)

    sx, sy = cov(x, mx), cov(y, my)
    values, vectors = torch.linalg.eigh((sx + sx.transpose(1, 2)) / 2)
    root = (vectors * values.clamp(min=0).sqrt()[:, None, :]) @ vectors.transpose(1, 2)
    inner = root @ sy @ root
    return torch.linalg.eigvalsh((inner + inner.transpose(1, 2)) / 2).clamp(min=0).sqrt().sum(1)


def resampled_parts(evidence: Evidence, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every part and the total, recomputed for each weight row: {part: [B]} (the parts' order is PARTS')."""
    w = weights
    out: dict[str, np.ndarray] = {}
    object_w = w[:, evidence.object_video]  # an object is drawn as often as its video
    for part in OBJECT_PARTS:
        out[part] = (object_w @ evidence.hits[part]) / object_w.sum(1)
    for part in VIDEO_PARTS:
        out[part] = (w @ evidence.per_video[part]) / w.sum(1)
    out["distribution"] = _resampled_distribution(evidence, w)
    out["total"] = np.mean(np.stack([out[p] for p in ALL_PARTS]), axis=0)
    return out


def _resampled_distribution(evidence: Evidence, w: np.ndarray) -> np.ndarray:
    if evidence.videos < 2:
        return np.zeros(len(w))
    tw = torch.from_numpy(w)
    gen, ref, noise = (torch.from_numpy(a.astype(np.float64)) for a in (evidence.features, evidence.reference,
                                                                           evidence.noise))  # fmt: skip
    # The noise floor is resampled with the same rows as the reference it is measured against.
    distance, floor = _weighted_frechet(gen, ref, tw), _weighted_frechet(noise, ref, tw)
    score = torch.where(floor > 0, 1 - distance / floor.clamp(min=1e-30), torch.zeros_like(floor))
    return score.clamp(0, 1).numpy()


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of a bootstrap distribution."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def intervals(
    evidence: Evidence, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = LEVEL
) -> dict[str, list[float]]:
    """{part or "total": [low, high]}: the `level` bootstrap interval of each part of one result."""
    parts = resampled_parts(evidence, resample_weights(evidence.videos, resamples, seed))
    return {name: list(percentile_interval(values, level)) for name, values in parts.items()}


def paired_difference(
    before: Evidence,
    after: Evidence,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> dict[str, dict[str, Any]]:
    """{part or "total": {"delta": after - before, "interval": [low, high]}} on the same videos' resamples.

    Both results must come from the same prompts and seed (the caller checks the prompts); the videos are
    resampled with the same rows, so the interval is the paired difference's.
    """
    if before.videos != after.videos or not np.array_equal(before.object_video, after.object_video):
        raise ValueError(
            f"a paired difference needs the same prompts: {before.videos} and {after.videos} videos, "
            "or different objects per video"
        )
    weights = resample_weights(before.videos, resamples, seed)
    ones = np.ones((1, before.videos))
    point_a, point_b = resampled_parts(before, ones), resampled_parts(after, ones)
    boot_a, boot_b = resampled_parts(before, weights), resampled_parts(after, weights)
    return {
        name: {
            "delta": float(point_b[name][0] - point_a[name][0]),
            "interval": list(percentile_interval(boot_b[name] - boot_a[name], level)),
        }
        for name in boot_a
    }
