"""The training run of `step_distill`: Pyramidal DMD on the shared engine (reference section 6).

Three denoisers: the frozen teacher (run with classifier-free guidance), the student (initialised from it) and the
fake-score model (initialised from it too). One engine step draws a batch of the teacher's own samples, a (unit,
stage) and one of the student's fixed local noise levels, builds the student's input exactly as flow matching
does (the clean unit's start/end mixture at that level, the temporal-pyramid history of the earlier units) and
takes the student's clean estimate z_theta with one Euler step. Then:

- every step, the fake model is trained with the pyramidal flow-matching loss on z_theta (detached), re-noised to
  a uniform level of the same stage: it learns the student's distribution;
- every `update_ratio`-th step, the student is trained too: z_theta re-noised again, the DMD gradient from the
  teacher's and the fake model's velocities there (weighted per sample), plus `cauchy_weight` x the Cauchy
  regression of z_theta towards the teacher's sample at that stage's resolution;
- with `paired_weight` > 0, DMD's paired regression (`ode_pairs`): on student steps, one step of the student from the
  very point the teacher's last pyramid stage started from, regressed (Cauchy) towards where the teacher ended;
- with `gan_weight` > 0, DMD2's GAN term (`dmd_gan`): a critic head on the fake model's trunk learns every step to
  tell the training latents from the student's estimates (both re-noised), and on student steps the student is
  pushed to be classified real, through the trunk with its weights held.

Both updates share the step's loss: the fake loss reaches only the fake model (z_theta is detached there) and the
student's loss only the student (the fake model runs without gradient for it), so one optimizer serves both;
on fake-only steps the student's parameters get no gradient and AdamW leaves them (and their moments) alone.
Parts a step does not compute (the student's on fake-only steps) are logged as NaN, which the loss plot skips.
Randomness comes from generators seeded by the step, so a resumed run draws the same batches and levels.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neocompress.distill.dmd import cauchy_loss, clean_estimate, dmd_gradient, dmd_loss, renoise, student_levels
from neocompress.distill.dmd_gan import CriticHead, critic_logits, critic_loss, generator_loss
from neocompress.models.pyramid_flow.history import history_for
from neocompress.models.pyramid_flow.objective import Indices, flow_matching_batch
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler
from neocompress.models.pyramid_flow.text_encoders import TextEmbeddings
from neocompress.train.engine import train
from neocompress.train.stage import stage_train_config

NAN = float("nan")
# the denoiser's output norm: its input, the current clip's hidden states, is what the GAN term's critic reads
CRITIC_TAP = "norm_out"
# the critic sees both sides re-noised to at most this local level: above it a low-contrast texture drowns in noise
CRITIC_TAU_MAX = 0.5


def per_stage(guidance: float | list[float], stages: int) -> list[float]:
    """The teacher's CFG scale at every pyramid stage: one scale for all, or the list as given."""
    return list(guidance) if isinstance(guidance, list) else [float(guidance)] * stages


@dataclass
class DMDSettings:
    update_ratio: int  # fake-model updates per student update
    noise_levels: list[float]  # the student's local sigmas
    cauchy_weight: float
    guidance: float | list[float]  # the teacher's CFG scale (<= 1: off), or one per pyramid stage
    first_unit: int = 0  # the first unit the student samples (1 in hybrid mode: unit 0 comes from an image model)
    gan_weight: float = 0.0  # DMD2's GAN term (0: off)
    paired_weight: float = 0.0  # DMD's regression on the teacher's (last-stage start, end) pairs (0: off)


@dataclass
class DMDStep:
    """One step's draw: what the student sees and what its estimate is compared against."""

    sample: list[Tensor]  # history + the student's noisy input
    timestep: Tensor
    text: TextEmbeddings
    stage: int
    s_loc: float
    clean: Tensor  # the teacher's sample of this unit at the stage's resolution


