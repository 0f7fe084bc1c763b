"""Quantization and lowering benchmark: `python benchmarks/quant_lowering.py --output benchmarks/quant_lowering.json`.

On builtin:tiny, base (6 blocks) and pruned to 4 blocks (blocks 3 and 5, the demo's cut, without recovery: only
the structure matters for timing), for every static denoiser graph the default sampler uses (3 stages, with and
without history, CFG batch 2):
1. AIMET W8A16 calibration time per graph (capture, prepare, QuantSim, encodings) and its SQNR;
2. ONNX export time per graph, and the export's max abs error against torch;
3. wall time of one call in onnxruntime (CPU) beside torch, per graph, base and pruned side by side in one
   run; plus the VAE decoder.
Timings on these machines are noisy: compare the ratios within one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _time(fn, repeats: int = 20) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    import onnxruntime as ort

    from neocompress.lowering.onnx_export import export_onnx, verify_onnx
    from neocompress.lowering.static_denoiser import StaticStageDenoiser
    from neocompress.models.pyramid_flow.adapter import PyramidFlowBlockAdapter
    from neocompress.models.pyramid_flow.family import PyramidFlowFamily
    from neocompress.quant.denoiser_sim import capture_calls, simulate_denoiser
    from neocompress.quant.precision import precision

    ap = argparse.ArgumentParser()
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "quant_lowering.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = PyramidFlowFamily()
    models = {}
    for name in ("base", "pruned"):
        ir = family.load("builtin:tiny")
        if name == "pruned":
            den, adapter = ir["denoiser"].module, PyramidFlowBlockAdapter()
            kept = [b for i, b in enumerate(den.transformer_blocks) if i not in (3, 5)]
            adapter.make_context_pre_only(kept[-1])
            adapter.set_blocks(den, kept)
        models[name] = ir
    pipe = family.pipeline(models["base"])
    schedule = pipe.schedule_with(first=(4, 4, 4), later=(2, 2, 2))
    t0 = time.perf_counter()
    captured = capture_calls(pipe, ["a red circle moving left slowly on a grey background"], samples=1, seed=0,
                             schedule=schedule)  # fmt: skip
    capture_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    graphs = simulate_denoiser(models["base"]["denoiser"].module, captured, precision("w8a16"), "v79")
    results: dict = {
        "calibration": {
            "capture_seconds": capture_s,
            "total_seconds": time.perf_counter() - t0,
            "graphs": [g.describe() for g in graphs],
        },
        "graphs": [],
    }
    work = Path(tempfile.mkdtemp())
    for key in captured.calls:
        row: dict = {"clips": [list(k) for k in key], "stage": captured.stage_of[key]}
        for name, ir in models.items():
            graph = StaticStageDenoiser(ir["denoiser"].module, [(2, *k) for k in key], text_len=32).eval()
            inputs = graph.example_inputs(seed=1)
            names = graph.input_names()
            t0 = time.perf_counter()
            path = export_onnx(graph, inputs, names, work / f"{name}-{len(row)}.onnx")
            export_s = time.perf_counter() - t0
            check = verify_onnx(graph, path, inputs, names)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feed = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
            with torch.no_grad():
                torch_s = _time(lambda g=graph, x=inputs: g(*x))
            ort_s = _time(lambda s=session, f=feed: s.run(None, f))
            graph.restore_backend()
            row[name] = {
                "export_seconds": export_s,
                "max_abs_error": check.max_abs_error,
                "torch_ms": torch_s * 1e3,
                "onnxruntime_ms": ort_s * 1e3,
            }
        row["pruned_over_base_onnxruntime"] = row["pruned"]["onnxruntime_ms"] / row["base"]["onnxruntime_ms"]
        results["graphs"].append(row)
    total = {n: sum(r[n]["onnxruntime_ms"] for r in results["graphs"]) for n in models}
    results["sum_of_graph_calls_onnxruntime_ms"] = total
    results["pruned_over_base_sum"] = total["pruned"] / total["base"]
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
