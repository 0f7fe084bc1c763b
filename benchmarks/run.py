"""The benchmark suite: `make bench` (or `python benchmarks/run.py --output benchmarks/results.json`).

Measures, each in its own process (peak RSS is per process):
1. Meta-device analysis of the full-size Pyramid-Flow (inspect + plan of two pruning recipes): time, peak RSS.
2. builtin:tiny `apply recipes/tiny.yaml` (cold cache, then warm cache) and `generate`: wall times.
3. The shipped miniature (`builtin:tiny`): time to train each part, read from its training record (re-training is
   `neocompress train-miniature`, about an hour here), and MiniBench of it beside real videos and noise.
4. Loading a synthetic full-size denoiser checkpoint written here (fp32, the real layout): neocompress's
   memory-mapped strict load side by side with an eager load (safetensors load_file + load_state_dict), peak RSS
   after loading and after one forward, against the file size.

Timings on these machines are noisy: compare the ratios within one run, not absolute seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _measure(*args: str) -> dict:
    out = subprocess.run(
        [PY, str(ROOT / "benchmarks" / "_measure.py"), *args], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def bench_tiny(work: Path) -> dict:
    cli = [PY, "-m", "neocompress.cli.main"]
    cache = str(work / "cache")
    out = str(work / "tiny")
    cold = _timed([*cli, "apply", "recipes/tiny.yaml", "-o", out, "--cache-dir", cache, "--force"])
    warm = _timed([*cli, "apply", "recipes/tiny.yaml", "-o", out, "--cache-dir", cache, "--force"])
    gen = _timed([*cli, "generate", out, "-o", str(work / "tiny-video"), "--force"])
    noop = _timed([PY, "-c", "import neocompress.cli.main"])
    info = json.loads((work / "tiny-video" / "generate.json").read_text())
    return {
        "block_prune": block_prune_record(Path(out) / "report.json"),
        "apply_cold_seconds": cold,
        "apply_warm_cache_seconds": warm,
        "generate_seconds_total": gen,
        "generate_seconds_sampling_only": info["generate_seconds"],
        "nfe_per_video": info["nfe_per_video"],
        "cli_import_seconds": noop,
        "apply_warm_over_cold": warm / cold,
    }


def block_prune_record(report_path: Path) -> dict:
    """What the demo's block_prune did: the cut, seconds, fidelity and MiniBench per recovery stage."""
    report = json.loads(report_path.read_text())
    (record,) = [p for p in report["passes"] if p["name"] == "block_prune"]
    r = record["report"]
    recovery = r.get("recovery", {})
    return {
        "seconds": record["seconds"],
        "removed": r["removed"],
        "params_before": r["params_before"],
        "params_after": r["params_after"],
        "fidelity": {
            "after_cut": recovery.get("fidelity_after_cut"),
            **{name: st["fidelity_after"] for name, st in recovery.get("stages", {}).items()},
        },
        "objective": {
            name: [st["objective_before"], st["objective_after"]] for name, st in recovery.get("stages", {}).items()
        },
        "minibench_total": {
            "before": report["quality"]["before"]["total"] if report.get("quality") else None,
            **{m["after"]: m["total"] for m in recovery.get("minibench", [])},
        },
    }


def write_synthetic_denoiser(folder: Path) -> int:
    """The full-size denoiser in the public layout, written tensor by tensor from lazily zeroed memory."""
    import torch
    from safetensors.torch import save_file

    from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
    from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig

    cfg = DenoiserConfig.pyramid_flow_sd3()
    with torch.device("meta"):
        skeleton = PyramidFlowMMDiT(cfg)
    # torch.zeros of large sizes maps fresh zero pages: writing them costs file I/O, not resident memory.
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for k, t in skeleton.state_dict().items():
        x = torch.zeros(t.shape)
        if x.numel() <= 1 << 16:
            x.normal_(0, 0.02, generator=gen)
        tensors[k] = x
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"))
    return (folder / "diffusion_pytorch_model.safetensors").stat().st_size


STREAM_REMOVE = "6,9,12,15,18,23"  # six blocks, the last among them: the new last block is converted


