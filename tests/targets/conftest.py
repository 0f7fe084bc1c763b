"""One recipe applied once for the target tests: builtin:tiny-random's denoiser and VAE decoder quantized to W8A16
and its text encoders simulated in fp16, lowered to onnxruntime and to a Hexagon bundle whose denoiser (0.27 MiB
of 8-bit weights) is split into parts of at most 0.15 MiB, compiled for the Snapdragon 8 Elite (v79) and the X
Elite (v73), and to a second Hexagon bundle holding the decoder (whole: 2.4 MiB), compiled for the 8 Elite (its
simulator run is the slowest step here; `make demo` compiles and simulates it for both)."""

from __future__ import annotations

import json

import pytest

from neocompress.core.apply_run import apply_recipe
from neocompress.recipe import load_recipe

RECIPE = """
model: {{source: builtin:tiny-random}}
data:
  prompts:
    cal: {{source: builtin:world, count: 6}}
passes:
  - name: quantize
    components: {{denoiser: w8a16, vae_decoder: w8a16, text_encoders: fp16}}
    calibration: {{prompts: cal, count: 4, first: [2, 2, 2], later: [1, 1, 1], heldout: 1}}
targets:
  - {{name: onnxruntime}}
  - name: hexagon
    device: snapdragon-8-elite
    also_compile: [snapdragon-x-elite]
    max_part_mb: 0.15
    components: [denoiser]
  - name: hexagon
    device: snapdragon-8-elite
    components: [vae_decoder]
    output: bundles/hexagon-vae
output: {out}
"""


@pytest.fixture(scope="session")
def lowered(tmp_path_factory, worker_id):
    """(output folder, manifest). Under pytest-xdist every worker would build its own (about two minutes); the
    first one to get here builds it under a file lock in the workers' shared temporary folder, the others read it."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    tmp, done = shared / "lowered", shared / "lowered-manifest.json"
    with FileLock(str(shared / "lowered.lock")):
        if not done.is_file():
            tmp.mkdir(exist_ok=True)
            path = tmp / "recipe.yaml"
            path.write_text(RECIPE.format(out=tmp / "out"))
            outcome = apply_recipe(load_recipe(path))
            done.write_text(json.dumps(outcome.manifest))
    return tmp / "out", json.loads(done.read_text())
