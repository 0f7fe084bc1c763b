"""The error types neocompress raises, and the CLI exit code each maps to.

Why a small hierarchy: the CLI turns `UserInputError` (a bad recipe, source, checkpoint or argument: exit 2)
apart from everything else (exit 1), and every message must say *what* and *where* so the user can fix it
without reading a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class NeocompressError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 1


class UserInputError(NeocompressError):
    """Something the user gave us is wrong: a recipe, a source path, a checkpoint, an argument."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    message: str
    file: str | None = None
    path: str | None = None  # e.g. "passes[0].indices"
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f" ({self.path})" if where else self.path
        return f"{where}: {self.message}" if where else self.message


class RecipeError(UserInputError):
    """A recipe has one or more problems; all of them are reported together."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = [f"recipe has {len(self.problems)} problem(s):"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class CheckpointError(UserInputError):
    """A checkpoint does not match the model: missing file, missing/unexpected key, or wrong shape."""


class SourceError(UserInputError):
    """A model source (builtin name or directory) cannot be resolved."""


class OutputExistsError(UserInputError):
    """The output already exists and `--force` was not given; nothing was written."""


class VerificationError(NeocompressError):
    """The IR broke a contract (an interface, or a pass's `ensures`)."""


class PassError(NeocompressError):
    """A pass failed while running; the message names the pass."""
