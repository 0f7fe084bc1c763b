"""A roofline estimate of on-device latency and peak memory, calibrated on Neodragon's published measurements.

Why a model: the HTP simulator's cycle counts follow the host CPU, not the NPU (toolchain notes), so latency has
to come from elsewhere. The NPU does not run every kind of FLOP equally fast: weight matmuls (linear layers),
activation-by-activation matmuls (attention scores and their product with V) and convolutions reach different
fractions of its peak. So per device and precision the model holds one effective throughput per kind:
latency = max(sum over kinds of FLOPs_kind / throughput_kind, weight bytes / bandwidth) (activations are taken to
stay on chip: the DiT's 1.4 GB of W8 weights over 85 GB/s is 17 ms, far below every published DiT latency);
peak memory = weights + the largest activation live twice (an op's input and output).

How the constants were chosen:
- Bandwidth is the device's LPDDR5X peak as sold: Snapdragon 8 Elite 84.8 GB/s (LPDDR5X-5300, 64-bit), X Elite
  135 GB/s (LPDDR5X-8448, 128-bit), 8 Gen 3 77 GB/s, 8 Gen 2 67 GB/s, 8 Gen 1 51 GB/s.
- Throughputs are fitted per device and precision by non-negative least squares on the relative error of the
  published rows neocompress can count (DiT+ContextAdapter per stage and the VAE encoder in W8A16; CLIP-L and
  CLIP-G in FP16), FLOPs counted by kind on meta tensors. Devices without published rows scale the 8 Elite's
  throughputs by HTP generation (v75 0.75x, v73 0.6x, v69 0.4x: Qualcomm's stated NPU gains, rounded).
`published_comparison` reports each published row beside the estimate, with the in-sample error and the
leave-one-out error (that row left out of the fit), so the model's error is stated, not assumed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

BANDWIDTH_GBS = {"snapdragon-8-elite": 84.8, "snapdragon-x-elite": 135.0, "snapdragon-8-gen-3": 77.0,
                 "snapdragon-8-gen-2": 67.0, "snapdragon-8-gen-1": 51.0}  # fmt: skip
GENERATION_SCALE = {"v79": 1.0, "v75": 0.75, "v73": 0.6, "v69": 0.4}
BYTES_PER_WEIGHT = {"w8a16": 1.0, "w8a8": 1.0, "w4a16": 0.5, "fp16": 2.0}

# Neodragon's per-component latency (ms), reference section 7: (X Elite, 8 Elite)
PUBLISHED_MS = {
    "CLIP-L": (5.9, 14.0),
    "CLIP-G": (43.6, 76.5),
    "DistilT5": (3.0, 3.5),
    "VAE encoder": (941.7, 1206.5),
    "TAEHV decoder": (143.0, 248.9),
    "DiT+CA low": (54.9, 104.7),
    "DiT+CA mid": (101.4, 218.3),
    "DiT+CA high": (590.2, 938.3),
}
PUBLISHED_DEVICES = ("snapdragon-x-elite", "snapdragon-8-elite")
PUBLISHED_PEAK_GB = {"DiT+CA high": 3.25}


@dataclass(frozen=True)
class Workload:
    name: str
    flops_by_kind: dict[str, int]
    weight_bytes: float
    largest_activation_bytes: float
    precision: str  # "w8a16" | "fp16" | ...


    @property
    def flops(self) -> int:
        return sum(self.flops_by_kind.values())


def estimate(w: Workload, throughput: dict[str, float], bandwidth_gbs: float) -> dict[str, float]:
    """Latency (ms), what bounds it, and peak memory (MB) of `w` at effective FLOP/s `throughput` per kind."""
    compute = float(sum(n / throughput[k] for k, n in w.flops_by_kind.items() if n))
    memory = w.weight_bytes / (bandwidth_gbs * 1e9)
    return {"latency_ms": 1e3 * max(compute, memory), "bound": "compute" if compute >= memory else "memory",
            "peak_memory_mb": (w.weight_bytes + 2 * w.largest_activation_bytes) / 2**20}  # fmt: skip


@functools.cache
def neodragon_workloads() -> tuple[Workload, ...]:
    """The published rows neocompress can count, at Neodragon's shapes: the 18-block DiT at 320x512 with the
    last latent frame's history (7 latent frames), 128 text tokens, batch 1 (distilled: no CFG); CLIP-L/G at 77
    tokens; the causal VAE encoder on frame 0. DistilT5 and the TAEHV decoder are built by a later issue."""
    from neocompress.lowering.static_denoiser import StaticStageDenoiser, stage_slot_shapes
    from neocompress.models.pyramid_flow.adapter import PyramidFlowBlockAdapter
    from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
    from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler, SchedulerConfig
    from neocompress.models.pyramid_flow.spec import pyramid_flow_sd3_spec
    from neocompress.models.pyramid_flow.text_encoders import build_clip_g, build_clip_l
    from neocompress.models.pyramid_flow.vae import CausalVAEEncoder

    spec = pyramid_flow_sd3_spec()
    cfg = spec.denoiser
    with torch.device("meta"):
        den = PyramidFlowMMDiT(cfg)
    adapter = PyramidFlowBlockAdapter()
    kept = list(den.transformer_blocks)[:18]  # Neodragon's 18 blocks (which 6 went is not published: the count is)
    adapter.make_context_pre_only(kept[-1])
    adapter.set_blocks(den, kept)
    dit_params = float(sum(p.numel() for p in den.parameters()))  # W8: a byte each
    scheduler = PyramidFlowScheduler(SchedulerConfig())
    out = []
    for stage, label in enumerate(("low", "mid", "high")):  # the static NPU graph of each stage, on meta weights
        shapes = stage_slot_shapes(scheduler, stage, 7, cfg.in_channels, 40, 64, 1)
        graph = StaticStageDenoiser(den, shapes, 128)
        call = ([torch.zeros(s) for s in shapes], torch.zeros(1, 128, cfg.text_token_dim),
                torch.ones(1, 128, dtype=torch.long), torch.zeros(1, cfg.pooled_projection_dim), torch.zeros(1))
        inputs = [x.to("meta") for x in graph.packer.pack(*call)]  # packed on the host, as a bundle does
        flops, act = _count(lambda g=graph, x=inputs: g(*x))
        graph.restore_backend()
        out.append(Workload(f"DiT+CA {label}", flops, dit_params, act, "w8a16"))
    with torch.device("meta"):
        clip_l, clip_g = build_clip_l(spec.text), build_clip_g(spec.text)
        encoder = CausalVAEEncoder(spec.vae)
    ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
    for name, model in (("CLIP-L", clip_l), ("CLIP-G", clip_g)):
        flops, act = _count(lambda m=model: m(input_ids=ids))
        out.append(Workload(name, flops, 2.0 * sum(p.numel() for p in model.parameters()), act, "fp16"))
    frame = torch.zeros(1, 3, 1, 320, 512, device="meta")
    flops, act = _count(lambda: encoder(frame))
    out.append(Workload("VAE encoder", flops, float(sum(p.numel() for p in encoder.parameters())), act, "w8a16"))
    return tuple(out)


_VIEWS = {"view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "slice", "select", "unsqueeze",
          "squeeze", "alias", "as_strided", "split", "split_with_sizes", "unbind", "detach", "unflatten", "flatten",
          "chunk", "narrow", "lift_fresh", "_to_copy", "clone", "empty", "zeros", "ones", "full", "arange"}  # fmt: skip


KINDS = ("linear", "attention", "conv")
_KIND_OF = {"mm": "linear", "addmm": "linear", "bmm": "attention", "baddbmm": "attention",
            "convolution": "conv", "_scaled_dot_product_flash_attention": "attention",
            "_scaled_dot_product_efficient_attention": "attention"}  # fmt: skip


def _count(fn: Any) -> tuple[dict[str, int], int]:
    """FLOPs by kind and the largest activation (bytes, 2 per element as in A16 / FP16) of running `fn`."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket.__name__ not in _VIEWS:
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, torch.Tensor):
                        Largest.bytes = max(Largest.bytes, 2 * t.numel())
            return out

    with FlopCounterMode(display=False) as counter, Largest(), torch.no_grad():
        fn()
    kinds = dict.fromkeys(KINDS, 0)
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        kinds[_KIND_OF.get(op.__name__.split(".")[0], "linear")] += int(n)
    return kinds, Largest.bytes


