"""Record what the shipped builtin:tiny generates for a fixed prompt and seed (the regression reference)."""

from __future__ import annotations

import json

from neocompress.miniature.reference import PROMPT, SEED, reference_stats
from neocompress.models.pyramid_flow.family import PyramidFlowFamily, shipped_dir

pipe = PyramidFlowFamily().pipeline(PyramidFlowFamily().load("builtin:tiny"))
video = pipe.generate([PROMPT], seed=SEED)[0]
path = shipped_dir("builtin:tiny") / "reference_output.json"
path.write_text(json.dumps({"prompt": PROMPT, "seed": SEED, "stats": reference_stats(video)}, indent=2))
print(path)
