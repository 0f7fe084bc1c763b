"""Early signal: frame-0 images of the 26-px world through the new VAE (image phase checkpoint), read by the
26-px judges: colour/shape/background accuracy on the reconstruction vs on the real frame."""
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
torch.set_num_threads(1)
from neocompress.bench.judges import Judges
from neocompress.miniature.configs import vae_config, WORLD
from neocompress.models.pyramid_flow.vae import CausalVAEDecoder, CausalVAEEncoder
from neocompress.world import World, to_tensor
sd = load_file(sys.argv[1])
enc, dec = CausalVAEEncoder(vae_config()), CausalVAEDecoder(vae_config())
enc.load_state_dict({k[len("mods.encoder."):]: v for k, v in sd.items() if k.startswith("mods.encoder.")})
dec.load_state_dict({k[len("mods.decoder."):]: v for k, v in sd.items() if k.startswith("mods.decoder.")})
enc.eval(); dec.eval()
judges = Judges.load()  # the 26-px judges beside this script
world = World(WORLD)
samples = [world.sample(i, "heldout") for i in range(192)]
real = torch.stack([to_tensor(s.video[:1]) for s in samples])
with torch.no_grad():
    rec = torch.cat([dec.decode(enc.encode(real[i:i + 32])) for i in range(0, len(real), 32)])
for name, v in (("real", real), ("recon", rec)):
    vs = judges.verdicts(v, [s.scene for s in samples])
    col = sum(all(x.colour) for x in vs) / len(vs); shp = sum(all(x.shape) for x in vs) / len(vs)
    bg = sum(x.background for x in vs) / len(vs)
    print(name, "colour", round(col, 3), "shape", round(shp, 3), "background", round(bg, 3), flush=True)
print("psnr", float(10 * torch.log10(4 / (rec - real).pow(2).mean())))
