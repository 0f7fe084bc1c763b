"""Let the CUDA-only torchvision wheel import on the CPU build of torch.

Why this exists: aimet-torch requires torchvision, and the only torchvision matching torch 2.13.0 is a CUDA
build. On CPU torch its import fails with "operator torchvision::nms does not exist" because it registers fake
kernels for two ops whose compiled schemas never loaded. That failure also breaks `import aimet_torch` and
transformers' T5/CLIP imports. `make setup` copies this file into the venv's site-packages and adds a `.pth`
line that installs the finder below. Only when torchvision is first imported, and only when
`torch.version.cuda is None`, it defines the two op schemas so the import goes through; torchvision's compiled
ops stay unavailable (nothing in neocompress needs them). On a CUDA install it does nothing.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


class _TorchvisionCpuFinder(importlib.abc.MetaPathFinder):
    """Runs once, just before the first `import torchvision`, then removes itself."""

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 - importlib protocol
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        try:
            import torch

            if torch.version.cuda is None:
                _define_missing_schemas(torch)
        except Exception:  # never turn an import into a different failure
            pass
        return None  # let the normal finders import torchvision


def _define_missing_schemas(torch) -> None:  # noqa: ANN001
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        with contextlib.suppress(RuntimeError):  # already defined by a build whose compiled ops loaded
            lib.define(schema)
    # Keep the library object alive for the life of the process.
    _define_missing_schemas.lib = lib  # type: ignore[attr-defined]


def install() -> None:
    if not any(isinstance(f, _TorchvisionCpuFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionCpuFinder())
