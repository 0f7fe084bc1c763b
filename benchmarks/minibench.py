"""MiniBench benchmark: `python benchmarks/minibench.py --output benchmarks/minibench.json`.

Reports, as JSON (printed and written to --output):
1. the judges' training: wall time, held-out accuracy and measured chance, read from the shipped judges.json
   (re-training them is `python -m neocompress.bench.train_judges`, a few minutes);
2. one default MiniBench run (320 held-out prompts) on real rendered videos (the ceiling), on real videos blurred
   like a decoder would (4x down and up: how much softness costs), and on uniform noise (the floor): wall time
   split into generation and scoring, and every score;
3. optionally one default run on a pipeline (`--pipeline builtin:tiny`, 9 frames at 64x64 with its default
   schedule): the same, so the cost of MiniBench inside `apply` reports is known; and one on real videos passed
   through that pipeline's VAE (encode, decode): the ceiling its decoder sets on whatever the MMDiT generates.

Runs on one torch thread (measured fastest on the small shared CPU). Timings on these machines are noisy:
compare within a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neocompress.bench.judges import Judges  # noqa: E402
from neocompress.bench.minibench import (  # noqa: E402
    DEFAULT_NUM_PROMPTS,
    GenerateFn,
    MiniBenchResult,
    noise_generate_fn,
    renderer_generate_fn,
    run_minibench,
)


def _blurred(generate: GenerateFn, factor: int = 4) -> GenerateFn:
    def blurred(prompts: list[str], seed: int) -> torch.Tensor:
        videos = generate(prompts, seed)
        b, c, f, h, w = videos.shape
        frames = videos.transpose(1, 2).reshape(b * f, c, h, w)
        small = F.interpolate(frames, size=(h // factor, w // factor), mode="bilinear", antialias=True)
        return F.interpolate(small, size=(h, w), mode="bilinear").reshape(b, f, c, h, w).transpose(1, 2)

    return blurred


def _vae_reconstruction(ir: Any) -> GenerateFn:
    """Real videos encoded and decoded by the pipeline's own VAE."""
    real = renderer_generate_fn()
    encoder, decoder = ir["vae_encoder"].module.eval(), ir["vae_decoder"].module.eval()

    @torch.no_grad()
    def reconstruct(prompts: list[str], seed: int) -> torch.Tensor:
        return decoder.decode(encoder.encode(real(prompts, seed)))

    return reconstruct


def _run(
    name: str, generate: GenerateFn, judges: Judges, prompts: int, seed: int
) -> tuple[MiniBenchResult, dict[str, Any]]:
    t0 = time.perf_counter()
    result = run_minibench(generate, num_prompts=prompts, seed=seed, judges=judges)
    wall = time.perf_counter() - t0
    print(f"{name}: total {result.total:.3f} in {wall:.1f} s", file=sys.stderr)
    data = result.to_json()
    return result, {
        "wall_s": round(wall, 3),
        "generate_s": round(result.timings["generate_s"], 3),
        "score_s": round(result.timings["score_s"], 3),
        "total": round(data["total"], 4),
        "parts": {k: round(v, 4) for k, v in data["parts"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MiniBench timings and scores")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here too")
    parser.add_argument("--prompts", type=int, default=DEFAULT_NUM_PROMPTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pipeline", default="", help="also score this pipeline source, e.g. builtin:tiny")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    judges = Judges.load()
    load_s = time.perf_counter() - t0
    info = judges.info
    report: dict[str, Any] = {
        "judges": {
            "train_wall_time_s": info["train_wall_time_s"],
            "eval_wall_time_s": info.get("eval_wall_time_s"),
            "training": info["training"],
            "judge_accuracy": info["judge_accuracy"],
            "chance_measured": info["chance"],
            "load_s": round(load_s, 3),
        },
        "prompts": args.prompts,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
    }
    runs = {
        "real": renderer_generate_fn(),
        "real_blurred_4x": _blurred(renderer_generate_fn()),
        "noise": noise_generate_fn(),
    }
    if args.pipeline:
        from neocompress.models.family import family_for_source

        family = family_for_source(args.pipeline)
        pipe = family.pipeline(family.load(args.pipeline))
        runs[args.pipeline] = lambda p, s: pipe.generate(p, frames=9, height=64, width=64, seed=s)
        runs[f"{args.pipeline} VAE reconstruction"] = _vae_reconstruction(family.load(args.pipeline))
    results: dict[str, MiniBenchResult] = {}
    for name, generate in runs.items():
        results[name], report[name] = _run(name, generate, judges, args.prompts, args.seed)
    report["chance"] = {k: round(v, 4) for k, v in results["noise"].chance.items()}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
