"""Probe: CFG scale per pyramid stage (the schedule has one per unit): `python stage_cfg_probe.py PIPE N G0:G1:G2 ...`.
The guidance of each denoiser call is picked from its timestep's stage."""
import sys, time, torch
from pathlib import Path
from neocompress.bench.judges import Judges
from neocompress.bench.minibench import run_minibench
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler
torch.set_num_threads(1)
pipe = PyramidFlowFamily().pipeline(PyramidFlowFamily().load(sys.argv[1]))
ranges = PyramidFlowScheduler().timestep_ranges
judges = Judges.load()
original = pipe._velocity_fn
for g in sys.argv[3:]:
    per_stage = [float(x) for x in g.split(":")]
    def velocity_fn(cond, uncond, per_stage=per_stage):
        inner = original(cond, uncond)
        def v(sample, timestep, guidance):
            t = float(timestep.flatten()[0])
            stage = next(s for s, (hi, lo) in enumerate(ranges) if lo <= t <= hi)
            return inner(sample, timestep, per_stage[stage])
        return v
    pipe._velocity_fn = velocity_fn
    sched = pipe.schedule_with(guidance_first=9.0, guidance_later=9.0)  # > 1: CFG embeddings are made
    t0 = time.time()
    r = run_minibench(lambda p, s: pipe.generate(list(p), seed=s, schedule=sched), num_prompts=int(sys.argv[2]), seed=0, judges=judges)
    print(g, "total", round(r.total, 3), {k: round(v, 3) for k, v in r.parts.items()}, round(time.time() - t0), "s", flush=True)
