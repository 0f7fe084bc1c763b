"""Quantization and lowering benchmark: `python benchmarks/quant_lowering.py --output benchmarks/quant_lowering.json`.

In one run, on builtin:tiny (9 frames, 64x64, the shipped 20-20-20 / 10-10-10 schedule with CFG):
- base: the float pipeline; pruned: the demo's cut (blocks 3 and 5 removed, no recovery: only the structure
  matters for timing), float; compressed: pruned, its denoiser quantized to W8A16 with AIMET (calibrated per stage
  on 8 world prompts, the adapter's float layers kept) and its VAE decoder to W8A16 (calibrated on the latents the
  pipeline samples for those prompts with its own schedule);
1. AIMET calibration time (capture, QuantSim per stage, encodings; the decoder's) and each graph's SQNR;
2. lowering to an onnxruntime bundle: graph build and export time, per component;
3. wall time of one call of every component in onnxruntime on the CPU, base and compressed side by side (QDQ
   graphs both as written, which is what the simulation computes, and with onnxruntime's optimisations, which fuse
   QDQ into integer kernels);
4. end to end: one video generated from each bundle (`BundleRuntime`), and by the torch pipelines.
Timings on these machines are noisy: compare the ratios within one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _timing import median_seconds  # benchmarks/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT = "a red circle moving left slowly on a grey background"


def _pruned(family):
    from neocompress.models.pyramid_flow.adapter import PyramidFlowBlockAdapter

    ir = family.load("builtin:tiny")
    den, adapter = ir["denoiser"].module, PyramidFlowBlockAdapter()
    kept = [b for i, b in enumerate(den.transformer_blocks) if i not in (3, 5)]
    adapter.make_context_pre_only(kept[-1])
    adapter.set_blocks(den, kept)
    return ir


def _compressed(family):
    from neocompress.data.prompts import read_prompt_source
    from neocompress.quant.decoder_sim import simulate_decoder
    from neocompress.quant.denoiser_sim import capture_calls, simulate_denoiser
    from neocompress.quant.precision import precision

    ir = _pruned(family)
    den = ir["denoiser"].module
    pipe = family.pipeline(ir)
    schedule = pipe.schedule_with(first=(4, 4, 4), later=(2, 2, 2))
    prompts = read_prompt_source("builtin:world")[:8]
    t0 = time.perf_counter()
    captured = capture_calls(pipe, prompts, samples=1, seed=0, schedule=schedule, batch=8)
    capture_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    float_layers = ir["denoiser"].extras["block_adapter"].never_quantize(den)
    graphs = simulate_denoiser(den, captured, precision("w8a16"), "v79", max_calls=32, float_layers=float_layers)
    calibrate_s = time.perf_counter() - t0
    ir["denoiser"].extras["quantization"] = {"graphs": graphs, "settings": {"precision": "w8a16", "htp": "v79",
                                             "scheme": "tf", "float_layers": float_layers}}  # fmt: skip
    t0 = time.perf_counter()
    latents = [pipe.sample_latents(prompts, seed=0)]  # the pipeline's own schedule: what the decoder decodes
    decoder_sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoder = simulate_decoder(ir["vae_decoder"].module, pipe.latent_norm, latents, precision("w8a16"), "v79")
    decoder_s = time.perf_counter() - t0
    ir["vae_decoder"].extras["quantization"] = {"decoder": decoder, "settings": decoder.settings}
    return ir, {"capture_seconds": capture_s, "calibration_seconds": calibrate_s,
                "graphs": [g.describe() for g in graphs], "decoder_latents_sampling_seconds": decoder_sample_s,
                "decoder_calibration_seconds": decoder_s, "decoder": decoder.describe()}  # fmt: skip


def main() -> None:
    from neocompress.lowering.onnx_export import session
    from neocompress.lowering.pipeline_graphs import lower_pipeline
    from neocompress.models.pyramid_flow.family import PyramidFlowFamily
    from neocompress.targets.onnxruntime.lower import lower_onnxruntime
    from neocompress.targets.onnxruntime.runtime import BundleRuntime, fused_cpu_session

    ap = argparse.ArgumentParser()
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "quant_lowering.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = PyramidFlowFamily()
    compressed, calibration = _compressed(family)
    models = {"base": family.load("builtin:tiny"), "pruned": _pruned(family), "compressed": compressed}
    work = Path(tempfile.mkdtemp())
    results: dict = {"calibration": calibration, "components": {}, "end_to_end": {}, "lowering": {}}
    for name, ir in models.items():
        t0 = time.perf_counter()
        graphs = lower_pipeline(ir, {})
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = lower_onnxruntime(graphs, ir, work / name, {"name": "onnxruntime"}, {})
        results["lowering"][name] = {"graph_build_seconds": build_s, "export_seconds": time.perf_counter() - t0,
                                     "per_component_seconds": {k: c["seconds"] for k, c in
                                                               manifest["components"].items()}}  # fmt: skip
        for g in graphs:
            entry = manifest["components"][g.name]
            feed = {n: np.ascontiguousarray(t.numpy()) for n, t in zip(g.input_names, g.inputs, strict=True)}
            path = work / name / entry["file"]
            row = results["components"].setdefault(g.name, {})
            with torch.no_grad():
                run = g.sim.model if g.sim else g.module
                row[f"{name}_torch_ms"] = 1e3 * median_seconds(lambda r=run, g=g: r(*g.inputs))
            exact, optimised = session(path, exact=True), session(path)
            row[f"{name}_onnxruntime_ms"] = 1e3 * median_seconds(lambda s=exact, f=feed: s.run(None, f))
            if g.sim is not None:
                optimised_run = median_seconds(lambda s=optimised, f=feed: s.run(None, f))
                row[f"{name}_onnxruntime_optimised_ms"] = 1e3 * optimised_run
        runtime = BundleRuntime(work / name)
        t0 = time.perf_counter()
        runtime.generate([PROMPT], seed=0)
        bundle_s = time.perf_counter() - t0
        fused = BundleRuntime(work / name, session_factory=fused_cpu_session)  # sessions built outside the timing
        t0 = time.perf_counter()
        fused.generate([PROMPT], seed=0)
        fused_s = time.perf_counter() - t0
        pipe = family.pipeline(ir)
        t0 = time.perf_counter()
        pipe.generate([PROMPT], seed=0)
        torch_s = time.perf_counter() - t0
        results["end_to_end"][name] = {"bundle_onnxruntime_seconds": bundle_s, "bundle_fused_seconds": fused_s,
                                       "torch_seconds": torch_s, "calls": runtime.calls}  # fmt: skip
    for row in results["components"].values():
        row["pruned_over_base_onnxruntime"] = row["pruned_onnxruntime_ms"] / row["base_onnxruntime_ms"]
        row["compressed_over_base_onnxruntime"] = row["compressed_onnxruntime_ms"] / row["base_onnxruntime_ms"]
        if "compressed_onnxruntime_optimised_ms" in row:
            row["compressed_fused_over_base_onnxruntime"] = (
                row["compressed_onnxruntime_optimised_ms"] / row["base_onnxruntime_ms"]
            )
    e2e = results["end_to_end"]
    for name in ("pruned", "compressed"):
        results[f"{name}_over_base_end_to_end_onnxruntime"] = (
            e2e[name]["bundle_onnxruntime_seconds"] / e2e["base"]["bundle_onnxruntime_seconds"]
        )
    results["compressed_fused_over_base_end_to_end_onnxruntime"] = (
        e2e["compressed"]["bundle_fused_seconds"] / e2e["base"]["bundle_onnxruntime_seconds"]
    )
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
