"""Qualcomm AI Hub: compile every part of a Hexagon bundle on the service for the real device, link the parts
that share weights, profile them on the device, and record job ids and measured latency and memory.

What is submitted: a quantized part as its `.aimet` folder (ONNX + encodings, the form the service takes), a float
component as its ONNX, each compiled with `--target_runtime qnn_context_binary`. The three denoiser stage graphs
hold the same weights, so part j of every stage is linked into one weight-sharing context binary (AI Hub's link
job), as Neodragon deployed its DiT. Without a token, or without a network, nothing here is fatal: the result says
why it was skipped (the CLI shows it once, in a box) and every local artifact is still written. `client` is the
`qai_hub` module or anything with its functions (the tests pass a fake and check the exact calls).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMPILE_OPTIONS = "--target_runtime qnn_context_binary"
NO_TOKEN = (
    "no Qualcomm AI Hub API token is configured, so nothing was compiled or profiled on a device; every local "
    "artifact is written. To use AI Hub: `qai-hub configure --api_token TOKEN`, then apply again."
)


def _hub() -> Any:
    import qai_hub

    return qai_hub


def _submissions(manifest: dict[str, Any], folder: Path) -> list[tuple[str, str, int, Path]]:
    """(component, part name, part index, what to upload) in bundle order."""
    out = []
    for name, c in manifest["components"].items():
        for j, p in enumerate(c["parts"]):
            model = folder / p["aimet"] if "aimet" in p else folder / "graphs" / f"{name}.onnx"
            out.append((name, p["name"], j, model))
    return out


def submit_to_aihub(manifest: dict[str, Any], folder: Path, device: Any, *, client: Any = None,
                    wait: bool = True) -> dict[str, Any]:  # fmt: skip
    """Compile, link and profile the bundle's parts on `device` (a `DeviceProfile`); the record of what ran."""
    hub = client if client is not None else _hub()
    try:
        found = hub.get_devices(name=device.hub_device)
    except hub.UserError as e:
        return {"status": "skipped", "reason": NO_TOKEN, "detail": str(e).strip()[:300]}
    except hub.InternalError as e:
        return {"status": "skipped", "reason": f"Qualcomm AI Hub could not be reached: {str(e).strip()[:300]}"}
    if not found:
        return {"status": "skipped", "reason": f"AI Hub has no device named '{device.hub_device}'"}
    target = hub.Device(device.hub_device)
    record: dict[str, Any] = {"status": "submitted", "device": device.hub_device, "compile_jobs": {},
                              "link_jobs": {}, "profile_jobs": {}, "measured": {}}  # fmt: skip
    compiled: dict[str, Any] = {}
    by_index: dict[int, list[str]] = {}
    for component, part, j, model in _submissions(manifest, folder):
        job = hub.submit_compile_job(model=str(model), device=target, name=f"neocompress {part}",
                                     options=COMPILE_OPTIONS)  # fmt: skip
        record["compile_jobs"][part] = job.job_id
        compiled[part] = job
        if manifest["components"][component]["kind"] == "denoiser":
            by_index.setdefault(j, []).append(part)
    if not wait:  # linking and profiling need the compiled models
        record["status"] = "compile jobs submitted (not waited for: no link or profile jobs; see AI Hub)"
        return record
    targets = {p: job.get_target_model() for p, job in compiled.items()}
    for j, parts in sorted(by_index.items()):  # the stages' part j share their weights: one context binary
        if len(parts) < 2:
            continue
        name = f"neocompress denoiser part {j + 1} (stages {', '.join(p.split('_')[1] for p in parts)})"
        link = hub.submit_link_job(models=[targets[p] for p in parts], device=target, name=name)
        record["link_jobs"][name] = {"job": link.job_id, "parts": parts}
    for part, model in targets.items():
        job = hub.submit_profile_job(model=model, device=target, name=f"neocompress {part}")
        record["profile_jobs"][part] = job.job_id
        profile = job.download_profile()
        summary = profile.get("execution_summary", {})
        record["measured"][part] = {
            "latency_ms": summary.get("estimated_inference_time", 0) / 1000.0,
            "peak_memory_mb": summary.get("estimated_inference_peak_memory", 0) / 2**20,
        }
    return record
