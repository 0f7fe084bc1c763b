"""ONNX export of a static component graph, and running it in onnxruntime to prove the export is the model.

Why the legacy (TorchScript) exporter: it writes one self-contained file with the graph's named inputs, which is
what AI Hub's `.aimet` folders and the QNN tools take; it matched torch to ~1e-6 here (toolchain notes). The
export is checked before it is used: `verify_onnx` runs it on the same inputs as torch and reports the largest
absolute error, so a lowering that changed the function is caught where it happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

OPSET = 17


@dataclass
class ExportCheck:
    path: Path
    max_abs_error: float
    reference_max: float
    ops: list[str]

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "max_abs_error": self.max_abs_error,
            "reference_max": self.reference_max,
            "ops": self.ops,
        }


def export_onnx(module: nn.Module, inputs: Sequence[Tensor], names: Sequence[str], path: Path) -> Path:
    """Write `module` (called as module(*inputs)) to `path` with the given input names and output 'output'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            tuple(inputs),
            str(path),
            input_names=list(names),
            output_names=["output"],
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def run_onnx(path: Path, inputs: Sequence[Tensor], names: Sequence[str]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, inputs, strict=True)})[0]


def verify_onnx(module: nn.Module, path: Path, inputs: Sequence[Tensor], names: Sequence[str]) -> ExportCheck:
    """The exported graph against torch on the same inputs: the largest absolute error and the ops it uses."""
    import onnx

    with torch.no_grad():
        reference = module(*inputs).detach().cpu().numpy()
    got = run_onnx(path, inputs, names)
    ops = sorted({n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node})
    return ExportCheck(Path(path), float(np.abs(got - reference).max()), float(np.abs(reference).max()), ops)
