"""Probe: per-frame error of a TAEHV decoder against the native one and the truth on real held-out clips through
the frozen encoder. Frame 0 is the first latent frame's own decode (the image unit); the eighth sitting saw it
come out orange-yellow for a red circle. `python runs/issue16-miniature/taehv_frames.py [TAEHV_SOURCE] [clips]`."""
import os
import sys

import torch

from neocompress.bench.minibench import renderer_generate_fn
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.vae import decode_normalised
from neocompress.models.taehv_decoder import load_taehv
from neocompress.world import World
from neocompress.miniature.configs import WORLD

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
source = sys.argv[1] if len(sys.argv) > 1 else "builtin:tiny-taehv"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
pipe = PyramidFlowFamily().pipeline(PyramidFlowFamily().load("builtin:tiny"))
taehv = load_taehv(source).float().eval()
prompts = World(WORLD).captions("heldout")[:n]
truth = renderer_generate_fn()(prompts, 0)  # [N, 3, F, H, W] in [0, 1]?
with torch.no_grad():
    z = pipe.encode(truth)
    native = decode_normalised(pipe.decoder, z, pipe.latent_norm)
    small = decode_normalised(taehv, z, pipe.latent_norm)


def psnr(a, b):  # per frame, over clips
    mse = (a.float() - b.float()).pow(2).mean(dim=(0, 1, 3, 4))
    return [round(float(10 * torch.log10(1.0 / m)), 1) for m in mse]


print("value range truth", float(truth.min()), float(truth.max()))
print("native vs truth PSNR per frame", psnr(native, truth))
print("taehv  vs truth PSNR per frame", psnr(small, truth))
print("taehv  vs native PSNR per frame", psnr(small, native))
