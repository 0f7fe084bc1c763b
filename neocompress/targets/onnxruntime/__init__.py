"""The onnxruntime target: the lowered graphs as ONNX files that run here, and a runtime that generates from them."""