def bench_stream_prune(work: Path, rounds: int = 2) -> dict:
    """Side by side, alternating: copy the 4 GB file once, and stream-prune it 24 -> 18 blocks (each in its own
    process, so each peak RSS is its own). The ratio of the medians is the claim; absolute seconds are noisy."""
    import statistics

    src = work / "denoiser-bf16"
    size = _measure("write_denoiser_bf16", str(src))["bytes"]
    copies, prunes = [], []
    for _ in range(rounds):
        copies.append(_measure("copy_once", str(src), str(work / "copy")))
        shutil.rmtree(work / "copy")
        prunes.append(_measure("stream_prune", str(src), str(work / "pruned"), STREAM_REMOVE))
        shutil.rmtree(work / "pruned")
    shutil.rmtree(src)
    out_mb = prunes[-1]["bytes_written"] / 2**20
    copy_s = statistics.median(c["seconds"] for c in copies)
    prune_s = statistics.median(p["seconds"] for p in prunes)
    peak = max(p["peak_rss_mb"] for p in prunes)
    return {
        "input_mb": size / 2**20,
        "output_mb": out_mb,
        "removed": prunes[-1]["removed"],
        "last_block_converted": prunes[-1]["last_block_converted"],
        "params": [prunes[-1]["params_before"], prunes[-1]["params_after"]],
        "shards": prunes[-1]["shards"],
        "copy_seconds": [c["seconds"] for c in copies],
        "prune_seconds": [p["seconds"] for p in prunes],
        "prune_over_copy": prune_s / copy_s,
        "prune_peak_rss_mb": peak,
        "prune_peak_rss_over_output": peak / out_mb,
        "copy_peak_rss_mb": max(c["peak_rss_mb"] for c in copies),
    }


