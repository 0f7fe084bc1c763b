"""Probe: the native decoder fed real clips' latents through c tanh(z / c) for c in (none, 3, 6, 12), MiniBench on 48 prompts.
`python runs/issue16-miniature/clamp_probe.py`."""
import torch, sys
from neocompress.bench.minibench import renderer_generate_fn, run_minibench
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.vae import decode_normalised
torch.set_num_threads(2)
ir = PyramidFlowFamily().load("builtin:tiny")
pipe = PyramidFlowFamily().pipeline(ir, simulated=False)
real = renderer_generate_fn(); norm = pipe.latent_norm
for lim in [None, 3.0, 6.0, 12.0]:
    def fn(p, s, lim=lim):
        with torch.no_grad():
            z = pipe.encode(real(p, s))
            if lim: z = lim * torch.tanh(z / lim)
            return decode_normalised(pipe.decoder, z, norm)
    r = run_minibench(fn, num_prompts=48, seed=0)
    print(lim, round(r.total, 3), {k: round(v, 3) for k, v in r.parts.items()}, flush=True)
