"""Probe: where does builtin:tiny-taehv lose MiniBench against the native decoder? The same latents go through
both decoders: (a) the frozen encoder's latents of real held-out clips, (b) builtin:tiny's own samples, (c) those
samples with extra Gaussian latent noise. `python taehv_probe.py [TAEHV_SOURCE|CKPT.safetensors] [prompts] [noise]` (KINDS=real,sampled,noisy picks)."""
import sys

import torch

from neocompress.bench.minibench import renderer_generate_fn, run_minibench
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.vae import decode_normalised
from neocompress.models.taehv_decoder import load_taehv

torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
source = sys.argv[1] if len(sys.argv) > 1 else "builtin:tiny-taehv"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
noise = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
ir = PyramidFlowFamily().load("builtin:tiny")
for c in ir.components.values():
    if c.module is not None:
        c.module.float()
pipe = PyramidFlowFamily().pipeline(ir)
native = pipe.decoder
if source.endswith(".safetensors"):  # an engine checkpoint of a decoder_swap run: WIDTHS=128,96,48,24
    from safetensors.torch import load_file

    from neocompress.models.taehv_decoder import TAEHVDecoder

    widths = [int(w) for w in __import__("os").environ["WIDTHS"].split(",")]
    taehv = TAEHVDecoder(16, widths, blocks_per_stage=1).eval()
    state = load_file(source)
    taehv.load_state_dict({k.split(".", 2)[2]: v for k, v in state.items() if k.startswith("mods.decoder.")})
else:
    taehv = load_taehv(source).float().eval()
norm = pipe.latent_norm
real = renderer_generate_fn()
cache: dict = {}


def latents(kind, prompts, seed):
    key = (kind, tuple(prompts), seed)
    if key not in cache:
        if kind == "real":
            cache[key] = pipe.encode(real(prompts, seed))
        else:
            z = pipe.sample_latents(prompts, seed=seed)
            if kind == "noisy":
                z = z + noise * torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))
            cache[key] = z
    return cache[key]


def fn(kind, decoder):
    return torch.no_grad()(lambda p, s: decode_normalised(decoder, latents(kind, p, s), norm))


kinds = __import__("os").environ.get("KINDS", "real,sampled" + (",noisy" if noise else "")).split(",")
for kind in kinds:
    for name, dec in (("native", native), ("taehv", taehv)):
        r = run_minibench(fn(kind, dec), num_prompts=n, seed=0)
        print(f"{kind:8s} {name:7s} total {r.total:.3f}", {k: round(v, 3) for k, v in r.parts.items()}, flush=True)
