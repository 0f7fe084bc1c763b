"""DMD2's GAN term for Pyramidal DMD: a critic on the fake-score model's features, real = the training latents.

Why it is needed (measured on the miniature, `runs/issue16-miniature/background_probe.py`): a one-step sampler
loses every textured background (striped and checkered: 0 of 27 right at 1-1-1, 17 of 27 at the teacher's
20-20-20), because a texture's phase is random and a one-step prediction is its mean, a flat colour. The DMD
gradient cannot break that symmetry: the teacher's score pulls a flat output towards stripes of every phase at
once, which average out. A critic that tells real latents from the student's sees texture as such, whatever its
phase, so its gradient says "draw a texture" where the caption asks for one (DMD2, Yin et al. 2024, section 4.3:
the GAN term is what recovers fine detail).

As in DMD2 the critic is a small head on the fake-score model's trunk: its last hidden states of the current clip
(the input of the model's output norm, text-conditioned through the joint attention), one logit per token,
averaged. Both sides are re-noised to the same random level of the drawn stage before the trunk sees them.
The head and the trunk learn to classify (real: the training latents; fake: the student's estimates, detached);
the student learns to be classified real through the trunk with its weights held (`torch.func.functional_call`
with detached parameters), so the generator's loss never trains the critic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CriticHead(nn.Module):
    """Per-token MLP to one logit, averaged over the tokens: texture anywhere in the frame counts.

    `gain` scales the logits: the head trains in the run's one optimizer at the student's small learning rate,
    and Adam's step does not depend on the gradient's scale, so a fresh head would need thousands of steps to say
    anything (at gain 1 it stayed at chance, loss 1.396 = 2 ln 2, through a 300-step run)."""

    def __init__(self, width: int, hidden: int | None = None, gain: float = 10.0) -> None:
        super().__init__()
        hidden = hidden or width
        self.gain = gain
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, N, width] -> logits [B]."""
        return self.gain * self.net(tokens.float()).squeeze(-1).mean(dim=1)


@contextmanager
def captured_input(module: nn.Module) -> Iterator[list[Tensor]]:
    """Collects the first positional input of every call of `module` while the context is open."""
    seen: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


def critic_logits(trunk: nn.Module, tap: nn.Module, head: CriticHead, call: Callable[[nn.Module], Any],
                  frozen: bool = False) -> Tensor:  # fmt: skip
    """Run `call(model)` on the trunk (with its parameters detached when `frozen`) and score the hidden states that
    reach `tap` with `head` (frozen too when `frozen`)."""
    with captured_input(tap) as seen:
        if frozen:
            params = {k: v.detach() for k, v in trunk.named_parameters()}
            buffers = dict(trunk.named_buffers())
            call(lambda *a, **k: torch.func.functional_call(trunk, {**params, **buffers}, a, k))
        else:
            call(trunk)
    if len(seen) != 1:
        raise RuntimeError(f"the critic's tap saw {len(seen)} calls, expected 1")
    if not frozen:
        return head(seen[0])
    head_params = {k: v.detach() for k, v in head.named_parameters()}
    return torch.func.functional_call(head, head_params, (seen[0],))


def critic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The critic's logistic loss: real -> 1, fake -> 0 (softplus form, stable)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating: the student wants its estimates classified real."""
    return F.softplus(-fake_logits).mean()
