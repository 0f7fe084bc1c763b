"""Probe: more joint full-clip VAE steps (encoder and decoder, so the latents move: the MMDiT would need
retraining) from a checkpoint, then the reconstruction's MiniBench. `python clip_probe.py CKPT STEPS LR [work]`."""
import subprocess, sys, time, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
torch.set_num_threads(1)
from neocompress.miniature.configs import vae_config
from neocompress.miniature.vae_training import TrainedVAE, train_vae
from neocompress.models.pyramid_flow.vae import CausalVAEDecoder, CausalVAEEncoder
sd = load_file(sys.argv[1])
enc, dec = CausalVAEEncoder(vae_config()), CausalVAEDecoder(vae_config())
enc.load_state_dict({k[len("mods.encoder."):]: v for k, v in sd.items() if k.startswith("mods.encoder.")})
dec.load_state_dict({k[len("mods.decoder."):]: v for k, v in sd.items() if k.startswith("mods.decoder.")})
work = Path(sys.argv[4] if len(sys.argv) > 4 else "out/clip_probe")
t = time.time()
v = train_vae(work, steps=int(sys.argv[2]), batch_size=4, lr=float(sys.argv[3]), init=TrainedVAE(enc, dec, None),
              progress=False)
print("trained", round(time.time() - t), "s", flush=True)
last = sorted((work / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))[-1] / "trained.safetensors"
print(subprocess.run([sys.executable, str(Path(__file__).parent / "vae_score.py"), str(last), "128"],
                     capture_output=True, text=True).stdout, flush=True)
