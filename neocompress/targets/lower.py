"""Lower a finished pipeline to every target of a recipe: the graphs are built once and each target writes its
bundle inside the output. What each target wrote and measured comes back for the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from neocompress.core.errors import UserInputError
from neocompress.lowering.pipeline_graphs import lower_pipeline


def bundle_video(generate: Any) -> dict[str, int]:
    """The video size a bundle is built for: the recipe's `generate` section where it says, else the model's."""
    if generate is None:
        return {}
    return {k: v for k in ("frames", "height", "width") if (v := getattr(generate, k)) is not None}


def lower_targets(ir: Any, targets: list[Any], output: Path, video: dict[str, int], seed: int,
                  progress: Any = None) -> list[dict[str, Any]]:  # fmt: skip
    """Write each target's bundle under `output`; one summary per target."""
    if not targets:
        return []
    if ir.family != "pyramid-flow":
        raise UserInputError(f"lowering supports the pyramid-flow family so far, not '{ir.family}'")
    if ir["scheduler"].extras["schedule"].hybrid:
        raise UserInputError("this pipeline's schedule is hybrid (frame 0 from its first_frame image model), "
                             "which the bundles cannot run yet: lower it without `first_frame`")  # fmt: skip
    t0 = time.perf_counter()
    graphs = lower_pipeline(ir, video, seed=seed)
    build_s = time.perf_counter() - t0
    out = []
    for t in targets:
        folder = output / t.folder()
        t1 = time.perf_counter()
        cfg = t.model_dump()
        if t.name == "onnxruntime":
            from neocompress.targets.onnxruntime.lower import lower_onnxruntime

            manifest = lower_onnxruntime(graphs, ir, folder, cfg, video, progress)
        else:
            from neocompress.targets.hexagon.devices import device_profile
            from neocompress.targets.hexagon.lower import lower_hexagon

            devices = [device_profile(t.device), *(device_profile(d) for d in t.also_compile)]
            manifest = lower_hexagon(graphs, ir, folder, cfg, devices, video, progress)
        out.append({"target": cfg, "folder": t.folder(), "seconds": time.perf_counter() - t1,
                    "graph_build_seconds": build_s, "components": manifest["components"],
                    "compiled": manifest.get("compiled"), "aihub": manifest.get("aihub"),
                    "estimate": manifest.get("estimate")})  # fmt: skip
    return out