def draw_step(scheduler: PyramidFlowScheduler, latents: Tensor, text: TextEmbeddings, levels: list[float],
              g: torch.Generator, first_unit: int = 0) -> DMDStep:  # fmt: skip
    """The student's input for one step: a random unit (from `first_unit` on) and stage, one of its noise levels,
    the flow-matching mix."""
    first_unit = min(first_unit, latents.shape[2] - 1)
    unit = int(torch.randint(first_unit, latents.shape[2], (), generator=g))
    stage = int(torch.randint(scheduler.stages, (), generator=g))
    s_loc = levels[int(torch.randint(len(levels), (), generator=g))]
    fm = flow_matching_batch(scheduler, latents, text, unit, stage, g, s_loc=s_loc)
    clean = scheduler.latent_pyramid(latents[:, :, unit : unit + 1])[stage]
    return DMDStep(fm.sample, fm.timestep, text, stage, s_loc, clean)


def guided(denoiser: nn.Module, sample: list[Tensor], text: TextEmbeddings, uncond: TextEmbeddings | None,
           timestep: Tensor, guidance: float) -> Tensor:  # fmt: skip
    """The teacher's velocity with CFG (batched [uncond, cond] as the pipeline does), or plain when guidance <= 1."""
    if uncond is None or guidance <= 1.0:
        return denoiser(sample, text.tokens, text.mask, text.pooled, timestep)
    both = TextEmbeddings.cat([uncond, text])
    v_u, v_c = denoiser([torch.cat([x, x]) for x in sample], both.tokens, both.mask, both.pooled,
                        torch.cat([timestep, timestep])).chunk(2)  # fmt: skip
    return v_u + guidance * (v_c - v_u)


def _call(model: nn.Module, sample: list[Tensor], text: TextEmbeddings, timestep: Tensor) -> Tensor:
    return model(sample, text.tokens, text.mask, text.pooled, timestep)


def _timestep(t: Tensor | float, batch: int) -> Tensor:
    t = torch.as_tensor(t, dtype=torch.float32)
    return t.expand(batch) if t.dim() == 0 else t


TextOf = Callable[[list[int]], tuple[TextEmbeddings, TextEmbeddings | None]]


def critic_for(fake: nn.Module, settings: DMDSettings) -> CriticHead | None:
    """The GAN term's critic head, sized to the fake model's hidden states (None when the term is off)."""
    return CriticHead(fake.get_submodule(CRITIC_TAP).norm.normalized_shape[0]) if settings.gan_weight > 0 else None


