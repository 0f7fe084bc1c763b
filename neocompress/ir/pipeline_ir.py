"""PipelineIR: the components of a text-to-video pipeline and the typed dataflow between them.

Why a graph: the Neodragon techniques are graph edits. Encoder substitution and decoder swap replace a node and
must keep the contracts of its edges; step distillation rewrites the scheduler node; pruning changes the inside
of the denoiser node. networkx holds the structure so ordering, reachability and cycles are not hand-written.

The sampling loop (scheduler <-> denoiser) is not an edge: the scheduler node *drives* the denoiser
(`Component.extras["drives"]`), and the graph stays a DAG of data dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from neocompress.core.errors import VerificationError
from neocompress.ir.component import Component, Provenance
from neocompress.ir.interface import TensorSpec, check_compatible

PIPELINE_INPUT = "@input"  # pseudo-producer for tensors given to the pipeline (prompt ids, seeds)


@dataclass(frozen=True)
class Edge:
    """`src.src_port` feeds `dst.dst_port`."""

    src: str
    src_port: str
    dst: str
    dst_port: str

    def __str__(self) -> str:
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"


@dataclass
class PipelineIR:
    """A family name, its components and the edges between them, plus free-form metadata."""

    family: str
    components: dict[str, Component] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- construction
    def add(self, component: Component) -> Component:
        if component.name in self.components:
            raise VerificationError(f"component '{component.name}' already exists")
        self.components[component.name] = component
        return component

    def connect(self, src: str, src_port: str, dst: str, dst_port: str) -> None:
        self.edges.append(Edge(src, src_port, dst, dst_port))

    def __getitem__(self, name: str) -> Component:
        try:
            return self.components[name]
        except KeyError:
            known = ", ".join(sorted(self.components))
            raise KeyError(f"no component '{name}' in the pipeline (components: {known})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.components

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components.values())

    # ----------------------------------------------------------------- editing
    def replacement_problems(self, name: str, new: Component) -> list[str]:
        """How `new` would break the contracts of component `name`'s edges (empty: it may take its place).

        The new component must offer every output port the old one fed downstream and accept every input port
        that was fed to it, with compatible specs (shape with its token count and width, dtype, value range).
        """
        self[name]
        problems: list[str] = []
        for e in self.edges:
            if e.src == name:
                if e.src_port not in new.outputs:
                    problems.append(f"output '{e.src_port}' (feeds {e.dst}.{e.dst_port}) is missing")
                    continue
                consumer = self.components[e.dst].inputs.get(e.dst_port)
                if consumer is not None:
                    problems += [f"{e}: {p}" for p in check_compatible(new.outputs[e.src_port], consumer)]
            if e.dst == name:
                if e.dst_port not in new.inputs:
                    problems.append(f"input '{e.dst_port}' (fed by {e.src}.{e.src_port}) is missing")
                    continue
                producer = self.components[e.src].outputs.get(e.src_port) if e.src in self.components else None
                if producer is not None:
                    problems += [f"{e}: {p}" for p in check_compatible(producer, new.inputs[e.dst_port])]
        return problems

    def replace(self, name: str, new: Component, *, by_pass: str, detail: str = "") -> Component:
        """Put `new` in place of component `name`, rewiring every edge; returns the old component.

        Checked first (`replacement_problems`), so a bad substitution fails at the pass that made it, not three
        components later.
        """
        old = self[name]
        problems = self.replacement_problems(name, new)
        if problems:
            raise VerificationError(
                f"replacing '{name}' by {new.class_name} breaks its interface:\n  " + "\n  ".join(problems)
            )
        edges = []
        for e in self.edges:
            src = new.name if e.src == name else e.src
            dst = new.name if e.dst == name else e.dst
            edges.append(Edge(src, e.src_port, dst, e.dst_port))
        del self.components[name]
        self.components[new.name] = new
        self.edges = edges
        new.provenance.append(Provenance(by_pass, "replaced", detail or f"replaced '{name}' ({old.class_name})"))
        return old

    # ----------------------------------------------------------------- views
    def graph(self) -> nx.MultiDiGraph:
        g = nx.MultiDiGraph()
        for c in self.components.values():
            g.add_node(c.name, kind=c.kind)
        for e in self.edges:
            g.add_edge(e.src, e.dst, src_port=e.src_port, dst_port=e.dst_port)
        return g

    def topological_order(self) -> list[str]:
        g = self.graph()
        g.remove_nodes_from([n for n in list(g.nodes) if n == PIPELINE_INPUT])
        return list(nx.topological_sort(g))

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (used by IR dumps and reports)."""
        return {
            "family": self.family,
            "components": {
                c.name: {
                    "kind": c.kind,
                    "class": c.class_name,
                    "params": c.num_params(),
                    "buffers": c.num_buffers(),
                    "inputs": {k: v.describe() for k, v in c.inputs.items()},
                    "outputs": {k: v.describe() for k, v in c.outputs.items()},
                    "provenance": [p.to_dict() for p in c.provenance],
                }
                for c in self.components.values()
            },
            "edges": [str(e) for e in self.edges],
        }

    # ----------------------------------------------------------------- checking
    def problems(self) -> list[str]:
        """Every broken contract: unknown endpoints, missing ports, incompatible specs, unfed inputs, cycles."""
        out: list[str] = []
        fed: dict[tuple[str, str], list[Edge]] = {}
        for e in self.edges:
            if e.src != PIPELINE_INPUT and e.src not in self.components:
                out.append(f"{e}: missing producer '{e.src}'")
                continue
            if e.dst not in self.components:
                out.append(f"{e}: missing consumer '{e.dst}'")
                continue
            fed.setdefault((e.dst, e.dst_port), []).append(e)
            dst_spec = self.components[e.dst].inputs.get(e.dst_port)
            if dst_spec is None:
                out.append(f"{e}: '{e.dst}' has no input '{e.dst_port}'")
                continue
            if e.src == PIPELINE_INPUT:
                continue
            src_spec = self.components[e.src].outputs.get(e.src_port)
            if src_spec is None:
                out.append(f"{e}: '{e.src}' has no output '{e.src_port}'")
                continue
            out += [f"{e}: {p}" for p in check_compatible(src_spec, dst_spec)]
        for c in self.components.values():
            for port in c.inputs:
                producers = fed.get((c.name, port), [])
                if not producers:
                    out.append(f"{c.name}.{port}: no producer feeds this input")
                elif len(producers) > 1:
                    out.append(f"{c.name}.{port}: fed by {len(producers)} producers ({', '.join(map(str, producers))})")
            drives = c.extras.get("drives")
            if drives is not None and drives not in self.components:
                out.append(f"{c.name}: drives missing component '{drives}'")
        g = self.graph()
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            out.append("dataflow has a cycle: " + " -> ".join(str(u) for u, *_ in cycle))
        return out

    def verify(self) -> None:
        """Raise `VerificationError` listing every broken contract, or return quietly."""
        problems = self.problems()
        if problems:
            raise VerificationError("pipeline IR is inconsistent:\n  " + "\n  ".join(problems))


def spec(
    *shape: int | str, dtype: str = "float32", value_range: tuple[float, float] | None = None, doc: str = ""
) -> TensorSpec:
    """Short constructor used by model families when they declare their interfaces."""
    return TensorSpec(tuple(shape), dtype, value_range, doc)
