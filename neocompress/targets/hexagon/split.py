"""Split a QDQ graph into parts that each fit the target's size limit, cutting only between transformer blocks.

Why between blocks: a block boundary carries few tensors (the two streams, and what every block reads: the
conditioning vector, the mask, the RoPE tables), and Neodragon deployed its DiT the same way, as weight-sharing
parts. Each node belongs to a segment: the block whose weights it reads, else the latest segment of the tensors it
reads (so the stem before block 0 and the head after the last block join their neighbours). Consecutive segments
are packed greedily into parts of at most `max_bytes` deployed weight bytes; a single block over the limit is an
error. A tensor crossing a cut leaves one part through its QuantizeLinear/DequantizeLinear pair and enters the next
through a copy of that pair with the same scale and zero point, so both parts keep quantized inputs and outputs
(the HTP runs each part as a whole integer graph) and the parts compute exactly what the whole graph did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import onnx

from neocompress.core.errors import UserInputError
from neocompress.targets.hexagon.qdq_graph import constants, weight_bytes

_BLOCK = re.compile(r"transformer_blocks\.(\d+)\.")


@dataclass
class Part:
    index: int
    model: onnx.ModelProto
    inputs: list[str]
    outputs: list[str]
    weight_bytes: int
    blocks: list[int] = field(default_factory=list)


def _segments(model: onnx.ModelProto) -> dict[int, int]:
    """Node index -> segment (-1 for the stem) for every node that computes on data (not constants)."""
    consts = constants(model)
    producers = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    weight_block: dict[str, int] = {}  # DQ outputs of weights -> their block
    const_nodes = set()
    for i, n in enumerate(model.graph.node):
        if n.op_type == "Constant" or all(x in consts or x == "" or producers.get(x) in const_nodes for x in n.input):
            const_nodes.add(i)
            for x in n.input:
                m = _BLOCK.search(x)
                if m:
                    weight_block.update(dict.fromkeys(n.output, int(m.group(1))))
                elif x in weight_block:
                    weight_block.update(dict.fromkeys(n.output, weight_block[x]))
    seg: dict[int, int] = {}
    out_seg: dict[str, int] = {g.name: -1 for g in model.graph.input}
    for i, n in enumerate(model.graph.node):
        if i in const_nodes:
            continue
        s = max([out_seg.get(x, -1) for x in n.input] + [weight_block.get(x, -1) for x in n.input])
        seg[i] = s
        out_seg.update(dict.fromkeys(n.output, s))
    return seg


def _initializer_segments(model: onnx.ModelProto, seg: dict[int, int]) -> dict[str, int]:
    """Each initializer -> the segment of the first data node that reads it (through weight Q/DQ nodes)."""
    inits = {i.name for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    out: dict[str, int] = {}

    def sources(x: str, seen: set[str]) -> list[str]:
        if x in inits:
            return [x]
        n = producers.get(x)
        if n is None or x in seen or n.op_type not in ("QuantizeLinear", "DequantizeLinear", "Constant", "Cast",
                                                         "Identity", "Reshape", "Transpose"):  # fmt: skip
            return []
        seen.add(x)
        return [s for i in n.input for s in sources(i, seen)]

    for i, n in enumerate(model.graph.node):
        if i in seg:
            for x in n.input:
                for init in sources(x, set()):
                    out.setdefault(init, seg[i])
    for init in inits:
        out.setdefault(init, -1)
    return out


def split_qdq(model: onnx.ModelProto, max_bytes: int | None, name: str = "graph") -> list[Part]:
    """`model` (simplified, static shapes) as parts of at most `max_bytes` weight bytes each, in order."""
    sizes = weight_bytes(model)
    seg = _segments(model)
    per_segment: dict[int, int] = {}
    for init, s in _initializer_segments(model, seg).items():
        per_segment[s] = per_segment.get(s, 0) + sizes[init]
    order = sorted(set(seg.values()) | set(per_segment))
    total = sum(sizes.values())
    if max_bytes is None or total <= max_bytes:
        groups = [order]
    else:
        groups, current, used = [], [], 0
        for s in order:
            b = per_segment.get(s, 0)
            if b > max_bytes:
                what = "the stem and head" if s < 0 else f"transformer block {s}"
                raise UserInputError(f"{name}: {what} alone holds {b / 2**20:.2f} MiB of weights, over the part "
                                     f"limit of {max_bytes / 2**20:.2f} MiB; raise `max_part_mb`")  # fmt: skip
            if current and used + b > max_bytes:
                groups.append(current)
                current, used = [], 0
            current.append(s)
            used += b
        groups.append(current)
    part_of_segment = {s: k for k, g in enumerate(groups) for s in g}
    node_part = {i: part_of_segment[s] for i, s in seg.items()}
    if len(groups) == 1:
        return [Part(0, model, [i.name for i in model.graph.input], [o.name for o in model.graph.output], total,
                     [s for s in order if s >= 0])]  # fmt: skip
    return _cut(model, node_part, groups, sizes)


def _cut(model: onnx.ModelProto, node_part: dict[int, int], groups: list[list[int]], sizes: dict[str, int]):
    work = onnx.ModelProto()
    work.CopyFrom(model)
    nodes = list(work.graph.node)
    producer_part = {o: node_part[i] for i, n in enumerate(nodes) if i in node_part for o in n.output}
    producer = {o: n for n in nodes for o in n.output}
    graph_inputs = [i.name for i in work.graph.input]
    copies: list[onnx.NodeProto] = []
    crossing: dict[tuple[str, int], str] = {}
    for i, n in enumerate(nodes):
        k = node_part.get(i)
        if k is None:
            continue
        for j, x in enumerate(n.input):
            src = producer_part.get(x)
            if src is None or src == k:
                continue
            dq = producer[x]
            if dq.op_type != "DequantizeLinear":
                raise UserInputError(f"the cut before part {k} passes the unquantized tensor '{x}' (from "
                                     f"{dq.op_type} '{dq.name}'): cannot keep both parts integer")  # fmt: skip
            if (x, k) not in crossing:  # re-quantize with the same scale and zero point in the consuming part
                q_out, dq_out = f"{x}__part{k}_q", f"{x}__part{k}"
                copies.append(onnx.helper.make_node("QuantizeLinear", [x, *dq.input[1:]], [q_out],
                                                    name=f"{dq.name}__part{k}_q", **_attrs(dq)))
                copies.append(onnx.helper.make_node("DequantizeLinear", [q_out, *dq.input[1:]], [dq_out],
                                                    name=f"{dq.name}__part{k}_dq", **_attrs(dq)))  # fmt: skip
                crossing[(x, k)] = dq_out
            n.input[j] = crossing[(x, k)]
    work.graph.node.extend(copies)
    extractor = onnx.utils.Extractor(work)
    parts = []
    for k, segs in enumerate(groups):
        ins = sorted({x for (x, kk) in crossing if kk == k}, key=str)
        outs = sorted({x for (x, kk) in crossing if producer_part.get(x) == k}, key=str)
        used_graph_inputs = [g for g in graph_inputs if _reads(nodes, node_part, k, g)]
        final = [o.name for o in work.graph.output if producer_part.get(o.name) == k]
        part = extractor.extract_model(used_graph_inputs + ins, outs + final)
        part_weights = sum(sizes.get(i.name, 0) for i in part.graph.initializer)
        parts.append(Part(k, part, used_graph_inputs + ins, outs + final, part_weights, [s for s in segs if s >= 0]))
    return parts


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _reads(nodes: list[onnx.NodeProto], node_part: dict[int, int], k: int, name: str) -> bool:
    return any(node_part.get(i) == k and name in n.input for i, n in enumerate(nodes))
