"""Component substitution: a node of the pipeline graph replaced by a smaller component that keeps its contracts,
the old one kept as the teacher while a pass trains the new one, then dropped from the output.

Why a mechanism of its own: Neodragon's first two techniques (DistilT5 + ContextAdapter for T5-XXL, a TAEHV
decoder for the causal VAE decoder) are the same graph edit: check that the newcomer produces what the next
component consumes (token count, width, dtype, value range) and consumes what it is fed, before any training;
swap the node and record it in the provenance log; train against the old node's outputs; keep only the new one.
Replacement components are registered by name (`register_replacement`), so a user's own component is one
decorator away from a recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neocompress.core.errors import UserInputError, VerificationError
from neocompress.ir.component import Component
from neocompress.ir.pipeline_ir import PipelineIR

Builder = Callable[[PipelineIR, dict[str, Any]], Component]


@dataclass(frozen=True)
class Replacement:
    """A registered replacement: what it stands in for and how to build it from the pipeline and options."""

    name: str
    replaces: str  # the component name it takes the place of
    build: Builder
    summary: str = ""
    # options -> {option path: why it cannot build}; checked at validation, before anything is built
    check_options: Callable[[dict[str, Any]], dict[str, str]] | None = None

    def option_problems(self, options: dict[str, Any]) -> dict[str, str]:
        return self.check_options(options) if self.check_options is not None else {}


REPLACEMENTS: dict[str, Replacement] = {}


def register_replacement(name: str, replaces: str, summary: str = "",
                         check: Callable[[dict[str, Any]], dict[str, str]] | None = None,
                         ) -> Callable[[Builder], Builder]:  # fmt: skip
    """Register `build(ir, options) -> Component` as the replacement `name` for component `replaces`; `check`
    says which options cannot build (validation reports them with their recipe lines)."""

    def decorate(build: Builder) -> Builder:
        if name in REPLACEMENTS:
            raise ValueError(f"a replacement named '{name}' is already registered")
        REPLACEMENTS[name] = Replacement(name, replaces, build, summary, check)
        return build

    return decorate


def get_replacement(name: str) -> Replacement:
    _load_builtins()
    if name not in REPLACEMENTS:
        raise UserInputError(f"unknown replacement '{name}'; registered: {', '.join(sorted(REPLACEMENTS)) or 'none'}")
    return REPLACEMENTS[name]


def _load_builtins() -> None:
    import neocompress.models.pyramid_flow.replacements  # noqa: F401 - registers the Neodragon replacements


def substitution_problems(ir: PipelineIR, name: str, new: Component) -> list[str]:
    """Why `new` may not take the place of `name` (empty: it may): same kind, and every edge's contract kept."""
    if name not in ir:
        return [f"the pipeline has no component '{name}'"]
    old = ir[name]
    problems = [] if new.kind == old.kind else [f"'{name}' is a {old.kind}, the replacement a {new.kind}"]
    return problems + ir.replacement_problems(name, new)


@dataclass
class Substitution:
    """A swap made in the pipeline: the new component in place, the old one held as the teacher until released."""

    name: str
    student: Component
    teacher: Component | None
    by_pass: str

    def release(self) -> None:
        """Drop the teacher (its weights must not travel into the output)."""
        self.teacher = None


def substitute(ir: PipelineIR, name: str, new: Component, *, by_pass: str, detail: str = "") -> Substitution:
    """Put `new` in place of `name` after checking every contract; the old component comes back as the teacher."""
    problems = substitution_problems(ir, name, new)
    if problems:
        raise VerificationError(f"{by_pass}: {new.class_name} cannot replace '{name}':\n  " + "\n  ".join(problems))
    old = ir.replace(name, new, by_pass=by_pass, detail=detail or f"replaced {ir[name].class_name}")
    return Substitution(name, new, old, by_pass)
