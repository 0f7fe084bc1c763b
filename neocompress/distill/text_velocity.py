"""The denoiser-output term of `encoder_substitution`: what the frozen denoiser does with the student's text.

Why: matching embeddings weighs every direction of the text stream alike, and the denoiser does not read them
alike. On the miniature a student whose held-out embeddings are 12 % off costs MiniBench 0.04, while isotropic
noise of the same size on the teacher's embeddings costs 0.015 (runs/issue16-miniature, sixth sitting). This term
measures the error where the denoiser reads it: the teacher pipeline samples training prompts (prompts only, as the
rest of the pass: the teacher draws its own latents, no video data), each of its denoiser calls is replayed with the
student's tokens in T5's place, and the squared velocity error relative to the teacher velocity's energy is
penalised. Gradients pass through the frozen denoiser into the student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neocompress.ir.pipeline_ir import PipelineIR

Call = tuple[Any, ...]  # (sample list, tokens, mask, pooled, timestep, teacher output), as capture_calls keeps them


@dataclass
class VelocityCalls:
    """The teacher's denoiser calls on training prompts, each with the indices of the prompts its rows encode."""

    records: list[tuple[list[int], Call]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def teacher_sampler(ir: PipelineIR, steps: list[int]) -> tuple[Any, Any]:
    """The teacher pipeline (float, T5 in place) and its schedule at `steps` per stage without CFG, so every
    denoiser call's batch is the prompts in order: what both the held-out probe and this term replay."""
    from neocompress.models.family import get_family

    pipeline = get_family(ir.family).pipeline(ir, simulated=False)
    return pipeline, pipeline.schedule_with(first=tuple(steps), later=tuple(steps), guidance_first=1.0,
                                            guidance_later=1.0)  # fmt: skip


def capture_training_calls(ir: PipelineIR, prompts: list[str], indices: list[int], steps: list[int], seed: int,
                           chunk: int) -> VelocityCalls:  # fmt: skip
    """Sample `prompts[i]` for i in `indices` with the teacher pipeline (no CFG, `steps` per stage), `chunk` prompts
    per batch, and keep every denoiser call with the prompt indices of its rows. Run before T5 is swapped out."""
    from neocompress.quant.denoiser_sim import capture_calls

    pipeline, schedule = teacher_sampler(ir, steps)
    out = VelocityCalls()
    for start in range(0, len(indices), chunk):
        rows = indices[start : start + chunk]
        captured = capture_calls(pipeline, [prompts[i] for i in rows], samples=1, seed=seed + 104_729 + start,
                                 schedule=schedule, batch=len(rows))  # fmt: skip
        out.records += [(rows, call) for calls in captured.calls.values() for call in calls]
    return out


def _rows(value: Tensor, pick: Tensor) -> Tensor:
    """The picked rows of a per-row tensor; a scalar (one timestep for the whole call) stays as it is."""
    return value[pick] if value.dim() > 0 and value.shape[0] > 1 else value


def velocity_term(den: nn.Module, student: nn.Module, ids: Tensor, mask: Tensor, calls: VelocityCalls, rows: int,
                  g: torch.Generator) -> Tensor:  # fmt: skip
    """One random call, `rows` of its prompts: ||den(student tokens) - den(T5 tokens)||^2 / ||den(T5 tokens)||^2."""
    prompt_rows, call = calls.records[int(torch.randint(len(calls), (), generator=g))]
    sample, _tokens, call_mask, pooled, timestep, teacher_out = call
    pick = torch.randperm(len(prompt_rows), generator=g)[:rows]
    which = torch.as_tensor(prompt_rows)[pick]
    tokens = student(input_ids=ids[which], attention_mask=mask[which]).last_hidden_state
    got = den([_rows(s, pick) for s in sample], tokens.to(teacher_out.dtype), _rows(call_mask, pick),
              _rows(pooled, pick), _rows(timestep, pick))  # fmt: skip
    target = _rows(teacher_out, pick).float()
    return F.mse_loss(got.float(), target) / target.pow(2).mean().clamp_min(1e-12)


class FrozenDenoiser:
    """Context manager: the denoiser in eval mode and without parameter gradients while the student trains through
    it (so no .grad piles up on weights nothing updates); its flags and mode come back afterwards."""

    def __init__(self, den: nn.Module):
        self.den = den

    def __enter__(self) -> nn.Module:
        self.flags = [p.requires_grad for p in self.den.parameters()]
        self.training = self.den.training
        self.den.requires_grad_(False).eval()
        return self.den

    def __exit__(self, *exc: object) -> None:
        for p, flag in zip(self.den.parameters(), self.flags, strict=True):
            p.requires_grad_(flag)
        self.den.train(self.training)
