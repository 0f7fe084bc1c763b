"""Probe: per-channel mean, std and max |z| of builtin:tiny's normalised latents of 16 real clips, and the share past 2 and 3.
`python runs/issue16-miniature/latent_stats.py`."""
import torch
from neocompress.bench.minibench import renderer_generate_fn
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
torch.set_num_threads(2)
ir = PyramidFlowFamily().load("builtin:tiny")
pipe = PyramidFlowFamily().pipeline(ir, simulated=False)
prompts = ["a red circle moving left slowly on a grey background", "a blue triangle moving up quickly on a striped black background",
           "a yellow cross moving right slowly on a checkered white background", "a green square moving down quickly on a black background"]*4
real = renderer_generate_fn()(prompts, 0)
with torch.no_grad():
    z = pipe.encode(real.float())
print(z.shape)
zc = z.transpose(0,1).reshape(z.shape[1], -1)
print("mean", zc.mean(1)); print("std", zc.std(1)); print("absmax", zc.abs().max(1).values)
print("frac |z|>2", (z.abs()>2).float().mean(), ">3", (z.abs()>3).float().mean())
