"""One measurement per process, so peak RSS belongs to that measurement alone.

`python benchmarks/_measure.py NAME [ARGS]` prints one JSON object: wall seconds and peak RSS (ru_maxrss) of
this process, plus what the measurement reports.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    """Peak resident set of this process (VmHWM), in MB.

    Not `ru_maxrss`: Linux carries that across exec, so a child started by a parent that once held 8 GB would
    report 8 GB before doing anything. VmHWM belongs to this address space alone.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def analysis_full_size() -> dict:
    from neocompress.cli.inspect import inspect_source
    from neocompress.cli.plan import plan_recipe

    t0 = time.perf_counter()
    info = inspect_source("builtin:pyramid-flow-sd3")
    t_inspect = time.perf_counter() - t0
    t1 = time.perf_counter()
    plan6 = plan_recipe("recipes/pyramid-flow-prune6.yaml")
    plan8 = plan_recipe("recipes/pyramid-flow-prune8.yaml")
    t_plan = time.perf_counter() - t1
    den = [s["components"]["denoiser"] for s in plan6["steps"]] + [plan8["steps"][-1]["components"]["denoiser"]]
    return {
        "inspect_seconds": t_inspect,
        "plan_two_recipes_seconds": t_plan,
        "total_params": info["total_params"],
        "denoiser_params_24_18_16": [d["params"] for d in den],
        "denoiser_tflops_per_video_24_18_16": [d["flops"] / 1e12 for d in den],
    }


def load_denoiser(path: str, mode: str) -> dict:
    """Load the synthetic full-size denoiser: 'mmap' (neocompress) or 'eager' (load_file + load_state_dict)."""
    import torch

    from neocompress.models.checkpoint import load_component
    from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
    from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig

    folder = Path(path)
    cfg = DenoiserConfig.pyramid_flow_sd3()
    t0 = time.perf_counter()
    if mode == "mmap":
        model = load_component(lambda: PyramidFlowMMDiT(cfg), folder, "denoiser")
    else:
        from safetensors.torch import load_file

        model = PyramidFlowMMDiT(cfg)
        model.load_state_dict(load_file(str(folder / "diffusion_pytorch_model.safetensors")), strict=True)
    load_s = time.perf_counter() - t0
    rss_after_load = _rss_mb()
    t1 = time.perf_counter()
    with torch.no_grad():
        x = [torch.randn(1, 16, 1, 16, 16)]
        out = model(
            x,
            torch.randn(1, 128, 4096),
            torch.ones(1, 128, dtype=torch.long),
            torch.randn(1, 2048),
            torch.tensor([500.0]),
        )
    return {
        "mode": mode,
        "load_seconds": load_s,
        "peak_rss_after_load_mb": rss_after_load,
        "forward_seconds": time.perf_counter() - t1,
        "output_shape": list(out.shape),
        "output_finite": bool(torch.isfinite(out).all()),
    }


def write_denoiser(path: str) -> dict:
    """The synthetic full-size checkpoint, written in this child so the parent's memory stays small."""
    sys.path.insert(0, str(Path(__file__).parent))
    from run import write_synthetic_denoiser

    return {"bytes": write_synthetic_denoiser(Path(path))}


def write_denoiser_bf16(path: str) -> dict:
    """The full-size denoiser with random bf16 weights (N(0, 0.02)) in one safetensors file, as published."""
    import torch
    from safetensors.torch import save_file

    from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
    from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig

    cfg = DenoiserConfig.pyramid_flow_sd3()
    with torch.device("meta"):
        skeleton = PyramidFlowMMDiT(cfg)
    gen = torch.Generator().manual_seed(0)
    tensors = {
        k: torch.empty(t.shape).normal_(0, 0.02, generator=gen).bfloat16() for k, t in skeleton.state_dict().items()
    }
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"))
    return {"bytes": (folder / "diffusion_pytorch_model.safetensors").stat().st_size}


def copy_once(src: str, dst: str) -> dict:
    """The baseline: copy the checkpoint file once (what any tool that rewrites the file must at least do)."""
    import shutil

    t0 = time.perf_counter()
    Path(dst).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        Path(src) / "diffusion_pytorch_model.safetensors", Path(dst) / "diffusion_pytorch_model.safetensors"
    )
    return {"seconds": time.perf_counter() - t0}


def stream_prune(src: str, dst: str, remove: str) -> dict:
    """24 -> 18 blocks by streaming tensors (the last block among those removed, so one block is converted)."""
    from neocompress.prune.streaming import stream_prune_denoiser

    t0 = time.perf_counter()
    result = stream_prune_denoiser(src, dst, [int(x) for x in remove.split(",")], force=True)
    return {"seconds": time.perf_counter() - t0, **result.to_dict()}


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    t0 = time.perf_counter()
    measures = {
        "analysis_full_size": analysis_full_size,
        "load_denoiser": load_denoiser,
        "write_denoiser": write_denoiser,
        "write_denoiser_bf16": write_denoiser_bf16,
        "copy_once": copy_once,
        "stream_prune": stream_prune,
    }
    result = measures[name](*args)
    result.update(wall_seconds=time.perf_counter() - t0, peak_rss_mb=_rss_mb())
    print(json.dumps(result))
