"""How far few-step sampling is from the teacher's many-step samples, on held-out prompts and seeds.

Two numbers per model, each against the teacher's samples with the same prompts and seeds: the latent MSE (per
seed: does it reproduce the teacher's sample?) and the Frechet distance between Gaussians fitted to the MiniBench
judge's features of the decoded videos (does it produce the teacher's distribution of videos?). DMD optimises the
second; the first would punish a student that is right in distribution but differs per seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class TeacherReference:
    latents: Tensor  # [N, C, units, h, w], one per (prompt, seed), prompts outer
    features: Tensor  # [N, D] judge features of the decoded videos


def _video_size() -> dict[str, int]:
    from neocompress.world import WorldConfig

    world = WorldConfig()
    return {"frames": world.frames, "height": world.size, "width": world.size}


def _sample(pipe: Any, prompts: list[str], seeds: list[int], schedule: Any) -> Tensor:
    size = _video_size()
    return torch.cat([pipe.sample_latents([p], seed=s, schedule=schedule, **size) for p in prompts for s in seeds])


def _features(pipe: Any, latents: Tensor) -> Tensor:
    from neocompress.bench.judges import Judges

    return Judges.load()(pipe.decode(latents))["features"].float()


def teacher_reference(pipe: Any, prompts: list[str], seeds: list[int], schedule: Any) -> TeacherReference:
    latents = _sample(pipe, prompts, seeds, schedule)
    return TeacherReference(latents, _features(pipe, latents))


def few_step_distance(pipe: Any, prompts: list[str], seeds: list[int], schedule: Any,
                      reference: TeacherReference) -> dict[str, Any]:  # fmt: skip
    """Latent MSE (mean, and per sample) and judge-feature Frechet distance of `pipe` at `schedule` to the teacher."""
    from neocompress.bench.minibench import frechet_distance

    latents = _sample(pipe, prompts, seeds, schedule)
    per_sample = (latents.float() - reference.latents.float()).pow(2).flatten(1).mean(1)
    return {
        "latent_mse": float(per_sample.mean()),
        "latent_mse_per_sample": [round(float(v), 6) for v in per_sample],
        "frechet_judge_distance": frechet_distance(_features(pipe, latents), reference.features),
        "samples": int(latents.shape[0]),
        "schedule": schedule.to_dict(),
    }

