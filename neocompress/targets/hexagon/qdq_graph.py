"""A QDQ ONNX graph as the Hexagon lowering handles it: simplified to static shapes, read for its quantized
tensors, stripped back to its float twin, and its quantization written as AIMET encodings.

Why derive the encodings from the QDQ graph: the parts a split produces are sub-graphs of the QDQ graph, and a
`.aimet` folder's encodings must name exactly the tensors of its own `.onnx`. Reading scale and zero point off
each QuantizeLinear gives that by construction (AIMET's encodings 1.0.0 format; AIMET's own file for the whole
graph is kept beside them and checked to agree). onnxsim runs on the QDQ graph (it folds the exporter's
shape arithmetic, so every tensor has a static shape; it changes no number here: identical outputs), never on
a float graph whose names an encodings file refers to, and never with its attention fusion (the HTP takes no
`com.microsoft` contrib ops).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

SKIPPED_OPTIMIZERS = ["fuse_attention"]
_QMIN = {np.dtype("uint8"): 0, np.dtype("int8"): -128, np.dtype("uint16"): 0, np.dtype("int16"): -32768,
         np.dtype("int32"): -(2**31), np.dtype("uint32"): 0}  # fmt: skip


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model, skipped_optimizers=SKIPPED_OPTIMIZERS)
    if not ok:
        raise RuntimeError("onnxsim could not verify the simplified graph against the original")
    return onnx.shape_inference.infer_shapes(simplified)


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t"):
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def quantized_tensors(model: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """{float tensor name: its AIMET 1.0.0 encoding} for every QuantizeLinear of the graph."""
    consts = constants(model)
    out = {}
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        scale = np.atleast_1d(consts[n.input[1]]).astype(np.float64)
        zero = np.atleast_1d(consts[n.input[2]])
        qmin = _QMIN[zero.dtype]
        bw = zero.dtype.itemsize * 8
        out[n.input[0]] = {
            "name": n.input[0],
            "dtype": "INT",
            "bw": bw,
            "is_sym": bool(np.all(zero == 0) and qmin < 0),
            "scale": [float(s) for s in scale],
            "offset": [int(qmin - int(z)) for z in zero],  # AIMET counts offsets on the unsigned grid
            "enc_type": "PER_CHANNEL" if scale.size > 1 else "PER_TENSOR",
            "is_param": n.input[0] in consts,
        }
    return out


def encodings_file(model: onnx.ModelProto) -> dict[str, Any]:
    """AIMET encodings 1.0.0 for the float twin of `model` (tensor names as in `strip_qdq(model)`). A tensor
    quantized twice in a row (an output quantizer, then the next op's input quantizer) is one tensor in the twin:
    it keeps the first encoding, its producer's."""
    names = twin_names(model)
    entries: dict[str, dict[str, Any]] = {}
    for k, e in quantized_tensors(model).items():
        twin = names.get(k, k)
        entries.setdefault(twin, {**e, "name": twin})
    strip = {k: {f: v for f, v in e.items() if f != "is_param"} for k, e in entries.items()}
    return {
        "version": "1.0.0",
        "activation_encodings": [e for k, e in strip.items() if not entries[k]["is_param"]],
        "param_encodings": [e for k, e in strip.items() if entries[k]["is_param"]],
        "excluded_layers": [],
        "quantizer_args": {"activation_bitwidth": 16, "param_bitwidth": 8, "dtype": "int"},
    }


def strip_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float twin: every QuantizeLinear -> DequantizeLinear pair removed, its consumers reading the float
    tensor the pair quantized. Same input and output names as the QDQ graph, the function of the float model."""
    return _strip(model)[0]


def twin_names(model: onnx.ModelProto) -> dict[str, str]:
    """QDQ-graph tensor name -> the name the same value has in `strip_qdq(model)` (identity if unchanged)."""
    return _strip(model)[1]


def _strip(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    producers = {o: n for n in model.graph.node for o in n.output}
    rename = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            q = producers.get(n.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                rename[n.output[0]] = q.input[0]

    def resolve(name: str) -> str:  # transitively: a DQ -> Q -> DQ re-quantization chain maps to its source
        while name in rename:
            name = rename[name]
        return name

    rename = {k: resolve(k) for k in rename}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [n for n in out.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for n in keep:
        for i, name in enumerate(n.input):
            n.input[i] = rename.get(name, name)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    for o in out.graph.output:  # a graph output read through its QDQ pair: an Identity of the float tensor
        if o.name in rename:
            out.graph.node.append(onnx.helper.make_node("Identity", [rename[o.name]], [o.name], name=f"{o.name}_float"))
    used = {i for n in out.graph.node for i in n.input}
    kept_init = [i for i in out.graph.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept_init)
    del out.graph.value_info[:]
    return out, rename


def weight_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Deployed bytes of each initializer: at its quantized width where a QuantizeLinear reads it (8-bit
    weights are 1 byte on the NPU, though the QDQ file stores them as float), else as stored."""
    quantized = {n.input[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    consts = constants(model)
    out = {}
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.name in quantized:
            zero = consts[quantized[init.name].input[2]]
            out[init.name] = int(arr.size * zero.dtype.itemsize)
        else:
            out[init.name] = int(arr.nbytes)
    return out


def float_model(model: onnx.ModelProto, state: dict[str, Any]) -> tuple[onnx.ModelProto, list[str]]:
    """The float twin of the QDQ graph `model` with every quantized weight back at its float value in `state`
    (the exported module's parameters and buffers by name): AIMET's exports store weights already rounded to their
    quantization grid, so the twin alone is not the float model. Returns the model and the quantized weights it
    found no float value for. Names match the state dict up to the exporter's `_0` / `_dup_N`
    suffixes; MatMul weights are stored transposed."""
    import re

    inits = {i.name for i in model.graph.initializer}
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits}
    out = strip_qdq(model)
    missing = []
    for init in out.graph.initializer:
        if init.name not in quantized:
            continue
        key = init.name if init.name in state else re.sub(r"(_dup_\d+|_\d+)$", "", init.name)
        value = state.get(key)
        if value is None:
            missing.append(init.name)
            continue
        arr = value.detach().cpu().float().numpy()
        stored = numpy_helper.to_array(init)
        # a MatMul weight may be stored transposed; a square one is told apart by the rounded value it replaces
        candidates = [a for a in (arr, arr.T if arr.ndim == 2 else None) if a is not None and a.shape == stored.shape]
        if not candidates:
            missing.append(init.name)
            continue
        arr = min(candidates, key=lambda a: float(np.abs(a - stored).max()))
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr.astype(np.float32)), init.name))
    return out, missing