def _folded(w: Workload) -> dict[str, int]:
    """FLOPs by kind with any kind under 2 % of the total counted as the main kind: otherwise a fit spends a
    row's residual on a sliver (the DiT's patch-embedding convolution) and that kind's throughput comes out
    absurd."""
    main = max(w.flops_by_kind, key=lambda k: w.flops_by_kind[k])
    kinds = dict.fromkeys(KINDS, 0)
    for k, n in w.flops_by_kind.items():
        kinds[k if n >= 0.02 * w.flops else main] += n
    return kinds


def _fit(rows: list[tuple[Workload, float]]) -> dict[str, float]:
    """Effective FLOP/s per kind: non-negative least squares on relative latency error. A kind no row exercises
    (or one the fit leaves at zero cost) takes the slowest fitted throughput, never an infinite one."""
    from scipy.optimize import nnls

    folded = [(_folded(w), ms) for w, ms in rows]
    used = [k for k in KINDS if any(kinds[k] for kinds, _ in folded)]
    a = np.array([[kinds[k] / (ms / 1e3) for k in used] for kinds, ms in folded])
    seconds_per_flop, _ = nnls(a, np.ones(len(rows)))
    fitted = {k: float(1.0 / x) for k, x in zip(used, seconds_per_flop, strict=True) if x > 0}
    slowest = min(fitted.values()) if fitted else 1e12
    return {k: fitted.get(k, slowest) for k in KINDS}


