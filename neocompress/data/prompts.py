"""Named prompt sets from a recipe's `data.prompts` section, loaded on first use.

`builtin:vbench` is the VBench prompt list shipped in the package (from the public Neodragon repository,
BSD-3-Clause-Clear; see assets/prompts/NOTICE); any other source is a text file with one prompt a line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from neocompress.core.errors import UserInputError

BUILTIN_PROMPTS = {"builtin:vbench": "tiny_prompts.txt"}


def read_prompt_source(source: str) -> list[str]:
    if source in BUILTIN_PROMPTS:
        text = resources.files("neocompress.assets").joinpath("prompts", BUILTIN_PROMPTS[source]).read_text()
    else:
        path = Path(source)
        if not path.is_file():
            raise UserInputError(f"prompt file '{source}' not found (known builtin sets: {', '.join(BUILTIN_PROMPTS)})")
        text = path.read_text()
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not prompts:
        raise UserInputError(f"prompt source '{source}' holds no prompts")
    return prompts


class PromptSets:
    """Lazy access to the recipe's prompt sets by name."""

    def __init__(self, sets: dict[str, Any]):
        self._sets = dict(sets)
        self._loaded: dict[str, list[str]] = {}

    def names(self) -> list[str]:
        return sorted(self._sets)

    def get(self, name: str) -> list[str]:
        if name not in self._sets:
            raise UserInputError(
                f"no prompt set '{name}' in the recipe's data.prompts (defined: {', '.join(self.names()) or 'none'})"
            )
        if name not in self._loaded:
            spec = self._sets[name]
            prompts = read_prompt_source(spec.source)
            self._loaded[name] = prompts[: spec.count] if spec.count else prompts
        return self._loaded[name]
