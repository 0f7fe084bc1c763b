"""Probe: continue a trained miniature's MMDiT on N latent clips (the first N train clips of the world, encoded
by the VAE checkpoint the pipeline was trained on, normalised with the pipeline's own latent norm so the
denoiser's space does not move), then save the pipeline with the new denoiser.
`python dit_continue.py PIPELINE VAE_CKPT N STEPS LR MOTION_FRACTION WORK OUT`"""
import sys, time, torch
from pathlib import Path
from _vae import load_vae
from neocompress.miniature.configs import WORLD
from neocompress.miniature.dit_training import train_denoiser
from neocompress.miniature.latents_data import LatentSet, encode_world
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.vae import normalize_latents
pipe_dir, vae_ckpt, n, steps, lr, frac, work, out = sys.argv[1:9]
family = PyramidFlowFamily()
ir = family.load(pipe_dir)
for c in ir:
    if c.module is not None:
        c.module.float()
pipe = family.pipeline(ir)
norm = pipe.spec.latent_norm
cache = Path(work) / f"latents-{n}.pt"
if cache.exists():
    z, captions = torch.load(cache)
else:
    t = time.time()
    enc, _ = load_vae(vae_ckpt)
    z, captions = encode_world(enc, WORLD, int(n))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save((z, captions), cache)
    print(f"encoded {n} clips in {time.time() - t:.0f} s", flush=True)
data = LatentSet(normalize_latents(z, norm), captions, norm)
denoiser = ir["denoiser"].module.float().train()
trained = train_denoiser(denoiser, pipe.text, data, Path(work) / "dit", steps=int(steps), batch_size=16,
                         lr=float(lr), seed=7, progress=False, motion_fraction=float(frac))
print(trained.result.summary(), flush=True)
for c in ir:
    if c.module is not None:
        c.module.half()
family.save(ir, Path(out), {"training": {"continued_from": pipe_dir, "latents": int(n), "steps": int(steps)}, "pass_log": []})
print("saved", out, flush=True)
