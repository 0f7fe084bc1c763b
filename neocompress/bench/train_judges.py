"""Train the MiniBench judges on rendered videos of the world's train split, measure them, and write the weights.

    python -m neocompress.bench.train_judges --output neocompress/assets/judges --work-dir out/judges-train

Why these choices:

- Train split only: MiniBench asks about held-out captions, so the judges' accuracy on held-out videos is a fair
  measure of how they read captions they never saw (every single attribute value is in training).
- Half the training scenes hold two objects (the world's default is 0.3): binding shape to colour is the hard
  part, and two-object scenes are where it is learnt.
- One random frame per video per step: appearance is visible in every frame and the network averages per-frame
  features, so a frame a step trains it at a ninth of the cost of nine; it reads (and averages) all frames when
  judging. GroupNorm rather than BatchNorm for the same reason: a frame's features never depend on the batch,
  so training on single frames and judging whole clips compute the same function (it also learnt ~2x faster).
- Augmentations that imitate a generator's defects (down-and-up sampling and Gaussian blur, additive noise, small
  per-channel gain and offset): the judges must read VAE-decoded videos, which are softer and noisier than
  renders, and a judge that only knows crisp renders would mark a good but slightly blurry video wrong.
- One intra-op thread: on the small shared CPU this was measured 3-7x faster than two contending threads.

After training it records, in `judges.json`: the training config, seed, wall time and loss curve summary; the
accuracy of every part on real held-out videos (`judge_accuracy`: the judges and the tracker on held-out samples,
and for temporal consistency and distribution the score real videos get against other real renders of the same
captions); and the chance level of those two parts, measured on uniform noise with the default MiniBench.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from neocompress.bench.judges import JudgeConfig, JudgeNet, Judges, judge_loss, scene_targets
from neocompress.bench.minibench import (
    DEFAULT_NUM_PROMPTS,
    judge_accuracy_on_real,
    noise_generate_fn,
    renderer_generate_fn,
    run_minibench,
)
from neocompress.train import TrainConfig, plot_losses, train
from neocompress.world import World, WorldConfig, WorldDataset, parse_caption

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeTrainingConfig:
    """Everything that defines a judge training run (recorded in judges.json)."""

    steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    frames_per_sample: int = 1
    two_object_fraction: float = 0.5
    width: int = 16
    feature_dim: int = 128
    seed: int = 0
    eval_videos: int = 1024
    eval_seed: int = 1
    minibench_prompts: int = DEFAULT_NUM_PROMPTS


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of images [N, C, H, W] (reflect padding)."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def augment(video: torch.Tensor) -> torch.Tensor:
    """Generator-like defects on a batch [B, 3, F, H, W] in [-1, 1], from the global torch RNG (seeded by the
    training engine per rank and checkpointed, so a resumed run draws the same)."""
    b, c, f, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * f, c, h, w)
    kind = int(torch.randint(0, 3, ()))
    if kind == 0:  # down-and-up sampling, like a decoder's softness
        factor = int(torch.randint(2, 5, ()))
        small = F.interpolate(frames, size=(h // factor, w // factor), mode="bilinear", antialias=True)
        soft = F.interpolate(small, size=(h, w), mode="bilinear")
    elif kind == 1:
        soft = _gaussian_blur(frames, float(torch.empty(()).uniform_(0.4, 1.6)))
    else:
        soft = frames
    chosen = (torch.rand(b) < 0.6).repeat_interleave(f).view(-1, 1, 1, 1)
    frames = torch.where(chosen, soft, frames)
    x = frames.reshape(b, f, c, h, w).transpose(1, 2)
    gain = 1 + (torch.rand(b, c, 1, 1, 1) - 0.5) * 0.2
    offset = (torch.rand(b, c, 1, 1, 1) - 0.5) * 0.12
    noise = torch.randn_like(x) * torch.rand(b, 1, 1, 1, 1) * 0.08
    return (x * gain + offset + noise).clamp(-1, 1)


def _collate(items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    videos, captions = zip(*items, strict=True)
    return torch.stack(videos), list(captions)


def train_judges(
    output: str | Path | None,
    config: JudgeTrainingConfig | None = None,
    work_dir: str | Path = "out/judges-train",
    progress: bool = False,
) -> Judges:
    """Train, measure and (when `output` is given) save the judges; returns them with their record in `.info`."""
    cfg = config or JudgeTrainingConfig()
    work = Path(work_dir)
    world = World(WorldConfig(two_object_fraction=cfg.two_object_fraction, seed=cfg.seed))
    data = WorldDataset(world, "train", length=cfg.steps * cfg.batch_size)
    torch.manual_seed(cfg.seed)  # the network's initialisation
    net = JudgeNet(JudgeConfig(width=cfg.width, feature_dim=cfg.feature_dim))

    def loss_fn(batch: tuple[torch.Tensor, list[str]], step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        videos, captions = batch
        frames = torch.randperm(videos.shape[2])[: cfg.frames_per_sample].sort().values
        inputs = augment(videos[:, :, frames])
        losses = judge_loss(net(inputs), scene_targets([parse_caption(c) for c in captions]))
        return sum(losses.values()), {k: v.detach() for k, v in losses.items()}  # type: ignore[return-value]

    train_config = TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        lr_schedule="cosine",
        min_lr_ratio=0.02,
        seed=cfg.seed,
        log_every=50,
    )
    result = train(train_config, net, loss_fn, data, work, collate_fn=_collate, resume=False, progress=progress)
    plot_losses(result.history, work / "judges_loss.png", title="MiniBench judges")
    judges = Judges(net.eval())

    t0 = time.perf_counter()
    accuracy = judge_accuracy_on_real(judges, num_videos=cfg.eval_videos, seed=cfg.eval_seed)
    real = run_minibench(renderer_generate_fn(), num_prompts=cfg.minibench_prompts, judges=judges)
    noise = run_minibench(noise_generate_fn(), num_prompts=cfg.minibench_prompts, judges=judges)
    eval_s = time.perf_counter() - t0
    accuracy.update({k: real.parts[k] for k in ("temporal_consistency", "distribution")})
    summary = result.summary()
    judges.info = {
        "command": "python -m neocompress.bench.train_judges " + " ".join(sys.argv[1:]),
        "training": asdict(cfg),
        "seed": cfg.seed,
        "train_wall_time_s": round(result.wall_time_s, 2),
        "eval_wall_time_s": round(eval_s, 2),
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "loss_first": summary["loss_first"],
        "loss_last": summary["loss_last"],
        "parts_last": summary["parts_last"],
        "judge_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "judge_accuracy_note": (
            f"colour, shape, background (judges) and direction, speed (tracker): accuracy on {cfg.eval_videos} real "
            f"held-out videos (world seed {cfg.eval_seed}, 30% two-object); temporal_consistency, distribution: the "
            f"MiniBench score of real renders against other real renders of the same captions "
            f"({cfg.minibench_prompts} prompts, seed 0)"
        ),
        "chance": {k: round(noise.parts[k], 4) for k in ("temporal_consistency", "distribution")},
        "chance_note": f"uniform noise videos, default MiniBench ({cfg.minibench_prompts} prompts, seed 0)",
        "minibench_real_total": round(real.total, 4),
        "minibench_noise_total": round(noise.total, 4),
    }
    if output is not None:
        judges.save(output)
    return judges


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="neocompress/assets/judges", help="where judges.* are written")
    parser.add_argument("--work-dir", default="out/judges-train", help="training log, checkpoint, loss curve")
    parser.add_argument("--steps", type=int, default=JudgeTrainingConfig.steps)
    parser.add_argument("--seed", type=int, default=JudgeTrainingConfig.seed)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    judges = train_judges(
        args.output, JudgeTrainingConfig(steps=args.steps, seed=args.seed), work_dir=args.work_dir, progress=False
    )
    print(json.dumps({k: judges.info[k] for k in ("train_wall_time_s", "judge_accuracy", "chance")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
