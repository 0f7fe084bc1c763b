"""Lowering to a Hexagon NPU: the static graphs checked, split, written as `.aimet` folders, compiled with the QNN
HTP backend for every chosen device (CPU fallback disabled) and run in its simulator, with each part's SQNR.

Per graph: a quantized denoiser stage is AIMET's QDQ export, simplified (static shapes), split between
transformer blocks into parts of at most `max_part_mb` deployed weight bytes; each part becomes a `.aimet`
folder (its float twin + encodings naming that twin's tensors, the form AI Hub takes) and a QDQ ONNX the HTP
backend compiles. A float graph (text encoders, VAE decoder: Neodragon kept the text encoders in FP16) is
simplified and compiled in fp16. The static op check runs over every graph before anything compiles, and all
its findings are reported together. SQNR per part: the simulator's output and onnxruntime's run of the same QDQ
graph (the AIMET simulation), each against the float twin, on the inputs the float model gives that part in a
real sampling call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from neocompress.core.errors import UserInputError
from neocompress.lowering.onnx_export import export_onnx, export_qdq, session
from neocompress.lowering.pipeline_graphs import LoweredGraph
from neocompress.quant.precision import sqnr_db
from neocompress.targets.bundle import write_common, write_manifest
from neocompress.targets.hexagon import qnn
from neocompress.targets.hexagon.devices import DeviceProfile
from neocompress.targets.hexagon.op_check import check_graph
from neocompress.targets.hexagon.qdq_graph import (
    encodings_file,
    float_model,
    quantized_tensors,
    simplify,
    strip_qdq,
    twin_names,
)
from neocompress.targets.hexagon.split import Part, split_qdq


def _np(graph: LoweredGraph) -> dict[str, np.ndarray]:
    return {n: np.ascontiguousarray(t.detach().cpu().numpy()) for n, t in zip(graph.input_names, graph.inputs,
                                                                                strict=True)}  # fmt: skip


def _sqnr(reference: np.ndarray, got: np.ndarray) -> float:
    import torch

    return sqnr_db(torch.from_numpy(np.asarray(reference, dtype=np.float32)),
                   torch.from_numpy(np.asarray(got, dtype=np.float32)))  # fmt: skip


def lower_hexagon(graphs: list[LoweredGraph], ir: Any, folder: Path, target: dict[str, Any],
                  devices: list[DeviceProfile], video: dict[str, int],
                  progress: Callable[[str], None] | None = None, hub_client: Any = None) -> dict[str, Any]:  # fmt: skip
    """Write the Hexagon bundle into `folder`; `devices[0]` is the target device, the others are compiled and
    simulated too; AI Hub jobs (through `hub_client`, default the `qai_hub` module) run for `devices[0]`."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = write_common(ir, folder, target, video)
    max_bytes = int(target["max_part_mb"] * 2**20)
    wanted = set(target.get("components") or ["text_encoders", "denoiser", "vae_decoder"])
    chosen = [g for g in graphs if ("text_encoders" if g.kind == "text_encoder" else g.kind) in wanted]
    work = folder / "graphs"
    simplified: dict[str, onnx.ModelProto] = {}
    problems: list[str] = []
    for g in chosen:  # export and check everything first: every problem is reported before any compile
        path = work / f"{g.name}.onnx"
        if g.sim is not None:
            export_qdq(g.sim, g.inputs, g.input_names, path, g.output_names)
        else:
            export_onnx(g.module, g.inputs, g.input_names, path, g.output_names)
        model = simplify(onnx.load(str(path)))
        onnx.save(model, str(path))
        simplified[g.name] = model
        problems += [f"{g.name}: {p}" for p in check_graph(model)]
        if progress:
            progress(f"exported {g.name}")
    if problems:
        raise qnn.HtpCompileError(f"the Hexagon HTP does not take {len(problems)} node(s):\n  " +
                                  "\n  ".join(problems))  # fmt: skip
    components = {}
    for g in chosen:
        entry = g.describe()
        model = simplified[g.name]
        parts = _parts(g, model, max_bytes)
        entry["parts"] = [_write_part(g, p, len(parts), folder) for p in parts]
        entry["file"] = None
        components[g.name] = entry
    manifest["components"] = components
    manifest["devices"] = [d.to_dict() for d in devices]
    manifest["compiled"] = {}
    unavailable = qnn.available()
    if unavailable:
        manifest["compiled"] = {"skipped": unavailable}
    else:  # what each part is compared with does not depend on the device: computed once
        references = {g.name: _references(g, folder, components[g.name]["parts"])
                      for g in chosen if target.get("simulate", True)}  # fmt: skip
        for device in devices:
            manifest["compiled"][device.name] = _compile_all(chosen, components, folder, device, references, progress)
    manifest["estimate"] = _estimates(chosen, devices)
    if target.get("aihub", True):
        from neocompress.targets.hexagon.aihub import submit_to_aihub

        manifest["aihub"] = submit_to_aihub(manifest, folder, devices[0], client=hub_client,
                                            wait=target.get("aihub_wait", True))  # fmt: skip
    write_manifest(folder, manifest)
    return manifest


def _estimates(chosen: list[LoweredGraph], devices: list[DeviceProfile]) -> dict[str, Any]:
    """Roofline latency and peak memory of every component on every device (see `cost_model`)."""
    from neocompress.targets.hexagon.cost_model import calibrate, estimate_on, workload_of

    fitted = calibrate()
    out = {}
    for g in chosen:
        w = workload_of(g.name, g.module, g.inputs, g.precision)
        out[g.name] = {d.name: estimate_on(w, d, fitted) for d in devices}
    return out


