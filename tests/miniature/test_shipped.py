"""The shipped miniature: it loads as builtin:tiny, is small, and reproduces its recorded output."""

from __future__ import annotations

import json

import pytest
import torch

from neocompress.miniature.reference import reference_stats
from neocompress.models.pyramid_flow.family import PyramidFlowFamily, shipped_dir

SHIPPED = shipped_dir("builtin:tiny")
pytestmark = pytest.mark.skipif(SHIPPED is None, reason="no trained miniature ships in this checkout")


def test_shipped_miniature_is_small_and_records_how_it_was_trained() -> None:
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 20 * 2**20
    record = json.loads((SHIPPED / "training.json").read_text())
    assert record["recipe"]["seed"] == 0 and set(record["timings_s"]) == {"vae_s", "latents_s", "dit_s"}
    assert (SHIPPED / "vae_loss.png").is_file() and (SHIPPED / "dit_loss.png").is_file()


def test_shipped_miniature_reproduces_its_recorded_output() -> None:
    record = json.loads((SHIPPED / "reference_output.json").read_text())
    pipe = PyramidFlowFamily().pipeline(PyramidFlowFamily().load("builtin:tiny"))
    video = pipe.generate([record["prompt"]], seed=record["seed"])[0]
    assert reference_stats(video) == pytest.approx(record["stats"], abs=2e-3)
    assert torch.isfinite(video).all()


def test_shipped_miniature_scores_far_above_chance_on_minibench() -> None:
    """A small MiniBench run (8 held-out captions): the trained model beats chance on the parts a blurry blob
    cannot fake (colour, background) and its total is well above the mean chance level."""
    from neocompress.analysis.quality import minibench

    family = PyramidFlowFamily()
    result = minibench(family, family.load("builtin:tiny"), prompts=8, seed=0)
    chance = sum(result["chance"].values()) / len(result["chance"])
    assert result["total"] > chance + 0.15, result
    for part in ("colour", "background"):
        assert result["parts"][part] > result["chance"][part] + 0.2, (part, result)
