"""Probe: train a fresh miniature MMDiT of another shape (patch size, heads of 32) on cached latents, with the
pipeline's own VAE, text encoders and latent norm, then save a pipeline with it.
`python dit_scratch.py PIPELINE LATENTS_PT PATCH HEADS STEPS MOTION_STEPS WORK OUT`"""
import sys, torch
from pathlib import Path
from neocompress.miniature.configs import denoiser_config
from neocompress.miniature.dit_training import train_denoiser
from neocompress.miniature.latents_data import LatentSet
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.ir_builder import build_ir
from neocompress.models.pyramid_flow.vae import normalize_latents
torch.set_num_threads(1)
pipe_dir, latents_pt, patch, heads, steps, motion_steps, work, out = sys.argv[1:9]
family = PyramidFlowFamily()
ir = family.load(pipe_dir)
for c in ir:
    if c.module is not None:
        c.module.float()
pipe = family.pipeline(ir)
spec = pipe.spec
z, captions = torch.load(latents_pt)
data = LatentSet(normalize_latents(z, spec.latent_norm), captions, spec.latent_norm)
cfg = denoiser_config().replace(patch_size=int(patch), num_attention_heads=int(heads), caption_projection_dim=32 * int(heads))
torch.manual_seed(0)
denoiser = PyramidFlowMMDiT(cfg)
print("params", sum(p.numel() for p in denoiser.parameters()), flush=True)
dit = train_denoiser(denoiser, pipe.text, data, Path(work) / "dit", steps=int(steps), batch_size=16, seed=0, progress=False)
print(dit.result.summary(), flush=True)
if int(motion_steps):
    dit = train_denoiser(dit.denoiser.train(), pipe.text, data, Path(work) / "dit-motion", steps=int(motion_steps),
                         batch_size=16, lr=3e-4, seed=1, progress=False, motion_fraction=0.75)
    print(dit.result.summary(), flush=True)
from dataclasses import replace
spec = replace(spec, denoiser=cfg)
modules = {c.name: c.module for c in ir if c.module is not None}
modules["denoiser"] = dit.denoiser
tok = pipe.text.tokenizers
new = build_ir(spec, {k: m.half() for k, m in modules.items()}, tok)
family.save(new, Path(out), {"training": {"probe": sys.argv[1:]}, "pass_log": []})
print("saved", out, flush=True)
