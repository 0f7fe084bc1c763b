"""Named prompt sets from a recipe's `data.prompts` section, loaded on first use.

`builtin:vbench` is the VBench prompt list shipped in the package (from the public Neodragon repository,
BSD-3-Clause-Clear; see assets/prompts/NOTICE); `builtin:world` is every training caption of the procedural
world the miniature `builtin:tiny` was trained on (the prompts that model understands: calibrating or
distilling it on VBench prompts would measure it far outside its data); any other source is a text file with
one prompt a line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from neocompress.core.errors import UserInputError
from neocompress.core.hashing import hash_json

BUILTIN_PROMPTS = {"builtin:vbench": "tiny_prompts.txt", "builtin:world": None}


def world_captions() -> list[str]:
    """The miniature world's training captions, in a fixed shuffled order (so the first N mix shapes, colours,
    directions and backgrounds instead of walking the grammar in order)."""
    import random

    from neocompress.miniature.configs import WORLD
    from neocompress.world import World

    captions = sorted(World(WORLD).captions("train"))
    random.Random(0).shuffle(captions)
    return captions


def read_prompt_source(source: str) -> list[str]:
    if source == "builtin:world":
        return world_captions()
    if source in BUILTIN_PROMPTS:
        text = resources.files("neocompress.assets").joinpath("prompts", BUILTIN_PROMPTS[source]).read_text()
    else:
        from neocompress.core.paths import shown_path, unusable_reason

        path, shown = Path(source), shown_path(source)
        reason = unusable_reason(source)
        if reason:
            raise UserInputError(f"prompt file '{shown}' is not a usable path: {reason}")
        if not path.is_file():
            known = ", ".join(BUILTIN_PROMPTS)
            raise UserInputError(f"prompt file '{shown}' not found (known builtin sets: {known})")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserInputError(f"prompt file '{shown}' is not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise UserInputError(f"cannot read prompt file '{shown}': {e.strerror or e}") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not prompts:
        raise UserInputError(f"prompt source '{source}' holds no prompts")
    return prompts


class PromptSets:
    """Lazy access to the recipe's prompt sets by name."""

    def __init__(self, sets: dict[str, Any]):
        self._sets = dict(sets)
        self._loaded: dict[str, list[str]] = {}

    def fingerprint(self) -> str | None:
        """A hash of every set's resolved prompts (part of each pass's cache key); None when there are none."""
        if not self._sets:
            return None
        return hash_json({name: self.get(name) for name in self.names()})

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
