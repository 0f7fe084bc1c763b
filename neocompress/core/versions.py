"""Tool versions recorded in every output (a result is only reproducible with the versions that made it)."""

from __future__ import annotations

import platform
from importlib import metadata

_PACKAGES = (
    "neocompress",
    "torch",
    "transformers",
    "diffusers",
    "accelerate",
    "safetensors",
    "networkx",
    "pydantic",
    "onnx",
    "onnxruntime",
    "onnxruntime-qnn",
    "onnxsim",
    "aimet-torch",
    "qai-hub",
)


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
