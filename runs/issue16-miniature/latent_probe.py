"""Probe: how the VAE's latent space carries the world. Per-channel statistics of real held-out latents, and the
reconstruction's MiniBench when gaussian noise of std SIGMA (in the normalised units the MMDiT works in) is added
to the latent before decoding: a decoder that breaks at the MMDiT's error size makes any MMDiT look bad.
`python latent_probe.py CKPT PROMPTS SIGMA...`"""
import sys, torch
from pathlib import Path
from neocompress.bench.judges import Judges
from neocompress.bench.minibench import renderer_generate_fn, run_minibench
from _vae import load_vae
enc, dec = load_vae(sys.argv[1])
n = int(sys.argv[2])
real = renderer_generate_fn()
judges = Judges.load()
from neocompress.bench.minibench import select_prompts
with torch.no_grad():
    z = enc.encode(real(select_prompts(64), 0))
print("latent", tuple(z.shape), "std", round(float(z.std()), 3))
print("per-channel std", [round(float(s), 2) for s in z.transpose(0, 1).flatten(1).std(1)])
print("per-channel mean", [round(float(s), 2) for s in z.transpose(0, 1).flatten(1).mean(1)])
std = float(z.std())
for sigma in map(float, sys.argv[3:]):
    @torch.no_grad()
    def recon(p, s, sigma=sigma):
        z = enc.encode(real(p, s))
        g = torch.Generator().manual_seed(s)
        return dec.decode(z + sigma * std * torch.randn(z.shape, generator=g))
    r = run_minibench(recon, num_prompts=n, seed=0, judges=judges)
    print("sigma", sigma, "total", round(r.total, 3), {k: round(v, 3) for k, v in r.parts.items()}, flush=True)
