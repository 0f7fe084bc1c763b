"""Probe: real held-out clips / native decode / TAEHV decode of the same latents, as one frame grid.
`python taehv_grid.py [TAEHV_SOURCE] OUT.png [sampled]`: with `sampled`, builtin:tiny's own samples of the captions
take the real clips' place (eighth sitting)."""
import sys

import torch

from neocompress.bench.minibench import renderer_generate_fn
from neocompress.distill.decoder_run import frame_grid
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.vae import decode_normalised
from neocompress.models.taehv_decoder import load_taehv

torch.set_num_threads(1)
ir = PyramidFlowFamily().load("builtin:tiny")
pipe = PyramidFlowFamily().pipeline(ir, simulated=False)
taehv = load_taehv(sys.argv[1]).float().eval()
prompts = ["a red circle moving left slowly on a grey background", "a blue triangle moving up quickly on a striped black background",
           "a yellow cross moving right slowly on a checkered white background"]
real = renderer_generate_fn()(prompts, 0)
with torch.no_grad():
    z = pipe.encode(real.to(next(pipe.vae_encoder.parameters()).dtype))
    if len(sys.argv) > 3 and sys.argv[3] == "sampled":
        z = pipe.sample_latents(prompts, seed=0)
    rows = []
    for i, p in enumerate(prompts):
        rows += [(f"{i} real", real[i].float()), (f"{i} native", decode_normalised(pipe.decoder, z[i:i+1], pipe.latent_norm)[0].float()),
                 (f"{i} taehv", decode_normalised(taehv, z[i:i+1].float(), pipe.latent_norm)[0])]
frame_grid(rows, __import__("pathlib").Path(sys.argv[2]), "real / native / taehv")