def miniature_training() -> dict:
    """How the shipped builtin:tiny was trained: the recipe and the wall time of each stage, from its record."""
    record_path = ROOT / "neocompress" / "assets" / "miniature" / "training.json"
    if not record_path.is_file():
        return {"shipped": False}
    record = json.loads(record_path.read_text())
    return {
        "shipped": True,
        "recipe": record["recipe"],
        "timings_s": record["timings_s"],
        "total_min": sum(record["timings_s"].values()) / 60,
        "loss_last": {k: record[k]["loss_last"] for k in ("vae_images", "vae_crops", "vae", "dit") if k in record},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results.json"))
    ap.add_argument("--skip-load", action="store_true", help="skip the 8 GB checkpoint benchmark")
    args = ap.parse_args()
    work = ROOT / "benchmarks" / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results: dict = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}}
    print("1/3 full-size meta analysis ...", flush=True)
    results["analysis_full_size"] = _measure("analysis_full_size")
    print("2/3 builtin:tiny apply and generate ...", flush=True)
    results["tiny"] = bench_tiny(work)
    if not args.skip_load:
        print("3/3 synthetic full-size denoiser checkpoint ...", flush=True)
        size = _measure("write_denoiser", str(work / "denoiser"))["bytes"]
        mmap = _measure("load_denoiser", str(work / "denoiser"), "mmap")
        eager = _measure("load_denoiser", str(work / "denoiser"), "eager")
        mb = size / 2**20
        results["load_full_size_denoiser"] = {
            "file_mb": mb,
            "mmap": mmap,
            "eager": eager,
            "mmap_rss_after_load_over_file": mmap["peak_rss_after_load_mb"] / mb,
            "eager_rss_after_load_over_file": eager["peak_rss_after_load_mb"] / mb,
            "mmap_peak_rss_over_file": mmap["peak_rss_mb"] / mb,
            "eager_peak_rss_over_file": eager["peak_rss_mb"] / mb,
            "eager_load_seconds_over_mmap": eager["load_seconds"] / mmap["load_seconds"],
        }
        shutil.rmtree(work / "denoiser")
    if not args.skip_load:
        print("synthetic full-size bf16 checkpoint: streaming prune 24 -> 18 vs copying it once ...", flush=True)
        results["stream_prune_full_size"] = bench_stream_prune(work)
    print("MiniBench: judges, real videos, noise, builtin:tiny ...", flush=True)
    mini_json = work / "minibench.json"
    subprocess.run(
        [PY, str(ROOT / "benchmarks" / "minibench.py"), "--output", str(mini_json), "--pipeline", "builtin:tiny"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    results["minibench"] = json.loads(mini_json.read_text())
    print("quantization and lowering: AIMET calibration, ONNX export, onnxruntime vs torch ...", flush=True)
    quant_json = work / "quant_lowering.json"
    subprocess.run(
        [PY, str(ROOT / "benchmarks" / "quant_lowering.py"), "--output", str(quant_json)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    results["quant_lowering"] = json.loads(quant_json.read_text())
    from neocompress.targets.hexagon.cost_model import published_comparison

    results["cost_model"] = published_comparison()
    results["miniature_training"] = miniature_training()
    Path(args.output).write_text(json.dumps(results, indent=2))
    Path(args.output).with_suffix(".md").write_text(summary_markdown(results))
    print(json.dumps(results, indent=2))


def quant_lowering_lines(q: dict) -> list[str]:
    cal = q["calibration"]
    lines = [
        "",
        "## Quantization and lowering through onnxruntime (builtin:tiny; base: float, 6 blocks; pruned: float, 4 "
        "blocks; compressed: 4 blocks, denoiser and VAE decoder W8A16)",
        "",
        f"- AIMET calibration, {len(cal['graphs'])} stage graphs: {cal['calibration_seconds']:.1f} s (capture "
        f"{cal['capture_seconds']:.1f} s); SQNR on the calibration calls: "
        + ", ".join(f"{g['sqnr_db']:.1f}" for g in cal["graphs"]) + " dB",
        *([f"- AIMET calibration of the VAE decoder: {cal['decoder_calibration_seconds']:.1f} s (sampling its "
           f"latents at the pipeline's schedule {cal['decoder_latents_sampling_seconds']:.1f} s); SQNR "
           f"{cal['decoder']['sqnr_db']:.1f} dB on them"] if "decoder" in cal else []),
        "- lowering to the onnxruntime bundle: "
        + ", ".join(f"{k} {v['export_seconds']:.1f} s" for k, v in q["lowering"].items()),
        "",
        "| component | onnxruntime ms: base / pruned / compressed (QDQ as written) / compressed (QDQ fused) | "
        "pruned / base | compressed fused / base |",
        "|---|---:|---:|---:|",
    ]
    for name, c in q["components"].items():
        fused = c.get("compressed_onnxruntime_optimised_ms")
        fused_s = "-" if fused is None else f"{fused:.2f}"
        ratio = c.get("compressed_fused_over_base_onnxruntime", c["compressed_over_base_onnxruntime"])
        lines.append(
            f"| {name} | {c['base_onnxruntime_ms']:.2f} / {c['pruned_onnxruntime_ms']:.2f} / "
            f"{c['compressed_onnxruntime_ms']:.2f} / {fused_s} | {c['pruned_over_base_onnxruntime']:.2f} | "
            f"{ratio:.2f} |"
        )
    e = q["end_to_end"]
    lines += [
        "",
        f"One video end to end from each bundle (onnxruntime, CPU): base {e['base']['bundle_onnxruntime_seconds']:.2f}"
        f" s; pruned {e['pruned']['bundle_onnxruntime_seconds']:.2f} s "
        f"({q['pruned_over_base_end_to_end_onnxruntime']:.2f}x); compressed with QDQ as written "
        f"{e['compressed']['bundle_onnxruntime_seconds']:.2f} s "
        f"({q['compressed_over_base_end_to_end_onnxruntime']:.2f}x), with QDQ fused "
        f"{e['compressed']['bundle_fused_seconds']:.2f} s "
        f"({q['compressed_fused_over_base_end_to_end_onnxruntime']:.2f}x). Sub-millisecond rows are within the "
        "machine's noise (the text encoders are the same graphs in all three). On a CPU, W8A16 does not pay (the QDQ "
        "graph is the simulation; fused integer kernels at this size do not beat fp32): the quantized graphs are for "
        "the NPU, the onnxruntime bundle proves them.",
    ]
    return lines


def cost_model_lines(rows: list[dict]) -> list[str]:
    lines = ["", "## Roofline latency estimate vs Neodragon's published latencies", "",
             "| component | device | GFLOPs | published ms | estimated ms | error | left-out error |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for x in rows:
        if x.get("estimated_ms") is None:
            lines.append(f"| {x['component']} | {x['device']} | | {x['published_ms']} | n/a | {x['note']} | |")
            continue
        loo = "n/a" if x["leave_one_out_error"] is None else f"{x['leave_one_out_error']:+.0%}"
        lines.append(f"| {x['component']} | {x['device']} | {x['gflops']:.0f} | {x['published_ms']} | "
                     f"{x['estimated_ms']:.1f} | {x['error']:+.0%} | {loo} |")  # fmt: skip
    return lines


def summary_markdown(r: dict) -> str:
    """The numbers a person reads first, from the JSON."""
    a, t = r["analysis_full_size"], r["tiny"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {r['machine']['cpus']} CPUs, Python {r['machine']['python']}. Produced by `make bench`.",
        "",
        "## Full-size Pyramid-Flow on the meta device (no weights)",
        "",
        f"- inspect: {a['inspect_seconds']:.2f} s; plan of two pruning recipes: {a['plan_two_recipes_seconds']:.2f} s;"
        f" peak RSS {a['peak_rss_mb']:.0f} MB for {a['total_params'] / 1e9:.2f}B parameters",
        "- denoiser params 24 / 18 / 16 blocks: " + " / ".join(f"{p:,}" for p in a["denoiser_params_24_18_16"]),
        "- denoiser TFLOPs per 49x320x512 video at 20-20-20 / 10-10-10 with CFG: "
        + " / ".join(f"{x:.1f}" for x in a["denoiser_tflops_per_video_24_18_16"]),
        "",
        "## builtin:tiny",
        "",
        f"- apply recipes/tiny.yaml: {t['apply_cold_seconds']:.2f} s cold, {t['apply_warm_cache_seconds']:.2f} s from"
        f" cache (of which {t['cli_import_seconds']:.2f} s is importing the CLI)",
        f"- generate: {t['generate_seconds_total']:.2f} s in all, {t['generate_seconds_sampling_only']:.2f} s"
        f" sampling ({t['nfe_per_video']} NFE)",
    ]
    bp = t.get("block_prune")
    if bp:
        fid = ", ".join(f"{k} {v['output_cosine']:.3f}" for k, v in bp["fidelity"].items() if v)
        mini = ", ".join(f"{k}: {v:.3f}" for k, v in bp["minibench_total"].items() if v is not None)
        lines += [
            f"- block_prune (the demo's pass): removed blocks {bp['removed']}, denoiser params "
            f"{bp['params_before']:,} -> {bp['params_after']:,}, {bp['seconds']:.0f} s with both recovery stages",
            f"  - output cosine to the teacher: {fid}",
            f"  - MiniBench total (32 prompts): {mini}",
        ]
    mt = r.get("miniature_training", {})
    if mt.get("shipped"):
        ts = mt["timings_s"]
        lines += [
            "",
            "## The trained miniature (builtin:tiny)",
            "",
            f"- trained in {mt['total_min']:.1f} min: VAE {ts['vae_s']:.0f} s, latents {ts['latents_s']:.0f} s,"
            f" MMDiT {ts['dit_s']:.0f} s (recipe {mt['recipe']})",
        ]
    mb = r.get("minibench", {})
    if mb:
        lines += ["", "## MiniBench", "", "| videos | total | " + " | ".join(_parts(mb)) + " | wall s |"]
        lines.append("|---|---:|" + "---:|" * (len(_parts(mb)) + 1))
        for name, run in _runs(mb).items():
            lines.append(
                f"| {name} | {run['total']:.3f} | "
                + " | ".join(f"{run['parts'][k]:.3f}" for k in _parts(mb))
                + f" | {run['wall_s']:.1f} |"
            )
        if "chance" in mb:
            lines.append(
                "| chance | | " + " | ".join(f"{mb['chance'].get(k, float('nan')):.3f}" for k in _parts(mb)) + " | |"
            )
    if "load_full_size_denoiser" in r:
        ld = r["load_full_size_denoiser"]
        lines += [
            "",
            f"## Loading a synthetic full-size denoiser checkpoint ({ld['file_mb']:.0f} MB fp32)",
            "",
            "| loader | load s | peak RSS after load | ... / file size | peak RSS after one forward | ... / file |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for mode in ("mmap", "eager"):
            m = ld[mode]
            lines.append(
                f"| {mode} | {m['load_seconds']:.2f} | {m['peak_rss_after_load_mb']:.0f} MB |"
                f" {m['peak_rss_after_load_mb'] / ld['file_mb']:.2f} | {m['peak_rss_mb']:.0f} MB |"
                f" {m['peak_rss_mb'] / ld['file_mb']:.2f} |"
            )
        lines.append(f"\nEager load takes {ld['eager_load_seconds_over_mmap']:.0f}x the time of the mmap load.")
    if "quant_lowering" in r:
        lines += quant_lowering_lines(r["quant_lowering"])
    if "cost_model" in r:
        lines += cost_model_lines(r["cost_model"])
    if "stream_prune_full_size" in r:
        sp = r["stream_prune_full_size"]
        lines += [
            "",
            f"## Streaming prune of a synthetic full-size bf16 denoiser ({sp['input_mb']:.0f} MB -> "
            f"{sp['output_mb']:.0f} MB)",
            "",
            f"- removed blocks {sp['removed']} (24 -> 18; new last block converted: {sp['last_block_converted']}), "
            f"params {sp['params'][0]:,} -> {sp['params'][1]:,}, {sp['shards']} output shards",
            f"- time: {', '.join(f'{x:.1f}' for x in sp['prune_seconds'])} s pruning vs "
            f"{', '.join(f'{x:.1f}' for x in sp['copy_seconds'])} s copying the input once "
            f"(alternating runs): pruning takes {sp['prune_over_copy']:.2f}x a copy",
            f"- peak RSS of pruning: {sp['prune_peak_rss_mb']:.0f} MB = {sp['prune_peak_rss_over_output']:.2f} x the "
            f"output size (copying: {sp['copy_peak_rss_mb']:.0f} MB)",
        ]
    return "\n".join(lines) + "\n"


def _runs(minibench: dict) -> dict[str, dict]:
    """The scored runs of a minibench.py report (real, blurred, noise, pipelines): entries that carry parts."""
    return {k: v for k, v in minibench.items() if isinstance(v, dict) and "parts" in v}


def _parts(minibench: dict) -> list[str]:
    runs = list(_runs(minibench).values())
    return list(runs[0]["parts"]) if runs else []


if __name__ == "__main__":
    main()
