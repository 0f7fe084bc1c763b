"""Probe: MiniBench of the VAE's reconstruction of real held-out world clips (issue 16 item 1's bar: every part
>= 0.95, total >= 0.90), from an engine checkpoint's trained.safetensors. `python vae_score.py CKPT [prompts]`."""
import sys, torch
from pathlib import Path
from safetensors.torch import load_file
torch.set_num_threads(1)
from neocompress.bench.judges import Judges
from neocompress.bench.minibench import renderer_generate_fn, run_minibench
from neocompress.miniature.configs import vae_config
from neocompress.models.pyramid_flow.vae import CausalVAEDecoder, CausalVAEEncoder
sd = load_file(sys.argv[1])
enc, dec = CausalVAEEncoder(vae_config()).eval(), CausalVAEDecoder(vae_config()).eval()
enc.load_state_dict({k[len("mods.encoder."):]: v for k, v in sd.items() if k.startswith("mods.encoder.")})
dec.load_state_dict({k[len("mods.decoder."):]: v for k, v in sd.items() if k.startswith("mods.decoder.")})
real = renderer_generate_fn()
@torch.no_grad()
def recon(p, s): return dec.decode(enc.encode(real(p, s)))
r = run_minibench(recon, num_prompts=int(sys.argv[2]) if len(sys.argv) > 2 else 128, seed=0, judges=Judges.load(Path(__file__).parent))
print("total", round(r.total, 3), {k: round(v, 3) for k, v in r.parts.items()}, getattr(r, "interval", None))