def _parts(g: LoweredGraph, model: onnx.ModelProto, max_bytes: int) -> list[Part]:
    if g.sim is not None:
        return split_qdq(model, max_bytes, g.name)
    size = sum(np.prod(i.dims, dtype=np.int64) * 2 for i in model.graph.initializer)  # fp16 on the NPU
    if size > max_bytes:
        raise UserInputError(f"{g.name}: {size / 2**20:.1f} MiB of fp16 weights, over the part limit of "
                             f"{max_bytes / 2**20:.1f} MiB; quantize it or raise `max_part_mb`")  # fmt: skip
    return [Part(0, model, [i.name for i in model.graph.input], [o.name for o in model.graph.output], int(size))]


def _write_part(g: LoweredGraph, part: Part, count: int, folder: Path) -> dict[str, Any]:
    """The part's compile input (QDQ or float ONNX) and, if quantized, its `.aimet` folder."""
    stem = f"{g.name}_part_{part.index + 1}_of_{count}" if count > 1 else g.name
    onnx_path = folder / "parts" / f"{stem}.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(part.model, str(onnx_path))
    entry: dict[str, Any] = {
        "name": stem,
        "file": str(onnx_path.relative_to(folder)),
        "inputs": part.inputs,
        "outputs": part.outputs,
        "weight_bytes": part.weight_bytes,
        "blocks": part.blocks,
    }
    if g.sim is not None:
        aimet = folder / "aimet" / f"{stem}.aimet"
        aimet.mkdir(parents=True, exist_ok=True)
        twin = strip_qdq(part.model)
        onnx.save(twin, str(aimet / f"{stem}.onnx"))
        encodings = encodings_file(part.model)
        (aimet / f"{stem}.encodings").write_text(json.dumps(encodings, indent=1))
        names = {t for n in twin.graph.node for t in [*n.input, *n.output]} | {i.name for i in twin.graph.input}
        listed = [e["name"] for e in encodings["activation_encodings"] + encodings["param_encodings"]]
        entry["aimet"] = str(aimet.relative_to(folder))
        entry["encodings"] = {
            "quantized_tensors": len(quantized_tensors(part.model)),
            "entries": len(listed),
            "missing_in_graph": sorted(set(listed) - names),
        }
    return entry


def _compile_all(chosen: list[LoweredGraph], components: dict[str, Any], folder: Path, device: DeviceProfile,
                 references: dict[str, list[dict[str, Any]]],
                 progress: Callable[[str], None] | None) -> dict[str, Any]:  # fmt: skip
    """Compile every part for `device`; where `references` has the graph, run each part in the simulator and
    compare it with them."""
    out = {}
    for g in chosen:
        fp16 = g.fp16_on_htp  # float graphs, and float layers inside a quantized one, run in fp16
        rows = []
        for j, p in enumerate(components[g.name]["parts"]):
            ctx = folder / "qnn" / device.name / f"{p['name']}.onnx"
            compiled = qnn.compile_graph(folder / p["file"], ctx, device.htp_arch, device.soc_model, fp16=fp16)
            row = {"part": p["name"], **compiled.to_dict(), "fp16": fp16,
                   "context_onnx": str(ctx.relative_to(folder)),
                   "context_binary": str(compiled.context_binary.relative_to(folder))}  # fmt: skip
            if g.name in references:
                ref = references[g.name][j]
                t0 = time.perf_counter()
                sim = qnn.SimulatorSession(ctx, device.htp_arch, device.soc_model, fp16).run(ref["feed"])
                row["simulator_seconds"] = time.perf_counter() - t0
                floats, qdq = ref["float"], ref["aimet"]
                # the part's worst computed output (pass-through copies of graph inputs would flatter it)
                worst = min(ref["computed"], key=lambda o: _sqnr(floats[o], sim[o]))
                row["compared_output"] = worst
                row["sqnr_db_simulator_vs_float"] = _sqnr(floats[worst], sim[worst])
                if qdq is not None:
                    row["sqnr_db_aimet_vs_float"] = _sqnr(floats[worst], qdq[worst])
                    row["sqnr_db_simulator_vs_aimet"] = _sqnr(qdq[worst], sim[worst])
            rows.append(row)
            if progress:
                progress(f"{device.name}: {p['name']}")
        out[g.name] = rows
    return out


def _references(g: LoweredGraph, folder: Path, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per part: its inputs and outputs as the float model computes them on the graph's example inputs (the float
    twins of the parts, float weights back, chained), the AIMET simulation's outputs on those inputs (onnxruntime
    running the part's QDQ graph as written; None for a float graph) and the outputs the part computes (not
    quantized copies of its inputs passed through)."""
    values = _np(g)
    state = {**dict(g.module.named_buffers()), **dict(g.module.named_parameters())}
    out = []
    for p in parts:
        model = onnx.load(str(folder / p["file"]))
        feed = {n: values[n] for n in p["inputs"]}
        twin, aimet, computed = model, None, list(p["outputs"])
        if g.sim is not None:
            twin, missing = float_model(model, state)
            if missing:
                raise RuntimeError(f"{p['name']}: no float value for the quantized weights {missing[:5]}")
            cpu = session(model, exact=True)
            aimet = dict(zip([o.name for o in cpu.get_outputs()], cpu.run(None, feed), strict=True))
            names = twin_names(model)
            computed = [o for o in p["outputs"] if names.get(o, o) not in feed] or computed
        s = session(twin)
        floats = dict(zip([o.name for o in s.get_outputs()], s.run(None, feed), strict=True))
        values.update(floats)
        out.append({"feed": feed, "float": floats, "aimet": aimet, "computed": computed})
    return out
