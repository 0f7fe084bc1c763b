"""A node of the pipeline graph: one model component and the contract it keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from neocompress.ir.interface import TensorSpec


@dataclass(frozen=True)
class Provenance:
    """Which pass made or changed a component, and how."""

    pass_name: str
    action: str  # "created", "modified", "replaced"
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"pass": self.pass_name, "action": self.action, "detail": self.detail}


@dataclass
class Component:
    """One component: a torch module (or a plain object such as the scheduler) plus its interface.

    `config` is what rebuilds the module's structure without weights (so a saved pipeline reloads and a
    meta-device skeleton can be planned on). `extras` carries what travels with the component but is not a
    module (a tokenizer, a step schedule).
    """

    name: str
    kind: str  # text_encoder, denoiser, scheduler, vae_encoder, vae_decoder, ...
    module: nn.Module | None
    config: dict[str, Any]
    inputs: dict[str, TensorSpec] = field(default_factory=dict)
    outputs: dict[str, TensorSpec] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    provenance: list[Provenance] = field(default_factory=list)

    def num_params(self) -> int:
        return 0 if self.module is None else sum(p.numel() for p in _unique_params(self.module))

    def num_buffers(self) -> int:
        if self.module is None:
            return 0
        return sum(b.numel() for _, b in self.module.named_buffers())

    @property
    def class_name(self) -> str:
        obj = self.module if self.module is not None else self.extras.get("object")
        return type(obj).__name__ if obj is not None else "None"


def _unique_params(module: nn.Module) -> list[nn.Parameter]:
    """Parameters counted once even when tied (T5's shared embedding appears under two names)."""
    return list(module.parameters())  # nn.Module.parameters() already de-duplicates shared tensors
