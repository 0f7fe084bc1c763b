"""A tiny seeded regression trained with the engine, launched by the tests as 2 CPU processes.

Run as `accelerate launch --multi_gpu --num_processes 2 tests/train/ddp_script.py --out DIR ...` or
`torchrun --standalone --nproc_per_node 2 tests/train/ddp_script.py --out DIR ...`. Each rank writes
`DIR/rank<r>.pt`: its final weights, the dataset indices it trained on per step and the world size Accelerate saw.
The toy problem lives here (not in the test module) so the launched processes and the in-process reference build
exactly the same model and data.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

N_SAMPLES, DIM, HIDDEN = 64, 8, 32


class IndexedRegression(Dataset):
    """(x, y, index): the index lets a test see which samples each process trained on."""

    def __init__(self, seed: int = 0, n: int = N_SAMPLES):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, DIM, generator=g)
        w = torch.randn(DIM, 1, generator=g)
        self.y = torch.sin(self.x @ w) + 0.5 * self.x[:, :1]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.x[i], self.y[i], i


def make_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    """The same weights for a given seed, without touching the caller's global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(DIM, HIDDEN), nn.Tanh(), nn.Dropout(dropout), nn.Linear(HIDDEN, 1))


def make_loss(model: nn.Module, seen: list[list[int]] | None = None, input_noise: float = 0.0):
    """MSE with an MAE part; records the indices of each micro-batch in `seen`; optional input noise (global RNG)."""

    def loss_fn(batch, step):
        x, y, idx = batch
        if seen is not None:
            seen.append([step, *idx.tolist()])
        if input_noise:
            x = x + input_noise * torch.randn_like(x)
        pred = model(x)
        mse = F.mse_loss(pred, y)
        return mse, {"mse": mse.detach(), "mae": (pred - y).abs().mean().detach()}

    return loss_fn


def main() -> None:
    from neocompress.train import TrainConfig, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--expect-world", type=int, default=2)
    ap.add_argument("--cpu", choices=["auto", "false"], default="auto", help="false reproduces the misconfiguration")
    ap.add_argument("--input-noise", type=float, default=0.0, help="loss noise from each rank's global RNG")
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--interrupt-at", type=int, default=-1, help="raise from the loss at this step (both ranks)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=1e-2,
        seed=0,
        checkpoint_every=args.checkpoint_every,
    )
    model, seen = make_model(), []
    inner = make_loss(model, seen, input_noise=args.input_noise)

    def loss_fn(batch, step):
        if step == args.interrupt_at:
            raise SystemExit(f"interrupted at step {step}")
        return inner(batch, step)

    result = train(
        config,
        model,
        loss_fn,
        IndexedRegression(),
        args.out / "work",
        cpu=None if args.cpu == "auto" else False,
        world_size=args.expect_world,
    )
    rank = int(os.environ.get("RANK", "0"))
    torch.save(
        {"state": result.state, "seen": seen, "world_size": result.world_size, "history": result.history},
        args.out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main()
