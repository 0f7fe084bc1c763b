"""Probe: does a distilled text path keep the contrasts the DiT reads? For held-out captions, the teacher's and the
student's embedding change when one word changes (slowly -> quickly, left -> right, ...): cosine between the two
changes and the student's change relative to the teacher's, per attribute.
`python runs/issue16-miniature/text_contrast.py OUTPUT_FOLDER [heldout|train]`."""
import re
import sys

import torch

from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.miniature.configs import WORLD
from neocompress.world import World

F = PyramidFlowFamily()
pt = F.pipeline(F.load("builtin:tiny"), simulated=False)
ps = F.pipeline(F.load(sys.argv[1]), simulated=False)
emb = pt.denoiser.context_embedder


@torch.no_grad()
def teacher(prompts):
    e = pt.text.encode(prompts)
    return emb(e.tokens.to(emb.weight.dtype)) * e.mask[..., None]


@torch.no_grad()
def student(prompts):
    e = ps.text.encode(prompts)
    return e.tokens * e.mask[..., None]


SWAPS = {"speed": ("slowly", "quickly"), "direction": ("left", "right"), "vertical": ("up", "down"),
         "colour": ("red", "blue"), "shape": ("circle", "square"), "background": ("grey background", "white background")}
held = World(WORLD).captions(sys.argv[2] if len(sys.argv) > 2 else "heldout")  # or "train"
for name, (a, b) in SWAPS.items():
    # whole words only: a plain replace turned 'checkered' into 'checkeblue' (red -> blue) until the eighth sitting
    pairs = [(c, re.sub(rf"\b{a}\b", b, c)) for c in held if re.search(rf"\b{a}\b", c) and not re.search(rf"\b{b}\b", c)]
    if not pairs:
        continue
    x, y = [p for p, _ in pairs], [q for _, q in pairs]
    dt, ds = (teacher(y) - teacher(x)).flatten(1), (student(y) - student(x)).flatten(1)
    cos = torch.nn.functional.cosine_similarity(dt, ds, dim=1).mean()
    ratio = (ds.norm(dim=1) / dt.norm(dim=1)).mean()
    err = ((ds - dt).norm(dim=1) / dt.norm(dim=1)).mean()
    print(f"{name:10s} pairs {len(pairs):3d}  cos {cos:.3f}  |student change| / |teacher change| {ratio:.2f}  "
          f"relative error of the change {err:.2f}")
