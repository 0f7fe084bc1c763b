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


def test_shipped_miniature_reads_direction_words() -> None:
    """Motion comes from the caption: on real clips moving left or right, the flow-matching loss of the motion
    frame (unit 1, lowest pyramid stage) is clearly higher when the caption says the opposite direction. (A model
    trained with uniform unit draws showed no difference at all: it ignored direction.)"""
    import torch.nn.functional as F

    from neocompress.bench.minibench import renderer_generate_fn
    from neocompress.miniature.configs import WORLD
    from neocompress.models.pyramid_flow.objective import flow_matching_batch
    from neocompress.models.pyramid_flow.vae import normalize_latents
    from neocompress.world import World

    family = PyramidFlowFamily()
    ir = family.load("builtin:tiny")
    pipe = family.pipeline(ir)
    captions = [c for c in World(WORLD).captions("heldout") if " and " not in c and ("left" in c or "right" in c)]
    captions = captions[:16]
    opposite = [c.replace("left", "@").replace("right", "left").replace("@", "right") for c in captions]
    with torch.no_grad():
        z = normalize_latents(ir["vae_encoder"].module.encode(renderer_generate_fn()(captions, 0)), pipe.latent_norm)
        losses = []
        for text in (captions, opposite):
            gen = torch.Generator().manual_seed(1)
            batch = flow_matching_batch(pipe.scheduler, z, pipe.text.encode(text), 1, 0, gen)
            losses.append(float(F.mse_loss(batch.call(pipe.denoiser), batch.target)))
    assert losses[1] > 1.3 * losses[0], losses