def dmd_loss_fn(student: nn.Module, fake: nn.Module, teacher: nn.Module, scheduler: PyramidFlowScheduler,
                latents: Tensor, text_of: TextOf, settings: DMDSettings, seed: int,
                critic: CriticHead | None = None,
                starts: Tensor | None = None) -> Callable[[Tensor, int], tuple[Tensor, dict]]:  # fmt: skip
    """The engine's loss for one micro-batch of sample indices (see the module docstring); `text_of(indices)`
    gives their (conditional, unconditional) embeddings; `starts` the teacher's last-stage start points for the
    paired regression, aligned with `latents`."""

    scales = per_stage(settings.guidance, scheduler.stages)
    tap = fake.get_submodule(CRITIC_TAP) if critic is not None else None  # only a GAN run needs the tap
    paired = starts is not None and settings.paired_weight > 0

    def loss_fn(batch: Tensor, step: int) -> tuple[Tensor, dict[str, Any]]:
        idx = batch.tolist()
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        text, uncond = text_of(idx)
        d = draw_step(scheduler, latents[idx], text, settings.noise_levels, g, settings.first_unit)
        history, x = d.sample[:-1], d.sample[-1]
        train_student = (step + 1) % settings.update_ratio == 0
        with torch.set_grad_enabled(train_student):
            z_theta = clean_estimate(scheduler, d.stage, x, _call(student, d.sample, text, d.timestep), d.s_loc)
        b = x.shape[0]

        def noised(z: Tensor, tau_max: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
            tau = torch.rand(b, generator=g) * tau_max
            noise = torch.randn(z.shape, generator=g)
            z_tau, flow, t = renoise(scheduler, d.stage, z, noise, tau)
            return z_tau, flow, _timestep(t, b)

        z_tau, flow, t = noised(z_theta.detach())
        fake_loss = F.mse_loss(_call(fake, [*history, z_tau], text, t).float(), flow.float())
        parts: dict[str, Any] = {"fake_flow": fake_loss.detach(), "dmd": NAN, "cauchy": NAN}
        if paired:
            parts["paired"] = NAN  # the engine wants the same parts every step
        loss = fake_loss
        if critic is not None and tap is not None:
            logits = []
            for z in (d.clean, z_theta.detach()):  # real, then fake; at low noise, where texture shows
                z_c, _, t_c = noised(z, CRITIC_TAU_MAX)
                sample = [*history, z_c]
                logits.append(critic_logits(fake, tap, critic, lambda m, s=sample, t=t_c: _call(m, s, text, t)))
            l_critic = critic_loss(*logits)
            loss = loss + settings.gan_weight * l_critic
            parts.update(critic=l_critic.detach(), generator=NAN)
        if train_student:
            z_tau, flow, t = noised(z_theta.detach())
            with torch.no_grad():
                v_real = guided(teacher, [*history, z_tau], text, uncond, t, scales[d.stage])
                v_fake = _call(fake, [*history, z_tau], text, t)
            gradient, _ = dmd_gradient(v_real, v_fake, flow)
            l_dmd = dmd_loss(z_theta, gradient)
            l_cauchy = cauchy_loss(z_theta, d.clean)
            loss = loss + l_dmd + settings.cauchy_weight * l_cauchy
            parts.update(dmd=l_dmd.detach(), cauchy=l_cauchy.detach())
            if paired:
                assert starts is not None
                l_pair = paired_loss(student, scheduler, latents[idx], starts[idx], text, g, settings.first_unit)
                loss = loss + settings.paired_weight * l_pair
                parts.update(paired=l_pair.detach())
            if critic is not None and tap is not None:
                g_tau, _, t_g = noised(z_theta, CRITIC_TAU_MAX)

                def as_real(m: Any) -> Tensor:
                    return _call(m, [*history, g_tau], text, t_g)

                l_gen = generator_loss(critic_logits(fake, tap, critic, as_real, frozen=True))
                loss = loss + settings.gan_weight * l_gen
                parts.update(generator=l_gen.detach())
        return loss, parts

    return loss_fn


def paired_loss(student: nn.Module, scheduler: PyramidFlowScheduler, latents: Tensor, starts: Tensor,
                text: TextEmbeddings, g: torch.Generator, first_unit: int = 0) -> Tensor:  # fmt: skip
    """Cauchy regression of the student's one step from the teacher's last-stage start point of a random unit
    (with the teacher's earlier units as history, as at sampling) towards the teacher's final latent there."""
    unit = int(torch.randint(min(first_unit, latents.shape[2] - 1), latents.shape[2], (), generator=g))
    last = scheduler.stages - 1
    history = history_for([latents[:, :, j : j + 1] for j in range(unit)], last, scheduler)
    x = starts[:, :, unit : unit + 1]
    t = _timestep(scheduler.timesteps(last, 1)[0], x.shape[0])
    z = clean_estimate(scheduler, last, x, _call(student, [*history, x], text, t), 1.0)
    return cauchy_loss(z, latents[:, :, unit : unit + 1])


def run_dmd(student: nn.Module, fake: nn.Module, teacher: nn.Module, scheduler: PyramidFlowScheduler,
            latents: Tensor, text_of: Callable, settings: DMDSettings, stage: Any, work: Path,
            seed: int, starts: Tensor | None = None) -> Any:  # fmt: skip
    """Train student and fake model (and the GAN term's critic head) together on the engine; returns its
    TrainResult."""
    critic = critic_for(fake, settings)
    loss = dmd_loss_fn(student, fake, teacher, scheduler, latents, text_of, settings, seed, critic, starts)
    models = {"student": student, "fake": fake, **({"critic": critic} if critic is not None else {})}
    return train(stage_train_config(stage, seed), models, loss, Indices(latents.shape[0]), work,
                 progress=sys.stderr.isatty(), find_unused_parameters=True)  # fmt: skip


def settings_from(update_ratio: int, noise_levels: int, cauchy_weight: float, guidance: float | list[float],
                  hybrid: bool = False, gan_weight: float = 0.0,
                  paired_weight: float = 0.0) -> DMDSettings:  # fmt: skip
    return DMDSettings(update_ratio, student_levels(noise_levels), cauchy_weight, guidance, 1 if hybrid else 0,
                       gan_weight, paired_weight)  # fmt: skip

