"""Probe: where an encoder_substitution output loses MiniBench: its pipeline with the teacher's caption or empty-prompt
embeddings swapped in. `python runs/issue16-miniature/text_attribution.py OUTPUT_FOLDER [prompts]`."""
import sys, torch
from neocompress.bench.minibench import run_minibench
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.text_encoders import TextEmbeddings
torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
F = PyramidFlowFamily()
pt = F.pipeline(F.load("builtin:tiny"), simulated=False)
ps = F.pipeline(F.load(sys.argv[1]), simulated=False)
n = int(sys.argv[2]) if len(sys.argv) > 2 else 48
emb = pt.denoiser.context_embedder
student_encode = ps.text.encode
def teacher_encode(prompts):
    with torch.no_grad():
        e = pt.text.encode(prompts)
        return TextEmbeddings(pooled=e.pooled, tokens=emb(e.tokens.to(emb.weight.dtype)), mask=e.mask)
def mixed(uncond_from_teacher, cond_from_teacher):
    def enc(prompts):
        if all(p == "" for p in prompts):
            return (teacher_encode if uncond_from_teacher else student_encode)(prompts)
        return (teacher_encode if cond_from_teacher else student_encode)(prompts)
    return enc
def decode(z):
    from neocompress.models.pyramid_flow.vae import decode_normalised
    return decode_normalised(ps.decoder, z, ps.latent_norm)
for name, u, c in (("student", False, False), ("teacher uncond", True, False), ("teacher cond", False, True), ("teacher both", True, True)):
    ps.text.encode = mixed(u, c)
    fn = torch.no_grad()(lambda p, s: decode(ps.sample_latents(p, seed=s)))
    r = run_minibench(fn, num_prompts=n, seed=0)
    print(f"{name:15s} {r.total:.3f}", {k: round(v, 2) for k, v in r.parts.items()}, flush=True)
