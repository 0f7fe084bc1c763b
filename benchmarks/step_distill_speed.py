"""Generating one video with the base schedule vs the step-distilled one, side by side in one process on the same
model (builtin:tiny; the wall time depends on the schedule, not on the weights), with the NFE of each.

`python benchmarks/step_distill_speed.py --output benchmarks/step_distill_speed.json`. Schedules: Pyramid-Flow's
default (20-20-20 for the first unit, 10-10-10 after, CFG 7 / 5: 180 NFE for the miniature's 2 units, 480 for
49 frames at full size), Neodragon's intermediate 4-4-4 and the final 1-1-1 without CFG. Timings are medians of
interleaved repeats, of the whole video (text encoding, sampling, decoding) and of sampling alone; compare
ratios, not seconds across machines. At the tiny size the text encoders and the decoder are a large share of a
one-step video, so the whole-video ratio is well below the NFE ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

SCHEDULES = {
    "base 20-20-20 / 10-10-10, CFG 7 / 5": ((20, 20, 20), (10, 10, 10), 7.0, 5.0),
    "4-4-4, no CFG": ((4, 4, 4), (4, 4, 4), 1.0, 1.0),
    "distilled 1-1-1, no CFG": ((1, 1, 1), (1, 1, 1), 1.0, 1.0),
}


@torch.no_grad()
def measure(repeats: int) -> dict:
    from neocompress.models.pyramid_flow.family import PyramidFlowFamily
    from neocompress.models.pyramid_flow.scheduler import StepSchedule

    family = PyramidFlowFamily()
    pipe = family.pipeline(family.load("builtin:tiny"))
    units = pipe.resolve_video(None, None, None)["units"]
    schedules = {name: StepSchedule(*s) for name, s in SCHEDULES.items()}
    prompt = ["a red circle moving left slowly on a grey background"]
    for s in schedules.values():  # warm-up
        pipe.generate(prompt, schedule=s, seed=0)
    whole: dict[str, list[float]] = {name: [] for name in schedules}
    sampling: dict[str, list[float]] = {name: [] for name in schedules}
    for _ in range(repeats):  # interleaved, so drift on a noisy machine hits every schedule alike
        for name, s in schedules.items():
            t0 = time.perf_counter()
            pipe.generate(prompt, schedule=s, seed=0)
            t1 = time.perf_counter()
            pipe.sample_latents(prompt, schedule=s, seed=0)  # the denoising loop alone (with text encoding)
            whole[name].append(t1 - t0)
            sampling[name].append(time.perf_counter() - t1)
    base = next(iter(schedules))
    rows = {}
    for name, s in schedules.items():
        median, loop = statistics.median(whole[name]), statistics.median(sampling[name])
        rows[name] = {"nfe": s.nfe(units), "denoiser_calls": s.calls(units), "seconds": median,
                      "speedup_vs_base": statistics.median(whole[base]) / median, "sampling_seconds": loop,
                      "sampling_speedup_vs_base": statistics.median(sampling[base]) / loop}  # fmt: skip
    return {"model": "builtin:tiny", "video": pipe.resolve_video(None, None, None), "repeats": repeats,
            "full_size_nfe": {name: s.nfe(7) for name, s in schedules.items()}, "schedules": rows}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("step_distill_speed.json"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    result = measure(args.repeats)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.output)
    for name, r in result["schedules"].items():
        print(f"{name:40s} NFE {r['nfe']:4d}  video {r['seconds']:.3f} s  x{r['speedup_vs_base']:.1f}  "
              f"sampling {r['sampling_seconds']:.3f} s  x{r['sampling_speedup_vs_base']:.1f}")


if __name__ == "__main__":
    main()
