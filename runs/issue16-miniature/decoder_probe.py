"""Probe: a decoder-only phase on full clips (encoder frozen, so the MMDiT's latents do not move) from a VAE
checkpoint, then the reconstruction's MiniBench. `python decoder_probe.py CKPT STEPS LR [work]`."""
import subprocess, sys, time, torch
from pathlib import Path
from neocompress.miniature.vae_training import TrainedVAE, train_vae
from _vae import load_vae
enc, dec = load_vae(sys.argv[1])
work = Path(sys.argv[4] if len(sys.argv) > 4 else "out/decoder_probe")
t = time.time()
v = train_vae(work, steps=int(sys.argv[2]), batch_size=4, lr=float(sys.argv[3]), init=TrainedVAE(enc, dec, None),
              progress=False, decoder_only=True)
print("trained", round(time.time() - t), "s", flush=True)
from safetensors.torch import save_file
full = {**{f"mods.encoder.{k}": t for k, t in v.encoder.state_dict().items()},
        **{f"mods.decoder.{k}": t for k, t in v.decoder.state_dict().items()}}
assert all(torch.equal(full[f"mods.encoder.{k}"], t) for k, t in enc.state_dict().items())  # frozen
save_file({k: t.contiguous() for k, t in full.items()}, str(work / "full.safetensors"))
print(subprocess.run([sys.executable, str(Path(__file__).parent / "vae_score.py"), str(work / "full.safetensors"),
                      "128"], capture_output=True, text=True).stdout, flush=True)
