"""First-frame generators for Neodragon's hybrid mode: an image model makes frame 0, which is VAE-encoded as
unit 0, and the DiT runs only for the later units (reference section 2: SSD-1B, then 1-1-1 per later unit).

The interface is what the pipeline needs of any such model: `module(prompts, seed, height, width)` -> images
[B, 3, H, W] in [-1, 1], deterministic in the seed. `register_first_frame` adds a user's own (a diffusers image
pipeline wrapped in an nn.Module, say). The tiny default is `WorldFirstFrame`, which renders the caption's first
frame with the procedural world: a perfect image model for the world's captions, and parameter-free, so the
hybrid path can be exercised end to end here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

WORLD_FIRST_FRAME = "builtin:world"
_REGISTRY: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}


def register_first_frame(name: str) -> Callable[[Callable[[dict[str, Any]], nn.Module]], Callable]:
    """Register `build(options) -> module` under `name` (what `step_distill.first_frame` names)."""

    def decorate(build: Callable[[dict[str, Any]], nn.Module]) -> Callable[[dict[str, Any]], nn.Module]:
        _REGISTRY[name] = build
        return build

    return decorate


def first_frame_names() -> list[str]:
    return sorted(_REGISTRY)


def build_first_frame(name: str, options: dict[str, Any] | None = None) -> nn.Module:
    if name not in _REGISTRY:
        raise ValueError(f"unknown first-frame generator '{name}'; registered: {', '.join(first_frame_names())}")
    return _REGISTRY[name](dict(options or {}))


class WorldFirstFrame(nn.Module):
    """Renders each caption's first frame with the procedural world (seeded by (seed, index))."""

    def forward(self, prompts: list[str], seed: int, height: int, width: int) -> Tensor:
        from neocompress.world import parse_caption, render

        if height != width:
            raise ValueError(f"the world renders square frames, not {height}x{width}")
        frames = [render(parse_caption(p), frames=9, size=height, rng=np.random.default_rng([seed, i])).video[0]
                  for i, p in enumerate(prompts)]  # fmt: skip
        images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
        return images / 127.5 - 1.0

    def checkpoint_config(self) -> dict[str, Any]:
        return {"neocompress_class": "WorldFirstFrame", "source": WORLD_FIRST_FRAME}


@register_first_frame(WORLD_FIRST_FRAME)
def _world(options: dict[str, Any]) -> nn.Module:
    return WorldFirstFrame()


FIRST_FRAME_FOLDER = "first_frame"


def first_frame_component(module: nn.Module, source: str) -> Any:
    """The pipeline-graph node of a first-frame generator: prompts in, one image per prompt out."""
    from neocompress.ir import Component
    from neocompress.ir.pipeline_ir import spec

    return Component("first_frame", "image_generator", module, {"source": source},
                     inputs={"prompt": spec("B", dtype="str")},
                     outputs={"image": spec("B", 3, "H", "W", value_range=(-1.0, 1.0))})  # fmt: skip


def attach_first_frame(ir: Any, module: nn.Module, source: str) -> None:
    """Add the first_frame node and its dataflow: the prompt feeds it, its image feeds the VAE encoder (a one-frame
    clip, whose latent becomes unit 0 of the scheduler's condition latents)."""
    from neocompress.ir.pipeline_ir import PIPELINE_INPUT, spec

    if "first_frame" in ir:
        ir.components.pop("first_frame")
        ir.edges = [e for e in ir.edges if "first_frame" not in (e.src, e.dst)]
    ir.add(first_frame_component(module, source))
    ir["vae_encoder"].inputs["first_frame_image"] = spec("B", 3, "H", "W", value_range=(-1.0, 1.0))
    ir.connect(PIPELINE_INPUT, "prompt", "first_frame", "prompt")
    ir.connect("first_frame", "image", "vae_encoder", "first_frame_image")


def add_first_frame(ir: Any, source: str) -> None:
    """Plug the registered generator `source` into `ir` as its first_frame component (replacing one there)."""
    attach_first_frame(ir, build_first_frame(source), source)


def save_first_frame(ir: Any, directory: Any) -> None:
    """`first_frame/config.json` names the registered generator (plus its weights, if it has any)."""
    import json
    from pathlib import Path

    if "first_frame" not in ir:
        return
    comp = ir["first_frame"]
    folder = Path(directory) / FIRST_FRAME_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    config = {"source": comp.config["source"]}
    if hasattr(comp.module, "checkpoint_config"):
        config = {**comp.module.checkpoint_config(), **config}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if any(True for _ in comp.module.parameters()):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in comp.module.state_dict().items()}, str(folder / "model.safetensors"))


def load_first_frame(ir: Any, directory: Any) -> None:
    """The saved first_frame component back into `ir` (rebuilt by its registered name, weights loaded strictly)."""
    from pathlib import Path

    from neocompress.core.errors import CheckpointError

    folder = Path(directory) / FIRST_FRAME_FOLDER
    if not (folder / "config.json").is_file():
        return
    from neocompress.models.checkpoint import read_config

    config = read_config(folder, "first_frame")
    try:
        module = build_first_frame(str(config.get("source")), config)
    except ValueError as e:
        raise CheckpointError(f"first_frame: '{folder / 'config.json'}': {e}") from None
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        module.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    attach_first_frame(ir, module, str(config["source"]))
