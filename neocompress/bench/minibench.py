"""MiniBench: an offline quality number for any text-to-video pipeline, scored on the procedural world.

`run_minibench(generate_fn, num_prompts=64, seed=0)` asks `generate_fn(prompts, seed)` for videos of held-out
captions and scores them with the shipped judges (`judges`) and the centroid tracker (`tracking`). Every part is
in [0, 1], higher is better:

- `colour`, `shape` (per object): the judge network's rules (see `judges`); `background` (per video).
- `direction`, `speed` (per object): the tracker's fitted velocity against the caption; an object that is not
  found, or does not move, is wrong on both.
- `temporal_consistency` (per video): how much the video changes from frame to frame compared with a real video
  of the same caption. With d the mean absolute difference of consecutive frames (in [-1, 1] units), the score is
  (min(d_gen, d_real) + eps) / (max(d_gen, d_real) + eps), eps = 1e-3: 1 when the generated video changes as much
  as the real one, towards 0 both for flicker or noise (d_gen >> d_real) and for a frozen video (d_gen << d_real).
  A bounded ratio rather than a difference because d varies a lot between captions (a fast cross changes many
  more pixels than a slow triangle).
- `distribution`: the Frechet distance (FVD's statistic) between Gaussians fitted to the judge features of the
  generated and of the real videos, mapped to [0, 1] as 1 - FD(generated, real) / FD(noise, real), clipped: 1
  when the generated features are distributed like the real ones (real vs real: ~0.99), 0 at the *noise floor*,
  the distance of uniform noise videos (the same number, seeded by the run's seed, judged in the same run) from
  the same real videos. Anything at least as far from the real videos as noise (a grey screen, one video
  repeated) scores 0. Normalising by the noise floor makes the number scale-free (it does not depend on the
  feature scale, the feature dimension or the number of prompts) where a fixed mapping such as exp(-FD / c)
  would need a constant tuned to one judge. A mean-embedding statistic (MMD with the median-heuristic kernel)
  was tried and rejected: noise features sit inside the cloud of real features of many different captions, and
  such a kernel scores noise at ~0.75.
- `total`: the unweighted mean of the seven parts (each part counts the same, as VBench's quality dimensions do).

Chance levels: analytic where the part is a guess among classes (colour 1/6 for one object and 1/5 for each of
two, weighted by the prompt mix; shape 1/4; direction 1/4; speed 1/2; background 1/5); for temporal consistency
and distribution, the score uniform noise videos get (measured when the judges were trained, stored with them).
Noise scores ~0 on direction and speed, below their chance level: it holds no object to track.

Prompts: held-out captions (never seen by a generator trained on the world's train split), chosen
deterministically from the number of prompts and the world config alone (not the seed, so runs with different
seeds compare the same captions): 75% one-object captions, 25% two-object ones, each picked greedily so every
colour, shape, direction, speed and background appears as evenly as the split allows. Balance matters: it makes a
judge that always answers the same class score exactly its chance level, not the share of one class.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neocompress.bench.confidence import LEVEL, Evidence, intervals, paired_difference
from neocompress.bench.judges import Judges, prepare, verdicts
from neocompress.bench.tracking import judge_motion, palette_labels
from neocompress.world import (
    ATTRIBUTES,
    World,
    WorldConfig,
    caption,
    parse_caption,
    render,
    to_tensor,
)
from neocompress.world.grammar import SceneSpec

GenerateFn = Callable[[list[str], int], torch.Tensor]

PARTS: tuple[str, ...] = (
    "colour",
    "shape",
    "direction",
    "speed",
    "background",
    "temporal_consistency",
    "distribution",
)
# 320 prompts: builtin:tiny measured a total half-width of 0.029 at 128 prompts, so 0.029 * sqrt(128 / 320) ~ 0.018,
# under the 0.02 that tells a 3 % loss from none (`neocompress eval builtin:tiny --prompts 128 --json`).
DEFAULT_NUM_PROMPTS = 320
# Bumped whenever a change to the prompts or the scoring rules changes what a run scores: remembered results
# (`neocompress.analysis.score_cache`) of another version are not reused.
MINIBENCH_VERSION = 2
DEFAULT_BATCH_SIZE = 16
TWO_OBJECT_SHARE = 0.25
# Parts whose chance level is measured on uniform noise (stored in the judges' record) rather than analytic.
MEASURED_CHANCE_PARTS = ("temporal_consistency", "distribution")
# Analytic chance of the parts judged as a guess among classes (colour depends on the prompt mix: see `chance`).
ANALYTIC_CHANCE = {"shape": 1 / 4, "direction": 1 / 4, "speed": 1 / 2, "background": 1 / 5}
TEMPORAL_EPS = 1e-3
# Salts of the random streams: real reference videos, the renderer generate_fn, the noise generate_fn.
REFERENCE_SALT = 0x5EF
RENDER_SALT = 0x12E
NOISE_SALT = 0x401
# Seed of the candidate order in prompt selection (fixed: prompts must not depend on the run's seed).
_SELECTION_SEED = 20260
_TWO_OBJECT_POOL = 24  # candidates drawn per two-object prompt


# --- prompts ----------------------------------------------------------------------------------------------------


def _balanced_pick(candidates: Sequence[SceneSpec], count: int) -> list[SceneSpec]:
    """Greedy: repeatedly take the candidate whose attribute values have been used least so far.

    A value's use count is weighted by its vocabulary size, so a background (5 values) and a speed (2 values)
    are balanced to the same relative evenness. Ties go to the earlier candidate (a fixed shuffled order).
    """
    counts = {name: dict.fromkeys(values, 0) for name, values in ATTRIBUTES.items()}
    remaining = list(candidates)
    chosen: list[SceneSpec] = []
    for _ in range(min(count, len(remaining))):

        def cost(scene: SceneSpec) -> int:
            total = counts["background"][scene.background] * len(ATTRIBUTES["background"])
            for obj in scene.objects:
                for name in ("colour", "shape", "direction", "speed"):
                    total += counts[name][getattr(obj, name)] * len(ATTRIBUTES[name])
            return total

        best = min(range(len(remaining)), key=lambda i: cost(remaining[i]))
        scene = remaining.pop(best)
        chosen.append(scene)
        counts["background"][scene.background] += 1
        for obj in scene.objects:
            for name in ("colour", "shape", "direction", "speed"):
                counts[name][getattr(obj, name)] += 1
    return chosen


def select_scenes(num_prompts: int = DEFAULT_NUM_PROMPTS, world_config: WorldConfig | None = None) -> list[SceneSpec]:
    """The held-out scenes MiniBench asks for: one-object ones first, then two-object ones (see module doc)."""
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
        raise ValueError(f"num_prompts must be a positive integer, got {num_prompts!r}")
    config = world_config or WorldConfig()
    world = World(config)
    singles = list(world.scenes("heldout"))
    if not singles:
        raise ValueError(f"the world has no held-out captions (heldout_fraction={config.heldout_fraction})")
    n_two = int(round(num_prompts * TWO_OBJECT_SHARE))
    n_one = num_prompts - n_two
    rng = np.random.default_rng(_SELECTION_SEED)
    order = rng.permutation(len(singles))
    picked: list[SceneSpec] = []
    while len(picked) < n_one:  # more prompts than held-out singles: go round again
        picked += _balanced_pick([singles[i] for i in order], n_one - len(picked))
    if n_two:
        pairs = World(WorldConfig(**{**config.to_dict(), "two_object_fraction": 1.0}))
        pool: list[SceneSpec] = []
        seen: set[str] = set()
        index = 0
        while len(pool) < _TWO_OBJECT_POOL * n_two and index < 50 * _TWO_OBJECT_POOL * n_two:
            scene = pairs.scene(index, "heldout")
            index += 1
            if caption(scene) not in seen:
                seen.add(caption(scene))
                pool.append(scene)
        picked += _balanced_pick(pool, n_two)
    return picked


def select_prompts(num_prompts: int = DEFAULT_NUM_PROMPTS, world_config: WorldConfig | None = None) -> list[str]:
    """The captions of `select_scenes`."""
    return [caption(s) for s in select_scenes(num_prompts, world_config)]


# --- generate functions for real videos and noise ---------------------------------------------------------------


def render_captions(
    prompts: Sequence[str], seed: int, world_config: WorldConfig | None = None, salt: int = RENDER_SALT
) -> torch.Tensor:
    """Real videos of the captions, rendered by the world: [B, 3, F, H, W] in [-1, 1]. Deterministic in
    (prompts, seed, salt); video i uses the numpy stream (seed, i, salt)."""
    config = world_config or WorldConfig()
    videos = [
        render(parse_caption(p), frames=config.frames, size=config.size, rng=np.random.default_rng([seed, i, salt]))
        for i, p in enumerate(prompts)
    ]
    return to_tensor(np.stack([v.video for v in videos]))


def renderer_generate_fn(world_config: WorldConfig | None = None) -> GenerateFn:
    """A generate_fn that returns real rendered videos of its prompts: MiniBench's ceiling."""
    return lambda prompts, seed: render_captions(prompts, seed, world_config, RENDER_SALT)


