"""Does a pipeline's MMDiT read direction words? Its flow-matching loss on the motion frame of real clips moving
left or right, with the true caption, with left and right swapped, and with the empty caption, per pyramid stage.

A model that ignores direction gives the same loss for the true and the swapped caption. Usage:
    .venv/bin/python tools/direction_gap.py [PIPELINE] [CLIPS]
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from neocompress.bench.minibench import renderer_generate_fn
from neocompress.miniature.configs import WORLD
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.objective import flow_matching_batch
from neocompress.models.pyramid_flow.vae import normalize_latents
from neocompress.world import World

source = sys.argv[1] if len(sys.argv) > 1 else "builtin:tiny"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 32
family = PyramidFlowFamily()
ir = family.load(source)
pipe = family.pipeline(ir)
captions = [c for c in World(WORLD).captions("heldout") if " and " not in c and ("left" in c or "right" in c)]
captions = captions[:count]
swapped = [c.replace("left", "@").replace("right", "left").replace("@", "right") for c in captions]
with torch.no_grad():
    z = normalize_latents(ir["vae_encoder"].module.encode(renderer_generate_fn()(captions, 0)), pipe.latent_norm)
    for stage in range(pipe.scheduler.stages):
        losses = []
        for text in (captions, swapped, [""] * len(captions)):
            gen = torch.Generator().manual_seed(1)
            batch = flow_matching_batch(pipe.scheduler, z, pipe.text.encode(text), 1, stage, gen)
            losses.append(float(F.mse_loss(batch.call(pipe.denoiser), batch.target)))
        print(f"stage {stage}: true {losses[0]:.4f}  swapped {losses[1]:.4f}  empty {losses[2]:.4f}")
