"""DMD2's GAN term: the critic tells a texture of any phase from a flat field of the same mean (what a one-step
DMD student loses), the student's term never trains the critic or the trunk, and the pass's loss carries both
terms on the miniature's denoiser."""

from __future__ import annotations

import torch
from torch import nn

from neocompress.distill import step_run
from neocompress.distill.dmd_gan import CriticHead, critic_logits, critic_loss, generator_loss
from neocompress.models.family import get_family


class _Trunk(nn.Module):
    """Tokens of 2x2 patches of a [B, 1, 8, 8] image, a linear embedding, then the tapped norm."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.norm_out = nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(x.shape[0], 16, 4)
        return self.norm_out(self.embed(tokens))


def _stripes(batch: int, g: torch.Generator) -> torch.Tensor:
    """Diagonal stripes of period 4 at a random phase per image, values 0 and 1 (mean 0.5)."""
    idx = torch.arange(8)
    phase = torch.randint(0, 4, (batch, 1, 1), generator=g)
    return (((idx[:, None] + idx[None, :] + phase) // 2) % 2).float().unsqueeze(1)


def test_the_critic_tells_textures_of_any_phase_from_flat_fields_of_their_mean() -> None:
    torch.manual_seed(0)
    trunk, head = _Trunk(), CriticHead(16, 32)
    opt = torch.optim.Adam([*trunk.parameters(), *head.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(1)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return critic_logits(trunk, trunk.norm_out, head, lambda m: m(x))

    for _ in range(150):
        real = _stripes(16, g) + 0.1 * torch.randn(16, 1, 8, 8, generator=g)
        flat = torch.full((16, 1, 8, 8), 0.5) + 0.1 * torch.randn(16, 1, 8, 8, generator=g)
        loss = critic_loss(logits(real), logits(flat))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        real, flat = logits(_stripes(64, g)), logits(torch.full((64, 1, 8, 8), 0.5))
    assert bool((real > 0).all()) and bool((flat < 0).all())
    assert critic_loss(real, flat).item() < 0.1


def test_the_students_term_reaches_only_the_student() -> None:
    trunk, head = _Trunk(), CriticHead(16)
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    generator_loss(critic_logits(trunk, trunk.norm_out, head, lambda m: m(x), frozen=True)).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in [*trunk.parameters(), *head.parameters()])


def test_the_dmd_loss_carries_the_critic_and_generator_terms() -> None:
    family = get_family("pyramid-flow")
    pipe = family.pipeline(family.load("builtin:tiny-random"))
    den = pipe.denoiser
    settings = step_run.settings_from(2, 1, 0.5, 1.0, gan_weight=0.5)
    critic = step_run.critic_for(den, settings)
    assert isinstance(critic, CriticHead)
    assert step_run.critic_for(den, step_run.settings_from(2, 1, 0.5, 1.0)) is None  # off by default
    text = pipe.text.encode(["a red circle"] * 2)
    loss_fn = step_run.dmd_loss_fn(den, den, den, pipe.scheduler, torch.randn(2, 16, 2, 8, 8),
                                   lambda idx: (text, None), settings, 0, critic)  # fmt: skip
    fake_step, student_step = loss_fn(torch.tensor([0, 1]), 0), loss_fn(torch.tensor([0, 1]), 1)
    assert torch.isfinite(fake_step[1]["critic"]) and fake_step[1]["generator"] != fake_step[1]["generator"]  # NaN
    assert torch.isfinite(student_step[1]["generator"]) and torch.isfinite(student_step[0])
    student_step[0].backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in critic.parameters())