def calibrate(workloads: Sequence[Workload] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """{device: {precision: {kind: effective FLOP/s}}} from the published rows (see the module docstring)."""
    workloads = workloads or neodragon_workloads()
    fitted: dict[str, dict[str, dict[str, float]]] = {}
    for column, device in enumerate(PUBLISHED_DEVICES):
        for precision in {w.precision for w in workloads}:
            rows = [(w, PUBLISHED_MS[w.name][column]) for w in workloads if w.precision == precision]
            fitted.setdefault(device, {})[precision] = _fit(rows)
    return fitted


def throughput(device: Any, precision: str, fitted: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Effective FLOP/s per kind of a device profile at a precision (fp32 graphs run in fp16 on the HTP)."""
    p = "fp16" if precision in ("fp32", "fp16") else "w8a16"
    if device.name in fitted:
        return fitted[device.name][p]
    scale = GENERATION_SCALE.get(device.htp, 0.5)
    return {k: v * scale for k, v in fitted["snapdragon-8-elite"][p].items()}


def workload_of(name: str, module: torch.nn.Module, inputs: tuple, precision: str) -> Workload:
    """A lowered graph's workload, counted by running it once (tiny graphs run on the CPU as they are)."""
    flops, act = _count(lambda: module(*inputs))
    params = sum(p.numel() for p in module.parameters())
    bytes_per = BYTES_PER_WEIGHT.get(precision, 2.0)  # fp32 graphs run in fp16 on the HTP
    return Workload(name, flops, params * bytes_per, act, precision)


def estimate_on(w: Workload, device: Any, fitted: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    bandwidth = BANDWIDTH_GBS.get(device.name, 60.0)
    return {**estimate(w, throughput(device, w.precision, fitted), bandwidth), "gflops": w.flops / 1e9}


def published_comparison() -> list[dict[str, Any]]:
    """Every published row: the estimate, the published number, the in-sample and leave-one-out errors."""
    workloads = neodragon_workloads()
    fitted = calibrate(workloads)
    rows = []
    for w in workloads:
        for column, device in enumerate(PUBLISHED_DEVICES):
            published = PUBLISHED_MS[w.name][column]
            est = estimate(w, fitted[device][w.precision], BANDWIDTH_GBS[device])
            others = [(o, PUBLISHED_MS[o.name][column]) for o in workloads if o.precision == w.precision and o is not w]
            loo = None  # unless every kind this row needs is fitted by some other row
            if others and all(any(_folded(o)[k] for o, _ in others) for k, n in _folded(w).items() if n):
                loo = estimate(w, _fit(others), BANDWIDTH_GBS[device])["latency_ms"]
            rows.append({
                "component": w.name, "device": device, "gflops": w.flops / 1e9,
                "gflops_by_kind": {k: v / 1e9 for k, v in w.flops_by_kind.items()}, "weight_mb": w.weight_bytes / 2**20,
                "published_ms": published, "estimated_ms": est["latency_ms"], "bound": est["bound"],
                "error": est["latency_ms"] / published - 1,
                "leave_one_out_error": None if loo is None else loo / published - 1,
                "peak_memory_mb": est["peak_memory_mb"],
                "published_peak_gb": PUBLISHED_PEAK_GB.get(w.name),
            })  # fmt: skip
    counted = {w.name for w in workloads}
    for name, values in PUBLISHED_MS.items():
        if name not in counted:
            for column, device in enumerate(PUBLISHED_DEVICES):
                rows.append({"component": name, "device": device, "published_ms": values[column],
                             "estimated_ms": None, "note": "not built in neocompress yet (issue 6)"})  # fmt: skip
    return rows
