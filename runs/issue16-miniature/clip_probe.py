"""Probe: more joint full-clip VAE steps (encoder and decoder, so the latents move: the MMDiT would need
retraining) from a checkpoint, then the reconstruction's MiniBench. `python clip_probe.py CKPT STEPS LR [work]`."""
import subprocess, sys, time, torch
from pathlib import Path
from safetensors.torch import save_file
from neocompress.miniature.vae_training import TrainedVAE, train_vae
from _vae import load_vae
enc, dec = load_vae(sys.argv[1])
work = Path(sys.argv[4] if len(sys.argv) > 4 else "out/clip_probe")
t = time.time()
v = train_vae(work, steps=int(sys.argv[2]), batch_size=4, lr=float(sys.argv[3]), init=TrainedVAE(enc, dec, None),
              progress=False)
print("trained", round(time.time() - t), "s", flush=True)
last = sorted((work / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))[-1] / "trained.safetensors"
print(subprocess.run([sys.executable, str(Path(__file__).parent / "vae_score.py"), str(last), "128"],
                     capture_output=True, text=True).stdout, flush=True)
