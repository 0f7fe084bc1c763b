"""Probe: MiniBench of builtin:tiny with its caption T5 states perturbed by Gaussian noise of relative size REL.
`python runs/issue16-miniature/text_noise_probe.py PROMPTS REL...`."""
import sys, torch
from neocompress.bench.minibench import run_minibench
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.text_encoders import TextEmbeddings
torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
F = PyramidFlowFamily()
pt = F.pipeline(F.load("builtin:tiny"), simulated=False)
n = int(sys.argv[1])
enc = pt.text.encode
from neocompress.models.pyramid_flow.vae import decode_normalised
for rel in [float(x) for x in sys.argv[2:]]:
    def noisy(prompts, rel=rel):
        e = enc(prompts)
        if rel == 0 or all(p == "" for p in prompts):
            return e
        g = torch.Generator().manual_seed(hash(tuple(prompts)) % 2**31)
        noise = torch.randn(e.tokens.shape, generator=g)
        m = e.mask.unsqueeze(-1).to(e.tokens.dtype)
        scale = rel * (e.tokens * m).norm() / (noise * m).norm()
        return TextEmbeddings(pooled=e.pooled, tokens=e.tokens + scale * noise * m, mask=e.mask)
    pt.text.encode = noisy
    fn = torch.no_grad()(lambda p, s: decode_normalised(pt.decoder, pt.sample_latents(p, seed=s), pt.latent_norm))
    r = run_minibench(fn, num_prompts=n, seed=0)
    print(f"rel {rel}: {r.total:.3f}", {k: round(v, 2) for k, v in r.parts.items()}, flush=True)
