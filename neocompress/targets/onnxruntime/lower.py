"""Lowering to onnxruntime: each graph as an ONNX file (float graphs as exported; quantized denoiser stages as
AIMET's QDQ graph), each verified where it is written.

A component the quantize pass simulates in fp16 (the text encoders) is exported in fp32 here, since onnxruntime's
CPU kernels are fp32; the manifest says so (`simulated_precision`). Checks, recorded in the manifest: a float
graph against its torch module (max abs error), a QDQ graph against
the AIMET simulation (max abs error, run unoptimised so the QDQ arithmetic is the simulation's) and against the
float graph (SQNR). The bundle then generates with `neocompress run-bundle` and no torch model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neocompress.lowering.onnx_export import export_onnx, export_qdq, verify_onnx
from neocompress.lowering.pipeline_graphs import LoweredGraph
from neocompress.quant.precision import sqnr_db
from neocompress.targets.bundle import write_common, write_manifest


def lower_onnxruntime(graphs: list[LoweredGraph], ir: Any, folder: Path, target: dict[str, Any],
                      video: dict[str, int], progress: Any = None) -> dict[str, Any]:  # fmt: skip
    """Write the bundle into `folder` (created); the manifest's component table is returned."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = write_common(ir, folder, target, video)
    components = {}
    for g in graphs:
        t0 = time.perf_counter()
        entry = g.describe()
        file = folder / f"{g.name}.onnx"
        if g.sim is None:
            if g.precision != "fp32":  # fp16-simulated text encoders: onnxruntime's CPU kernels take fp32
                entry["precision"], entry["simulated_precision"] = "fp32", g.precision
            export_onnx(g.module, g.inputs, g.input_names, file, g.output_names)
            check = verify_onnx(g.module, file, g.inputs, g.input_names)
            entry["check"] = {"against": "torch", "max_abs_error": check.max_abs_error,
                              "reference_max": check.reference_max}  # fmt: skip
        else:
            export_qdq(g.sim, g.inputs, g.input_names, file, g.output_names)
            check = verify_onnx(g.sim.model, file, g.inputs, g.input_names, exact=True)
            with torch.no_grad():
                floating = g.module(*g.inputs)
            got = torch.from_numpy(np.asarray(check.output))
            entry["check"] = {
                "against": "aimet simulation",
                "max_abs_error": check.max_abs_error,
                "reference_max": check.reference_max,
                "sqnr_db_vs_float": sqnr_db(floating, got),
            }
        entry["ops"] = check.ops
        entry["file"] = file.name
        entry["bytes"] = file.stat().st_size
        entry["seconds"] = time.perf_counter() - t0
        components[g.name] = entry
        if progress is not None:
            progress(g.name)
    manifest["components"] = components
    write_manifest(folder, manifest)
    return manifest
