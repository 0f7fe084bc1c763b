"""What trains in each mode of `encoder_substitution`, and the path its output takes to the loss.

The target is always the frozen denoiser's `context_embedder(T5(prompt))`: the text stream's input, what the
denoiser actually reads. The student path differs by mode (reference section 3):

- replace: CA(DT5(p)); the ContextAdapter (output: the embedder's width) takes the embedder's place, so the
  denoiser loses its `context_embedder`; only the adapter trains (DistilT5 comes pretrained on text).
- trainable: as replace, DistilT5's weights train too.
- extend: CE(CA(DT5(p))); the adapter (output: T5's width) sits before the frozen embedder, which stays.
- lora: CE(DT5_lora(p)); no adapter: peft LoRA on DistilT5's attention, feed-forward and projection Linears
  trains, and is merged into the weights after training (the output holds a plain DistilT5).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

MODES = ("replace", "extend", "lora", "trainable")
LORA_TARGETS = ["q", "k", "v", "o", "wi_0", "wi_1", "wo", "final_projection.0", "final_projection.3"]


class StudentPath(nn.Module):
    """ids, mask -> what the text stream receives: the student's states, through the frozen embedder if kept."""

    def __init__(self, student: nn.Module, embedder: nn.Module | None):
        super().__init__()
        self.student = student
        self.embedder = embedder

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        states = self.student(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.embedder(states) if self.embedder is not None else states


@dataclass
class ModePlan:
    """The adapter's output width (None: no adapter) and whether the denoiser keeps its context embedder."""

    adapter_out: int | None
    keeps_embedder: bool


def mode_plan(mode: str, embedder: nn.Linear) -> ModePlan:
    if mode in ("replace", "trainable"):
        return ModePlan(embedder.out_features, keeps_embedder=False)
    if mode == "extend":
        return ModePlan(embedder.in_features, keeps_embedder=True)
    if mode == "lora":
        return ModePlan(None, keeps_embedder=True)
    raise ValueError(f"unknown mode '{mode}' (modes: {', '.join(MODES)})")


def trainable_parameters(mode: str, student: nn.Module) -> list[nn.Parameter]:
    """The parameters this mode trains (everything else frozen)."""
    student.requires_grad_(False)
    if mode == "trainable":
        chosen = list(student.parameters())
    elif mode == "lora":
        chosen = [p for n, p in student.named_parameters() if "lora_" in n]
    else:
        chosen = list(student.context_adapter.parameters())
    for p in chosen:
        p.requires_grad_(True)
    return chosen


def add_lora(student: nn.Module, r: int, alpha: float, dropout: float, targets: list[str]) -> nn.Module:
    """peft's LoRA layers injected into `student` in place; returns the peft model (whose `merge_and_unload`
    folds them back)."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    return LoraModel(student, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets),
                     "default")  # fmt: skip
