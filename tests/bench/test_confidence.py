"""MiniBench's intervals: the bootstrap recomputes exactly what a resample would score, covers the truth at its
level, narrows with more prompts, pairs two runs for their difference, and a run with NaN videos is invalid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neocompress.bench.confidence import (
    ALL_PARTS,
    Evidence,
    _weighted_frechet,
    intervals,
    paired_difference,
    resample_weights,
    resampled_parts,
)
from neocompress.bench.judges import Judges
from neocompress.bench.minibench import PARTS, frechet_distance, renderer_generate_fn, run_minibench

PROMPTS = 24


@pytest.fixture(scope="module")
def judges() -> Judges:
    return Judges.load()


def _reversed_half(prompts: list[str], seed: int) -> torch.Tensor:
    """Real videos, every second one played backwards: the right look, the wrong direction for half the prompts."""
    videos = renderer_generate_fn()(prompts, seed)
    videos[::2] = videos[::2].flip(2)
    return videos


@pytest.fixture(scope="module")
def real(judges: Judges):
    return run_minibench(renderer_generate_fn(), num_prompts=PROMPTS, seed=0, judges=judges)


@pytest.fixture(scope="module")
def reversed_half(judges: Judges):
    return run_minibench(_reversed_half, num_prompts=PROMPTS, seed=0, judges=judges)


def test_the_parts_are_ALL_PARTS_in_minibench_order():
    assert ALL_PARTS == PARTS


@pytest.mark.parametrize("videos, dims", [(30, 8), (12, 32)], ids=["more videos than dims", "fewer videos"])
def test_weighted_frechet_equals_the_distance_of_the_resampled_rows(videos: int, dims: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(videos, dims, generator=g, dtype=torch.float64)
    y = 1.5 * torch.randn(videos, dims, generator=g, dtype=torch.float64) + 0.3
    weights = resample_weights(videos, resamples=5, seed=1)
    batched = _weighted_frechet(x, y, torch.from_numpy(weights))
    for b, row in enumerate(weights):
        idx = torch.from_numpy(np.repeat(np.arange(videos), row.astype(int)))
        assert batched[b].item() == pytest.approx(frechet_distance(x[idx], y[idx]), rel=1e-6, abs=1e-9)


def test_unit_weights_give_back_the_point_estimate(real, reversed_half):
    for result in (real, reversed_half):
        point = resampled_parts(result.scores.evidence, np.ones((1, PROMPTS)))
        for name in PARTS:
            assert point[name][0] == pytest.approx(result.parts[name], abs=1e-6), name
        assert point["total"][0] == pytest.approx(result.total, abs=1e-6)


def test_every_interval_holds_its_point_estimate(reversed_half):
    bounds = reversed_half.interval
    for name in PARTS:
        lo, hi = bounds[name]
        assert lo <= reversed_half.parts[name] + 1e-9 <= hi + 2e-9, name
    lo, hi = bounds["total"]
    assert lo < reversed_half.total < hi and hi - lo > 0.01  # half the directions wrong: a real spread
    assert reversed_half.half_width == pytest.approx((hi - lo) / 2)


def _bernoulli_evidence(n: int, p: float, rng: np.random.Generator) -> Evidence:
    features = rng.normal(size=(n, 4))
    return Evidence(
        object_video=np.arange(n),
        hits={k: (rng.random(n) < p).astype(float) for k in ("colour", "shape", "direction", "speed")},
        per_video={"background": (rng.random(n) < p).astype(float), "temporal_consistency": rng.random(n)},
        features=features,
        reference=features + rng.normal(scale=0.1, size=(n, 4)),
        noise=rng.normal(loc=3.0, size=(n, 4)),
        finite=np.ones(n, dtype=bool),
    )


def test_the_interval_covers_the_true_rate_at_its_level():
    """200 independent samples of 100 Bernoulli(0.6) verdicts: the 95 % interval of a part covers 0.6 in about
    95 % of them (a binomial 95 % band over 200 trials is 0.91-0.98)."""
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(200):
        lo, hi = intervals(_bernoulli_evidence(100, 0.6, rng), resamples=400, seed=trial)["shape"]
        covered += lo <= 0.6 <= hi
    assert 0.90 <= covered / 200 <= 0.99


def test_the_interval_narrows_with_the_square_root_of_the_prompts():
    rng = np.random.default_rng(1)
    widths = {}
    for n in (64, 256):
        lo, hi = intervals(_bernoulli_evidence(n, 0.5, rng), resamples=600)["direction"]
        widths[n] = hi - lo
    assert widths[256] / widths[64] == pytest.approx(0.5, abs=0.12)


def test_paired_difference_of_a_run_with_itself_is_exactly_zero(real):
    diff = real.difference(real)
    assert set(diff) == {*PARTS, "total"}
    for name, d in diff.items():
        assert d["delta"] == 0.0 and d["interval"] == [0.0, 0.0], name


def test_paired_difference_finds_the_lost_direction_and_is_narrower_than_two_intervals(real, reversed_half):
    diff = reversed_half.difference(real)
    # Half of the videos run backwards: direction falls by about a half, and the interval excludes no change.
    assert diff["direction"]["delta"] < -0.3
    lo, hi = diff["direction"]["interval"]
    assert lo <= diff["direction"]["delta"] <= hi < 0
    # Colour and shape do not depend on the play direction: no difference at all, on every resample.
    assert diff["colour"]["interval"] == [0.0, 0.0] and diff["shape"]["interval"] == [0.0, 0.0]
    separate = reversed_half.half_width + real.half_width
    paired = (diff["total"]["interval"][1] - diff["total"]["interval"][0]) / 2
    assert paired < separate


def test_difference_refuses_runs_on_other_prompts(judges: Judges, real):
    other = run_minibench(renderer_generate_fn(), num_prompts=PROMPTS - 4, seed=0, judges=judges)
    with pytest.raises(ValueError, match="same prompts"):
        other.difference(real)
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference(real.scores.evidence, other.scores.evidence)


def test_nan_videos_make_the_run_invalid_not_grey(judges: Judges, real):
    def broken(prompts: list[str], seed: int) -> torch.Tensor:
        videos = renderer_generate_fn()(prompts, seed)
        videos[1, :, 3] = float("nan")
        videos[4, 0, 0, 0, 0] = float("inf")
        return videos

    result = run_minibench(broken, num_prompts=PROMPTS, seed=0, judges=judges, batch_size=None)
    assert not result.valid and result.nonfinite_videos == 2
    data = json.loads(json.dumps(result.to_json()))
    assert data["valid"] is False and data["nonfinite_videos"] == 2
    assert data["total"] is None and data["interval"] is None and set(data["parts"].values()) == {None}
    with pytest.raises(ValueError, match="valid"):
        result.difference(real)


def test_evidence_round_trips_through_tensors(real):
    evidence = real.scores.evidence
    back = Evidence.from_tensors(evidence.to_tensors())
    assert np.array_equal(back.object_video, evidence.object_video) and back.finite.all()
    assert np.allclose(back.features, evidence.features, atol=1e-5)
    again, first = intervals(back), intervals(evidence)
    for name in first:
        assert again[name] == pytest.approx(first[name], abs=1e-4), name
