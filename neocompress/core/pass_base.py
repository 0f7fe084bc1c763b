"""What a pass is: a frozen, strict config plus a checked `run(ir, ctx) -> PassResult`.

Why this shape (torchao's config/handler split, torch.fx's PassResult, TVM's module passes): configs are data
that can be validated, hashed for the cache and printed by `passes show`; the pass class holds behaviour. A pass
declares what it `requires` (components that must exist) and `produces` (components it adds), and `ensures`
checks its own promise on the output so a broken pass fails where it broke.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from neocompress.core.errors import Problem

if TYPE_CHECKING:
    from neocompress.core.context import PassContext
    from neocompress.ir.pipeline_ir import PipelineIR


class PassConfig(BaseModel):
    """Base of every pass config: immutable, unknown keys are errors (never silently ignored), floats finite."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


@dataclass
class PassResult:
    """The IR after the pass, whether it changed anything, and a JSON-able report of what it did."""

    ir: PipelineIR
    modified: bool
    report: dict[str, Any] = field(default_factory=dict)


class Pass(ABC):
    """One transform. Subclasses set the class variables and implement `run`.

    `structural = True` means `run` touches structure only (no data, no training), so the same code is its
    `plan` on a meta-device skeleton. A pass that trains or calibrates overrides `plan` with its structural
    effect alone.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    Config: ClassVar[type[PassConfig]]
    summary: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    produces: ClassVar[tuple[str, ...]] = ()
    structural: ClassVar[bool] = False

    def __init__(self, config: PassConfig):
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config

    # -- checks before anything heavy runs --------------------------------------------------------------
    def check(self, ir: PipelineIR) -> list[Problem]:
        """Semantic problems of this config against this model (paths are config field names)."""
        return [
            Problem(f"needs component '{r}', which the pipeline does not have", path="name")
            for r in self.requires
            if r not in ir
        ]

    def data_needs(self) -> dict[str, str]:
        """The recipe's `data.prompts` sets this pass reads, as {config path: set name}; the recipe check
        reports a missing set at that path before anything runs."""
        return {}

    def input_paths(self) -> dict[str, str | None]:
        """Files and folders this pass reads, as {config path: the value given}; the recipe check reports one
        that does not exist at that path (a `builtin:` name is the pass's own to resolve), unless the model has
        no weights here and the recipe can only be planned."""
        return {}

    def input_folder(self, where: str, value: str) -> Path | None:
        """Where the `input_paths` value at `where` lives on disk, for the cache key's content hash. A `builtin:`
        name is the pass's own to resolve (None: a procedural source such as `builtin:world`, whose name and the
        package's version are its content)."""
        return None if value.startswith("builtin:") else Path(value)

    def input_fingerprints(self) -> dict[str, str]:
        """Content hashes of the files this pass reads, as {config path: hash}, for its cache key: a checkpoint
        retrained in place under the same name (or a shipped asset rebuilt) must not replay outputs made from the
        old one. A path that does not exist is left to the recipe check, which names it."""
        from neocompress.core.hashing import hash_path

        fingerprints = {}
        for where, value in self.input_paths().items():
            path = self.input_folder(where, value) if value is not None else None
            if path is not None and path.exists():
                fingerprints[where] = hash_path(path)
        return fingerprints

    def target_problems(self, device: Any) -> list[Problem]:
        """What this config asks that the recipe's target device (a Hexagon `DeviceProfile`) does not take;
        the recipe check reports them before anything runs."""
        return []

    # -- execution ---------------------------------------------------------------------------------------
    @abstractmethod
    def run(self, ir: PipelineIR, ctx: PassContext) -> PassResult: ...

    def plan(self, ir: PipelineIR, ctx: PassContext) -> PassResult:
        """The structural effect only, on a weightless (meta-device) IR."""
        if self.structural:
            return self.run(ir, ctx)
        raise NotImplementedError(f"pass '{self.name}' has no structural plan")

    def snapshot(self, ir: PipelineIR) -> Any:
        """What `ensures` needs to know about the input; taken before `run`."""
        return None

    def ensures(self, before: Any, result: PassResult) -> None:
        """Raise `VerificationError` if the output breaks this pass's promise."""
        for name in self.produces:
            if name not in result.ir:
                from neocompress.core.errors import VerificationError

                raise VerificationError(f"pass '{self.name}' promised component '{name}' but did not produce it")
