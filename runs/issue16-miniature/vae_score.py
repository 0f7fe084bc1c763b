"""Probe: MiniBench of the VAE's reconstruction of real held-out world clips (issue 16 item 1's bar: every part
>= 0.95, total >= 0.90), from an engine checkpoint's trained.safetensors. `python vae_score.py CKPT [prompts]`."""
import sys, torch
from pathlib import Path
from neocompress.bench.judges import Judges
from neocompress.bench.minibench import renderer_generate_fn, run_minibench
from _vae import load_vae
enc, dec = load_vae(sys.argv[1])
real = renderer_generate_fn()
@torch.no_grad()
def recon(p, s): return dec.decode(enc.encode(real(p, s)))
r = run_minibench(recon, num_prompts=int(sys.argv[2]) if len(sys.argv) > 2 else 128, seed=0, judges=Judges.load())
print("total", round(r.total, 3), {k: round(v, 3) for k, v in r.parts.items()}, getattr(r, "interval", None))
