"""Probe: a trained miniature pipeline's MiniBench under other CFG scales, and on train captions (memorised) vs
held-out ones (composed). `python dit_probe.py PIPELINE PROMPTS GFIRST:GLATER ... [--train]`"""
import sys, time, torch
from pathlib import Path
from neocompress.bench.judges import Judges
from neocompress.bench.minibench import render_captions, run_minibench, score_videos, _balanced_pick
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.world import World, WorldConfig, caption
torch.set_num_threads(1)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
ir = PyramidFlowFamily().load(args[0])
pipe = PyramidFlowFamily().pipeline(ir)
n = int(args[1])
judges = Judges.load()
for g in args[2:]:
    gf, gl = map(float, g.split(":"))
    sched = pipe.schedule_with(guidance_first=gf, guidance_later=gl)
    gen = lambda p, s: pipe.generate(list(p), seed=s, schedule=sched)
    t = time.time()
    if "--train" in sys.argv:
        scenes = _balanced_pick(list(World(WorldConfig()).scenes("train")), n)
        prompts = [caption(s) for s in scenes]
        videos = torch.cat([gen(prompts[i:i + 16], i) for i in range(0, n, 16)])
        s = score_videos(videos, render_captions(prompts, 0), scenes, judges)
        print("train", g, {k: round(float(v), 3) for k, v in s.parts.items()} if hasattr(s, "parts") else s, flush=True)
    else:
        r = run_minibench(gen, num_prompts=n, seed=0, judges=judges)
        print("heldout", g, "total", round(r.total, 3), {k: round(v, 3) for k, v in r.parts.items()}, round(time.time() - t), "s", flush=True)
