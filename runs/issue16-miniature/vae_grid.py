"""Frame grids of real held-out clips (top) and the VAE's reconstruction (bottom), to look at.
`python vae_grid.py CKPT OUT_DIR`"""
import sys, numpy as np, torch
from pathlib import Path
from neocompress.analysis.video_io import frame_grid, to_uint8_frames
from neocompress.bench.minibench import renderer_generate_fn, select_prompts
from _vae import load_vae
enc, dec = load_vae(sys.argv[1])
out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
real = renderer_generate_fn()
for i, p in enumerate(select_prompts(64)[::16]):
    with torch.no_grad():
        v = real([p], [0]); r = dec.decode(enc.encode(v))
    both = np.concatenate([to_uint8_frames(v[0]), to_uint8_frames(r[0])])
    frame_grid(both, out / f"{i}.png", columns=9, scale=3, caption=p)
    print(out / f"{i}.png", p)
