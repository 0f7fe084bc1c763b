"""Targets that lower a compressed pipeline: hexagon (Qualcomm NPUs) and onnxruntime (runs here)."""
