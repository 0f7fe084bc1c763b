"""Record what the shipped builtin:tiny generates for a fixed prompt and seed (the regression reference)."""

from __future__ import annotations

import json

from neocompress.models.pyramid_flow.family import PyramidFlowFamily, shipped_dir

PROMPT, SEED = "a red circle moving left slowly on a grey background", 0
pipe = PyramidFlowFamily().pipeline(PyramidFlowFamily().load("builtin:tiny"))
video = pipe.generate([PROMPT], seed=SEED)[0]
stats = [float(video.mean()), float(video.std()), *[float(v) for v in video.flatten()[:: video.numel() // 16]]]
path = shipped_dir("builtin:tiny") / "reference_output.json"
path.write_text(json.dumps({"prompt": PROMPT, "seed": SEED, "stats": stats}, indent=2))
print(path)
