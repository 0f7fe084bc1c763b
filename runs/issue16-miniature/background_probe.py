"""Which backgrounds a pipeline loses: MiniBench's background verdict per caption background (eleventh sitting).
`python background_probe.py PIPE PROMPTS FIRST/LATER[/GRID] ...` (e.g. 20,20,20/10,10,10 1,1,1/1,1,1)."""
import sys
from collections import defaultdict

import torch

from neocompress.bench.judges import Judges
from neocompress.bench.minibench import run_minibench
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.world.grammar import BACKGROUNDS

torch.set_num_threads(2)
family = PyramidFlowFamily()
pipe = family.pipeline(family.load(sys.argv[1]))
judges = Judges.load()
for spec in sys.argv[3:]:
    first, later, *grid = spec.split("/")
    sched = pipe.schedule_with(first=tuple(map(int, first.split(","))), later=tuple(map(int, later.split(","))),
                               grid=grid[0] if grid else None)
    r = run_minibench(lambda p, s: pipe.generate(list(p), seed=s, schedule=sched), num_prompts=int(sys.argv[2]),
                      seed=0, judges=judges)
    hits = defaultdict(list)
    for prompt, ok in zip(r.prompts, r.scores.per_video["background"], strict=True):
        hits[next(b for b in BACKGROUNDS if f"on a {b} " in prompt)].append(ok)
    print(spec, "total", round(r.total, 3), "background", round(r.parts["background"], 3),
          {b: f"{sum(v):.0f}/{len(v)}" for b, v in sorted(hits.items())}, flush=True)
