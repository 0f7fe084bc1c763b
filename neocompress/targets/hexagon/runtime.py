"""Run a Hexagon bundle: every component's compiled parts, chained, in the QNN HTP simulator for one of the
devices the bundle was compiled for. Plugs into the onnxruntime bundle runtime as its session factory, so the
sampler is the same code; only where each graph runs differs. Slow (a simulator, seconds per denoiser call):
a numerics check of the artifacts that would ship, not a way to make many videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neocompress.core.errors import UserInputError
from neocompress.targets.hexagon import qnn
from neocompress.targets.hexagon.devices import device_profile


class ChainedParts:
    """A component's parts in order, each a compiled context model in the simulator; `.run` as onnxruntime's."""

    def __init__(self, folder: Path, rows: list[dict[str, Any]], entry: dict[str, Any], device: Any):
        self.parts = [(p, qnn.SimulatorSession(folder / r["context_onnx"], device.htp_arch, device.soc_model,
                                               r["fp16"]))
                      for p, r in zip(entry["parts"], rows, strict=True)]  # fmt: skip
        self.output = entry["outputs"][0]

    def run(self, _: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = dict(feed)
        for part, sess in self.parts:
            values.update(sess.run({n: values[n] for n in part["inputs"]}))
        return [values[self.output]]


def simulator_factory(manifest: dict[str, Any], device: str | None) -> Any:
    compiled = manifest.get("compiled") or {}
    if "skipped" in compiled or not compiled:
        raise UserInputError(f"this Hexagon bundle was not compiled: {compiled.get('skipped', 'no devices')}")
    name = device or next(iter(compiled))
    if name not in compiled:
        raise UserInputError(f"the bundle was compiled for {', '.join(compiled)}, not '{name}'")
    profile = device_profile(name)
    unavailable = qnn.available()
    if unavailable:
        raise UserInputError(unavailable)

    def factory(folder: Path, component: str, entry: dict[str, Any]) -> ChainedParts:
        return ChainedParts(folder, compiled[name][component], entry, profile)

    return factory
