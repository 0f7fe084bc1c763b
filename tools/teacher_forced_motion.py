"""Does a pipeline's MMDiT move objects when it is given the true first latent frame?

MiniBench of videos whose unit 0 (the first latent frame) is the VAE encoding of the real clip and whose unit 1
(frames 1-8) the MMDiT generates on that history with the model's schedule and CFG. It separates "the motion
frame is not learned" from "errors in the first frame derail the second". Usage:
    .venv/bin/python tools/teacher_forced_motion.py [PIPELINE] [PROMPTS]
"""

from __future__ import annotations

import sys

import torch

from neocompress.bench.minibench import renderer_generate_fn, run_minibench
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.history import history_for
from neocompress.models.pyramid_flow.vae import denormalize_latents, normalize_latents
from neocompress.world import WorldConfig

source = sys.argv[1] if len(sys.argv) > 1 else "builtin:tiny"
prompts = int(sys.argv[2]) if len(sys.argv) > 2 else 32
family = PyramidFlowFamily()
ir = family.load(source)
pipe = family.pipeline(ir)
encoder = ir["vae_encoder"].module.eval()
scheduler, schedule, norm = pipe.scheduler, pipe.schedule, pipe.latent_norm
real = renderer_generate_fn()


@torch.no_grad()
def generate(batch: list[str], seed: int) -> torch.Tensor:
    z = normalize_latents(encoder.encode(real(batch, seed)), norm)
    velocity = pipe._velocity_fn(pipe.text.encode(batch), pipe.text.encode([""] * len(batch)))
    gen = torch.Generator().manual_seed(seed)
    x = scheduler.initial_noise(tuple(z.shape), gen)[:, :, 1:2]
    steps, guidance = schedule.steps_for(1), schedule.guidance_for(1)
    for stage in range(scheduler.stages):
        if stage > 0:
            x = scheduler.upsample_renoise(x, stage, gen)
        history = history_for([z[:, :, :1]], stage, scheduler)
        sigmas, timesteps = scheduler.local_sigmas(steps[stage]), scheduler.timesteps(stage, steps[stage])
        for i in range(steps[stage]):
            v = velocity([*history, x], timesteps[i].expand(len(batch)), guidance)
            x = scheduler.euler_step(x, v, sigmas[i], sigmas[i + 1])
    return pipe.decoder.decode(denormalize_latents(torch.cat([z[:, :, :1], x], 2), norm))


result = run_minibench(generate, num_prompts=prompts, seed=0, world_config=WorldConfig()).to_json()
print({"total": round(result["total"], 3), **{k: round(v, 3) for k, v in result["parts"].items()}})