def noise_generate_fn(world_config: WorldConfig | None = None) -> GenerateFn:
    """A generate_fn that returns uniform noise in [-1, 1]: MiniBench's floor."""
    config = world_config or WorldConfig()

    def generate(prompts: list[str], seed: int) -> torch.Tensor:
        return noise_videos(len(prompts), config.frames, config.size, seed, salt=0)

    return generate


# --- scoring ----------------------------------------------------------------------------------------------------


def frame_change(videos: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of consecutive frames per video [B] (videos [B, 3, F, H, W] in [-1, 1])."""
    return (videos[:, :, 1:] - videos[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))


def temporal_consistency(generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-video bounded ratio of frame change, generated vs real (see the module docstring)."""
    dg, dr = frame_change(generated), frame_change(real)
    return (torch.minimum(dg, dr) + TEMPORAL_EPS) / (torch.maximum(dg, dr) + TEMPORAL_EPS)


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to features x [N, D] and y [M, D]:
    |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x^1/2 S_y S_x^1/2)^1/2).

    The matrix square root goes through symmetric eigendecompositions (S_x^1/2 S_y S_x^1/2 is symmetric PSD),
    which stays real and stable for the rank-deficient covariances of a few tens of samples in 128 dimensions,
    where `scipy.linalg.sqrtm(S_x S_y)` warns and returns complex noise. One sample has zero covariance.
    """
    x, y = x.double(), y.double()

    def cov(a: torch.Tensor) -> torch.Tensor:
        return torch.cov(a.T) if len(a) > 1 else torch.zeros(a.shape[1], a.shape[1], dtype=a.dtype)

    def psd_sqrt(m: torch.Tensor) -> torch.Tensor:
        values, vectors = torch.linalg.eigh((m + m.T) / 2)
        return (vectors * values.clamp(min=0).sqrt()) @ vectors.T

    sx, sy = cov(x), cov(y)
    root = psd_sqrt(sx)
    cross = torch.linalg.eigvalsh(root @ sy @ root).clamp(min=0).sqrt().sum()
    mean_term = (x.mean(0) - y.mean(0)).pow(2).sum()
    return float(mean_term + torch.trace(sx) + torch.trace(sy) - 2 * cross)


def distribution_score(generated: torch.Tensor, real: torch.Tensor, noise: torch.Tensor) -> float:
    """1 - FD(generated, real) / FD(noise, real), clipped to [0, 1] (features [N, D]; see the module docstring)."""
    floor = frechet_distance(noise, real)
    if not floor > 0:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - frechet_distance(generated, real) / floor)))


def noise_videos(count: int, frames: int, size: int, seed: int, salt: int = NOISE_SALT) -> torch.Tensor:
    """Uniform noise videos [count, 3, frames, size, size] in [-1, 1], deterministic in (seed, salt)."""
    g = torch.Generator("cpu").manual_seed(int(seed) * 1_000_003 + salt)
    return torch.rand(count, 3, frames, size, size, generator=g) * 2 - 1


def colour_chance(scenes: Sequence[SceneSpec]) -> float:
    """Analytic chance of the colour part for a prompt mix: 1/6 per one-object object, 1/5 per two-object one
    (a random ranking puts an object's colour above the 4 unnamed ones with probability 1/5)."""
    per_object = [1 / 6 if len(s.objects) == 1 else 1 / 5 for s in scenes for _ in s.objects]
    return float(np.mean(per_object))


@dataclass(frozen=True)
class Scores:
    """The parts of one scoring, and the per-item evidence behind them (for intervals, tests and debugging)."""

    parts: dict[str, float]
    per_object: dict[str, list[bool]]  # colour, shape, direction, speed
    per_video: dict[str, list[float]]  # background (0/1), temporal_consistency
    evidence: Evidence | None = None


def score_videos(
    generated: torch.Tensor,
    real: torch.Tensor,
    scenes: Sequence[SceneSpec],
    judges: Judges,
    seed: int = 0,
    finite: Sequence[bool] | None = None,
) -> Scores:
    """Score generated videos of `scenes` against real videos of the same scenes (both [B, 3, F, H, W]);
    `seed` seeds the noise videos of the distribution part's floor; `finite` says which generated videos were
    all finite before they were made scoreable (default: all)."""
    if len(generated) != len(scenes) or len(real) != len(scenes):
        raise ValueError(f"{len(generated)} generated and {len(real)} real videos for {len(scenes)} scenes")
    gen, ref = prepare(generated), prepare(real)
    gen_out, ref_out = judges(gen), judges(ref)
    noise_out = judges(noise_videos(len(ref), ref.shape[2], ref.shape[-1], seed))
    judged = verdicts(gen_out, scenes)
    per_object: dict[str, list[bool]] = {"colour": [], "shape": [], "direction": [], "speed": []}
    object_video: list[int] = []
    for i, (scene, verdict) in enumerate(zip(scenes, judged, strict=True)):
        per_object["colour"] += verdict.colour
        per_object["shape"] += verdict.shape
        object_video += [i] * len(scene.objects)
        labels = palette_labels(gen[i])
        for obj, motion in zip(scene.objects, judge_motion(gen[i], scene.objects, labels), strict=True):
            per_object["direction"].append(motion.direction_ok(obj))
            per_object["speed"].append(motion.speed_ok(obj))
    per_video = {
        "background": [float(v.background) for v in judged],
        "temporal_consistency": temporal_consistency(gen, ref).tolist(),
    }
    parts = {name: float(np.mean(values)) for name, values in per_object.items()}
    parts["background"] = float(np.mean(per_video["background"]))
    parts["temporal_consistency"] = float(np.mean(per_video["temporal_consistency"]))
    parts["distribution"] = distribution_score(gen_out["features"], ref_out["features"], noise_out["features"])
    evidence = Evidence(
        object_video=np.asarray(object_video, dtype=np.int64),
        hits={k: np.asarray(v, dtype=np.float64) for k, v in per_object.items()},
        per_video={k: np.asarray(v, dtype=np.float64) for k, v in per_video.items()},
        features=gen_out["features"].detach().double().numpy(),
        reference=ref_out["features"].detach().double().numpy(),
        noise=noise_out["features"].detach().double().numpy(),
        finite=np.ones(len(scenes), dtype=bool) if finite is None else np.asarray(finite, dtype=bool),
    )
    return Scores(parts={name: parts[name] for name in PARTS}, per_object=per_object, per_video=per_video,
                  evidence=evidence)  # fmt: skip


# --- the benchmark ----------------------------------------------------------------------------------------------


@dataclass
class MiniBenchResult:
    """One MiniBench run. `to_json()` is the stable interface; the rest is for reports and debugging.

    `interval` holds each part's and the total's 95 % bootstrap interval over prompts (`confidence`). A run in
    which any generated video held a NaN or an infinity is *invalid*: its videos were made scoreable to finish
    the run, but `valid` is False, `nonfinite_videos` counts them, and the JSON carries no scores, so a broken
    pipeline can never pass for a grey one.
    """

    total: float
    parts: dict[str, float]
    chance: dict[str, float]
    judge_accuracy: dict[str, float]
    prompts: list[str] = field(default_factory=list)
    seed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    scores: Scores | None = None
    interval: dict[str, list[float]] = field(default_factory=dict)
    nonfinite_videos: int = 0

    @property
    def valid(self) -> bool:
        return self.nonfinite_videos == 0

    @property
    def half_width(self) -> float:
        """Half the width of the total's interval: the resolution at which two results can be told apart."""
        lo, hi = self.interval.get("total", (math.nan, math.nan))
        return (hi - lo) / 2

    def to_json(self) -> dict[str, Any]:
        """{"total", "parts", "interval", "level", "chance", "judge_accuracy", "prompts", "valid",
        "nonfinite_videos"}: scores in [0, 1] (None in an invalid run), intervals as [low, high]."""
        scored = self.valid
        return {
            "total": float(self.total) if scored else None,
            "parts": {k: float(self.parts[k]) if scored else None for k in PARTS},
            "interval": {k: [float(v) for v in self.interval[k]] for k in ("total", *PARTS)} if scored else None,
            "level": LEVEL,
            "chance": {k: float(self.chance[k]) for k in PARTS},
            "judge_accuracy": {k: float(self.judge_accuracy[k]) for k in PARTS},
            "prompts": len(self.prompts),
            "valid": scored,
            "nonfinite_videos": int(self.nonfinite_videos),
        }

    def difference(self, before: MiniBenchResult) -> dict[str, dict[str, Any]]:
        """This result minus `before`, per part and total, with the paired bootstrap interval of each difference.

        Both must score the same prompts with the same seed (then their videos pair up one to one) and be valid.
        """
        if self.prompts != before.prompts or self.seed != before.seed:
            raise ValueError("a MiniBench difference needs two runs on the same prompts and seed")
        if not (self.valid and before.valid):
            raise ValueError("a MiniBench difference needs two valid runs (no NaN or infinite videos)")
        assert self.scores is not None and before.scores is not None
        assert self.scores.evidence is not None and before.scores.evidence is not None
        return paired_difference(before.scores.evidence, self.scores.evidence)

    def table(self, title: str = "MiniBench") -> Any:
        """A rich Table: each part's score and interval beside its chance level and the judge's accuracy."""
        from rich.table import Table

        table = Table(title=f"{title} ({len(self.prompts)} prompts, seed {self.seed})")
        table.add_column("part")
        table.add_column("score", justify="right")
        table.add_column(f"{LEVEL:.0%} interval", justify="right")
        table.add_column("chance", justify="right")
        table.add_column("judge on real", justify="right")
        chance_total = float(np.mean([self.chance[k] for k in PARTS]))
        real_total = float(np.mean([self.judge_accuracy[k] for k in PARTS]))
        if not self.valid:
            table.add_row("[bold red]INVALID[/]", f"{self.nonfinite_videos} of {len(self.prompts)} videos", "NaN/inf")
            return table
        for name in PARTS:
            lo, hi = self.interval[name]
            table.add_row(name, f"{self.parts[name]:.3f}", f"{lo:.3f}-{hi:.3f}", f"{self.chance[name]:.3f}",
                          f"{self.judge_accuracy[name]:.3f}")  # fmt: skip
        table.add_section()
        lo, hi = self.interval["total"]
        table.add_row("[bold]total[/]", f"[bold]{self.total:.3f}[/]", f"{lo:.3f}-{hi:.3f}", f"{chance_total:.3f}",
                      f"{real_total:.3f}")  # fmt: skip
        return table


def chance_levels(scenes: Sequence[SceneSpec], judges: Judges) -> dict[str, float]:
    """Chance per part: analytic ones for these scenes, measured ones from the judges' record (NaN if absent)."""
    measured = judges.info.get("chance", {})
    out = {"colour": colour_chance(scenes), **ANALYTIC_CHANCE}
    for name in MEASURED_CHANCE_PARTS:
        out[name] = float(measured.get(name, math.nan))
    return {name: out[name] for name in PARTS}


def generate_videos(
    generate_fn: GenerateFn,
    prompts: Sequence[str],
    seed: int,
    batch_size: int | None,
    frames: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, list[bool]]:
    """Call generate_fn in chunks (chunk k gets seed `seed + k`) and check what comes back: the videos, and per
    video whether it was all finite (non-finite values are replaced so the run can finish, and counted)."""
    size = batch_size if batch_size else len(prompts)
    chunks = []
    finite: list[bool] = []
    for k, start in enumerate(range(0, len(prompts), size)):
        batch = list(prompts[start : start + size])
        videos = generate_fn(batch, seed + k)
        if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or videos.shape[:3] != (len(batch), 3, frames):
            got = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
            raise ValueError(f"generate_fn must return videos [{len(batch)}, 3, {frames}, H, W], got {got}")
        videos = videos.detach().float().cpu()
        finite += torch.isfinite(videos).flatten(1).all(1).tolist()
        chunks.append(torch.nan_to_num(videos, nan=0.0, posinf=1.0, neginf=-1.0))
        if progress is not None:
            progress(min(start + size, len(prompts)), len(prompts))
    sizes = {tuple(c.shape[3:]) for c in chunks}
    if len(sizes) > 1:
        raise ValueError(f"generate_fn returned videos of different sizes: {sorted(sizes)}")
    return torch.cat(chunks), finite


def run_minibench(
    generate_fn: GenerateFn,
    *,
    num_prompts: int = DEFAULT_NUM_PROMPTS,
    seed: int = 0,
    world_config: WorldConfig | None = None,
    judges: Judges | None = None,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> MiniBenchResult:
    """Generate videos of `num_prompts` held-out captions with `generate_fn` and score them.

    Args:
        generate_fn: `generate_fn(prompts, seed) -> [B, 3, F, H, W]` in [-1, 1], F = the world's frame count
            (any H, W: the judges resize to 64 x 64).
        num_prompts: how many captions (see `select_scenes`).
        seed: passed to generate_fn (chunk k of `batch_size` prompts gets `seed + k`) and seeds the real
            reference videos, so the same seed gives the same result.
        world_config: the world the captions and the reference videos come from (default `WorldConfig()`).
        judges: the judges (default: the weights shipped in the package).
        batch_size: prompts per generate_fn call (None: all at once).
        progress: called with (videos done, videos total) after each chunk.
    """
    config = world_config or WorldConfig()
    judges = judges if judges is not None else Judges.load()
    scenes = select_scenes(num_prompts, config)
    prompts = [caption(s) for s in scenes]
    t0 = time.perf_counter()
    generated, finite = generate_videos(generate_fn, prompts, seed, batch_size, config.frames, progress)
    t1 = time.perf_counter()
    real = render_captions(prompts, seed, config, REFERENCE_SALT)
    scores = score_videos(generated, real, scenes, judges, seed, finite)
    assert scores.evidence is not None
    t2 = time.perf_counter()
    bounds = intervals(scores.evidence)
    t3 = time.perf_counter()
    parts = scores.parts
    accuracy = judges.judge_accuracy
    return MiniBenchResult(
        total=float(np.mean([parts[k] for k in PARTS])),
        parts=parts,
        chance=chance_levels(scenes, judges),
        judge_accuracy={k: float(accuracy.get(k, math.nan)) for k in PARTS},
        prompts=prompts,
        seed=seed,
        timings={"generate_s": t1 - t0, "score_s": t2 - t1, "interval_s": t3 - t2},
        scores=scores,
        interval=bounds,
        nonfinite_videos=finite.count(False),
    )


# --- the judges' own accuracy -----------------------------------------------------------------------------------


def judge_accuracy_on_real(
    judges: Judges, num_videos: int = 512, seed: int = 1, two_object_fraction: float = 0.3, chunk: int = 64
) -> dict[str, float]:
    """Accuracy of the judges (colour, shape, background) and the tracker (direction, speed) on real held-out
    videos: samples 0..num_videos-1 of the held-out split of a world with this seed, scored by the MiniBench
    rules (a perfect generator's score on those parts)."""
    world = World(WorldConfig(seed=seed, two_object_fraction=two_object_fraction))
    hits: dict[str, list[bool]] = {k: [] for k in ("colour", "shape", "direction", "speed", "background")}
    for start in range(0, num_videos, chunk):
        samples = [world.sample(i, "heldout") for i in range(start, min(start + chunk, num_videos))]
        videos = to_tensor(np.stack([s.video for s in samples]))
        scenes = [s.scene for s in samples]
        for i, verdict in enumerate(judges.verdicts(videos, scenes)):
            hits["colour"] += verdict.colour
            hits["shape"] += verdict.shape
            hits["background"].append(verdict.background)
            for obj, motion in zip(scenes[i].objects, judge_motion(videos[i], scenes[i].objects), strict=True):
                hits["direction"].append(motion.direction_ok(obj))
                hits["speed"].append(motion.speed_ok(obj))
    return {k: float(np.mean(v)) for k, v in hits.items()}
