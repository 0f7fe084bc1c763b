"""Probe: 120 crop steps (48 px, bs 8, frame-difference loss) from the new VAE's image checkpoint; loss trend and
full-clip MiniBench of the reconstruction with the 26-px judges, before and after."""
import json, sys, time, torch
from pathlib import Path
from safetensors.torch import load_file
torch.set_num_threads(1)
from neocompress.bench.judges import Judges
from neocompress.bench.minibench import renderer_generate_fn, run_minibench
from neocompress.miniature.configs import vae_config
from neocompress.miniature.vae_training import TrainedVAE, train_vae
from neocompress.models.pyramid_flow.vae import CausalVAEDecoder, CausalVAEEncoder
sd = load_file(sys.argv[1])
enc, dec = CausalVAEEncoder(vae_config()), CausalVAEDecoder(vae_config())
enc.load_state_dict({k[len("mods.encoder."):]: v for k, v in sd.items() if k.startswith("mods.encoder.")})
dec.load_state_dict({k[len("mods.decoder."):]: v for k, v in sd.items() if k.startswith("mods.decoder.")})
judges = Judges.load()  # the 26-px judges beside this script
real = renderer_generate_fn()
def score(e, d):
    e.eval(); d.eval()
    @torch.no_grad()
    def f(p, s): return d.decode(e.encode(real(p, s)))
    r = run_minibench(f, num_prompts=48, seed=0, judges=judges)
    return round(r.total, 3), {k: round(v, 3) for k, v in r.parts.items()}
print("before", score(enc, dec), flush=True)
t = time.time()
v = train_vae(Path("out/crop_probe"), steps=int(sys.argv[2]), batch_size=8, crop=48, lr=1e-3,
              init=TrainedVAE(enc, dec, None), progress=False)
print("trained", round(time.time() - t), flush=True)
L = [json.loads(l) for l in open("out/crop_probe/log.jsonl")]
print("loss", [(r["step"], round(r["loss"], 3), round(r.get("temporal", 0), 3)) for r in L[:: max(1, len(L) // 8)]])
print("after", score(v.encoder, v.decoder), flush=True)
