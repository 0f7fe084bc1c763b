"""ONNX export of a static component graph, and running it in onnxruntime to prove the export is the model.

Why the legacy (TorchScript) exporter: it writes one self-contained file with the graph's named inputs, which is
what AI Hub's `.aimet` folders and the QNN tools take; it matched torch to ~1e-6 here (toolchain notes). The
export is checked before it is used: `verify_onnx` runs it on the same inputs as torch and reports the largest
absolute error, so a lowering that changed the function is caught where it happened.

Quantized graphs are exported by AIMET, two ways: a QDQ graph (QuantizeLinear/DequantizeLinear around every
quantized tensor: what onnxruntime and the QNN HTP backend run) and a float graph plus an `.encodings` file (what
AI Hub's `.aimet` folders hold). Biases stay float in both: AIMET's int32 bias encodings saturated on a Linear
here (bias scale 1e-4 of input x weight scale), and the HTP backend then computed garbage (0 dB); with float
biases the backend quantizes them itself and matched the simulation to 58 dB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

OPSET = 17
QDQ_OPSET = 21  # QuantizeLinear/DequantizeLinear with 16-bit integers need opset 21


@dataclass
class ExportCheck:
    path: Path
    max_abs_error: float
    reference_max: float
    ops: list[str]
    output: np.ndarray | None = None  # what the graph computed (for further comparisons without a second run)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "max_abs_error": self.max_abs_error,
            "reference_max": self.reference_max,
            "ops": self.ops,
        }


def export_onnx(
    module: nn.Module,
    inputs: Sequence[Tensor],
    names: Sequence[str],
    path: Path,
    output_names: Sequence[str] = ("output",),
) -> Path:
    """Write `module` (called as module(*inputs)) to `path` with the given input and output names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            tuple(inputs),
            str(path),
            input_names=list(names),
            output_names=list(output_names),
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def export_qdq(sim: Any, inputs: Sequence[Tensor], names: Sequence[str], path: Path,
               output_names: Sequence[str] = ("output",)) -> Path:  # fmt: skip
    """The AIMET simulation as one QDQ ONNX graph (float biases, see the module docstring)."""
    import aimet_torch.onnx as aimet_onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        aimet_onnx.export(
            sim.model.eval(), tuple(inputs), str(path), input_names=list(names), output_names=list(output_names),
            dynamo=False, opset_version=QDQ_OPSET, export_int32_bias=False,
        )  # fmt: skip
    return path


def export_with_encodings(sim: Any, inputs: Sequence[Tensor], names: Sequence[str], path: Path,
                          output_names: Sequence[str] = ("output",)) -> tuple[Path, Path]:  # fmt: skip
    """The float graph and AIMET's encodings 1.0.0 for it (keys are the graph's tensor names): `path` and
    `path` with the suffix `.encodings`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        sim.onnx.export(
            tuple(inputs), str(path), input_names=list(names), output_names=list(output_names), dynamo=False,
            opset_version=OPSET, encoding_version="1.0.0", export_int32_bias=False,
        )  # fmt: skip
    return path, path.with_suffix(".encodings")


def session(model: Path | Any, *, exact: bool = False) -> Any:
    """A CPU onnxruntime session of a file or an in-memory `onnx.ModelProto`. `exact`: no graph optimisation, so
    a QDQ graph runs as written (fused integer kernels differ from the simulation by ~1e-2, unfused by ~1e-4:
    toolchain notes)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(path: Path, inputs: Sequence[Tensor], names: Sequence[str], *, exact: bool = False) -> np.ndarray:
    s = session(path, exact=exact)
    return s.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, inputs, strict=True)})[0]


def graph_ops(path: Path) -> list[str]:
    import onnx

    return sorted({n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node})


def verify_onnx(module: nn.Module, path: Path, inputs: Sequence[Tensor], names: Sequence[str], *,
                exact: bool = False) -> ExportCheck:  # fmt: skip
    """The exported graph against `module` on the same inputs: the largest absolute error and the ops it uses."""
    with torch.no_grad():
        reference = module(*inputs).detach().cpu().numpy()
    got = run_onnx(path, inputs, names, exact=exact)
    return ExportCheck(Path(path), float(np.abs(got - reference).max()), float(np.abs(reference).max()),
                       graph_ops(path), got)  # fmt: skip
