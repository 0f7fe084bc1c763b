"""MiniBench: an offline quality benchmark for text-to-video pipelines, judged on the procedural world.

`run_minibench(generate_fn)` scores videos of held-out world captions: colour, shape and background from a small
judge CNN trained on real rendered videos (`judges`, weights shipped in `neocompress/assets/judges/`), direction
and speed from tracked centroids (`tracking`), temporal consistency against real videos, and a Frechet distance
of judge features; `MiniBenchResult.to_json()` / `.table()` report them beside chance and the judges' own
accuracy on real held-out videos. `python -m neocompress.bench.train_judges` reproduces the shipped judges.
"""

from neocompress.bench.judges import JudgeConfig, JudgeNet, Judges, SceneVerdict, default_judges_dir
from neocompress.bench.minibench import (
    DEFAULT_NUM_PROMPTS,
    PARTS,
    GenerateFn,
    MiniBenchResult,
    frechet_distance,
    judge_accuracy_on_real,
    noise_generate_fn,
    render_captions,
    renderer_generate_fn,
    run_minibench,
    select_prompts,
    select_scenes,
)
from neocompress.bench.tracking import MotionVerdict, Track, classify_motion, judge_motion, track

__all__ = [
    "DEFAULT_NUM_PROMPTS",
    "PARTS",
    "GenerateFn",
    "JudgeConfig",
    "JudgeNet",
    "Judges",
    "MiniBenchResult",
    "MotionVerdict",
    "SceneVerdict",
    "Track",
    "classify_motion",
    "default_judges_dir",
    "frechet_distance",
    "judge_accuracy_on_real",
    "judge_motion",
    "noise_generate_fn",
    "render_captions",
    "renderer_generate_fn",
    "run_minibench",
    "select_prompts",
    "select_scenes",
    "track",
]
