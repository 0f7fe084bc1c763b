"""Compile ONNX graphs for a Hexagon NPU with Qualcomm's own HTP backend (onnxruntime-qnn), offline, and run them
in its simulator.

Why this is the compile step: the QNN HTP backend in `onnxruntime-qnn` is the compiler the device runs; on x86-64
Linux it compiles for a chosen `htp_arch` / `soc_model` and executes the result in a simulator. CPU fallback is
disabled, so a node the HTP does not take is an error naming that node and its op, not a silent CPU island. With
the EP-context options the compile writes the QNN context binary (`*_qnn.bin`) and its EPContext ONNX wrapper
(the "precompiled QNN ONNX" form), which loads and runs again through the same backend. Float graphs compile in
fp16 (`enable_htp_fp16_precision`), quantized QDQ graphs in their integer precisions. The simulator is a compile
and numerics check, not a latency model (toolchain notes): latency comes from `cost_model`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neocompress.core.errors import NeocompressError

_UNSUPPORTED = re.compile(r"\{ name: ([^,]+), type: ([^ }]+) \}")


class HtpCompileError(NeocompressError):
    """A graph the HTP backend would not take whole."""


@dataclass
class Compiled:
    context_onnx: Path
    context_binary: Path
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"context_onnx": self.context_onnx.name, "context_binary": self.context_binary.name,
                "binary_bytes": self.context_binary.stat().st_size, "compile_seconds": self.seconds}  # fmt: skip


def available() -> str | None:
    """None if onnxruntime-qnn is installed and registers its provider, else why not."""
    try:
        _provider_devices()
    except Exception as e:  # noqa: BLE001 - any failure to load the plugin means "not here"
        return f"onnxruntime-qnn is not usable here: {e}"
    return None


_REGISTERED: list[Any] = []


def _provider_devices() -> list[Any]:
    import onnxruntime as ort
    import onnxruntime_qnn as oq

    if not _REGISTERED:
        ort.register_execution_provider_library(oq.EP_NAME, oq.get_library_path())
        _REGISTERED.append(True)
    devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
    if not devices:
        raise RuntimeError("the QNN execution provider registered no device")
    return devices


def _options(htp_arch: int, soc_model: int, fp16: bool, context: Path | None = None) -> Any:
    import onnxruntime as ort
    import onnxruntime_qnn as oq

    options = ort.SessionOptions()
    provider = {"backend_path": oq.get_qnn_htp_path(), "htp_arch": str(htp_arch), "soc_model": str(soc_model)}
    if fp16:
        provider["enable_htp_fp16_precision"] = "1"
    options.add_provider_for_devices(_provider_devices(), provider)
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    options.log_severity_level = 3  # errors only: the refused nodes are logged at error level
    if context is not None:
        options.add_session_config_entry("ep.context_enable", "1")
        options.add_session_config_entry("ep.context_file_path", str(context))
        options.add_session_config_entry("ep.context_embed_mode", "0")
    return options


def compile_graph(onnx_path: Path, context_onnx: Path, htp_arch: int, soc_model: int, *, fp16: bool) -> Compiled:
    """Compile `onnx_path` for the HTP; write `context_onnx` and its `*_qnn.bin` beside it."""
    import onnxruntime as ort

    context_onnx.parent.mkdir(parents=True, exist_ok=True)
    for stale in (context_onnx, context_onnx.with_name(context_onnx.stem + "_qnn.bin")):
        stale.unlink(missing_ok=True)  # the provider refuses to overwrite a context model
    t0 = time.perf_counter()
    with _native_stderr() as log:  # the provider names the nodes it refuses only in its log
        try:
            ort.InferenceSession(str(onnx_path), _options(htp_arch, soc_model, fp16, context_onnx))
            failure = None
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own Fail type; we name what failed
            failure = str(e)
    if failure is not None:
        raise HtpCompileError(_explain(onnx_path, htp_arch, failure + "\n" + "".join(log)))
    binaries = sorted(context_onnx.parent.glob(context_onnx.stem + "*.bin"))
    if not context_onnx.is_file() or not binaries:
        raise HtpCompileError(f"{onnx_path.name}: the HTP backend wrote no context binary for v{htp_arch}")
    return Compiled(context_onnx, binaries[0], time.perf_counter() - t0)


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 (onnxruntime's logger); the text is in the yielded
    list once the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            captured.append(log.read())


def _explain(onnx_path: Path, htp_arch: int, message: str) -> str:
    nodes = _UNSUPPORTED.findall(message)
    if "assigned to the default CPU EP" in message or nodes:
        listed = ", ".join(f"{name} ({op})" for name, op in nodes) or "see the onnxruntime log"
        return f"{onnx_path.name}: the Hexagon v{htp_arch} HTP does not take these nodes: {listed}"
    return f"{onnx_path.name}: the HTP backend failed to compile for v{htp_arch}: {message.strip()[-400:]}"


class SimulatorSession:
    """A compiled context model run in the HTP simulator."""

    def __init__(self, context_onnx: Path, htp_arch: int, soc_model: int, fp16: bool):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(context_onnx), _options(htp_arch, soc_model, fp16))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {n: feed[n] for n in self.input_names})
        return dict(zip(self.output_names, outs, strict=True))
