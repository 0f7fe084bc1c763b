"""Pyramidal DMD (`run_dmd`) on builtin:tiny-random, launched by tests/distill/test_dmd_ddp.py as 2 CPU processes.

`accelerate launch --multi_gpu --num_processes 2 tests/distill/ddp_dmd_script.py --out DIR`. Each rank writes
`DIR/rank<r>.pt`: its final student and fake-model weights, the history and the world size. The student trains
on every second step only, so DDP must cope with parameters that get no gradient on half the steps.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch


def main() -> None:
    from neocompress.distill.step_run import run_dmd, settings_from
    from neocompress.models.family import get_family
    from neocompress.train.stage import StageConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    family = get_family("pyramid-flow")
    pipe = family.pipeline(family.load("builtin:tiny-random"))
    latents = torch.randn(8, 16, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    captions = ["a red circle", "a blue square"] * 4

    def text_of(idx):
        return pipe.text.encode([captions[i] for i in idx]), pipe.text.encode([""] * len(idx))

    def denoiser():
        return family.load("builtin:tiny-random")["denoiser"].module

    teacher, student, fake = denoiser().eval().requires_grad_(False), denoiser(), denoiser()
    stage = StageConfig(steps=6, batch_size=2, lr=1e-3, warmup_steps=1)
    result = run_dmd(student, fake, teacher, pipe.scheduler, latents, text_of, settings_from(2, 4, 0.5, 3.0), stage,
                     args.out / "work", seed=0)  # fmt: skip
    rank = int(os.environ.get("RANK", "0"))
    state = {**{f"student.{k}": v for k, v in student.state_dict().items()},
             **{f"fake.{k}": v for k, v in fake.state_dict().items()}}  # fmt: skip
    torch.save({"state": state, "history": result.history, "world_size": result.world_size},
               args.out / f"rank{rank}.pt")  # fmt: skip


if __name__ == "__main__":
    main()
