"""The pipeline-level IR: components as nodes, typed tensor interfaces on the edges."""

from neocompress.ir.component import Component, Provenance
from neocompress.ir.interface import TensorSpec
from neocompress.ir.pipeline_ir import Edge, PipelineIR

__all__ = ["Component", "Edge", "PipelineIR", "Provenance", "TensorSpec"]
