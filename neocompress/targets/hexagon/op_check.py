"""A static check of an ONNX graph against what the Hexagon HTP takes, before anything is compiled or uploaded.

What it checks: every node's op is in the QNN execution provider's table of supported ONNX operators (the
onnxruntime-qnn 2.x documentation, "Supported ONNX operators"; `com.microsoft` contrib ops only where listed,
so an attention fused by a simplifier is caught), no tensor has rank above 5 (the HTP's limit on most ops: a
rank-7 reshape is what broke the first stage graph here) and no tensor is float64 or complex. The graph must be
simplified first (static shapes, see `qdq_graph.simplify`), so shape arithmetic is folded and every tensor's
rank is known. The table is necessary, not sufficient: the compile (`qnn.compile_graph`, CPU fallback disabled)
is the final word, and it names the nodes it refuses too.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

_TABLE = """Abs Add And ArgMax ArgMin Asin Atan AveragePool BatchNormalization Cast Ceil Clip Concat Conv ConvTranspose
    Cos CumSum DepthToSpace DequantizeLinear Div Einsum Elu Equal Exp Expand Flatten Floor Gather GatherElements
    GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization
    HardSigmoid HardSwish Identity InstanceNormalization Inverse IsNaN LRN LSTM LayerNormalization LeakyRelu Less
    LessOrEqual Log LogSoftmax LpNormalization MatMul Max MaxPool Mean Min Mod Mul Neg NonZero Not Or PRelu Pad Pow
    QuantizeLinear Reciprocal ReduceL2 ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum Relu RMSNormalization
    Reshape Resize RoiAlign Round RotaryEmbedding ScatterElements ScatterND Sigmoid Sign Sin Slice Softmax Softplus
    SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where
    Constant Shape"""
HTP_OPS = frozenset(_TABLE.split())
_CONTRIB = "DequantizeLinear FusedMatMul Gelu QuantizeLinear QuickGelu SimplifiedLayerNormalization RotaryEmbedding"
HTP_CONTRIB_OPS = frozenset(_CONTRIB.split())
MAX_RANK = 5
_BAD_TYPES = {onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.COMPLEX64: "complex64",
              onnx.TensorProto.COMPLEX128: "complex128", onnx.TensorProto.STRING: "string"}  # fmt: skip


@dataclass(frozen=True)
class OpProblem:
    node: str
    op: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node} ({self.op}): {self.reason}"


def _fused_gelu_erf(node: onnx.NodeProto, producers: dict, consumers: dict) -> bool:
    """An Erf inside the decomposed GELU (`x / sqrt(2) -> Erf -> + 1 -> * x ...`), which the QNN EP fuses into
    one QNN GELU (its documented fusion), as CLIP's exact GELU exports."""
    before = producers.get(node.input[0])
    after = consumers.get(node.output[0], [])
    return before is not None and before.op_type in ("Div", "Mul") and any(n.op_type == "Add" for n in after)


def check_graph(model: onnx.ModelProto) -> list[OpProblem]:
    """Every node of `model` the HTP would not take, with why; empty if the graph passes."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    types = {v.name: v.type.tensor_type for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    problems = []
    for n in model.graph.node:
        domain = n.domain or "ai.onnx"
        if domain in ("ai.onnx", ""):
            if n.op_type not in HTP_OPS and not (n.op_type == "Erf" and _fused_gelu_erf(n, producers, consumers)):
                problems.append(OpProblem(n.name, n.op_type, "not an operator the HTP takes"))
        elif domain == "com.microsoft":
            if n.op_type not in HTP_CONTRIB_OPS:
                problems.append(OpProblem(n.name, f"com.microsoft::{n.op_type}", "contrib op the HTP does not take"))
        else:
            problems.append(OpProblem(n.name, f"{domain}::{n.op_type}", "custom domain"))
        for out in n.output:
            t = types.get(out)
            if t is None:
                continue
            if t.HasField("shape") and len(t.shape.dim) > MAX_RANK:
                problems.append(OpProblem(n.name, n.op_type, f"output '{out}' has rank {len(t.shape.dim)} > "
                                                             f"{MAX_RANK}"))  # fmt: skip
            if t.elem_type in _BAD_TYPES:
                problems.append(OpProblem(n.name, n.op_type, f"output '{out}' is {_BAD_TYPES[t.elem_type]}"))
    return problems
