"""Typed tensor interfaces: what flows along an edge of the pipeline graph.

Why: a substitution (a smaller text encoder, a new VAE decoder) is only safe if what it produces is what the
next component consumes. A `TensorSpec` states that contract (shape with symbolic dims, dtype, value range) and
`check_compatible` says precisely how a producer breaks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Dim = int | str  # an int is fixed; a str names a symbolic dim ("B", "T") that must agree along an edge


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and value range of one tensor crossing a component boundary."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"
    value_range: tuple[float, float] | None = None  # None: unbounded
    doc: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "value_range": self.value_range, "doc": self.doc}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        vr = d.get("value_range")
        return cls(tuple(d["shape"]), d.get("dtype", "float32"), tuple(vr) if vr else None, d.get("doc", ""))

    def describe(self) -> str:
        dims = ", ".join(str(x) for x in self.shape)
        rng = f" in [{self.value_range[0]}, {self.value_range[1]}]" if self.value_range else ""
        return f"[{dims}] {self.dtype}{rng}"


def check_compatible(produced: TensorSpec, consumed: TensorSpec) -> list[str]:
    """Reasons why a tensor described by `produced` may not be fed where `consumed` is expected."""
    problems: list[str] = []
    if len(produced.shape) != len(consumed.shape):
        problems.append(f"rank {len(produced.shape)} != {len(consumed.shape)}")
    else:
        for i, (p, c) in enumerate(zip(produced.shape, consumed.shape, strict=True)):
            if isinstance(p, int) and isinstance(c, int) and p != c:
                problems.append(f"dim {i} is {p}, expected {c}")
            elif isinstance(p, str) and isinstance(c, str) and p != c:
                problems.append(f"dim {i} is symbolic '{p}', expected '{c}'")
            elif isinstance(p, str) and isinstance(c, int):
                problems.append(f"dim {i} is symbolic '{p}', expected fixed {c}")
    if produced.dtype != consumed.dtype:
        problems.append(f"dtype {produced.dtype} != {consumed.dtype}")
    if consumed.value_range is not None:
        if produced.value_range is None:
            problems.append(f"value range unbounded, expected within {list(consumed.value_range)}")
        elif produced.value_range[0] < consumed.value_range[0] or produced.value_range[1] > consumed.value_range[1]:
            problems.append(f"value range {list(produced.value_range)} exceeds {list(consumed.value_range)}")
    return problems
